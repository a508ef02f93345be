import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation

/// What a user asks of a new training run, before the data is seen: `diffuse train`'s options, and what
/// `diffuse compare` asks for each of its runs. `RunConfig.make` turns them into a run's configuration.
public struct TrainingOptions: Sendable {
    public var model = ModelKind.ddpm
    /// The data (see `DataSource`).
    public var data = "shapes"
    public var imageSize: Int?
    public var examples: Int?
    /// A U-Net preset (`UNet2DConfig.presets`; default `small`, `latent` for latent diffusion).
    public var preset: String?
    /// Widths per level of the U-Net, or of the VAE (overriding the preset's).
    public var channels: [Int]?
    /// Class-conditional diffusion on the data's labels, with label dropout.
    public var conditional = false
    public var labelDropout = 0.1
    /// Latent diffusion: the VAE run it works through.
    public var autoencoder: String?
    public var latentChannels = 4
    public var reconstruction = ReconstructionLoss.l2
    public var klWeight = 1.0
    public var adversarialWeight = 0.0
    public var latentDimension = 64
    public var width = 64
    public var ganLoss = GANLoss.nonSaturating
    public var r1Gamma = 0.0
    public var hidden = [128, 128, 128]
    public var schedule = BetaSchedule.linear
    public var timesteps = 1000
    public var objective = DenoisingObjective.diffusion
    public var shift: Double?
    /// What the network predicts (default ε; the velocity for rectified flow).
    public var prediction: Prediction?
    public var minSNRGamma: Double?
    public var steps = 2000
    public var batchSize = 32
    /// AdamW's peak learning rate (default 1e-3; 2e-4 for a GAN).
    public var learningRate: Float?
    public var warmup = 100
    public var emaDecay: Float = 0.999
    /// The global gradient norm to clip to (0: off).
    public var gradientClip: Float = 1
    public var dropout = 0.0
    public var seed: UInt64 = 0
    public var sampleEvery = 500
    public var checkpointEvery = 250
    /// Checkpoints kept: the latest and those before it (a damaged one falls back to the one before).
    public var keepCheckpoints = 1

    public init() {}
}

extension RunConfig {
    /// The configuration of a new run of `options`, and its data: the networks sized for the data (or latents),
    /// classes, and for latent diffusion the first stage, copied from its VAE run with the scaling factor measured
    /// on the data; that first stage's weights are returned beside. Checked (`validate`).
    public static func make(_ options: TrainingOptions) throws -> (RunConfig, data: DataSet, firstStage: [String: Tensor]?) {
        let o = options
        var c = RunConfig()
        c.model = o.model
        c.data = try DataSource(parsing: o.data).description
        (c.imageSize, c.examples, c.mlpHidden, c.schedule, c.timesteps) = (o.imageSize, o.examples, o.hidden, o.schedule, o.timesteps)
        c.objective = o.objective == .flow ? .flow : nil
        c.flowShift = o.shift
        c.prediction = o.prediction ?? (o.objective == .flow ? .flow : .epsilon)
        (c.minSNRGamma, c.steps, c.batchSize, c.warmup, c.emaDecay) = (o.minSNRGamma, o.steps, o.batchSize, o.warmup, o.emaDecay)
        c.learningRate = o.learningRate ?? (o.model == .gan ? 2e-4 : 1e-3)
        c.gradientClip = o.gradientClip > 0 ? o.gradientClip : nil
        (c.seed, c.sampleEvery, c.checkpointEvery) = (o.seed, o.sampleEvery, o.checkpointEvery)
        c.keepCheckpoints = o.keepCheckpoints == 1 ? nil : o.keepCheckpoints
        let data = try loadTrainingData(c)
        let firstStage = try c.complete(o, for: data)
        try c.validate()
        return (c, data, firstStage)
    }

