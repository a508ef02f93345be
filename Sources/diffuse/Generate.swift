import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// An image size given as WIDTHxHEIGHT.
extension ImageSize: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
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
    @Option(help: "Image to image: how much to change, in (0, 1] (default 0.6).") var strength: Double?

    func validate() throws {
        guard steps > 0, count > 0 else { throw ValidationError("--steps and --count must be positive") }
        guard guidance.isFinite, guidance >= 0 else { throw ValidationError("--guidance must be a number ≥ 0") }
        guard clipSkip >= 0 else { throw ValidationError("--clip-skip must not be negative") }
        if let strength, !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1], got \(strength)") }
        guard out.hasSuffix(".png") || out.hasSuffix(".safetensors") else {
            throw ValidationError("--out must end in .png or .safetensors, got \(out)")
        }
        if initImage == nil && strength != nil {
            throw ValidationError("--strength is for image to image: give --init-image")
        }
    }

    func run() throws {
        let loading = Date()
        let sd = try StableDiffusion(path: model, config: config)
        sd.warnings.forEach(printWarning)
        note(String(format: "loaded %@ in %.1f s", sd.name, Date().timeIntervalSince(loading)))
        var o = TextToImageOptions()
        (o.prompt, o.negativePrompt, o.steps, o.guidance, o.seed, o.size) = (prompt, negativePrompt, steps, guidance, seed, size)
        (o.sampler, o.sigmas, o.prediction, o.clipSkip, o.count) = (sampler, karras ? .karras : sigmas, prediction, clipSkip, count)
        if let noise {
            o.noise = try SafeTensorsFile(path: noise).tensor("noise")
            o.noiseSource = (noise as NSString).lastPathComponent
        }
        if let initImage {
            let image = try PNG.read(initImage, channels: 3)
            o.initImage = (image.reshaped([1] + image.shape) + 1) * 0.5
            o.strength = strength ?? o.strength
        }
        var progress: ProgressBar?
        var images: [Tensor] = []
        let began = Date()
        try DiffuseTraining.generate(sd, o, progress: { done, total in
            progress = progress ?? ProgressBar(total: total, label: "generate", lineEvery: 1)
            progress!.update(done)
        }, warn: printWarning) { i, made in
            note(String(format: "image %d/%d in %.1f s", i + 1, count, made.seconds))
            images.append(made.image)
            guard out.hasSuffix(".png") else { return }
            let file = count == 1 ? out : "\((out as NSString).deletingPathExtension)-\(i + 1).png"
            var parameters = made.parameters
            parameters.settings.append(.init("Version", "Diffuse \(Diffuse.version)"))
            try PNG.write(made.image.reshaped(Array(made.image.shape.dropFirst())), to: file, range: 0...1,
                          text: [("parameters", parameters.text)])
            print(file)
        }
        if out.hasSuffix(".safetensors") {
            try SafeTensorsFile.write(["images": concat(images, axis: 0)], to: out)
            print(out)
        }
        let seconds = Date().timeIntervalSince(began), shape = images[0].shape
        let stepsRun = initImage == nil ? steps : steps - StableDiffusion.editStart(steps: steps, strength: o.strength)
        note(String(format: "%d image%@ of %dx%d in %.1f s (%.2f s per step)", count, count == 1 ? "" : "s", shape[3], shape[2],
                    seconds, seconds / Double(max(1, count * stepsRun))))
    }

    private func note(_ line: String) { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
}
