import DiffuseEngine
import Foundation

/// The reverse-process samplers, each the diffusers scheduler (or k-diffusion sampler) of the same name, step for step.
public enum SamplerKind: String, CaseIterable, Codable, Sendable {
    /// DDPM ancestral sampling (Ho et al. 2020): DDPMScheduler.
    case ddpm
    /// DDIM (Song et al. 2021), deterministic with η = 0: DDIMScheduler.
    case ddim
    /// PNDM's pseudo linear multistep method (Liu et al. 2022): PNDMScheduler (for a run: with skip_prk_steps).
    case pndm
    /// Euler's method on the probability-flow ODE in σ (Karras et al. 2022): EulerDiscreteScheduler.
    case euler
    /// Euler with ancestral noise: EulerAncestralDiscreteScheduler.
    case eulerAncestral = "euler-ancestral"
    /// Heun's second-order method: HeunDiscreteScheduler (two network evaluations a step but the last).
    case heun
    /// DPM-Solver++(2M) (Lu et al. 2022): DPMSolverMultistepScheduler, algorithm dpmsolver++, order 2.
    case dpmSolver = "dpm++2m"
    /// Its stochastic variant, SDE-DPM-Solver++(2M): algorithm sde-dpmsolver++.
    case dpmSolverSDE = "dpm++2m-sde"
    /// DPM-Solver++(3M): order 3.
    case dpmSolver3 = "dpm++3m"
    /// SDE-DPM-Solver++(3M).
    case dpmSolver3SDE = "dpm++3m-sde"
    /// UniPC (Zhao et al. 2023) with B(h) = e^{−h} − 1: UniPCMultistepScheduler, solver_type bh2.
    case uniPC = "unipc"
    /// UniPC with B(h) = h: solver_type bh1.
    case uniPCBH1 = "unipc-bh1"
    /// DEIS (Zhang & Chen 2023), log-ρ multistep: DEISMultistepScheduler.
    case deis
    /// iPNDM (Zhang & Chen 2023), fourth-order Adams–Bashforth in σ: k-diffusion's sample_ipndm.
    case iPNDM = "ipndm"

    /// The diffusers class whose behaviour this copies (k-diffusion's function for iPNDM).
    public var diffusersClass: String {
        switch self {
        case .ddpm: "DDPMScheduler"
        case .ddim: "DDIMScheduler"
        case .pndm: "PNDMScheduler"
        case .euler: "EulerDiscreteScheduler"
        case .eulerAncestral: "EulerAncestralDiscreteScheduler"
        case .heun: "HeunDiscreteScheduler"
        case .dpmSolver, .dpmSolverSDE, .dpmSolver3, .dpmSolver3SDE: "DPMSolverMultistepScheduler"
        case .uniPC, .uniPCBH1: "UniPCMultistepScheduler"
        case .deis: "DEISMultistepScheduler"
        case .iPNDM: "k_diffusion.sampling.sample_ipndm"
        }
    }

    /// Its name in AUTOMATIC1111's web UI, which images' `parameters` carry (PLMS is its name for PNDM's method).
    public var webUIName: String {
        switch self {
        case .ddpm: "DDPM"
        case .ddim: "DDIM"
        case .pndm: "PLMS"
        case .euler: "Euler"
        case .eulerAncestral: "Euler a"
        case .heun: "Heun"
        case .dpmSolver: "DPM++ 2M"
        case .dpmSolverSDE: "DPM++ 2M SDE"
        case .dpmSolver3: "DPM++ 3M"
        case .dpmSolver3SDE: "DPM++ 3M SDE"
        case .uniPC: "UniPC"
        case .uniPCBH1: "UniPC BH1"
        case .deis: "DEIS"
        case .iPNDM: "iPNDM"
        }
    }

