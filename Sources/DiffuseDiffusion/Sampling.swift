import DiffuseEngine
import Foundation

/// The reverse-process solvers, each diffusers' scheduler of the same name, step for step.
public enum SamplerKind: String, CaseIterable, Codable, Sendable {
    /// DDPM ancestral sampling (Ho et al. 2020): DDPMScheduler.
    case ddpm
    /// DDIM (Song et al. 2021), deterministic with η = 0: DDIMScheduler.
    case ddim
    /// DPM-Solver++(2M) (Lu et al. 2022): DPMSolverMultistepScheduler, algorithm dpmsolver++.
    case dpmSolver = "dpm++2m"
    /// Its stochastic variant, SDE-DPM-Solver++(2M): algorithm sde-dpmsolver++.
    case dpmSolverSDE = "dpm++2m-sde"
    /// Euler's method on the probability-flow ODE in σ (Karras et al. 2022): EulerDiscreteScheduler.
    case euler
    /// Euler with ancestral noise: EulerAncestralDiscreteScheduler.
    case eulerAncestral = "euler-ancestral"
    /// Heun's second-order method: HeunDiscreteScheduler (two network evaluations a step but the last).
    case heun

    /// The diffusers class whose behaviour this copies.
    public var diffusersClass: String {
        switch self {
        case .ddpm: "DDPMScheduler"
        case .ddim: "DDIMScheduler"
        case .dpmSolver, .dpmSolverSDE: "DPMSolverMultistepScheduler"
        case .euler: "EulerDiscreteScheduler"
        case .eulerAncestral: "EulerAncestralDiscreteScheduler"
        case .heun: "HeunDiscreteScheduler"
        }
    }

    /// Whether the sampler draws noise during the chain.
    public var isStochastic: Bool { [.ddpm, .dpmSolverSDE, .eulerAncestral].contains(self) }
}

/// Everything a sampler needs, resolved like diffusers' `Class.from_config(config)`: the class's defaults, overridden
/// by the keys of a scheduler config (or, for a model trained here, by its run), overridden by the user's choices.
public struct Sampling: Sendable {
    public var kind: SamplerKind
    public var steps: Int
    /// ᾱ_t for t = 0..<T (for a diffusers config, the float32 values diffusers computes).
    public var alphaBar: [Double]
    public var prediction: Prediction
    public var variance: ReverseVariance
    /// What is done to x̂_0 before a step (DDPM, DDIM, Heun; the others never clip, as in diffusers).
    public var clipping: SampleClipping?
    public var spacing: TimestepSpacing
    public var stepsOffset: Int
    /// DDIM's ᾱ after the last step: 1, or ᾱ_0.
    public var setAlphaToOne: Bool
    /// DDIM's η.
    public var eta: Double
    /// Karras et al.'s σ spacing (ρ = 7) for DPM-Solver, Euler and Heun.
    public var karras: Bool
    public var solverOrder: Int
    /// DPM-Solver's second-order update: midpoint or heun.
    public var heunSolver: Bool
    public var lowerOrderFinal: Bool
    public var eulerAtFinal: Bool
    /// Whether DPM-Solver and Euler end at σ = 0 (else at σ_min).
    public var finalSigmaZero: Bool

    /// The schedule the ᾱ come from: DPM-Solver truncates (rather than rounds) its Karras timesteps for the cosine one.
    public var betaSchedule: BetaSchedule

    public var trainingSteps: Int { alphaBar.count }

    /// The settings diffusers' class for `kind` has by default, for a schedule of ᾱ values.
    public init(kind: SamplerKind, steps: Int, alphaBar: [Double], prediction: Prediction, betaSchedule: BetaSchedule = .linear) {
        self.kind = kind
        self.betaSchedule = betaSchedule
        self.steps = steps
        self.alphaBar = alphaBar
        self.prediction = prediction
        variance = .fixedSmall
        clipping = kind == .ddpm || kind == .ddim ? .clamp(1) : nil
        spacing = kind == .ddpm || kind == .ddim ? .leading : .linspace
        stepsOffset = 0
        setAlphaToOne = true
        eta = 0
        karras = false
        solverOrder = 2
        heunSolver = false
        lowerOrderFinal = true
        eulerAtFinal = false
        finalSigmaZero = true
    }

    /// For a model trained here: its schedule and prediction, its clipping (images live in [−1, 1]), leading spacing.
    public init(kind: SamplerKind, steps: Int, diffusion: GaussianDiffusion, clip: Double?) {
        self.init(kind: kind, steps: steps, alphaBar: diffusion.schedule.alphaBar, prediction: diffusion.prediction,
                  betaSchedule: diffusion.schedule.kind)
        clipping = clip.map { .clamp($0) }
        spacing = .leading
    }

