import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation

/// What a run trains.
public enum ModelKind: String, Codable, CaseIterable, Sendable {
    /// A diffusion model on the data itself (images: a U-Net; 2D points: an MLP).
    case ddpm
    /// A diffusion U-Net on the scaled latents of a trained autoencoder (Rombach et al. 2022).
    case latentDiffusion = "latent-diffusion"
    /// A variational autoencoder (Kingma & Welling 2014), sampled by decoding z ~ N(0, I).
    case vae
    /// A DCGAN (Radford et al. 2016).
    case gan
    /// An image classifier, whose hidden features serve a data-set-specific FID.
    case classifier
}

/// The reconstruction term of a VAE, per pixel.
public enum ReconstructionLoss: String, Codable, CaseIterable, Sendable {
    case l1, l2
}

/// One optimizer's part of a training step: the parameters it updates (keys relative to the objective's model)
/// and its first-moment decay (0.5 for adversarial networks, as DCGAN).
public struct Update {
    /// Empty for a run with one optimizer; otherwise the prefix of its state in checkpoints and of its log columns.
    public let name: String
    public let parameters: [(String, Parameter)]
    public let beta1: Float
}

/// A batch of training examples with their class labels (empty without classes); in data-parallel training, this
/// process' share of the step's batch, whose random draws per example an objective takes with `share`.
public struct Batch {
    public let x: Tensor
    public let labels: [Int]
    public var share: BatchShare?

    public init(x: Tensor, labels: [Int], share: BatchShare? = nil) {
        (self.x, self.labels, self.share) = (x, labels, share)
    }
}

/// What a run trains and how: its networks (one module tree, whose parameter paths are checkpoint keys) and the
/// loss each optimizer minimises in a step. One training loop (`Trainer`) serves every kind of model through this.
public protocol TrainingObjective: AnyObject {
    var model: Module { get }
    /// The optimizers' parts of a step, in the order they run; each sees the parameters as the previous left them.
    var updates: [Update] { get }
    /// The parameters whose moving average generates (the generating network's), or none.
    var averaged: [(String, Parameter)] { get }
    /// The names of the values `loss` reports, for the log's columns; the first is the one shown and checked.
    var logColumns: [String] { get }
    /// The loss of update `i` on a batch, and values to log by column name.
    func loss(update i: Int, batch: Batch, generator: inout RandomGenerator) -> (loss: Tensor, logged: [String: Float])
}

/// An objective whose trained model generates: diffusion, latent diffusion, VAE, GAN.
public protocol GenerativeObjective: TrainingObjective {
    /// The shape of the noise one sample starts from: x_T (of the data or of the latents) or z.
    var noiseShape: [Int] { get }
    /// Whether generating takes class labels.
    var classes: Int? { get }
    /// Samples (images in [−1, 1], or points) from noise [N] + noiseShape. Diffusion runs `sampler`, guided towards
    /// `labels` with scale `guidance` (nil: the plain conditional prediction); `observe` sees the states of the
    /// reverse process (latents for latent diffusion). Call with the model in evaluation mode.
    func generate(from noise: Tensor, sampler: Sampler?, labels: [Int]?, guidance: Double?, generator: inout RandomGenerator,
                  observe: ((Int, Tensor) -> Void)?) -> Tensor
}

/// The parameters of `module` under `prefix.` (all of them for an empty prefix), keys relative to `module`.
func parameters(of module: Module, under prefix: String) -> [(String, Parameter)] {
    module.namedParameters().filter { prefix.isEmpty || $0.0.hasPrefix(prefix + ".") }
}

/// A root module holding named networks, so that their keys are `name.…`.
func tree(_ parts: [(String, Module)]) -> Module {
    let root = Module()
    for (name, module) in parts { root.register(name, module) }
    return root
}

/// Diffusion, on the data or on an autoencoder's latents: each step draws t ~ U{0, …, T−1} and ε ~ N(0, I) per
/// example, builds x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε (x_0 the scaled latents z·scale of a posterior sample, for latent
/// diffusion) and minimises the simple loss ‖target − network(x_t, t)‖² (min-SNR weighted if asked). A
/// class-conditional network sees the null label instead of the true one with probability `labelDropout`, so that
/// it also learns the unconditional model that classifier-free guidance needs.
public final class DiffusionObjective: GenerativeObjective {
    public let network: DenoisingNetwork
    public let firstStage: AutoencoderKL?
    public let diffusion: GaussianDiffusion
    public let model: Module
    public let classes: Int?
    let labelDropout: Double
    let minSNRGamma: Double?
    /// Rectified flow instead of DDPM's objective (then `diffusion` is unused).
    public let flow: RectifiedFlow?
    let exampleShape: [Int]

