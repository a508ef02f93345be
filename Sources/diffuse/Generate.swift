import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// An image size given as WIDTHxHEIGHT.
struct ImageSize: ExpressibleByArgument, CustomStringConvertible {
    let width, height: Int

    init(width: Int, height: Int) { (self.width, self.height) = (width, height) }

    init?(argument: String) {
        let parts = argument.lowercased().split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else { return nil }
        (width, height) = (w, h)
    }

    var description: String { "\(width)x\(height)" }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Text to image (and image to image) with Stable Diffusion 1.x or 2.x.",
        discussion: """
        The model: a diffusers StableDiffusionPipeline folder (model_index.json, tokenizer/, text_encoder/, unet/, \
        vae/, scheduler/; fp32, fp16 or bf16 weights, as downloaded from Hugging Face), or one .safetensors checkpoint \
        in the original layout (v1-5-pruned-emaonly.safetensors, v2-1_768-ema-pruned.safetensors...) with --config: \
        the folder of a pipeline of the same family, for its tokenizer (and its configs, where it has them; the \
        others are read from the checkpoint's shapes as the published models have them).

        The sampler is the one the model's scheduler config names (PNDM for SD 1.5, DDIM for SD 2.1) unless \
        --sampler says otherwise; DPM++ 2M with --karras is a good choice at 20–25 steps. Guidance is \
        classifier-free: each step runs the U-Net on the negative prompt (empty by default) and the prompt.

        Each image is written as a PNG with its settings in a `parameters` text chunk, as AUTOMATIC1111's web UI \
        writes it (`diffuse info IMAGE.png` prints them); with --count N, the seeds are SEED, SEED+1, … and the files \
        NAME-1.png … NAME-N.png. An .safetensors --out holds the images as values in [0, 1] (tensor 'images', \
        [N, 3, H, W]).

        With --init-image, the image is encoded, noised to the level --strength says (0: unchanged, 1: pure \
        noise) and denoised with the prompt: of --steps, the last ⌊steps × strength⌋ run.

        Examples:
          diffuse generate --model ./stable-diffusion-v1-5 --prompt "a lighthouse at dusk, oil painting" --seed 7
          diffuse generate --model v1-5-pruned-emaonly.safetensors --config ./stable-diffusion-v1-5 \\
              --prompt "a red fox in snow" --negative-prompt "blurry" --sampler dpm++2m --karras --steps 20
          diffuse generate --model ./stable-diffusion-2-1 --prompt "a castle" --size 768x768 --count 4 --out castle.png
          diffuse generate --model ./stable-diffusion-v1-5 --prompt "a watercolour" --init-image photo.png --strength 0.6
        """)

    @Option(help: ArgumentHelp("A diffusers Stable Diffusion folder, or a single-file .safetensors checkpoint.", valueName: "path"))
    var model: String
    @Option(help: ArgumentHelp("For a single-file checkpoint: a pipeline folder of the same model family (its tokenizer and configs).",
                               valueName: "folder"))
    var config: String?
    @Option(help: "What to draw.") var prompt: String
    @Option(help: "What to steer away from.") var negativePrompt = ""
    @Option(help: "Sampling steps.") var steps = 25
    @Option(help: "Classifier-free guidance scale (1: none).") var guidance = 7.5
    @Option(help: "Random seed of the initial noise and the sampler's noise (default: a random one, written in the PNG).")
    var seed: UInt64?
    @Option(help: "Image size WIDTHxHEIGHT, multiples of 8 (default: the model's, 512x512 for SD 1.x, 768x768 for SD 2.x).")
    var size: ImageSize?
    @Option(help: "Sampler: \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", ")) (default: the model's scheduler).")
    var sampler: SamplerKind?
    @Option(help: "σ spacing of the σ-based samplers: discrete, karras, exponential, edm, ays.") var sigmas: SigmaSpacing?
    @Flag(help: "Karras et al.'s σ spacing: --sigmas karras.") var karras = false
    @Option(help: "What the U-Net predicts, over its scheduler config: epsilon or v_prediction (SD 2.x 512² base models: epsilon).")
    var prediction: Prediction?
    @Option(help: "Condition on the text encoder's layer this many before the last (1: the penultimate, A1111's 'Clip skip: 2').")
    var clipSkip = 0
    @Option(help: "Number of images.") var count = 1
    @Option(help: "Output file: .png (one per image) or .safetensors.") var out = "image.png"
    @Option(help: ArgumentHelp("Initial latent noise from a safetensors file (tensor 'noise', [N, 4, H/8, W/8]) instead of the seed.",
                               valueName: "file"))
    var noise: String?
    @Option(help: ArgumentHelp("Image to image: start from this PNG (its size is the output's).", valueName: "png")) var initImage: String?
    @Option(help: "Image to image: how much to change, in (0, 1].") var strength = 0.6

    func validate() throws {
        guard steps > 0, count > 0 else { throw ValidationError("--steps and --count must be positive") }
        guard guidance.isFinite, guidance >= 0 else { throw ValidationError("--guidance must be a number ≥ 0") }
        guard clipSkip >= 0 else { throw ValidationError("--clip-skip must not be negative") }
        guard strength > 0, strength <= 1 else { throw ValidationError("--strength must be in (0, 1], got \(strength)") }
        guard out.hasSuffix(".png") || out.hasSuffix(".safetensors") else {
            throw ValidationError("--out must end in .png or .safetensors, got \(out)")
        }
        if initImage == nil && CommandLine.arguments.contains("--strength") {
            throw ValidationError("--strength is for image to image: give --init-image")
        }
    }

    func run() throws {
        let loading = Date()
        let sd = try StableDiffusion(path: model, config: config)
        for warning in sd.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        note(String(format: "loaded %@ in %.1f s", sd.name, Date().timeIntervalSince(loading)))
        guard clipSkip < sd.textEncoder.config.layers else {
            throw ValidationError("--clip-skip must be below the text encoder's \(sd.textEncoder.config.layers) layers")
        }
        var scheduler = sd.scheduler
        if let prediction { scheduler.predictionType = prediction.rawValue }
        var sampling = try Sampling(kind: sampler ?? sd.defaultSampler, steps: steps, config: scheduler)
        if karras { sampling.sigmaSpacing = .karras }
        if let sigmas { sampling.sigmaSpacing = sigmas }
        let chosen: Sampler
        do { chosen = try sampling.makeSampler() } catch { throw ValidationError("\(error)") }

        let initial = try initImage.map(readInitImage)
        let imageSize = size ?? initial.map { ImageSize(width: $0.shape[3], height: $0.shape[2]) }
            ?? ImageSize(width: sd.defaultSide, height: sd.defaultSide)
        if let initial, let size, [initial.shape[3], initial.shape[2]] != [size.width, size.height] {
            throw ValidationError("\(initImage!) is \(initial.shape[3])x\(initial.shape[2]) pixels, not --size \(size)")
        }
        let latent: [Int]
        do { latent = try sd.latentShape(height: imageSize.height, width: imageSize.width) }
        catch { throw ValidationError("\(initImage ?? "--size \(imageSize)"): the size must be a multiple of \(sd.scaleFactor) pixels each way") }
        let givenNoise = try noise.map { try readNoise($0, latent: latent) }
        let seed = self.seed ?? UInt64.random(in: 0..<(1 << 32))

        let (context, truncated) = sd.embed(prompt: prompt, negativePrompt: negativePrompt, clipSkip: clipSkip)
        for text in truncated {
            warn("the \(text == prompt ? "prompt" : "negative prompt") is over \(sd.tokenizer.maxLength) tokens: the text encoder reads "
                 + "only the first \(sd.tokenizer.maxLength - 2)")
        }
        let start = initial == nil ? 0 : StableDiffusion.editStart(steps: steps, strength: strength)
        let stepsRun = steps - start
        let progress = ProgressBar(total: count * stepsRun, label: "generate", lineEvery: 1)
        var images: [Tensor] = []
        let began = Date()
        for i in 0..<count {
            let imageStart = Date()
            var generator = RandomGenerator(seed: seed &+ UInt64(i))
            let x = givenNoise?.slice(axis: 0, i..<(i + 1)) ?? generator.normal([1] + latent)
            let stepNoise: (Int) -> Tensor = { _ in generator.normal([1] + latent) }
            let observe: (Int, Tensor) -> Void = { step, _ in progress.update(i * stepsRun + min(step + 1, stepsRun)) }
            let image: Tensor
            if let initial {
                let encoderNoise = generator.normal([1] + latent)
                image = sd.edit(initial, strength: strength, context: context, guidance: guidance, sampler: chosen,
                                encoderNoise: encoderNoise, noise: x, stepNoise: stepNoise, observe: observe)
            } else {
                image = sd.generate(context: context, guidance: guidance, sampler: chosen, noise: x, stepNoise: stepNoise, observe: observe)
            }
            progress.update((i + 1) * stepsRun)
            note(String(format: "image %d/%d in %.1f s", i + 1, count, Date().timeIntervalSince(imageStart)))
            images.append(image)
            if out.hasSuffix(".png") {
                let file = count == 1 ? out : "\((out as NSString).deletingPathExtension)-\(i + 1).png"
                let parameters = self.parameters(seed: seed &+ UInt64(i), sampling: sampling, size: imageSize, model: sd)
                try PNG.write(image.reshaped(Array(image.shape.dropFirst())), to: file, range: 0...1,
                              text: [("parameters", parameters.text)])
                print(file)
            }
        }
        if out.hasSuffix(".safetensors") {
            try SafeTensorsFile.write(["images": concat(images, axis: 0)], to: out)
            print(out)
        }
        let seconds = Date().timeIntervalSince(began)
        note(String(format: "%d image%@ of %@ in %.1f s (%.2f s per step)", count, count == 1 ? "" : "s", imageSize.description,
                    seconds, seconds / Double(max(1, count * stepsRun))))
    }

    /// The settings line of the images' `parameters` chunk, in the web UI's keys.
    private func parameters(seed: UInt64, sampling: Sampling, size: ImageSize, model: StableDiffusion) -> GenerationParameters {
        var settings: [GenerationParameters.Setting] = [
            .init("Steps", "\(steps)"), .init("Sampler", sampling.webUIName), .init("CFG scale", String(format: "%g", guidance)),
            .init("Seed", noise == nil ? "\(seed)" : "none (noise from \((noise! as NSString).lastPathComponent))"),
            .init("Size", size.description), .init("Model", model.name),
        ]
        if initImage != nil { settings.append(.init("Denoising strength", String(format: "%g", strength))) }
        if clipSkip > 0 { settings.append(.init("Clip skip", "\(clipSkip + 1)")) }
        settings.append(.init("Version", "Diffuse \(Diffuse.version)"))
        return GenerationParameters(prompt: prompt, negativePrompt: negativePrompt, settings: settings)
    }

    /// The init image as [1, 3, H, W] in [0, 1].
    private func readInitImage(_ path: String) throws -> Tensor {
        let image = try PNG.read(path, channels: 3)
        return (image.reshaped([1] + image.shape) + 1) * 0.5
    }

    /// The --noise file's latents, checked against the image size.
    private func readNoise(_ path: String, latent: [Int]) throws -> Tensor {
        let t = try SafeTensorsFile(path: path).tensor("noise")
        guard t.rank == 4, Array(t.shape.dropFirst()) == latent, t.shape[0] >= count else {
            throw ValidationError("\(path): tensor 'noise' has shape \(t.shape); this needs [\(count), \(latent.map(String.init).joined(separator: ", "))] "
                                  + "(--count images of --size \(size?.description ?? "default"))")
        }
        return t
    }

    private func note(_ line: String) { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
    private func warn(_ line: String) { note("warning: \(line)") }
}