    /// When to use it, in a line of at most 60 characters (for `diffuse sample --help`).
    public var advice: String {
        switch self {
        case .ddpm: "the reference: ancestral noise over all T steps; slow"
        case .ddim: "deterministic, good from ~50 steps; invertible"
        case .pndm: "Stable Diffusion's default; fine from ~50 steps"
        case .euler: "the simplest ODE step; a baseline at 25–50 steps"
        case .eulerAncestral: "stochastic Euler: varied samples, never converges"
        case .heun: "second order, two evaluations a step; from ~20"
        case .dpmSolver: "the all-rounder at 15–25 steps (with --sigmas karras)"
        case .dpmSolverSDE: "stochastic DPM-Solver++: beats dpm++2m at 25+ steps"
        case .dpmSolver3: "third order: unguided sampling at 10–20 steps"
        case .dpmSolver3SDE: "stochastic third order, for 25+ steps"
        case .uniPC: "predictor-corrector: among the best at 5–10 steps"
        case .uniPCBH1: "UniPC for unguided models at very few steps"
        case .deis: "exponential-integrator multistep; strong at 5–10 steps"
        case .iPNDM: "fourth-order multistep in σ; strong at 5–10 steps"
        }
    }

    /// Whether the sampler draws noise during the chain.
    public var isStochastic: Bool { [.ddpm, .dpmSolverSDE, .dpmSolver3SDE, .eulerAncestral].contains(self) }

    /// How its diffusers class chooses timesteps and σ.
    enum Family { case discrete, euler, multistep }
    var family: Family {
        switch self {
        case .ddpm, .ddim, .pndm: .discrete
        case .euler, .eulerAncestral, .heun: .euler
        default: .multistep
        }
    }

    var isDPMSolver: Bool { [.dpmSolver, .dpmSolverSDE, .dpmSolver3, .dpmSolver3SDE].contains(self) }

    /// The solver with the defaults of its diffusers class.
    var defaultSolver: any Solver {
        switch self {
        case .ddpm: DDPM()
        case .ddim: DDIM()
        case .pndm: PLMS()
        case .euler: Euler()
        case .eulerAncestral: Euler(ancestral: true)
        case .heun: Heun()
        case .dpmSolver, .dpmSolverSDE, .dpmSolver3, .dpmSolver3SDE:
            DPMSolver(order: [.dpmSolver3, .dpmSolver3SDE].contains(self) ? 3 : 2, stochastic: isStochastic)
        case .uniPC: UniPC()
        case .uniPCBH1: UniPC(variant: .bh1)
        case .deis: DEIS()
        case .iPNDM: IPNDM()
        }
    }
}

/// Everything a sampler needs, resolved like diffusers' `Class.from_config(config)`: the class's defaults, overridden
/// by the keys of a scheduler config (or, for a model trained here, by its run), overridden by the user's choices.
public struct Sampling: Sendable {
    public var kind: SamplerKind
    public var steps: Int
    /// ᾱ_t for t = 0..<T (for a diffusers config, the float32 values diffusers computes).
    public var alphaBar: [Double]
    /// The schedule the ᾱ come from: DPM-Solver truncates (rather than rounds) its Karras timesteps for the cosine one.
    public var betaSchedule: BetaSchedule
    public var prediction: Prediction
    /// What is done to x̂₀ before a step (DDPM, DDIM and Heun clip as configured; the others only threshold, as in diffusers).
    public var clipping: SampleClipping?
    public var spacing: TimestepSpacing
    public var stepsOffset: Int
    /// σ respaced (Karras, exponential, EDM, AYS) for the σ-based samplers.
    public var sigmaSpacing: SigmaSpacing
    /// Where the last step lands (DDIM's and PNDM's set_alpha_to_one, the others' final_sigmas_type).
    public var finalSigma: FinalSigma
    /// The method, with its own options (DDPM's variance, DDIM's η, the multistep solvers' order...).
    public var solver: any Solver
    /// For a rectified-flow model: its path and schedule shift (then `alphaBar` is empty).
    public var flow: RectifiedFlow?

    public var trainingSteps: Int { flow?.trainingSteps ?? alphaBar.count }