    public init(network: DenoisingNetwork, firstStage: AutoencoderKL?, diffusion: GaussianDiffusion, classes: Int?,
                labelDropout: Double = 0, minSNRGamma: Double? = nil, flow: RectifiedFlow? = nil, exampleShape: [Int]) {
        self.network = network
        self.flow = flow
        self.firstStage = firstStage
        self.diffusion = diffusion
        self.classes = classes
        self.labelDropout = labelDropout
        self.minSNRGamma = minSNRGamma
        self.exampleShape = exampleShape
        model = firstStage.map { tree([("unet", network), ("vae", $0)]) } ?? network
        firstStage?.eval()
    }

    convenience init(network: DenoisingNetwork, firstStage: AutoencoderKL?, config: RunConfig, exampleShape: [Int]) {
        self.init(network: network, firstStage: firstStage, diffusion: config.diffusion, classes: config.classes,
                  labelDropout: config.labelDropout ?? 0, minSNRGamma: config.minSNRGamma, flow: config.flow,
                  exampleShape: exampleShape)
    }

    var prefix: String { firstStage == nil ? "" : "unet" }
    public var updates: [Update] { [Update(name: "", parameters: parameters(of: model, under: prefix), beta1: 0.9)] }
    public var averaged: [(String, Parameter)] { parameters(of: model, under: prefix) }
    public let logColumns = ["loss"]

    public var noiseShape: [Int] {
        firstStage.map { $0.latentShape(imageSize: exampleShape[1]) } ?? exampleShape
    }

    /// The diffusion model's x_0 for images: themselves, or the scaled latents of a posterior sample.
    func x0(_ x: Tensor, generator: inout RandomGenerator, share: BatchShare?) -> Tensor {
        guard let vae = firstStage else { return x }
        return withoutGradients {
            let posterior = vae.encode(x)
            return vae.scaled(posterior.sample(noise: generator.normal(posterior.mean.shape, share: share)))
        }
    }

    /// The labels of a batch for training, each replaced by the null label with probability `labelDropout` (nil for
    /// an unconditional model).
    func labels(_ labels: [Int], generator: inout RandomGenerator, share: BatchShare?) -> [Int]? {
        guard let classes else { return nil }
        let keep = generator.uniform([labels.count], share: share).scalars
        return zip(labels, keep).map { label, u in Double(u) < labelDropout ? classes : label }
    }

    public func loss(update i: Int, batch: Batch, generator: inout RandomGenerator) -> (loss: Tensor, logged: [String: Float]) {
        let share = batch.share
        let x0 = self.x0(batch.x, generator: &generator, share: share)
        let n = x0.shape[0]
        if let flow {
            let t = RectifiedFlow.logitNormal(n, generator: &generator, share: share)
            let noise = generator.normal(x0.shape, share: share)
            let labels = self.labels(batch.labels, generator: &generator, share: share)
            let output = network.predict(flow.noised(x0, t: t, noise: noise), timesteps: t.map { $0 * Double(flow.trainingSteps) },
                                         labels: labels)
            let loss = mseLoss(output, flow.target(x0: x0, noise: noise))
            return (loss, ["loss": loss.item])
        }
        let t = generator.integers(n, below: diffusion.schedule.timesteps, share: share)
        let noise = generator.normal(x0.shape, share: share)
        let labels = self.labels(batch.labels, generator: &generator, share: share)
        let output = network.predict(diffusion.noised(x0, t: t, noise: noise), timesteps: t, labels: labels)
        let loss = diffusion.loss(output: output, target: diffusion.target(x0: x0, noise: noise, t: t), t: t,
                                  minSNRGamma: minSNRGamma)
        return (loss, ["loss": loss.item])
    }

