import DiffuseEngine
import Foundation

/// The network as a sampler calls it: its output (ε̂, x̂₀ or v̂, as its prediction type says) for a batch x_t at
/// timestep t (fractional for some schedules). Conditioning and guidance live in the closure; a solver never knows
/// which network it calls.
public typealias Network = (_ xt: Tensor, _ t: Double) -> Tensor

/// How x_t mixes signal and noise at a noise level σ (the noise-to-signal ratio): x_t = a·x₀ + s·ε with σ = s/a.
public enum NoiseProcess: String, Codable, Sendable {
    /// The variance-preserving process of DDPM: a = 1/√(σ² + 1), s = σ·a (a² + s² = 1).
    case variancePreserving
    /// Rectified flow (Liu et al. 2023; Lipman et al. 2023): x_t = (1 − t)·x₀ + t·ε, so a = 1/(1 + σ), s = σ·a = t
    /// (a + s = 1); σ = ∞ is pure noise (t = 1).
    case rectifiedFlow

    /// a and s at σ.
    public func scales(_ sigma: Double) -> (signal: Double, noise: Double) {
        switch self {
        case .variancePreserving:
            let a = 1 / (sigma * sigma + 1).squareRoot()
            return (a, sigma.isInfinite ? 1 : sigma * a)
        case .rectifiedFlow:
            return sigma.isInfinite ? (0, 1) : (1 / (1 + sigma), sigma / (1 + sigma))
        }
    }

    // The frame in which the step-by-step solvers (Heun, iPNDM) integrate the probability-flow ODE: a time τ(σ) and
    // the state y = x_t/c(σ), in which dy/dτ = (d(a/c)/dτ)·x̂₀ + (d(s/c)/dτ)·ε̂ with constant coefficients: Karras et
    // al.'s for the variance-preserving process (τ = σ, c = a: y = x̂₀ + σ·ε̂, dy/dσ = ε̂), the flow's own for
    // rectified flow (τ = t, c = 1: y = (1 − t)·x̂₀ + t·ε̂, dy/dt = ε̂ − x̂₀, the velocity).

    /// τ(σ).
    public func odeTime(_ sigma: Double) -> Double { self == .variancePreserving ? sigma : scales(sigma).noise }

    /// c(σ), by which y is multiplied back into x_t.
    public func odeScale(_ sigma: Double) -> Double { self == .variancePreserving ? scales(sigma).signal : 1 }

    /// y and dy/dτ at x_t of noise level σ, from its estimates (so that nothing divides by a).
    public func odeState(_ e: Estimate, sigma: Double) -> (y: Tensor, slope: Tensor) {
        switch self {
        case .variancePreserving: return (e.x0 + e.noise * Float(sigma), e.noise)
        case .rectifiedFlow:
            let (a, s) = scales(sigma)
            return (e.x0 * Float(a) + e.noise * Float(s), e.noise - e.x0)
        }
    }
}

/// What the denoiser says at one point x_t of a chain.
public struct Estimate {
    /// x̂₀, clipped or thresholded as configured.
    public var x0: Tensor
    /// ε̂ = (x_t − a·x̂₀)/s, consistent with the (clipped) x̂₀: x_t = a·x̂₀ + s·ε̂.
    public var noise: Tensor
    /// ε̂ as the network implies it, from the unclipped x̂₀ (DDIM's ε̂; the same tensor when nothing is clipped).
    public var networkNoise: Tensor
    /// The network's output (without variance channels): ε̂, x̂₀, v̂ as its prediction type says.
    public var output: Tensor
    /// The network's variance channels (learned-variance DDPM models), else nil.
    public var variance: Tensor?
}

/// The denoiser D(x; σ) of Karras et al. (2022): any ε-, x₀-, v- or flow-predicting network turned, once, into
/// estimates of x₀ and ε at x_t = a·x₀ + s·ε (`Prediction.estimates`), with x̂₀ clipped as configured. Every solver
/// asks it and nothing else.
public struct Denoiser {
    public var network: Network
    public var prediction: Prediction
    public var clipping: SampleClipping?
    public var process: NoiseProcess

    public init(network: @escaping Network, prediction: Prediction, clipping: SampleClipping? = nil,
                process: NoiseProcess = .variancePreserving) {
        (self.network, self.prediction, self.clipping, self.process) = (network, prediction, clipping, process)
    }

    /// The estimates at x_t of noise level σ, the network called at its timestep t. A network that outputs twice
    /// the channels of x_t (learned variance) has its second half returned as `variance`. A watcher in scope
    /// (`EstimateWatch`) sees each one.
    public func callAsFunction(_ xt: Tensor, sigma: Double, t: Double) -> Estimate {
        guard let watch = EstimateWatch.current else { return estimate(xt, sigma: sigma, t: t) }
        if StopRequest.isRequested, let latest = watch.latest, latest.x0.shape == xt.shape { return latest }
        let e = estimate(xt, sigma: sigma, t: t)
        watch.latest = e
        return e
    }

    private func estimate(_ xt: Tensor, sigma: Double, t: Double) -> Estimate {
        var output = network(xt, t), variance: Tensor?
        let c = xt.shape[1]
        if output.shape[1] == 2 * c {
            variance = output.slice(axis: 1, c..<(2 * c))
            output = output.slice(axis: 1, 0..<c)
        }
        let (a, s) = process.scales(sigma)
        let (x0, noise) = prediction.estimates(output: output, xt: xt, signal: perSample([a], rank: xt.rank),
                                               noise: perSample([s], rank: xt.rank))
        guard let clipping else { return Estimate(x0: x0, noise: noise, networkNoise: noise, output: output, variance: variance) }
        let clipped = clipping.apply(x0)
        return Estimate(x0: clipped, noise: (xt - clipped * Float(a)) / Float(s), networkNoise: noise, output: output,
                        variance: variance)
    }
}

/// Someone watching a sampler from outside (a server showing x̂₀ as it forms): the denoiser in scope
/// (`EstimateWatch.$current.withValue(watch) { … }`) leaves its latest estimate here. Once the work in scope is asked
/// to stop (`StopRequest`), the denoiser answers every further call with that estimate instead of calling the
/// network, so that any solver runs out its remaining steps in a few tensor operations and ends at (about) the last
/// x̂₀: the partial result an interrupted generation shows.
public final class EstimateWatch: @unchecked Sendable {
    /// The latest estimate (nil before the first network call). Written and read on the sampling thread.
    public var latest: Estimate?

    public init() {}

    @TaskLocal public static var current: EstimateWatch?
}

/// How x̂₀ is kept in range before a step: clamped to [−r, r], or dynamically thresholded (Imagen): clamped to
/// [−s, s] and divided by s, with s the `ratio`-quantile of |x̂₀| over each sample, held in [1, maxValue].
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
