import DiffuseEngine
import Foundation

// Samplers that work in σ, the noise-to-signal ratio σ_t = √((1 − ᾱ_t)/ᾱ_t) (Karras et al. 2022): x in the
// variance-exploding parametrisation x/√ᾱ for Euler and Heun, the original one (α = 1/√(σ² + 1)) for
// DPM-Solver++. Each copies its diffusers scheduler: which timesteps, which σ, in which precision.

/// σ_t for t = 0..<T from ᾱ, in float32 as diffusers computes it.
func sigmaTable(_ alphaBar: [Double]) -> [Double] {
    alphaBar.map { a in Double(((1 - Float(a)) / Float(a)).squareRoot()) }
}

/// Karras et al.'s σ spacing: (σ_max^(1/ρ) + r·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for r = linspace(0, 1, n), ρ = 7.
func karrasSigmas(max sigmaMax: Double, min sigmaMin: Double, steps n: Int) -> [Double] {
    let rho = 7.0
    let (lo, hi) = (pow(sigmaMin, 1 / rho), pow(sigmaMax, 1 / rho))
    return (0..<n).map { i in
        let r = n == 1 ? 0 : Double(i) / Double(n - 1)
        return pow(hi + r * (lo - hi), rho)
    }
}

/// The (fractional) timestep of σ: linear interpolation of log σ over the float32 table of log σ_t, as diffusers'
/// `_sigma_to_t`.
func timestep(ofSigma sigma: Double, logSigmas: [Double]) -> Double {
    let logSigma = Foundation.log(max(sigma, 1e-10))
    // The last t with log σ_t ≤ log σ (0 when none), at most T − 2.
    var low = 0
    for (t, l) in logSigmas.enumerated() where logSigma - l >= 0 { low = t }
    low = min(low, logSigmas.count - 2)
    let (a, b) = (logSigmas[low], logSigmas[low + 1])
    let w = min(max((a - logSigma) / (a - b), 0), 1)
    return (1 - w) * Double(low) + w * Double(low + 1)
}

/// numpy's interp of σ over integer t at a (possibly fractional) timestep.
func interpolatedSigma(_ t: Double, _ table: [Double]) -> Double {
    let low = min(max(Int(t.rounded(.down)), 0), table.count - 1), high = min(low + 1, table.count - 1)
    let w = t - Double(low)
    return w == 0 ? table[low] : table[low] + (table[high] - table[low]) * w
}

/// The timesteps and σ (with the final one appended, rounded to float32) of Euler, Euler ancestral and Heun.
func eulerSchedule(_ s: Sampling, karras: Bool, finalSigma: Double) -> (timesteps: [Double], sigmas: [Double]) {
    let (T, n) = (s.trainingSteps, s.steps)
    var timesteps: [Double]
    switch s.spacing {
    case .linspace:
        timesteps = (0..<n).reversed().map { n == 1 ? 0 : Double(Float(Double($0) * Double(T - 1) / Double(n - 1))) }
    case .leading: timesteps = (0..<n).reversed().map { Double($0 * (T / n) + s.stepsOffset) }
    case .trailing: timesteps = TimestepSpacing.trailing(from: T, steps: n, trainingSteps: T).map(Double.init)
    }
    let table = sigmaTable(s.alphaBar)
    var sigmas = timesteps.map { interpolatedSigma($0, table) }
    if karras {
        let logSigmas = table.map { Double(Foundation.log(Float($0))) }
        sigmas = karrasSigmas(max: sigmas[0], min: sigmas[sigmas.count - 1], steps: n)
        timesteps = sigmas.map { Double(Float(timestep(ofSigma: $0, logSigmas: logSigmas))) }
    }
    return (timesteps, (sigmas + [finalSigma]).map { Double(Float($0)) })
}

/// x̂_0 at σ from the network, as the Euler-type schedulers call it, for x in the σ parametrisation
/// x = x_0 + σ·ε = x_t/√ᾱ_t: the network sees x_t = α·x, α = 1/√(σ² + 1) (its input scale at timestep t), and its
/// output gives x̂_0 at that x_t (Prediction.estimates with a = α, s = σ·α).
func denoised(_ model: Denoiser, _ x: Tensor, sigma: Double, t: Double, settings: Sampling) -> Tensor {
    let s = Float(sigma)
    let alpha = 1 / (s * s + 1).squareRoot()
    let xt = x * alpha
    let (output, _) = settings.splitVariance(model(xt, t), channels: x.shape[1])
    return settings.prediction.estimates(output: output, xt: xt, signal: perSample([Double(alpha)], rank: x.rank),
                                         noise: perSample([sigma * Double(alpha)], rank: x.rank)).x0
}