    /// The network the samplers call: unconditional, conditional, or guided.
    func samplingNetwork(labels: [Int]?, guidance: Double?) -> Network {
        let network = self.network
        guard let labels, let classes else {
            return { x, t in network.predict(x, timesteps: [Double](repeating: t, count: x.shape[0]), labels: nil) }
        }
        func labelsFor(_ x: Tensor) -> [Int] { x.shape[0] == labels.count ? labels : Array(labels.prefix(x.shape[0])) }
        guard let guidance else {
            return { x, t in network.predict(x, timesteps: [Double](repeating: t, count: x.shape[0]), labels: labelsFor(x)) }
        }
        return guidedDenoiser(labels: labels, nullLabel: classes, scale: guidance) { x, t, l in
            network.predict(x, timesteps: [Double](repeating: t, count: x.shape[0]), labels: l)
        }
    }

    public func generate(from noise: Tensor, sampler: Sampler?, labels: [Int]?, guidance: Double?, generator: inout RandomGenerator,
                         observe: ((Int, Tensor) -> Void)?) -> Tensor {
        precondition(sampler != nil, "diffusion needs a sampler")
        // The network's convolutions pack their weights once for all the sampler's steps.
        return withFrozenWeights {
            let x0 = sampler!.sample(from: noise, model: samplingNetwork(labels: labels, guidance: guidance), generator: &generator,
                                     observe: observe)
            return images(fromState: x0)
        }
    }

    /// Images from a state of the reverse process: itself, or for latent diffusion the decoding of the unscaled
    /// latents, clamped to [−1, 1].
    public func images(fromState x: Tensor) -> Tensor {
        guard let vae = firstStage else { return x }
        return withoutGradients { clamp(vae.decode(vae.unscaled(x)), min: -1, max: 1) }
    }
}

/// Latent diffusion's scaling factor (Rombach et al. 2022): 1/std of the latents z of posterior samples of `images`
/// (the first 1024), so that the diffusion model's x_0 = z·scale has about unit variance, like the images it replaces.
public func latentScalingFactor(_ vae: AutoencoderKL, images: Tensor, generator: inout RandomGenerator) -> Double {
    let n = min(images.shape[0], 1024)
    var values: [Float] = []
    for start in stride(from: 0, to: n, by: 128) {
        let posterior = withoutGradients { vae.encode(images.slice(axis: 0, start..<min(n, start + 128))) }
        values += posterior.sample(noise: generator.normal(posterior.mean.shape)).scalars
    }
    let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
    let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
    return 1 / variance.squareRoot()
}

/// A VAE: minimises, per pixel, the reconstruction error of a posterior sample plus klWeight × the KL divergence of
/// the posterior from N(0, I) (the negative ELBO of a Gaussian decoder of variance klWeight/2 for l2, up to a
/// constant), plus, with a patch discriminator, adversarialWeight × its non-saturating generator loss; the
/// discriminator is then the second update.
public final class AutoencoderObjective: GenerativeObjective {
    public let vae: AutoencoderKL
    public let discriminator: Discriminator?
    public let model: Module
    let reconstruction: ReconstructionLoss
    let klWeight: Double
    let adversarialWeight: Double
    /// The last step's reconstructions, which the discriminator's update then sees as fakes.
    private var lastReconstruction: Tensor?

    public init(vae: AutoencoderKL, discriminator: Discriminator?, config: RunConfig) {
        self.vae = vae
        self.discriminator = discriminator
        reconstruction = config.reconstruction ?? .l2
        klWeight = config.klWeight ?? 1
        adversarialWeight = config.adversarialWeight ?? 0
        model = tree([("vae", vae)] + (discriminator.map { [("discriminator", $0 as Module)] } ?? []))
    }

    public var updates: [Update] {
        [Update(name: discriminator == nil ? "" : "vae", parameters: parameters(of: model, under: "vae"), beta1: 0.9)]
            + (discriminator == nil ? [] : [Update(name: "discriminator", parameters: parameters(of: model, under: "discriminator"), beta1: 0.5)])
    }
    public var averaged: [(String, Parameter)] { parameters(of: model, under: "vae") }
    public var logColumns: [String] { ["loss", "reconstruction", "kl"] + (discriminator == nil ? [] : ["adversarial", "d_loss"]) }
    public var noiseShape: [Int] { vae.latentShape(imageSize: vae.config.sampleSize) }
    public let classes: Int? = nil

