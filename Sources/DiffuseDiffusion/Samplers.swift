import DiffuseEngine
import Foundation

/// The network as a sampler sees it: its output (ε̂, x̂_0 or v̂, as the prediction type says) for a batch x_t at
/// timestep t (fractional for the sigma-based samplers). Conditioning and guidance live in the closure; a sampler
/// never knows which network it calls.
public typealias Denoiser = (_ xt: Tensor, _ t: Double) -> Tensor

/// Which of the T training timesteps a sampler of fewer steps visits (Lin et al. 2023, Table 2).
public enum TimestepSpacing: String, CaseIterable, Codable, Sendable {
    /// t = i·⌊T/n⌋ + offset, i = n−1 … 0 (DDIM's original choice; never reaches T − 1).
    case leading
    /// t = round(linspace(0, T − 1, n)), reversed.
    case linspace
    /// t = round(T − i·T/n) − 1, i = 0 … n−1: starts at T − 1.
    case trailing

    /// The n timesteps, in the order a sampler visits them (decreasing), as DDPMScheduler and DDIMScheduler have
    /// them (numpy's round: half to even).
    public func timesteps(steps n: Int, trainingSteps T: Int, offset: Int = 0) -> [Int] {
        precondition(n >= 1 && n <= T, "\(n) sampling steps for a model of \(T) timesteps")
        switch self {
        case .leading: return (0..<n).reversed().map { $0 * (T / n) + offset }
        case .linspace:
            return (0..<n).reversed().map { n == 1 ? 0 : Int((Double($0) * Double(T - 1) / Double(n - 1)).rounded(.toNearestOrEven)) }
        case .trailing:
            return Self.trailing(from: T, steps: n, trainingSteps: T)
        }
    }

    /// round(arange(start, 0, −T/n)) − 1, as diffusers' trailing spacing (numpy's arange: ⌈start/step⌉ values
    /// start − i·step).
    static func trailing(from start: Int, steps n: Int, trainingSteps T: Int) -> [Int] {
        let step = Double(T) / Double(n)
        let count = Int((Double(start) / step).rounded(.up))
        return (0..<count).map { Int((Double(start) - Double($0) * step).rounded(.toNearestOrEven)) - 1 }
    }
}

/// A reverse-process sampler: from x_T (`noise`, drawn N(0, I); the sampler scales it to its first σ where it
/// works in σ) to a sample x_0.
public protocol Sampler {
    /// Runs the reverse process. A stochastic step i adds noise z = `stepNoise(i)` (i counts the sampler's steps
    /// from 0), which the caller may supply (to replay a chain, or to match another implementation);
    /// `observe(i, x)` sees the state after each step (for trajectories and progress).
    func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                observe: ((Int, Tensor) -> Void)?) -> Tensor
    /// How many network evaluations one sample costs.
    var evaluations: Int { get }
}

extension Sampler {
    /// Runs the reverse process with each step's z ~ N(0, I) drawn from `generator`.
    public func sample(from noise: Tensor, model: Denoiser, generator: inout RandomGenerator,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        sample(from: noise, model: model, stepNoise: { _ in generator.normal(noise.shape) }, observe: observe)
    }
}

/// The variance of DDPM's reverse steps p(x_{t−1} | x_t) = N(μ_θ, σ_t²·I).
public enum ReverseVariance: String, CaseIterable, Codable, Sendable {
    /// σ_t² = β̃_t, the posterior variance (optimal when x_0 is a point).
    case fixedSmall = "fixed_small"
    /// The same σ_t, through its logarithm (diffusers' fixed_small_log).
    case fixedSmallLog = "fixed_small_log"
    /// σ_t² = β_t (optimal for x_0 ~ N(0, I)).
    case fixedLarge = "fixed_large"
    /// σ_t² predicted by the network (its output's second half of channels).
    case learned
    /// log σ_t² = f·log β_t + (1 − f)·log β̃_t with f = (v + 1)/2, v the output's second half (Nichol & Dhariwal).
    case learnedRange = "learned_range"

    var isLearned: Bool { self == .learned || self == .learnedRange }
}

/// How x̂_0 is kept in range before a step: clamped to [−r, r], or dynamically thresholded (Imagen): clamped to
/// [−s, s] and divided by s, with s the `ratio`-quantile of |x̂_0| over each sample, held in [1, maxValue].
public enum SampleClipping: Equatable, Sendable {
    case clamp(Double)
    case dynamicThreshold(ratio: Double, maxValue: Double)

    public func apply(_ x0: Tensor) -> Tensor {
        switch self {
        case .clamp(let r): return DiffuseEngine.clamp(x0, min: Float(-r), max: Float(r))
        case .dynamicThreshold(let ratio, let maxValue):
            let n = x0.shape[0], size = x0.count / max(n, 1)
            let values = x0.scalars
            let s = (0..<n).map { i -> Double in
                let sorted = values[(i * size)..<((i + 1) * size)].map { Double(Swift.abs($0)) }.sorted()
                let position = ratio * Double(size - 1), low = Int(position.rounded(.down))
                let high = Swift.min(low + 1, size - 1), w = position - Double(low)
                return Swift.min(Swift.max(sorted[low] + (sorted[high] - sorted[low]) * w, 1), maxValue)
            }
            let scale = perSample(s, rank: x0.rank)
            return DiffuseEngine.clamp(x0 / scale, min: -1, max: 1)
        }
    }
}

/// DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2) as DDPMScheduler runs it, over all T steps or a subset:
/// x_{t'} = μ̃(x_t, x̂_0) + σ_t·z with t' the next visited timestep, μ̃ the posterior mean between t and t'
/// (β = 1 − ᾱ_t/ᾱ_{t'}), and noise wherever t > 0.
public struct DDPMSampler: Sampler {
    public let settings: Sampling
    public let timesteps: [Int]

    public init(_ settings: Sampling) {
        self.settings = settings
        timesteps = settings.spacing.timesteps(steps: settings.steps, trainingSteps: settings.trainingSteps,
                                               offset: settings.stepsOffset)
    }

    public var evaluations: Int { timesteps.count }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let a = settings.alphaBar
        var x = noise
        for (i, t) in timesteps.enumerated() {
            withoutGradients {
                let previous = i + 1 < timesteps.count ? timesteps[i + 1] : -1
                let barT = a[t], barPrev = previous >= 0 ? a[previous] : 1
                let beta = 1 - barT / barPrev
                let (output, predicted) = settings.splitVariance(model(x, Double(t)), channels: x.shape[1])
                let x0 = settings.estimates(output, x, alphaBar: barT).x0
                // μ̃ = (√ᾱ_{t'}·β/(1 − ᾱ_t))·x̂_0 + (√(1 − β)·(1 − ᾱ_{t'})/(1 − ᾱ_t))·x_t
                let c0 = barPrev.squareRoot() * beta / (1 - barT), ct = (1 - beta).squareRoot() * (1 - barPrev) / (1 - barT)
                x = x0 * Float(c0) + x * Float(ct)
                if t > 0 {
                    let small = max((1 - barPrev) / (1 - barT) * beta, 1e-20)  // β̃, kept above 0 as diffusers does
                    let z = stepNoise(i)
                    switch settings.variance {
                    case .fixedSmall, .fixedSmallLog: x = x + z * Float(small.squareRoot())
                    case .fixedLarge: x = x + z * Float(beta.squareRoot())
                    case .learned: x = x + z * sqrt(predicted!)
                    case .learnedRange:
                        // log σ² = f·log β + (1 − f)·log β̃, f = (v + 1)/2
                        let f = (predicted! + 1) * 0.5
                        let logVariance = f * Float(Foundation.log(beta)) + (-f + 1) * Float(Foundation.log(small))
                        x = x + z * exp(logVariance * 0.5)
                    }
                }
            }
            observe?(i, x)
        }
        return x
    }
}

/// DDIM (Song et al. 2021) as DDIMScheduler runs it: x_{t'} = √ᾱ_{t'}·x̂_0 + √(1 − ᾱ_{t'} − σ²)·ε̂ + σ·z with
/// t' = t − ⌊T/n⌋ and σ = η·√((1 − ᾱ_{t'})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t'}). With η = 0 it is deterministic; η = 1 is
/// DDPM's step.
public struct DDIMSampler: Sampler {
    public let settings: Sampling
    public let timesteps: [Int]
    /// ᾱ after the last step: 1 (`setAlphaToOne`, diffusers' default) or ᾱ_0.
    public var finalAlphaBar: Double { settings.setAlphaToOne ? 1 : settings.alphaBar[0] }

    public init(_ settings: Sampling) {
        self.settings = settings
        timesteps = settings.spacing.timesteps(steps: settings.steps, trainingSteps: settings.trainingSteps,
                                               offset: settings.stepsOffset)
    }

    public var evaluations: Int { timesteps.count }

    /// One DDIM step from x_t at `t` to the timestep `previous` (negative: the end), given the network output.
    /// With η = 0 and no clipping the step is invertible: for ε-prediction, the same call with `t` and `previous`
    /// swapped and the same ε̂ maps x_{t'} back to x_t (DDIM inversion).
    public func step(_ x: Tensor, output: Tensor, t: Int, previous: Int, noise: Tensor?) -> Tensor {
        let a = settings.alphaBar
        let barT = a[t], barPrev = previous >= 0 ? a[previous] : finalAlphaBar
        let (x0, eps) = settings.estimates(output, x, alphaBar: barT)
        // (η = 0 skips the root, which is of a negative number when the step goes to a noisier timestep.)
        let eta = settings.eta
        let sigma = eta == 0 ? 0 : eta * ((1 - barPrev) / (1 - barT)).squareRoot() * (1 - barT / barPrev).squareRoot()
        var next = x0 * Float(barPrev.squareRoot()) + eps * Float(max(0, 1 - barPrev - sigma * sigma).squareRoot())
        if sigma > 0, let noise { next = next + noise * Float(sigma) }
        return next
    }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let jump = settings.trainingSteps / settings.steps
        var x = noise
        for (i, t) in timesteps.enumerated() {
            x = withoutGradients {
                let (output, _) = settings.splitVariance(model(x, Double(t)), channels: x.shape[1])
                return step(x, output: output, t: t, previous: t - jump, noise: settings.eta > 0 ? stepNoise(i) : nil)
            }
            observe?(i, x)
        }
        return x
    }
}