    /// From a diffusers scheduler config, as `Class.from_config(config)` makes it: keys the config has override the
    /// class defaults. A key that a class does not have changes nothing for it (DPM-Solver and Euler never clip).
    public init(kind: SamplerKind, steps: Int, config c: SchedulerConfig) throws {
        let T = c.numTrainTimesteps ?? 1000
        let heunDefaults = kind == .heun  // HeunDiscreteScheduler's own defaults differ: 0.00085 … 0.012
        let schedule = c.betaSchedule.flatMap(BetaSchedule.init(rawValue:)) ?? .linear
        let betas: [Double]
        if let trained = c.trainedBetas {
            guard trained.count == T else {
                throw SchedulerConfigError(path: "scheduler config", key: "trained_betas",
                                           problem: "\(trained.count) values for num_train_timesteps \(T)")
            }
            betas = trained
        } else {
            betas = NoiseSchedule(schedule, timesteps: T, betaStart: c.betaStart ?? (heunDefaults ? 0.00085 : 1e-4),
                                  betaEnd: c.betaEnd ?? (heunDefaults ? 0.012 : 0.02)).betas
        }
        var table = NoiseSchedule(kind: schedule, betas: betas)
        if c.rescaleBetasZeroSNR ?? false { table = table.rescaledToZeroTerminalSNR() }
        self.init(kind: kind, steps: steps, alphaBar: table.float32AlphaBar,
                  prediction: c.predictionType.flatMap(Prediction.init(rawValue:)) ?? .epsilon, betaSchedule: schedule)
        if let v = c.varianceType { variance = ReverseVariance(rawValue: v) ?? .fixedSmall }
        if kind == .ddpm || kind == .ddim || kind == .heun {
            let range = c.clipSampleRange ?? 1
            clipping = (c.clipSample ?? (kind != .heun)) ? .clamp(range) : nil
        }
        if (c.thresholding ?? false) && [.ddpm, .ddim, .dpmSolver, .dpmSolverSDE].contains(kind) {
            clipping = .dynamicThreshold(ratio: c.dynamicThresholdingRatio ?? 0.995, maxValue: c.sampleMaxValue ?? 1)
        }
        if let s = c.timestepSpacing { spacing = TimestepSpacing(rawValue: s) ?? spacing }
        stepsOffset = c.stepsOffset ?? 0
        setAlphaToOne = c.setAlphaToOne ?? true
        karras = c.useKarrasSigmas ?? false
        solverOrder = c.solverOrder ?? 2
        heunSolver = c.solverType == "heun"
        lowerOrderFinal = c.lowerOrderFinal ?? true
        eulerAtFinal = c.eulerAtFinal ?? false
        finalSigmaZero = (c.finalSigmasType ?? "zero") == "zero"
        if let a = c.algorithmType, kind == .dpmSolver || kind == .dpmSolverSDE {
            self.kind = a == "sde-dpmsolver++" ? .dpmSolverSDE : .dpmSolver
        }
    }

    /// Checks the combination before any work starts.
    public func validate() throws {
        func fail(_ message: String) -> Error { SamplingError(message: message) }
        guard steps >= 1 && steps <= trainingSteps else { throw fail("steps must be in 1...\(trainingSteps), got \(steps)") }
        if kind == .eulerAncestral && prediction == .sample {
            throw fail("euler-ancestral does not take x₀ predictions (prediction_type sample), as in diffusers")
        }
        if karras && ![.dpmSolver, .dpmSolverSDE, .euler, .heun].contains(kind) {
            throw fail("Karras sigmas are for dpm++2m, dpm++2m-sde, euler and heun, not \(kind.rawValue)")
        }
        if eta != 0 && kind != .ddim { throw fail("η is DDIM's (--eta with --sampler ddim)") }
    }

    /// The sampler these settings describe.
    public func makeSampler() throws -> Sampler {
        try validate()
        switch kind {
        case .ddpm: return DDPMSampler(self)
        case .ddim: return DDIMSampler(self)
        case .dpmSolver, .dpmSolverSDE:
            let sampler = DPMSolverSampler(self)
            // A repeated σ is a step of h = 0, after which the next step divides by zero (NaN in diffusers too).
            if let i = sampler.sigmas.indices.dropLast().first(where: { sampler.sigmas[$0] == sampler.sigmas[$0 + 1] }) {
                throw SamplingError(message: "\(steps) steps of \(kind.rawValue) with \(spacing.rawValue) spacing repeat timestep "
                                    + "\(sampler.timesteps[i]); use fewer steps or another spacing")
            }
            return sampler
        case .euler, .eulerAncestral: return EulerSampler(self)
        case .heun: return HeunSampler(self)
        }
    }

    /// x̂_0 and ε̂ from the network output at x_t, where x_t = √ᾱ·x_0 + √(1 − ᾱ)·ε (see GaussianDiffusion.estimates),
    /// with x̂_0 clipped or thresholded as configured (ε̂ as the network said).
    func estimates(_ output: Tensor, _ x: Tensor, alphaBar a: Double) -> (x0: Tensor, eps: Tensor) {
        var (x0, eps) = prediction.estimates(output: output, xt: x, signal: perSample([a.squareRoot()], rank: x.rank),
                                             noise: perSample([(1 - a).squareRoot()], rank: x.rank))
        if let clipping { x0 = clipping.apply(x0) }
        return (x0, eps)
    }

    /// The network output without the variance channels a learned-variance network adds (its first C channels).
    func splitVariance(_ output: Tensor, channels: Int) -> (Tensor, Tensor?) {
        guard variance.isLearned, output.shape[1] == 2 * channels else { return (output, nil) }
        return (output.slice(axis: 1, 0..<channels), output.slice(axis: 1, channels..<(2 * channels)))
    }
}

/// A sampler setting that does not work.
public struct SamplingError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public var description: String { message }
    public var errorDescription: String? { message }
}