    /// The sampler's name in the web UI's style, with its σ spacing ("DPM++ 2M Karras").
    public var webUIName: String {
        switch sigmaSpacing {
        case .discrete: kind.webUIName
        case .karras, .exponential: kind.webUIName + " " + sigmaSpacing.rawValue.capitalized
        case .edm, .alignYourSteps: kind.webUIName + " " + sigmaSpacing.rawValue.uppercased()
        }
    }

    /// The samplers that run a rectified-flow model: those written in x_t or in the process' ODE frame, whose updates
    /// stay finite at t = 1 (a = 0).
    public static let flowSamplers: [SamplerKind] = [.euler, .heun, .iPNDM, .dpmSolver, .dpmSolverSDE, .dpmSolver3, .dpmSolver3SDE]

    /// For a rectified-flow model, as FlowMatchEulerDiscreteScheduler (Euler) spaces its steps.
    public init(kind: SamplerKind, steps: Int, flow: RectifiedFlow) {
        self.init(kind: kind, steps: steps, alphaBar: [], prediction: .flow)
        self.flow = flow
    }

    /// The settings diffusers' class for `kind` has by default, for a schedule of ᾱ values.
    public init(kind: SamplerKind, steps: Int, alphaBar: [Double], prediction: Prediction, betaSchedule: BetaSchedule = .linear) {
        self.kind = kind
        self.steps = steps
        self.alphaBar = alphaBar
        self.betaSchedule = betaSchedule
        self.prediction = prediction
        clipping = kind == .ddpm || kind == .ddim ? .clamp(1) : nil
        spacing = kind.family == .discrete ? .leading : .linspace
        stepsOffset = 0
        sigmaSpacing = .discrete
        finalSigma = kind == .pndm || kind == .deis ? .minimum : .zero
        solver = kind.defaultSolver
        flow = nil
    }