/// Euler's method on dx/dσ = (x − x̂_0)/σ, as EulerDiscreteScheduler; with `ancestral`, as
/// EulerAncestralDiscreteScheduler: each step goes down to σ_down and adds σ_up·z, σ_up² = σ_to²(σ_from² − σ_to²)/σ_from²,
/// σ_down² = σ_to² − σ_up². The network sees x/√(σ² + 1); the chain starts at x_T·√(σ_max² + 1) (σ_max for
/// linspace and trailing spacing).
public struct EulerSampler: Sampler {
    public let settings: Sampling
    public let timesteps: [Double]
    /// σ at each step, then the final one (0, or σ_min).
    public let sigmas: [Double]

    public init(_ settings: Sampling) {
        self.settings = settings
        let ancestral = settings.kind == .eulerAncestral
        let final = ancestral || settings.finalSigmaZero ? 0 : sigmaTable(settings.alphaBar)[0]
        (timesteps, sigmas) = eulerSchedule(settings, karras: settings.karras && !ancestral, finalSigma: final)
    }

    public var evaluations: Int { timesteps.count }

    /// √(σ_max² + 1), or σ_max with linspace or trailing spacing.
    static func initialScale(_ sigmas: [Double], spacing: TimestepSpacing) -> Float {
        let top = Float(sigmas.max()!)
        return spacing == .leading ? (top * top + 1).squareRoot() : top
    }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        var x = noise * Self.initialScale(sigmas, spacing: settings.spacing)
        for (i, t) in timesteps.enumerated() {
            x = withoutGradients {
                let (sigma, next) = (sigmas[i], sigmas[i + 1])
                let x0 = denoised(model, x, sigma: sigma, t: t, settings: settings)
                let derivative = (x - x0) / Float(sigma)
                guard settings.kind == .eulerAncestral else { return x + derivative * Float(next - sigma) }
                let (from, to) = (Float(sigma), Float(next))
                let up = (to * to * (from * from - to * to) / (from * from)).squareRoot()
                let down = (to * to - up * up).squareRoot()
                return x + derivative * (down - from) + stepNoise(i) * up
            }
            observe?(i, x)
        }
        return x
    }
}

/// Heun's method (Karras et al. 2022, Algorithm 1 without churn), as HeunDiscreteScheduler: an Euler step from σ_i
/// to σ_{i+1}, a second evaluation there, and the step redone with the mean of the two slopes; the last step, to
/// σ = 0, is Euler's alone. x̂_0 is clipped when the config clips.
public struct HeunSampler: Sampler {
    public let settings: Sampling
    public let timesteps: [Double]
    public let sigmas: [Double]

    public init(_ settings: Sampling) {
        self.settings = settings
        (timesteps, sigmas) = eulerSchedule(settings, karras: settings.karras, finalSigma: 0)
    }

    public var evaluations: Int { 2 * timesteps.count - 1 }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        var x = noise * EulerSampler.initialScale(sigmas, spacing: settings.spacing)
        /// The slope dx/dσ at x, σ (timestep t).
        func slope(_ x: Tensor, _ sigma: Double, _ t: Double) -> Tensor {
            var x0 = denoised(model, x, sigma: sigma, t: t, settings: settings)
            if case .clamp(let r)? = settings.clipping { x0 = clamp(x0, min: Float(-r), max: Float(r)) }
            return (x - x0) / Float(sigma)
        }
        for (i, t) in timesteps.enumerated() {
            x = withoutGradients {
                let (sigma, next) = (sigmas[i], sigmas[i + 1])
                let dt = Float(next - sigma)
                let first = slope(x, sigma, t)
                guard next > 0 else { return x + first * dt }
                let second = slope(x + first * dt, next, timesteps[i + 1])
                return x + (first + second) / 2 * dt
            }
            observe?(i, x)
        }
        return x
    }
}

/// DPM-Solver++(2M) (Lu et al. 2022) and its SDE variant, as DPMSolverMultistepScheduler: in λ = log(α/σ_t) with
/// α = 1/√(σ² + 1), σ_t = σ·α, h = λ_{i+1} − λ_i, first order at the first step (and the last, with few steps or a
/// final σ of 0):
///   x ← (σ_{t+1}/σ_t)·x − α_{t+1}·(e^{−h} − 1)·x̂_0                      (SDE: (σ_{t+1}/σ_t·e^{−h})·x
///                                                                        + α_{t+1}(1 − e^{−2h})·x̂_0 + σ_{t+1}√(1 − e^{−2h})·z)
/// and second order otherwise, with D₀ = x̂_0, D₁ = (x̂_0 − x̂_0')/r, r = h'/h from the previous step's h' and x̂_0'.
public struct DPMSolverSampler: Sampler {
    public let settings: Sampling
    public let timesteps: [Int]
    public let sigmas: [Double]

