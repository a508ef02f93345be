import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// A Stable Diffusion 1.x or 2.x model: CLIP's tokenizer and text encoder, the conditional U-Net, the autoencoder and
/// the scheduler config it was published with, read from a diffusers `StableDiffusionPipeline` folder or from one
/// checkpoint file in the original layout.
public final class StableDiffusion {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    /// The scheduler config of the folder (scheduler/scheduler_config.json), or of the original checkpoints for a
    /// single file.
    public let scheduler: SchedulerConfig
    /// Where it was read from, and its name (the folder's or file's, for the images' parameters).
    public let path: String
    public var name: String { URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }
    /// Config keys that change nothing here, to show the user.
    public let warnings: [String]

    public init(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel, vae: AutoencoderKL,
                scheduler: SchedulerConfig, path: String, warnings: [String] = []) throws {
        guard textEncoder.config.hiddenSize == unet.contextDimension else {
            throw DiffuseError.diffusers(path, "the text encoder's hidden_size \(textEncoder.config.hiddenSize) is not the U-Net's "
                                 + "cross_attention_dim \(unet.contextDimension)")
        }
        guard vae.config.latentChannels == unet.config.inChannels else {
            throw DiffuseError.diffusers(path, "the VAE's latent_channels \(vae.config.latentChannels) is not the U-Net's in_channels "
                                 + "\(unet.config.inChannels)")
        }
        guard tokenizer.maxLength <= textEncoder.config.maxPositions else {
            throw DiffuseError.diffusers(path, "the tokenizer pads to \(tokenizer.maxLength) tokens, more than the text encoder's "
                                 + "\(textEncoder.config.maxPositions) positions")
        }
        (self.tokenizer, self.textEncoder, self.unet, self.vae) = (tokenizer, textEncoder, unet, vae)
        (self.scheduler, self.path, self.warnings) = (scheduler, path, warnings)
    }