    public func loss(update i: Int, batch: Batch, generator: inout RandomGenerator) -> (loss: Tensor, logged: [String: Float]) {
        let x = batch.x
        if i == 1, let discriminator, let fake = lastReconstruction {
            let loss = GANLoss.nonSaturating.discriminator(real: discriminator(x), fake: discriminator(fake))
            return (loss, ["d_loss": loss.item])
        }
        let posterior = vae.encode(x)
        let reconstructed = vae.decode(posterior.sample(noise: generator.normal(posterior.mean.shape, share: batch.share)))
        let error = reconstruction == .l1 ? l1Loss(reconstructed, x) : mseLoss(reconstructed, x)
        let pixels = Float(x.count / x.shape[0])
        let kl = mean(posterior.kl()) / pixels
        var loss = error + kl * Float(klWeight)
        var logged = ["reconstruction": error.item, "kl": kl.item]
        if let discriminator {
            let adversarial = GANLoss.nonSaturating.generator(fake: discriminator(reconstructed))
            loss = loss + adversarial * Float(adversarialWeight)
            logged["adversarial"] = adversarial.item
            lastReconstruction = reconstructed.detached
        }
        logged["loss"] = loss.item
        return (loss, logged)
    }

    public func generate(from noise: Tensor, sampler: Sampler?, labels: [Int]?, guidance: Double?, generator: inout RandomGenerator,
                         observe: ((Int, Tensor) -> Void)?) -> Tensor {
        withoutGradients { clamp(vae.decode(noise), min: -1, max: 1) }
    }
}

/// A GAN: the discriminator's update minimises its loss on a real batch and on a batch generated from fresh z
/// (plus the R1 penalty on the real one, if asked), then the generator's minimises its loss on another generated
/// batch. Adam with β₁ = 0.5 for both, as DCGAN. No moving average: BatchNorm's running statistics belong to the
/// trained weights.
public final class GANObjective: GenerativeObjective {
    public let generatorNetwork: DCGANGenerator
    public let discriminator: Discriminator
    public let config: GANConfig
    public let model: Module

    public init(generator: DCGANGenerator, discriminator: Discriminator, config: GANConfig) {
        generatorNetwork = generator
        self.discriminator = discriminator
        self.config = config
        model = tree([("generator", generator), ("discriminator", discriminator)])
    }

    public var updates: [Update] {
        [Update(name: "discriminator", parameters: parameters(of: model, under: "discriminator"), beta1: 0.5),
         Update(name: "generator", parameters: parameters(of: model, under: "generator"), beta1: 0.5)]
    }
    public let averaged: [(String, Parameter)] = []
    public var logColumns: [String] { ["d_loss", "g_loss", "d_real", "d_fake"] + (config.r1Gamma > 0 ? ["r1"] : []) }
    public var noiseShape: [Int] { [config.latentDimension] }
    public let classes: Int? = nil

    public func loss(update i: Int, batch: Batch, generator: inout RandomGenerator) -> (loss: Tensor, logged: [String: Float]) {
        let n = batch.x.shape[0]
        let z = generator.normal([n, config.latentDimension], share: batch.share)
        if i == 0 {
            let fake = withoutGradients { generatorNetwork(z) }
            let real = discriminator(batch.x), faked = discriminator(fake)
            var loss = config.loss.discriminator(real: real, fake: faked)
            var logged = ["d_loss": loss.item, "d_real": mean(real).item, "d_fake": mean(faked).item]
            if config.r1Gamma > 0 {
                let r1 = r1Penalty({ self.discriminator($0) }, real: batch.x, gamma: config.r1Gamma, generator: &generator,
                                   share: batch.share)
                loss = loss + r1
                logged["r1"] = r1.item
            }
            return (loss, logged)
        }
        let loss = config.loss.generator(fake: discriminator(generatorNetwork(z)))
        return (loss, ["g_loss": loss.item])
    }

    public func generate(from noise: Tensor, sampler: Sampler?, labels: [Int]?, guidance: Double?, generator: inout RandomGenerator,
                         observe: ((Int, Tensor) -> Void)?) -> Tensor {
        withoutGradients { generatorNetwork(noise) }
    }
}

/// A classifier on cross-entropy; the fraction of the batch it classifies right is logged beside the loss.
public final class ClassifierObjective: TrainingObjective {
    public let classifier: Classifier
    public var model: Module { classifier }

    public init(classifier: Classifier) { self.classifier = classifier }

    public var updates: [Update] { [Update(name: "", parameters: classifier.namedParameters(), beta1: 0.9)] }
    public var averaged: [(String, Parameter)] { classifier.namedParameters() }
    public let logColumns = ["loss", "accuracy"]