    /// For a model trained here: its schedule and prediction, leading spacing, and x̂₀ clamped to `clip` by every
    /// sampler (a run's images live in [−1, 1]; of diffusers' classes only DDPM, DDIM and Heun clip, and at 10 steps
    /// an unclamped UniPC leaves speckles of noise in an MNIST DDPM's digits that the clamped one does not).
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
                throw DiffuseError.scheduler(path: "scheduler config", key: "trained_betas",
                                           problem: "\(trained.count) values for num_train_timesteps \(T)")
            }
            betas = trained
        } else {
            betas = NoiseSchedule(schedule, timesteps: T, betaStart: c.betaStart ?? (heunDefaults ? 0.00085 : 1e-4),
                                  betaEnd: c.betaEnd ?? (heunDefaults ? 0.012 : 0.02)).betas
        }
        var table = NoiseSchedule(kind: schedule, betas: betas)
        if c.rescaleBetasZeroSNR ?? false { table = table.rescaledToZeroTerminalSNR() }
        var kind = kind
        if let a = c.algorithmType, kind.isDPMSolver {
            let threeStep = kind == .dpmSolver3 || kind == .dpmSolver3SDE
            kind = a == "sde-dpmsolver++" ? (threeStep ? .dpmSolver3SDE : .dpmSolverSDE) : (threeStep ? .dpmSolver3 : .dpmSolver)
        }
        if kind == .uniPC && c.solverType == "bh1" { kind = .uniPCBH1 }
        self.init(kind: kind, steps: steps, alphaBar: table.float32AlphaBar,
                  prediction: c.predictionType.flatMap(Prediction.init(rawValue:)) ?? .epsilon, betaSchedule: schedule)
        if kind == .ddpm || kind == .ddim || kind == .heun {
            let range = c.clipSampleRange ?? 1
            clipping = (c.clipSample ?? (kind != .heun)) ? .clamp(range) : nil
        }
        if (c.thresholding ?? false) && ![.pndm, .euler, .eulerAncestral, .heun, .iPNDM].contains(kind) {
            clipping = .dynamicThreshold(ratio: c.dynamicThresholdingRatio ?? 0.995, maxValue: c.sampleMaxValue ?? 1)
        }
        if let s = c.timestepSpacing { spacing = TimestepSpacing(rawValue: s) ?? spacing }
        stepsOffset = c.stepsOffset ?? 0
        if c.useKarrasSigmas ?? false { sigmaSpacing = .karras }
        if c.useExponentialSigmas ?? false { sigmaSpacing = .exponential }
        switch kind {
        case .ddim, .pndm: finalSigma = (c.setAlphaToOne ?? (kind == .ddim)) ? .zero : .minimum
        case _ where kind == .euler || kind == .uniPC || kind == .uniPCBH1 || kind.isDPMSolver:
            finalSigma = FinalSigma(rawValue: c.finalSigmasType ?? "zero") ?? .zero
        default: break
        }
        switch kind {
        case .ddpm: solver = DDPM(variance: c.varianceType.flatMap(ReverseVariance.init(rawValue:)) ?? .fixedSmall)
        case .pndm: solver = PLMS(rungeKutta: (c.skipPRKSteps ?? false) ? nil : alphaBar)
        case _ where kind.isDPMSolver:
            solver = DPMSolver(order: kind == .dpmSolver3 || kind == .dpmSolver3SDE ? 3 : 2, stochastic: kind.isStochastic,
                               heun: c.solverType == "heun", lowerOrderFinal: c.lowerOrderFinal ?? true,
                               eulerAtFinal: c.eulerAtFinal ?? false)
        case .uniPC, .uniPCBH1:
            solver = UniPC(order: c.solverOrder ?? 2, variant: kind == .uniPCBH1 ? .bh1 : .bh2,
                           lowerOrderFinal: c.lowerOrderFinal ?? true, disableCorrector: Set(c.disableCorrector ?? []))
        case .deis: solver = DEIS(order: c.solverOrder ?? 2, lowerOrderFinal: c.lowerOrderFinal ?? true)
        default: break
        }
    }

    /// Checks the combination before any work starts.
    public func validate() throws {
        func fail(_ message: String) -> Error { DiffuseError.sampling(message: message) }
        guard steps >= 1 && steps <= trainingSteps else { throw fail("steps must be in 1...\(trainingSteps), got \(steps)") }
        if kind == .eulerAncestral && prediction == .sample {
            throw fail("euler-ancestral does not take x₀ predictions (prediction_type sample), as in diffusers")
        }
        if sigmaSpacing != .discrete && (kind.family == .discrete || kind == .eulerAncestral) {
            throw fail("--sigmas \(sigmaSpacing.rawValue) is for the σ-based samplers, not \(kind.rawValue)")
        }
        if let ddim = solver as? DDIM, ddim.eta < 0 { throw fail("η must not be negative") }
        if let plms = solver as? PLMS, plms.rungeKutta != nil && steps < 4 {
            throw fail("PNDM's Runge–Kutta start (skip_prk_steps false) takes three steps: give at least 4")
        }
        if flow != nil && !Self.flowSamplers.contains(kind) {
            throw fail("\(kind.rawValue) does not run rectified-flow models; use one of "
                       + Self.flowSamplers.map(\.rawValue).joined(separator: ", "))
        }
        if (flow != nil) != (prediction == .flow) {
            throw fail("flow_prediction is rectified flow's, and a flow model predicts only it (prediction \(prediction.rawValue))")
        }
        if flow != nil && sigmaSpacing != .discrete { throw fail("--sigmas is for diffusion models; flow models space t by --shift") }
    }

    /// The noise levels and timesteps the sampler visits, by its diffusers class's rule.
    public func schedule() -> SolverSchedule {
        if let flow { return .flowMatch(steps: steps, flow: flow) }
        switch kind.family {
        case .discrete:
            return .discrete(spacing.timesteps(steps: steps, trainingSteps: trainingSteps, offset: stepsOffset), alphaBar: alphaBar,
                             finalAlphaBar: finalSigma == .zero ? 1 : alphaBar[0])
        case .euler:
            return .euler(steps: steps, alphaBar: alphaBar, spacing: spacing, offset: stepsOffset, respacing: sigmaSpacing,
                          finalSigma: kind == .euler ? finalSigma : .zero)
        case .multistep:
            return .multistep(steps: steps, alphaBar: alphaBar, spacing: spacing, offset: stepsOffset, respacing: sigmaSpacing,
                              finalSigma: finalSigma, truncateCosine: kind.isDPMSolver && sigmaSpacing == .karras && betaSchedule == .cosine)
        }
    }

    /// The sampler these settings describe.
    public func makeSampler() throws -> Sampler {
        try validate()
        let schedule = schedule()
        // A repeated σ is a step of h = 0, after which the next multistep update divides by zero (NaN in diffusers too).
        if kind.family == .multistep && kind != .iPNDM && flow == nil,
           let i = (0..<(schedule.steps - 1)).first(where: { schedule.sigmas[$0] == schedule.sigmas[$0 + 1] }) {
            throw DiffuseError.sampling(message: "\(steps) steps of \(kind.rawValue) with \(spacing.rawValue) spacing repeat timestep "
                                + "\(Int(schedule.timesteps[i])); use fewer steps or another spacing")
        }
        return Sampler(solver: solver, schedule: schedule, prediction: prediction, clipping: clipping,
                       process: flow == nil ? .variancePreserving : .rectifiedFlow)
    }
}