    /// Fills in what depends on the data: the networks' sizes, classes, latent diffusion's first stage (whose
    /// weights it returns).
    private mutating func complete(_ o: TrainingOptions, for data: DataSet) throws -> [String: Tensor]? {
        guard case let .images(images) = data else {
            guard o.model == .ddpm else { throw DiffuseError.config("--model \(o.model.rawValue) needs image data") }
            guard !o.conditional else { throw DiffuseError.config("--conditional needs labelled images") }
            sampleCount = 1000  // a scatter plot needs many points
            return nil
        }
        let (channelCount, size) = (images.channels, images.height)
        if o.conditional {
            guard o.model == .ddpm || o.model == .latentDiffusion else { throw DiffuseError.config("--conditional is for ddpm and latent-diffusion") }
            guard images.classes.count >= 2 else { throw DiffuseError.config("--conditional needs a data set with classes; \(self.data) has none") }
            classes = images.classes.count
            labelDropout = o.labelDropout
        }
        switch o.model {
        case .ddpm:
            unet = try Self.unet(o, preset: o.preset ?? "small", channels: channelCount, side: size, classes: classes)
            return nil
        case .vae:
            var c = AutoencoderKLConfig.mnist
            if channelCount > 1 { c.blockOutChannels = [64, 128, 128] }
            if let channels = o.channels { c.blockOutChannels = channels }
            c.downBlockTypes = Array(repeating: "DownEncoderBlock2D", count: c.blockOutChannels.count)
            c.upBlockTypes = Array(repeating: "UpDecoderBlock2D", count: c.blockOutChannels.count)
            (c.inChannels, c.outChannels, c.sampleSize, c.latentChannels) = (channelCount, channelCount, size, o.latentChannels)
            autoencoder = c
            reconstruction = o.reconstruction
            klWeight = o.klWeight
            adversarialWeight = o.adversarialWeight > 0 ? o.adversarialWeight : nil
            emaDecay = min(emaDecay, 0.999)
            return nil
        case .classifier:
            guard images.classes.count >= 2 else { throw DiffuseError.config("a classifier needs a data set with classes; \(self.data) has none") }
            var c = ClassifierConfig()
            (c.channels, c.imageSize, c.classes) = (channelCount, size, images.classes.count)
            classifier = c
            return nil
        case .gan:
            var c = GANConfig()
            (c.latentDimension, c.channels, c.imageSize, c.width, c.loss, c.r1Gamma) =
                (o.latentDimension, channelCount, size, o.width, o.ganLoss, o.r1Gamma)
            gan = c
            return nil
        case .latentDiffusion:
            guard let run = o.autoencoder else { throw DiffuseError.config("--model latent-diffusion needs --autoencoder RUN (a VAE run)") }
            let vaeFolder = RunFolder(run)
            let (vaeConfig, objective) = try vaeFolder.loadObjective()
            guard vaeConfig.kind == .vae, let vae = (objective as? AutoencoderObjective)?.vae else {
                throw DiffuseError.config("\(run) is a \(vaeConfig.kind.rawValue) run, not a VAE run")
            }
            guard vaeConfig.exampleShape == [channelCount, size, size] else {
                throw DiffuseError.config("the VAE of \(run) was trained on images of \(vaeConfig.exampleShape), the data has [\(channelCount), \(size), \(size)]")
            }
            var g = RandomGenerator(seed: seed, stream: 6)
            var first = vae.config
            first.scalingFactor = latentScalingFactor(vae, images: images.images, generator: &g)
            first.shiftFactor = nil
            autoencoder = first
            autoencoderRun = run
            autoencoderTrainingSeconds = vaeFolder.trainingCost().seconds
            let latent = vae.latentShape(imageSize: size)
            unet = try Self.unet(o, preset: o.preset ?? "latent", channels: latent[0], side: latent[1], classes: classes)
            return vae.stateDict()
        }
    }

    /// The preset's U-Net with the data's (or latents') side and channels, and a class embedding for `classes`
    /// plus the null label.
    private static func unet(_ o: TrainingOptions, preset: String, channels inChannels: Int, side: Int, classes: Int?) throws -> UNet2DConfig {
        var u = try UNet2DConfig.preset(preset, side: side)
        if let channels = o.channels { u.blockOutChannels = channels }
        guard u.blockOutChannels.count == u.downBlockTypes.count else {
            throw DiffuseError.config("--channels needs \(u.downBlockTypes.count) widths for the \(preset) preset")
        }
        (u.sampleSize, u.inChannels, u.outChannels, u.dropout) = (side, inChannels, inChannels, o.dropout)
        u.numClassEmbeds = classes.map { $0 + 1 }
        return u
    }
}

extension Trainer {
    /// A trainer for a new run of `options` in `folder` (an error if the folder holds a run already), on its data.
    public static func start(_ options: TrainingOptions, in folder: RunFolder, group: ProcessGroup = SingleProcess()) throws -> Trainer {
        guard !FileManager.default.fileExists(atPath: folder.checkpoint) else {
            throw DiffuseError.config("\(folder.path) already holds a run: resume it, or choose another folder")
        }
        let (config, data, firstStage) = try RunConfig.make(options)
        return try Trainer(config: config, data: data, folder: folder, resume: false, firstStage: firstStage, group: group)
    }

    /// A trainer that continues the run in `folder` from its checkpoint, to `steps` if given (else to its own).
    public static func resume(_ folder: RunFolder, steps: Int? = nil, group: ProcessGroup = SingleProcess()) throws -> Trainer {
        var config = try folder.readConfig()
        if let steps { config.steps = steps }
        return try Trainer(config: config, data: try loadTrainingData(config), folder: folder, resume: true, group: group)
    }

    /// What is trained, on what, for how long: "a U-Net of 2734945 parameters on shapes (10000 examples) for 2000
    /// steps, batch 32".
    public var summary: String {
        let sizes = objective.updates.map { update in (update.name, update.parameters.reduce(0) { $0 + $1.1.count }) }
        let what: String
        switch config.kind {
        case .ddpm: what = config.unet == nil ? "an MLP denoiser" : config.classes == nil ? "a U-Net" : "a class-conditional U-Net"
        case .latentDiffusion: what = "a latent-diffusion U-Net"
        case .vae: what = "a VAE"
        case .gan: what = "a GAN"
        case .classifier: what = "a classifier"
        }
        let parameters = sizes.count == 1 ? "\(sizes[0].1)" : sizes.map { "\($0.1) (\($0.0))" }.joined(separator: " + ")
        return "\(what) of \(parameters) parameters on \(config.data) (\(data.count) examples) for \(config.steps) steps, "
            + "batch \(config.batchSize)"
    }
}