    /// Reads a pipeline folder (model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/), or a single
    /// .safetensors checkpoint in the original layout with the configs and tokenizer of `config`: a pipeline folder
    /// of the same model (only its tokenizer/ is needed; configs it lacks are inferred from the tensors' shapes, as
    /// SD 1.x's and 2.x's published ones).
    public convenience init(path: String, config: String? = nil) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DiffuseError.diffusers(path, "no such file or folder")
        }
        if isDirectory.boolValue {
            guard config == nil else { throw DiffuseError.diffusers(path, "a pipeline folder has its own configs: give a config folder only with a single-file checkpoint") }
            try self.init(folder: URL(fileURLWithPath: path))
        } else {
            try self.init(checkpoint: path, config: config.map { URL(fileURLWithPath: $0) })
        }
    }

    /// Whether `folder` is a pipeline folder that `init(path:)` takes for Stable Diffusion: its model_index.json names
    /// a UNet2DConditionModel as its `unet` (a UNet2DModel pipeline is a `DiffusersFolder`).
    public static func isPipeline(_ folder: String) -> Bool {
        guard let components = try? JSONValue.object(at: folder + "/model_index.json"),
              case .array(let unet)? = components["unet"], unet.count == 2 else { return false }
        return unet[1] == .string("UNet2DConditionModel")
    }

    private convenience init(folder root: URL) throws {
        let index = root.appendingPathComponent("model_index.json")
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw DiffuseError.diffusers(root.path, "no model_index.json: not a diffusers pipeline folder")
        }
        let components = try JSONValue.object(at: index.path)
        for (key, expected) in [("tokenizer", ["CLIPTokenizer", "CLIPTokenizerFast"]), ("text_encoder", ["CLIPTextModel"]),
                                ("unet", ["UNet2DConditionModel"]), ("vae", ["AutoencoderKL"]), ("scheduler", [])] {
            guard case .array(let entry)? = components[key], entry.count == 2, case .string(let name) = entry[1] else {
                throw DiffuseError.diffusers(index.path, "no '\(key)' component (a Stable Diffusion pipeline has tokenizer, text_encoder, "
                                     + "unet, vae and scheduler)")
            }
            guard expected.isEmpty || expected.contains(name) else {
                throw DiffuseError.diffusers(index.path, "'\(key)' is a \(name); Diffuse reads \(expected.joined(separator: " or "))")
            }
            guard FileManager.default.fileExists(atPath: root.appendingPathComponent(key).path) else {
                throw DiffuseError.diffusers(root.appendingPathComponent(key).path, "missing: model_index.json lists '\(key)'")
            }
        }
        var warnings: [String] = []
        let tokenizer = try CLIPTokenizer(folder: root.appendingPathComponent("tokenizer").path)
        let textFolder = root.appendingPathComponent("text_encoder")
        let textEncoder = try DiffusersFolder.unfilled(CLIPTextModel.init, Self.textConfig(in: textFolder))
        try DiffusersFolder.load(textEncoder, from: textFolder, name: "model.safetensors", keep16: true, key: CLIPTextModel.publishedKey)
        let unet = try DiffusersFolder.component(in: root.appendingPathComponent("unet"), unknownKeys: UNet2DConditionConfig.unknownKeys,
                                                 warnings: &warnings, keep16: true, build: UNet2DConditionModel.init)
        let vae = try DiffusersFolder.autoencoder(in: root.appendingPathComponent("vae"), warnings: &warnings, keep16: true)
        try self.init(tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae,
                      scheduler: Self.scheduler(in: root, warnings: &warnings), path: root.path, warnings: warnings)
    }

    private convenience init(checkpoint path: String, config: URL?) throws {
        let checkpoint = try OriginalCheckpoint(path: path)
        guard let config, FileManager.default.fileExists(atPath: config.appendingPathComponent("tokenizer").path) else {
            throw DiffuseError.diffusers(path, "a single-file checkpoint holds no tokenizer: give the folder of a \(checkpoint.family.rawValue) "
                                 + "pipeline (its tokenizer/ folder with vocab.json and merges.txt, or tokenizer.json) as the config"
                                 + (config.map { "; \($0.path) has no tokenizer/" } ?? ""))
        }
        var warnings: [String] = []
        func exists(_ component: String, _ file: String = "config.json") -> Bool {
            FileManager.default.fileExists(atPath: config.appendingPathComponent("\(component)/\(file)").path)
        }
        let tokenizer = try CLIPTokenizer(folder: config.appendingPathComponent("tokenizer").path)
        let textEncoder = try DiffusersFolder.unfilled(CLIPTextModel.init, exists("text_encoder")
            ? Self.textConfig(in: config.appendingPathComponent("text_encoder")) : checkpoint.textConfig())
        try checkpoint.load(textEncoder, component: "text encoder", source: checkpoint.textTensor)
        let unetConfig = exists("unet")
            ? try DiffusersFolder.config(in: config.appendingPathComponent("unet"), unknownKeys: UNet2DConditionConfig.unknownKeys,
                                         warnings: &warnings)
            : try checkpoint.unetConfig()
        let unet = try DiffusersFolder.unfilled(UNet2DConditionModel.init, unetConfig)
        try checkpoint.load(unet, component: "U-Net") { try checkpoint.tensor(OriginalCheckpoint.unetKey($0, config: unetConfig)) }
        let vaeConfig = exists("vae")
            ? try DiffusersFolder.config(in: config.appendingPathComponent("vae"), unknownKeys: AutoencoderKLConfig.unknownKeys,
                                         warnings: &warnings)
            : try checkpoint.vaeConfig()
        let vae = try DiffusersFolder.unfilled(AutoencoderKL.init, vaeConfig)
        try checkpoint.load(vae, component: "autoencoder") { try checkpoint.vaeTensor($0, levels: vaeConfig.blockOutChannels.count) }
        let scheduler = exists("scheduler", "scheduler_config.json") ? try Self.scheduler(in: config, warnings: &warnings)
                                                                     : checkpoint.schedulerConfig
        try self.init(tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae, scheduler: scheduler, path: path,
                      warnings: warnings)
    }

    private static func textConfig(in folder: URL) throws -> CLIPTextConfig {
        let file = folder.appendingPathComponent("config.json")
        return try CLIPTextConfig(json: JSONValue.object(at: file.path), path: file.path)
    }

    private static func scheduler(in root: URL, warnings: inout [String]) throws -> SchedulerConfig {
        let file = root.appendingPathComponent("scheduler/scheduler_config.json")
        let (scheduler, unknown) = try SchedulerConfig.read(JSONValue.object(at: file.path), path: file.path)
        warnings += unknown.map { "\(file.path): ignoring key '\($0)'" }
        return scheduler
    }

    /// The sampler the folder's scheduler config names (PNDM for SD 1.x, DDIM or Euler for SD 2.x...), with its
    /// Karras σ where the config asks for them.
    public var defaultSampler: SamplerKind {
        let byClass = Dictionary(SamplerKind.allCases.map { ($0.diffusersClass, $0) }, uniquingKeysWith: { first, _ in first })
        return scheduler.className.flatMap { byClass[$0] } ?? .pndm
    }

    /// How many pixels a latent covers each way: 2 for each of the autoencoder's levels after the first (8 for SD).
    public var scaleFactor: Int { 1 << (vae.config.blockOutChannels.count - 1) }

    /// The side of the images the model was trained on: the U-Net's sample_size times `scaleFactor` (512 for SD 1.x,
    /// 768 for SD 2.x's 768 models).
    public var defaultSide: Int { (unet.config.sampleSize ?? 64) * scaleFactor }

    /// The latent shape of an image of `height` × `width` pixels: the autoencoder's factor must divide both.
    public func latentShape(height: Int, width: Int) throws -> [Int] {
        let factor = scaleFactor
        guard height > 0, width > 0, height % factor == 0, width % factor == 0 else {
            throw DiffuseError.diffusers(path, "the image size \(width)x\(height) is not a multiple of the autoencoder's factor \(factor)")
        }
        return [vae.config.latentChannels, height / factor, width / factor]
    }

    /// The text embeddings [2, L, D] of the negative prompt and the prompt (the context of classifier-free guidance;
    /// diffusers' order), the output of the text encoder's last layer or, with `clipSkip` k, of the k-th before it
    /// (through the final layer norm); and the prompts that were cut to the tokenizer's length.
    public func embed(prompt: String, negativePrompt: String, clipSkip: Int = 0) -> (context: Tensor, truncated: [String]) {
        let encoded = [negativePrompt, prompt].map { tokenizer.encode($0) }
        let truncated = zip([negativePrompt, prompt], encoded).filter { $1.truncated }.map(\.0)
        defer { textEncoder.dropResidentWeights() }
        return (withoutGradients { textEncoder(encoded.map(\.ids), skip: clipSkip) }, truncated)
    }

    /// The denoiser network of the sampler: the U-Net on the latents, with classifier-free guidance of scale `guidance`
    /// between the two rows of `context` (negative, positive) when it is above 1, on the positive alone otherwise.
    public func network(context: Tensor, guidance: Double) -> Network {
        { [unet] x, t in
            let n = x.shape[0]
            if guidance <= 1 {
                let positive = context.slice(axis: 0, 1..<2)
                return unet(x, timesteps: [Double](repeating: t, count: n),
                            context: concat([Tensor](repeating: positive, count: n), axis: 0))
            }
            let rows = [Tensor](repeating: context.slice(axis: 0, 0..<1), count: n) + [Tensor](repeating: context.slice(axis: 0, 1..<2), count: n)
            let both = unet(concat([x, x], axis: 0), timesteps: [Double](repeating: t, count: 2 * n), context: concat(rows, axis: 0))
            return classifierFreeGuidance(conditional: both.slice(axis: 0, n..<(2 * n)), unconditional: both.slice(axis: 0, 0..<n),
                                          scale: guidance)
        }
    }

    /// Images [N, 3, H, W] in [0, 1] from latents as the U-Net sees them (scaled by the VAE's scaling_factor). The
    /// buffers the sampler's steps kept for reuse are given back first, and the decoder's after, and each network's
    /// weights read in place from a 16-bit checkpoint leave resident memory while the other runs: each phase's peak
    /// memory is its own, not the sum.
    public func decode(_ latents: Tensor) -> Tensor {
        BufferPool.shared.trim()
        unet.dropResidentWeights()
        defer {
            BufferPool.shared.trim()
            vae.dropResidentWeights()
        }
        return withoutGradients {
            let z = vae.unscaled(latents)
            return clamp((decodesInTiles(latents) ? vae.decodeInTiles(z) : vae.decode(z)) * 0.5 + 0.5, min: 0, max: 1)
        }
    }

    /// Whether `decode` runs the VAE in tiles (`AutoencoderKL.decodeInTiles`): for latents larger than its sample
    /// size (images over 512² for SD 1.x, over 768² for SD 2.x), whose decoder's memory would otherwise grow with
    /// the image.
    public func decodesInTiles(_ latents: Tensor) -> Bool {
        latents.shape[2] > vae.tileLatentSize || latents.shape[3] > vae.tileLatentSize
    }

    /// The latents of images [N, 3, H, W] in [0, 1]: the posterior's mean plus its σ times `noise`, scaled.
    public func encode(_ images: Tensor, noise: Tensor) -> Tensor {
        defer { vae.dropResidentWeights() }
        return withoutGradients { vae.scaled(vae.encode(images * 2 - 1).sample(noise: noise)) }
    }

    /// Text to image: the sampler's reverse process from latent noise [N, C, h, w], then the decoder.
    public func generate(context: Tensor, guidance: Double, sampler: Sampler, noise: Tensor, stepNoise: (Int) -> Tensor,
                         observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        decode(sampler.sample(from: noise, model: network(context: context, guidance: guidance), stepNoise: stepNoise, observe: observe))
    }

    /// The first step of image-to-image at `strength` (0: the image unchanged, 1: from pure noise) out of `steps`,
    /// as diffusers counts it: the last ⌊steps·strength⌋ steps are run.
    public static func editStart(steps: Int, strength: Double) -> Int {
        steps - min(Int(Double(steps) * strength), steps)
    }

    /// Image to image (SDEdit): the images [N, 3, H, W] in [0, 1] encoded (with `encoderNoise` for the posterior),
    /// noised with `noise` to the level of `editStart`, then denoised and decoded.
    public func edit(_ images: Tensor, strength: Double, context: Tensor, guidance: Double, sampler: Sampler, encoderNoise: Tensor,
                     noise: Tensor, stepNoise: (Int) -> Tensor, observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let start = Self.editStart(steps: sampler.schedule.steps, strength: strength)
        let latents = encode(images, noise: encoderNoise)
        guard start < sampler.schedule.steps else { return decode(latents) }
        return decode(sampler.edit(latents, noise: noise, from: start, model: network(context: context, guidance: guidance),
                                   stepNoise: stepNoise, observe: observe))
    }
}
