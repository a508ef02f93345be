import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation

/// A model to sample from: a training run's folder, or a diffusers folder (a pipeline, a bare UNet2DModel, or a bare
/// AutoencoderKL sampled as a VAE), with its own sampler settings for diffusion.
public struct SampleModel {
    public let objective: GenerativeObjective
    /// The folder, as given.
    public let name: String
    /// A run's configuration (nil for a diffusers folder).
    public let run: RunConfig?
    /// Whether it was trained with a null label (label dropout), so that classifier-free guidance works.
    public let guidable: Bool
    /// Its sampler settings for a sampler and steps, as its run or scheduler config says (nil: not diffusion).
    let settings: ((SamplerKind?, Int?) throws -> Sampling)?
    /// Warnings of the loader (keys it does not know).
    public let warnings: [String]

    /// A run made by `diffuse train`: the moving average of its weights (`averaged`) or the trained ones.
    public init(run path: String, averaged: Bool = true) throws {
        let (config, trained) = try RunFolder(path).loadObjective(averaged: averaged)
        guard let objective = trained as? GenerativeObjective else {
            throw DiffuseError.config("\(path) is a \(config.kind.rawValue) run: it does not generate")
        }
        (self.objective, name, run, warnings) = (objective, path, config, [])
        guidable = (config.labelDropout ?? 0) > 0
        guard let diffusion = objective as? DiffusionObjective else {
            settings = nil
            return
        }
        let T = diffusion.diffusion.schedule.timesteps
        settings = { kind, steps in
            config.sampling(kind ?? config.defaultSampler, steps: steps ?? SampleModel.defaultSteps(kind, T))
        }
    }

    /// A diffusers folder. A bare UNet folder has no scheduler config: `scheduler` gives its noise schedule and
    /// prediction (a pipeline's scheduler_config.json sets them, and giving them too is an error).
    public init(diffusers path: String, scheduler overrides: SchedulerConfig? = nil, label: Int? = nil) throws {
        let folder = try DiffusersFolder(path: path)
        (name, run, guidable, warnings) = (path, nil, false, folder.warnings)
        guard let unet = folder.unet else {
            objective = AutoencoderObjective(vae: folder.vae!, discriminator: nil, config: RunConfig())
            settings = nil
            return
        }
        if folder.scheduler != nil && overrides != nil {
            throw DiffuseError.config("the noise schedule and prediction options are for a bare UNet folder; this pipeline's "
                              + "scheduler_config.json sets them")
        }
        let config = folder.scheduler ?? overrides ?? SchedulerConfig()
        let u = unet.config
        var shape = [u.inChannels, u.sampleSize, u.sampleSize]
        if let vae = folder.vae {
            shape = [vae.config.outChannels, vae.config.sampleSize, vae.config.sampleSize]
            guard vae.latentShape(imageSize: shape[1]) == [u.inChannels, u.sampleSize, u.sampleSize] else {
                throw DiffuseError.config("\(path): the VAE's latents are \(vae.latentShape(imageSize: shape[1])), the UNet takes "
                                  + "[\(u.inChannels), \(u.sampleSize), \(u.sampleSize)]")
            }
        }
        let classes = unet.isConditional ? (u.classEmbedType == nil ? u.numClassEmbeds : nil) : nil
        if unet.isConditional && classes == nil && label == nil {
            throw DiffuseError.config("\(path) is class-conditional with labels embedded like timesteps: give a class")
        }
        // Labels embedded like timesteps are any integers: no class count bounds them (Int.max).
        objective = DiffusionObjective(network: unet, firstStage: folder.vae, diffusion: GaussianDiffusion(),
                                       classes: unet.isConditional ? classes ?? Int.max : nil, exampleShape: shape)
        settings = { kind, steps in
            try Sampling(kind: kind ?? .ddim, steps: steps ?? SampleModel.defaultSteps(kind, config.numTrainTimesteps ?? 1000),
                         config: config)
        }
    }

    /// By default all T steps for DDPM and 50 (at most T) for the others.
    static func defaultSteps(_ kind: SamplerKind?, _ T: Int) -> Int { kind == .ddpm ? T : min(50, T) }
}

/// How to sample, beyond the model's own settings: `diffuse sample`'s options.
public struct SampleOptions: Sendable {
    /// The sampler and its steps (default: the model's sampler; all T steps for DDPM, else 50).
    public var sampler: SamplerKind?
    public var steps: Int?
    public var sigmas: SigmaSpacing?
    public var spacing: TimestepSpacing?
    /// DDIM's η (0: deterministic).
    public var eta = 0.0
    public var variance: ReverseVariance?
    /// Rectified flow: the sampling schedule's shift (default: the run's).
    public var shift: Double?
    /// Every sample's class (nil: one row of `count` per class for a class-conditional model).
    public var label: Int?
    /// Classifier-free guidance scale (nil: none).
    public var guidance: Double?
    /// Samples (per class for a class-conditional model without `label`; default 64, or 8 per class).
    public var count: Int?
    public var batchSize = 64
    public var seed: UInt64 = 0
    /// The initial noise [N, ...] instead of the seed's, and where it came from (for the record).
    public var noise: Tensor?
    public var noiseSource = "given"
    /// Whether to keep the reverse process' states of the first samples (diffusion).
    public var trajectory = false

    public init() {}

    /// Whether any option is a diffusion sampler's.
    var asksForASampler: Bool {
        sampler != nil || steps != nil || sigmas != nil || spacing != nil || eta != 0 || variance != nil || shift != nil || trajectory
    }
}