    public func loss(update i: Int, batch: Batch, generator: inout RandomGenerator) -> (loss: Tensor, logged: [String: Float]) {
        let logits = classifier(batch.x)
        let loss = crossEntropy(logits, labels: batch.labels)
        let c = logits.shape[1], p = logits.storage.pointer
        let right = batch.labels.enumerated().filter { i, label in (0..<c).max { p[i * c + $0] < p[i * c + $1] } == label }.count
        return (loss, ["loss": loss.item, "accuracy": Float(right) / Float(batch.labels.count)])
    }
}

/// Builds the denoising network a configuration describes, for examples (or latents) of `exampleShape`.
public func makeNetwork(_ config: RunConfig, exampleShape: [Int], generator: inout RandomGenerator) throws -> DenoisingNetwork {
    if let unet = config.unet {
        guard exampleShape == [unet.inChannels, unet.sampleSize, unet.sampleSize] else {
            throw DiffuseError.config("the data's images are \(exampleShape), the U-Net expects [\(unet.inChannels), \(unet.sampleSize), \(unet.sampleSize)]")
        }
        let halvings = unet.blockOutChannels.count - 1
        guard unet.sampleSize % (1 << halvings) == 0 else {
            throw DiffuseError.config("images of \(unet.sampleSize)×\(unet.sampleSize) do not halve \(halvings) times, as a U-Net of "
                              + "\(unet.blockOutChannels.count) levels needs: use fewer levels or another --image-size")
        }
        return try UNet2DModel(unet, generator: &generator)
    }
    guard exampleShape.count == 1 else { throw DiffuseError.config("image data needs a U-Net (use --preset or --channels)") }
    return MLPDenoiser(dimension: exampleShape[0], hidden: config.mlpHidden, generator: &generator)
}

/// The objective a configuration describes, with freshly initialised networks (from the run's seed), for examples of
/// `exampleShape`. Latent diffusion's first stage is built here too; its weights come from its VAE run (a new run)
/// or from the run's own checkpoint (a resumed or sampled one).
public func makeObjective(_ config: RunConfig, exampleShape: [Int]) throws -> TrainingObjective {
    var g = RandomGenerator(seed: config.seed, stream: 1)
    switch config.kind {
    case .ddpm:
        if config.classes != nil, config.unet?.numClassEmbeds != config.classes.map({ $0 + 1 }) {
            throw DiffuseError.config("a class-conditional U-Net needs num_class_embeds = classes + 1 (the null label)")
        }
        return DiffusionObjective(network: try makeNetwork(config, exampleShape: exampleShape, generator: &g), firstStage: nil,
                                  config: config, exampleShape: exampleShape)
    case .latentDiffusion:
        let vae = try AutoencoderKL(config.autoencoder!, generator: &g)
        let latent = vae.latentShape(imageSize: exampleShape[1])
        return DiffusionObjective(network: try makeNetwork(config, exampleShape: latent, generator: &g), firstStage: vae,
                                  config: config, exampleShape: exampleShape)
    case .vae:
        let c = config.autoencoder!
        guard exampleShape == [c.inChannels, c.sampleSize, c.sampleSize] else {
            throw DiffuseError.config("the data's images are \(exampleShape), the autoencoder expects [\(c.inChannels), \(c.sampleSize), \(c.sampleSize)]")
        }
        let vae = try AutoencoderKL(c, generator: &g)
        let discriminator = (config.adversarialWeight ?? 0) > 0
            ? Discriminator(channels: c.inChannels, imageSize: c.sampleSize, width: 32, patch: true, generator: &g) : nil
        return AutoencoderObjective(vae: vae, discriminator: discriminator, config: config)
    case .gan:
        let c = config.gan!
        guard exampleShape == [c.channels, c.imageSize, c.imageSize] else {
            throw DiffuseError.config("the data's images are \(exampleShape), the GAN makes [\(c.channels), \(c.imageSize), \(c.imageSize)]")
        }
        let generator = DCGANGenerator(c, generator: &g)
        return GANObjective(generator: generator, discriminator: Discriminator(channels: c.channels, imageSize: c.imageSize,
                                                                               width: c.width, generator: &g), config: c)
    case .classifier:
        let c = config.classifier!
        guard exampleShape == [c.channels, c.imageSize, c.imageSize] else {
            throw DiffuseError.config("the data's images are \(exampleShape), the classifier takes [\(c.channels), \(c.imageSize), \(c.imageSize)]")
        }
        return ClassifierObjective(classifier: try Classifier(c, generator: &g))
    }
}