/// A solver, its schedule and the denoiser's settings: the one driver that runs any of them.
public struct Sampler: Sendable {
    public let solver: any Solver
    public let schedule: SolverSchedule
    public let prediction: Prediction
    public let clipping: SampleClipping?
    public let process: NoiseProcess

    public init(solver: any Solver, schedule: SolverSchedule, prediction: Prediction, clipping: SampleClipping?, process: NoiseProcess) {
        (self.solver, self.schedule, self.prediction, self.clipping, self.process) = (solver, schedule, prediction, clipping, process)
    }

    /// How many network evaluations one sample costs.
    public var evaluations: Int { solver.evaluations(steps: schedule.steps) }

    /// Runs the reverse process from x_T = `noise` (drawn N(0, I)) to samples. A stochastic step i adds
    /// z = `stepNoise(i)` (i counts the steps from 0), which the caller may supply (to replay a chain, or to match
    /// another implementation); `observe(i, x_t)` sees the state after each step (for trajectories and progress).
    public func sample(from noise: Tensor, model: @escaping Network, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let denoiser = Denoiser(network: model, prediction: prediction, clipping: clipping, process: process)
        return withoutGradients {
            solver.solve(denoiser, noise * Float(schedule.initialScale), schedule, noise: stepNoise) { i, x in observe?(i, x) }
        }
    }

    /// SDEdit (Meng et al. 2022), image-to-image: x₀ noised to the level of step `start`, x_t = a·x₀ + s·ε with
    /// ε = `noise`, then the reverse process from that step to the end.
    public func edit(_ x0: Tensor, noise: Tensor, from start: Int, model: @escaping Network, stepNoise: (Int) -> Tensor,
                     observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        precondition(start >= 0 && start < schedule.steps, "start step \(start) of \(schedule.steps)")
        let rest = SolverSchedule(sigmas: Array(schedule.sigmas[start...]), timesteps: Array(schedule.timesteps[start...]),
                                  initialScale: 1)
        let (a, s) = process.scales(schedule.sigmas[start])
        let denoiser = Denoiser(network: model, prediction: prediction, clipping: clipping, process: process)
        return withoutGradients {
            solver.solve(denoiser, x0 * Float(a) + noise * Float(s), rest, noise: { stepNoise($0 + start) }) { i, x in
                observe?(i + start, x)
            }
        }
    }

    /// Runs the reverse process with each step's z ~ N(0, I) drawn from `generator`.
    public func sample(from noise: Tensor, model: @escaping Network, generator: inout RandomGenerator,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        sample(from: noise, model: model, stepNoise: { _ in generator.normal(noise.shape) }, observe: observe)
    }
}

