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