/// What `sample` made.
public struct Samples {
    /// Images in [−1, 1] [N, C, H, W], or points [N, D].
    public let values: Tensor
    /// How they were made, as the web UI's `parameters` chunk writes it.
    public let parameters: GenerationParameters
    public let seconds: Double
    /// Network evaluations per sample.
    public let evaluations: Int
    /// With `trajectory`: the initial noise's images, then states of the reverse process (step, images) of the
    /// first 8 samples.
    public let trajectory: [(Int, Tensor)]
}

/// Samples from `model` as `options` say, the batches shared out among the processes of `group` (each ends with
/// all of them, the same as one process'). Batch k's sampler draws from the seed's generator advanced to batch k
/// (`RandomGenerator.batch`). `progress(done, total)` counts this process' sampler steps.
public func sample(_ model: SampleModel, _ options: SampleOptions, group: ProcessGroup = SingleProcess(),
                   progress: ((Int, Int) -> Void)? = nil) throws -> Samples {
    let objective = model.objective
    var settings = try model.settings?(options.sampler, options.steps)
    if settings != nil { try apply(options, to: &settings!) }
    if settings == nil && options.asksForASampler {
        throw DiffuseError.config("the sampler options are for diffusion models; \(model.name) generates in one network evaluation")
    }
    let sampler = try settings?.makeSampler()
    let labels = try sampleLabels(model, options)
    let shape = objective.noiseShape
    var generator = RandomGenerator(seed: options.seed, stream: 7)
    let initial: Tensor
    if let noise = options.noise {
        guard Array(noise.shape.dropFirst()) == shape else {
            throw DiffuseError.config("the noise has shape \(noise.shape), this model needs [N, \(shape.map(String.init).joined(separator: ", "))]")
        }
        if let labels, labels.count != noise.shape[0] {
            throw DiffuseError.config("\(noise.shape[0]) noise images for \(labels.count) labelled samples")
        }
        initial = noise
    } else {
        initial = generator.normal([labels?.count ?? options.count ?? 64] + shape)
    }
    let total = initial.shape[0], stepsPerSample = settings?.steps ?? 1
    let here = group.itemsComputedHere(total: total, batchSize: options.batchSize) * stepsPerSample
    var states: [(Int, Tensor)] = []
    var done = 0
    let start = Date()
    let values = group.shareBatches(total: total, batchSize: options.batchSize) { k, items in
        var batchGenerator = generator.batch(k)
        let result = objective.generate(from: initial.slice(axis: 0, items), sampler: sampler,
                                        labels: labels.map { Array($0[items]) }, guidance: options.guidance,
                                        generator: &batchGenerator) { i, state in
            progress?(done + items.count * min(i + 1, stepsPerSample), here)
            if k == 0 && options.trajectory, let diffusion = objective as? DiffusionObjective {
                states.append((i, diffusion.images(fromState: state.slice(axis: 0, 0..<min(items.count, 8)))))
            }
        }
        done += items.count * stepsPerSample
        progress?(done, here)
        return result
    }
    let seconds = Date().timeIntervalSince(start)
    if options.trajectory, let diffusion = objective as? DiffusionObjective {
        states.insert((-1, diffusion.images(fromState: initial.slice(axis: 0, 0..<min(total, 8)))), at: 0)
    }
    var made: [GenerationParameters.Setting] = [
        .init("Steps", "\(stepsPerSample)"), .init("Sampler", settings?.webUIName ?? "one network evaluation"),
    ]
    if let guidance = options.guidance { made.append(.init("CFG scale", String(format: "%g", guidance))) }
    if let label = options.label { made.append(.init("Class", "\(label)")) }
    made.append(.init("Seed", options.noise == nil ? "\(options.seed)" : "none (noise from \(options.noiseSource))"))
    if values.rank == 4 { made.append(.init("Size", "\(values.shape[3])x\(values.shape[2])")) }
    made.append(.init("Model", (model.name as NSString).lastPathComponent))
    return Samples(values: values, parameters: GenerationParameters(settings: made), seconds: seconds,
                   evaluations: (sampler?.evaluations ?? 1) * (options.guidance == nil ? 1 : 2), trajectory: states)
}

/// The options over the model's sampler settings.
private func apply(_ options: SampleOptions, to settings: inout Sampling) throws {
    if let sigmas = options.sigmas { settings.sigmaSpacing = sigmas }
    if options.eta != 0 {
        guard options.eta > 0, var ddim = settings.solver as? DDIM else { throw DiffuseError.config("η is DDIM's, and not negative") }
        ddim.eta = options.eta
        settings.solver = ddim
    }
    if let variance = options.variance {
        guard var ddpm = settings.solver as? DDPM else { throw DiffuseError.config("the reverse variance is DDPM's (sampler ddpm)") }
        ddpm.variance = variance
        settings.solver = ddpm
    }
    if let spacing = options.spacing { settings.spacing = spacing }
    if let shift = options.shift {
        guard settings.flow != nil, shift > 0, shift.isFinite else {
            throw DiffuseError.config("the shift is a positive number, for rectified-flow models (trained with --objective flow)")
        }
        settings.flow!.shift = shift
    }
}

/// The class label of each sample (nil for an unconditional model).
private func sampleLabels(_ model: SampleModel, _ options: SampleOptions) throws -> [Int]? {
    guard let classes = model.objective.classes else {
        if options.label != nil || options.guidance != nil {
            throw DiffuseError.config("\(model.name) has no class embedding: drop the class and the guidance")
        }
        return nil
    }
    if options.guidance != nil && !model.guidable {
        throw DiffuseError.config("\(model.name) was not trained with label dropout (no null label), so it cannot be guided: drop the guidance")
    }
    if let label = options.label {
        guard label >= 0 && label < classes else { throw DiffuseError.config("the class must be in 0..<\(classes), got \(label)") }
        return [Int](repeating: label, count: options.count ?? 64)
    }
    let perClass = options.count ?? 8
    return (0..<(classes * perClass)).map { $0 / perClass }
}
