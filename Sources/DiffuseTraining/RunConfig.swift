import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation

/// Everything that defines a training run, saved as `config.json` in its folder: a run can be resumed, sampled
/// and exported from its folder alone.
public struct RunConfig: Codable, Equatable, Sendable {
    /// The data (see `DataSource`): `shapes`, `swiss-roll`, `mnist:DIR`, `cifar10:DIR`, `folder:DIR`, ...
    public var data = "shapes"
    /// The side images are resized and centre-cropped to (nil: as they are; 32 for `shapes`).
    public var imageSize: Int?
    /// How many examples to use (nil: 10,000 generated for built-in sets, all of a file's).
    public var examples: Int?
    /// What the run trains (nil: ddpm, as in runs written before the other kinds existed).
    public var model: ModelKind?
    /// The U-Net for image data (diffusers' config keys), or nil for 2D data.
    public var unet: UNet2DConfig?
    /// The autoencoder: a VAE run's network, or latent diffusion's first stage (its scaling factor measured on the
    /// data when the run started).
    public var autoencoder: AutoencoderKLConfig?
    /// Latent diffusion: the VAE run its first stage was copied from (for the record: the weights are in the
    /// checkpoint, so that the run needs nothing outside its folder).
    public var autoencoderRun: String?
    /// Latent diffusion: the seconds that first stage trained, counted in this run's training time.
    public var autoencoderTrainingSeconds: Double?
    /// VAE: the reconstruction term (l1 or l2, per pixel) and the weight of the KL term per pixel, and of the patch
    /// discriminator's adversarial term (nil: none).
    public var reconstruction: ReconstructionLoss?
    public var klWeight: Double?
    public var adversarialWeight: Double?
    /// GAN: the DCGAN's sizes and losses.
    public var gan: GANConfig?
    /// Classifier: its sizes.
    public var classifier: ClassifierConfig?
    /// Class-conditional diffusion: the number of classes; the label `classes` is the null label that label
    /// dropout trains and classifier-free guidance uses.
    public var classes: Int?
    /// The probability of replacing a label by the null label in training.
    public var labelDropout: Double?
    /// The shape of one example ([C, H, W] or [D]), recorded when the run starts.
    public var exampleShape: [Int] = []
    /// Hidden layer widths of the MLP denoiser for 2D data.
    public var mlpHidden = [128, 128, 128]
    public var schedule = BetaSchedule.linear
    public var timesteps = 1000
    public var betaStart = 1e-4
    public var betaEnd = 0.02
    public var prediction = Prediction.epsilon
    public var minSNRGamma: Double?
    /// Diffusion models: DDPM's objective on its noise schedule (nil), or rectified flow.
    public var objective: DenoisingObjective?
    /// Rectified flow: the shift of its sampling schedule (default 1).
    public var flowShift: Double?
    public var steps = 2000
    public var batchSize = 32
    public var learningRate: Float = 2e-4
    public var warmup = 100
    public var weightDecay: Float = 0
    public var emaDecay: Float = 0.999
    public var gradientClip: Float? = 1
    public var seed: UInt64 = 0
    /// Write a sample grid every this many steps (0: only at the end).
    public var sampleEvery = 500
    public var checkpointEvery = 250
    /// Samples in each grid (2D runs: points in each scatter plot).
    public var sampleCount = 16
    /// How many checkpoints to keep: the latest and the ones before it as checkpoint-STEP (nil: the latest only).
    public var keepCheckpoints: Int?
    /// DDIM steps of the sample grids written during training.
    public var sampleSteps = 50

    public init() {}

    public var kind: ModelKind { model ?? .ddpm }

    /// The rectified flow of a flow-matching run.
    public var flow: RectifiedFlow? {
        objective == .flow ? RectifiedFlow(trainingSteps: timesteps, shift: flowShift ?? 1) : nil
    }

    public var diffusion: GaussianDiffusion {
        GaussianDiffusion(schedule: NoiseSchedule(schedule, timesteps: timesteps, betaStart: betaStart, betaEnd: betaEnd),
                          prediction: prediction)
    }