    public init(_ settings: Sampling) {
        self.settings = settings
        let (T, n) = (settings.trainingSteps, settings.steps)
        var steps: [Int]
        switch settings.spacing {
        case .linspace:
            steps = (0...n).reversed().map { Int((Double($0) * Double(T - 1) / Double(n)).rounded(.toNearestOrEven)) }
            steps.removeLast()
        case .leading:
            steps = (0...n).reversed().map { $0 * (T / (n + 1)) + settings.stepsOffset }
            steps.removeLast()
        case .trailing: steps = TimestepSpacing.trailing(from: T, steps: n, trainingSteps: T)
        }
        let table = sigmaTable(settings.alphaBar)
        var sigmas = steps.map { table[$0] }
        if settings.karras {
            let logSigmas = table.map { Double(Foundation.log(Float($0))) }
            sigmas = karrasSigmas(max: table[T - 1], min: table[0], steps: n)
            let exact = sigmas.map { timestep(ofSigma: $0, logSigmas: logSigmas) }
            // diffusers rounds them, except for the cosine schedule, whose timesteps it truncates.
            steps = exact.map { settings.betaSchedule == .cosine ? Int($0) : Int($0.rounded(.toNearestOrEven)) }
        }
        timesteps = steps
        self.sigmas = (sigmas + [settings.finalSigmaZero ? 0 : table[0]]).map { Double(Float($0)) }
    }

    public var evaluations: Int { timesteps.count }

    public func sample(from noise: Tensor, model: Denoiser, stepNoise: (Int) -> Tensor,
                       observe: ((Int, Tensor) -> Void)? = nil) -> Tensor {
        let sde = settings.kind == .dpmSolverSDE
        let n = timesteps.count
        /// α_t, σ_t and λ_t of a σ.
        func coefficients(_ sigma: Double) -> (alpha: Double, sigma: Double, lambda: Double) {
            let alpha = 1 / (sigma * sigma + 1).squareRoot(), s = sigma * alpha
            return (alpha, s, Foundation.log(alpha) - Foundation.log(s))
        }
        var x = noise
        var previous: (x0: Tensor, lambda: Double)?
        var lowerOrderSteps = 0
        for (i, t) in timesteps.enumerated() {
            x = withoutGradients {
                let (output, _) = settings.splitVariance(model(x, Double(t)), channels: x.shape[1])
                let (a0, s0, l0) = coefficients(sigmas[i]), (a1, s1, l1) = coefficients(sigmas[i + 1])
                var x0 = settings.prediction.estimates(output: output, xt: x, signal: perSample([a0], rank: x.rank),
                                                       noise: perSample([s0], rank: x.rank)).x0
                if case .dynamicThreshold? = settings.clipping { x0 = settings.clipping!.apply(x0) }
                let h = l1 - l0
                let lastFirstOrder = i == n - 1 && (settings.eulerAtFinal || (settings.lowerOrderFinal && n < 15)
                                                    || settings.finalSigmaZero)
                let z = sde ? stepNoise(i) : nil
                var secondOrder: Tensor?
                if settings.solverOrder == 2 && lowerOrderSteps >= 1 && !lastFirstOrder, let previous {
                    let r = (l0 - previous.lambda) / h
                    secondOrder = (x0 - previous.x0) / Float(r)
                }
                let next: Tensor
                if !sde {
                    let e = Foundation.exp(-h) - 1  // e^{−h} − 1
                    var y = x * Float(s1 / s0) - x0 * Float(a1 * e)
                    if let d1 = secondOrder {
                        y = settings.heunSolver ? y + d1 * Float(a1 * (e / h + 1)) : y - d1 * Float(0.5 * a1 * e)
                    }
                    next = y
                } else {
                    let e2 = 1 - Foundation.exp(-2 * h)  // 1 − e^{−2h}
                    var y = x * Float(s1 / s0 * Foundation.exp(-h)) + x0 * Float(a1 * e2) + z! * Float(s1 * e2.squareRoot())
                    if let d1 = secondOrder {
                        y = settings.heunSolver ? y + d1 * Float(a1 * (e2 / (-2 * h) + 1)) : y + d1 * Float(0.5 * a1 * e2)
                    }
                    next = y
                }
                previous = (x0, l0)
                lowerOrderSteps = min(lowerOrderSteps + 1, settings.solverOrder)
                return next
            }
            observe?(i, x)
        }
        return x
    }
}
