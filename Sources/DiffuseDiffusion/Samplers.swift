import DiffuseEngine
import Foundation

/// The network as a sampler sees it: its output (ε̂, x̂_0 or v̂, as the diffusion's `prediction` says) for a batch
/// x_t at timestep t. Conditioning and guidance live in the closure; a sampler never knows which network it calls.
public typealias Denoiser = (_ xt: Tensor, _ t: Int) -> Tensor

/// Which of the T training timesteps a sampler of fewer steps visits (Lin et al. 2023, Table 2).
public enum TimestepSpacing: String, CaseIterable, Codable, Sendable {
    /// t = i·⌊T/n⌋ + offset, i = n−1 … 0 (DDIM's original choice; never reaches T − 1).
    case leading
    /// t = round(linspace(0, T − 1, n)), reversed.
    case linspace
    /// t = round(T − i·T/n) − 1, i = 0 … n−1: starts at T − 1.
    case trailing

    /// The n timesteps, in the order a sampler visits them (decreasing).
    public func timesteps(steps n: Int, trainingSteps T: Int, offset: Int = 0) -> [Int] {
        precondition(n >= 1 && n <= T, "\(n) sampling steps for a model of \(T) timesteps")
        switch self {
        case .leading: return (0..<n).reversed().map { $0 * (T / n) + offset }
        case .linspace:
            return (0..<n).reversed().map { n == 1 ? 0 : Int((Double($0) * Double(T - 1) / Double(n - 1)).rounded(.toNearestOrEven)) }
        case .trailing:
            let ratio = Double(T) / Double(n)
            return (0..<n).map { Int((Double(T) - Double($0) * ratio).rounded(.toNearestOrEven)) - 1 }
        }
    }
}

/// A reverse-process sampler: from x_T ~ N(0, I) (`noise`) to a sample x_0.
public protocol Sampler {
    /// Runs the reverse process. A stochastic step from t adds σ_t·z with z = `stepNoise(t)`, which the caller may
    /// supply (to replay a chain, or to match another implementation); `observe(t, x_t)` sees the state after each
    /// step (for trajectories and progress).
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
    /// σ_t² = β_t (optimal for x_0 ~ N(0, I)).
    case fixedLarge = "fixed_large"
}

/// DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2), over all T steps or a subset of them:
/// x_{t'} = μ̃(x_t, x̂_0) + σ_t·z, with μ̃ the posterior mean between t and the previous visited step t'.
public struct DDPMSampler: Sampler {
    public let diffusion: GaussianDiffusion
    public let timesteps: [Int]
    public let variance: ReverseVariance
    /// Clamp x̂_0 to [−r, r] before each step (images live in [−1, 1]).
    public let clipSample: Double?

    public init(diffusion: GaussianDiffusion, steps: Int? = nil, spacing: TimestepSpacing = .leading,
                variance: ReverseVariance = .fixedSmall, clipSample: Double? = 1) {
        self.diffusion = diffusion
        let T = diffusion.schedule.timesteps
        timesteps = spacing.timesteps(steps: steps ?? T, trainingSteps: T)
        self.variance = variance
        self.clipSample = clipSample
    }

    public var evaluations: Int { timesteps.count }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let s = diffusion.schedule
        var x = noise
        for (i, t) in timesteps.enumerated() {
            withoutGradients {
                let previous = i + 1 < timesteps.count ? timesteps[i + 1] : -1
                let barT = s.alphaBar[t], barPrev = previous >= 0 ? s.alphaBar[previous] : 1
                let beta = 1 - barT / barPrev
                var x0 = diffusion.estimates(output: model(x, t), xt: x, t: [Int](repeating: t, count: x.shape[0])).x0
                if let r = clipSample { x0 = clamp(x0, min: Float(-r), max: Float(r)) }
                // μ̃ = (√ᾱ_{t'}·β/(1 − ᾱ_t))·x̂_0 + (√(1 − β)·(1 − ᾱ_{t'})/(1 − ᾱ_t))·x_t, with β = 1 − ᾱ_t/ᾱ_{t'}
                let c0 = barPrev.squareRoot() * beta / (1 - barT), ct = (1 - beta).squareRoot() * (1 - barPrev) / (1 - barT)
                x = x0 * Float(c0) + x * Float(ct)
                if previous >= 0 {
                    let v = variance == .fixedSmall ? max((1 - barPrev) / (1 - barT) * beta, 1e-20) : beta
                    x = x + stepNoise(t) * Float(v.squareRoot())
                }
            }
            observe?(t, x)
        }
        return x
    }
}

