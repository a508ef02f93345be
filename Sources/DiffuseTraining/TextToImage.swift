import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation

/// An image's width and height in pixels, written WIDTHxHEIGHT.
public struct ImageSize: Equatable, Sendable, CustomStringConvertible {
    public let width, height: Int

    public init(width: Int, height: Int) { (self.width, self.height) = (width, height) }

    /// "640x480"; nil unless two positive numbers.
    public init?(_ text: String) {
        let parts = text.lowercased().split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else { return nil }
        (width, height) = (w, h)
    }

    public var description: String { "\(width)x\(height)" }
}

/// What `diffuse generate` asks of a Stable Diffusion pipeline.
public struct TextToImageOptions: Sendable {
    public var prompt = ""
    public var negativePrompt = ""
    public var steps = 25
    /// Classifier-free guidance scale (1: none).
    public var guidance = 7.5
    /// The seed of image i is seed + i (nil: a random one, recorded in the parameters).
    public var seed: UInt64?
    /// Default: the init image's, else the model's.
    public var size: ImageSize?
    /// Default: the pipeline's scheduler.
    public var sampler: SamplerKind?
    public var sigmas: SigmaSpacing?
    /// What the U-Net predicts, over its scheduler config.
    public var prediction: Prediction?
    /// Condition on the text encoder's layer this many before the last (A1111's "Clip skip" − 1).
    public var clipSkip = 0
    public var count = 1
    /// Initial latent noise [count, 4, H/8, W/8] instead of the seed's, and where it came from (for the record).
    public var noise: Tensor?
    public var noiseSource = "given"
    /// Image to image: the starting image [1, 3, H, W] in [0, 1], and how much to change it, in (0, 1].
    public var initImage: Tensor?
    public var strength = 0.6

    public init() {}
}

/// One generated image [1, 3, H, W] in [0, 1], how it was made, and how long it took.
public struct GeneratedImage {
    public let image: Tensor
    public let parameters: GenerationParameters
    public let seconds: Double
}

/// Text to image (or image to image) with `sd` as `options` say, one image after another, each handed to `each` as
/// soon as it is done. `progress(done, total)` counts the sampler's steps over all images; `warn` hears what the
/// user should know (a prompt truncated to the text encoder's length). A `StopRequest` in scope ends the image in
/// progress early (with an `EstimateWatch` in scope, at its last x̂₀) and starts no other.
public func generate(_ sd: StableDiffusion, _ options: TextToImageOptions, progress: ((Int, Int) -> Void)? = nil,
                     warn: (String) -> Void = { _ in }, each: (Int, GeneratedImage) throws -> Void) throws {
    let o = options
    guard o.steps > 0, o.count > 0, o.guidance.isFinite, o.guidance >= 0, o.strength > 0, o.strength <= 1, o.clipSkip >= 0 else {
        throw DiffuseError.config("steps and count must be positive, guidance a number ≥ 0, strength in (0, 1], clip skip ≥ 0")
    }
    guard o.clipSkip < sd.textEncoder.config.layers else {
        throw DiffuseError.config("clip skip (--clip-skip) must be below the text encoder's \(sd.textEncoder.config.layers) layers")
    }
    var scheduler = sd.scheduler
    if let prediction = o.prediction { scheduler.predictionType = prediction.rawValue }
    var sampling = try Sampling(kind: o.sampler ?? sd.defaultSampler, steps: o.steps, config: scheduler)
    if let sigmas = o.sigmas { sampling.sigmaSpacing = sigmas }
    let sampler = try sampling.makeSampler()
    let initial = o.initImage
    let size = o.size ?? initial.map { ImageSize(width: $0.shape[3], height: $0.shape[2]) }
        ?? ImageSize(width: sd.defaultSide, height: sd.defaultSide)
    if let initial, [initial.shape[3], initial.shape[2]] != [size.width, size.height] {
        throw DiffuseError.config("the init image is \(initial.shape[3])x\(initial.shape[2]) pixels, not \(size)")
    }
    let latent: [Int]
    do { latent = try sd.latentShape(height: size.height, width: size.width) }
    catch { throw DiffuseError.config("\(size): the size must be a multiple of \(sd.scaleFactor) pixels each way") }
    if let noise = o.noise, noise.rank != 4 || Array(noise.shape.dropFirst()) != latent || noise.shape[0] < o.count {
        throw DiffuseError.config("the noise has shape \(noise.shape); this needs [\(o.count), \(latent.map(String.init).joined(separator: ", "))] "
                          + "(\(o.count) images of \(size))")
    }
    let seed = o.seed ?? UInt64.random(in: 0..<(1 << 32))
    let (context, truncated) = sd.embed(prompt: o.prompt, negativePrompt: o.negativePrompt, clipSkip: o.clipSkip)
    for text in truncated {
        warn("the \(text == o.prompt ? "prompt" : "negative prompt") is over \(sd.tokenizer.maxLength) tokens: the text encoder "
             + "reads only the first \(sd.tokenizer.maxLength - 2)")
    }
    let stepsRun = o.steps - (initial == nil ? 0 : StableDiffusion.editStart(steps: o.steps, strength: o.strength))
    for i in 0..<o.count where !StopRequest.isRequested {
        let start = Date()
        var generator = RandomGenerator(seed: seed &+ UInt64(i))
        let x = o.noise?.slice(axis: 0, i..<(i + 1)) ?? generator.normal([1] + latent)
        let stepNoise: (Int) -> Tensor = { _ in generator.normal([1] + latent) }
        let observe: (Int, Tensor) -> Void = { step, _ in progress?(i * stepsRun + min(step + 1, stepsRun), o.count * stepsRun) }
        let image: Tensor
        if let initial {
            let encoderNoise = generator.normal([1] + latent)
            image = sd.edit(initial, strength: o.strength, context: context, guidance: o.guidance, sampler: sampler,
                            encoderNoise: encoderNoise, noise: x, stepNoise: stepNoise, observe: observe)
        } else {
            image = sd.generate(context: context, guidance: o.guidance, sampler: sampler, noise: x, stepNoise: stepNoise, observe: observe)
        }
        progress?((i + 1) * stepsRun, o.count * stepsRun)
        var settings: [GenerationParameters.Setting] = [
            .init("Steps", "\(o.steps)"), .init("Sampler", sampling.webUIName), .init("CFG scale", String(format: "%g", o.guidance)),
            .init("Seed", o.noise == nil ? "\(seed &+ UInt64(i))" : "none (noise from \(o.noiseSource))"),
            .init("Size", size.description), .init("Model", sd.name),
        ]
        if initial != nil { settings.append(.init("Denoising strength", String(format: "%g", o.strength))) }
        if o.clipSkip > 0 { settings.append(.init("Clip skip", "\(o.clipSkip + 1)")) }
        try each(i, GeneratedImage(image: image, parameters: GenerationParameters(prompt: o.prompt, negativePrompt: o.negativePrompt,
                                                                                 settings: settings),
                                   seconds: Date().timeIntervalSince(start)))
    }
}