    /// The run's noise schedule as the keys of a diffusers DDPMScheduler config (its other keys at their defaults):
    /// what `diffuse export` writes beside the U-Net. Images are clipped to [−1, 1], as here.
    public var diffusersScheduler: [String: JSONValue] {
        if let flow {
            return ["_class_name": .string("FlowMatchEulerDiscreteScheduler"),
                    "num_train_timesteps": .number(Double(flow.trainingSteps)), "shift": .number(flow.shift)]
        }
        return [
            "num_train_timesteps": .number(Double(timesteps)), "beta_start": .number(betaStart),
            "beta_end": .number(betaEnd), "beta_schedule": .string(schedule.rawValue), "trained_betas": .null,
            "prediction_type": .string(prediction.rawValue), "variance_type": .string("fixed_small"),
            "clip_sample": .bool(unet != nil), "clip_sample_range": .number(1), "thresholding": .bool(false),
            "dynamic_thresholding_ratio": .number(0.995), "sample_max_value": .number(1),
            "timestep_spacing": .string("leading"), "steps_offset": .number(0), "rescale_betas_zero_snr": .bool(false),
        ]
    }

    /// Checks that the numbers make sense before any work starts.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw DiffuseError.config(message) } }
        try check(steps > 0, "steps must be positive, got \(steps)")
        try check(batchSize > 0, "batch size must be positive, got \(batchSize)")
        try check(learningRate > 0 && learningRate.isFinite, "learning rate must be positive, got \(learningRate)")
        try check(timesteps >= 2, "timesteps must be at least 2, got \(timesteps)")
        try check(betaStart > 0 && betaEnd < 1 && betaStart <= betaEnd, "need 0 < beta start ≤ beta end < 1, got \(betaStart), \(betaEnd)")
        try check(emaDecay >= 0 && emaDecay < 1, "EMA decay must be in [0, 1), got \(emaDecay)")
        try check(warmup >= 0 && sampleEvery >= 0 && checkpointEvery >= 0, "warm-up and intervals must not be negative")
        if let k = keepCheckpoints { try check(k >= 1, "the checkpoints kept must be at least 1, got \(k)") }
        try check(sampleCount > 0 && sampleSteps > 0 && sampleSteps <= timesteps, "sample count and steps must be positive (steps ≤ timesteps)")
        if let g = minSNRGamma { try check(g > 0, "min-SNR γ must be positive, got \(g)") }
        try check((objective == .flow) == (prediction == .flow),
                  "rectified flow (--objective flow) predicts the velocity flow_prediction, and only it does")
        if let flow {
            try check(minSNRGamma == nil, "min-SNR weighting is for the diffusion objective, not rectified flow")
            try check(flow.shift > 0 && flow.shift.isFinite, "the flow shift must be positive, got \(flow.shift)")
            try check(kind == .ddpm || kind == .latentDiffusion, "--objective flow is for diffusion models (ddpm, latent-diffusion)")
        }
        if let c = gradientClip { try check(c > 0, "gradient clip must be positive, got \(c)") }
        if let k = classes { try check(k >= 2, "a class-conditional model needs at least 2 classes, got \(k)") }
        if let p = labelDropout { try check(p >= 0 && p < 1, "label dropout must be in [0, 1), got \(p)") }
        if let w = klWeight { try check(w >= 0 && w.isFinite, "the KL weight must not be negative, got \(w)") }
        if let w = adversarialWeight { try check(w >= 0 && w.isFinite, "the adversarial weight must not be negative, got \(w)") }
        try gan?.validate()
        switch kind {
        case .ddpm: break
        case .latentDiffusion: try check(autoencoder != nil, "latent diffusion needs its autoencoder (--autoencoder RUN)")
        case .vae: try check(autoencoder != nil, "a VAE run needs its autoencoder configuration")
        case .gan: try check(gan != nil, "a GAN run needs its configuration")
        case .classifier: try check(classifier != nil, "a classifier run needs its configuration")
        }
    }
}

/// What a diffusion model's network learns.
public enum DenoisingObjective: String, CaseIterable, Codable, Sendable {
    /// DDPM's simple loss on its noise schedule, predicting ε, x_0 or v.
    case diffusion
    /// Rectified flow (flow matching): the velocity ε − x_0 on the straight path, at logit-normal t.
    case flow
}