/// DDIM (Song et al. 2021): x_{t'} = √ᾱ_{t'}·x̂_0 + √(1 − ᾱ_{t'} − σ²)·ε̂ + σ·z with
/// σ = η·√((1 − ᾱ_{t'})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t'}). With η = 0 it is deterministic; η = 1 matches DDPM.
public struct DDIMSampler: Sampler {
    public let diffusion: GaussianDiffusion
    public let timesteps: [Int]
    public let eta: Double
    public let clipSample: Double?
    /// ᾱ after the last step: 1 (`setAlphaToOne`, diffusers' default) or ᾱ_0.
    public let finalAlphaBar: Double
    public let useClippedModelOutput: Bool

    public init(diffusion: GaussianDiffusion, steps: Int = 50, eta: Double = 0, spacing: TimestepSpacing = .leading,
                offset: Int = 0, clipSample: Double? = 1, setAlphaToOne: Bool = true, useClippedModelOutput: Bool = false) {
        self.useClippedModelOutput = useClippedModelOutput
        self.diffusion = diffusion
        timesteps = spacing.timesteps(steps: steps, trainingSteps: diffusion.schedule.timesteps, offset: offset)
        self.eta = eta
        self.clipSample = clipSample
        finalAlphaBar = setAlphaToOne ? 1 : diffusion.schedule.alphaBar[0]
    }

    public var evaluations: Int { timesteps.count }

    /// One DDIM step from x_t at `t` to the timestep `previous` (−1 for the end), given the network output.
    /// With η = 0 and no clipping the step is invertible: for ε-prediction, the same call with `t` and `previous`
    /// swapped and the same ε̂ maps x_{t'} back to x_t (DDIM inversion).
    public func step(_ x: Tensor, output: Tensor, t: Int, previous: Int, noise: Tensor?) -> Tensor {
        let s = diffusion.schedule
        let barT = s.alphaBar[t], barPrev = previous >= 0 ? s.alphaBar[previous] : finalAlphaBar
        var (x0, eps) = diffusion.estimates(output: output, xt: x, t: [Int](repeating: t, count: x.shape[0]))
        if let r = clipSample {
            x0 = clamp(x0, min: Float(-r), max: Float(r))
            // diffusers' `use_clipped_model_output`: ε̂ made consistent with the clipped x̂_0.
            if useClippedModelOutput { eps = (x - x0 * Float(barT.squareRoot())) / Float((1 - barT).squareRoot()) }
        }
        // (η = 0 skips the root, which is of a negative number when the step goes to a noisier timestep.)
        let sigma = eta == 0 ? 0 : eta * ((1 - barPrev) / (1 - barT)).squareRoot() * (1 - barT / barPrev).squareRoot()
        var next = x0 * Float(barPrev.squareRoot()) + eps * Float(max(0, 1 - barPrev - sigma * sigma).squareRoot())
        if sigma > 0, let noise { next = next + noise * Float(sigma) }
        return next
    }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        var x = noise
        for (i, t) in timesteps.enumerated() {
            let previous = i + 1 < timesteps.count ? timesteps[i + 1] : -1
            x = withoutGradients {
                step(x, output: model(x, t), t: t, previous: previous, noise: eta > 0 ? stepNoise(t) : nil)
            }
            observe?(t, x)
        }
        return x
    }
}
