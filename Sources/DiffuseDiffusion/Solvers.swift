import DiffuseEngine
import Foundation

// The solvers of the reverse process. Each is a function of (denoiser, x_T, schedule) over the state x_t = a·x₀ + s·ε
// with (a, s) = D.process.scales(σ); where a method is written in x = x_t/a (Karras et al.'s σ parametrisation) it
// reads that x as x̂₀ + σ·ε̂, so that nothing divides by a.

/// A numerical method for the reverse process: from x_t at σ_0 to x_t at the schedule's final σ.
public protocol Solver: Sendable {
    /// The network evaluations of a chain of `steps` steps.
    func evaluations(steps: Int) -> Int
    /// Runs the chain. A stochastic step i adds z = `noise(i)`; `done(i, x)` sees x_t after step i.
    func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
               done: (Int, Tensor) -> Void) -> Tensor
}

extension Solver {
    public func evaluations(steps: Int) -> Int { steps }
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
}

/// DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2) as DDPMScheduler, over all T steps or a subset, with
/// ᾱ = a² and ᾱ' = a'² at the next visited timestep (β = 1 − ᾱ/ᾱ'):
///   x_{t'} = (√ᾱ'·β/(1 − ᾱ))·x̂₀ + (√(1 − β)·(1 − ᾱ')/(1 − ᾱ))·x_t + σ_t·z,
/// the posterior mean plus noise but on the step to σ = 0, σ_t² as `variance` says (diffusers adds noise wherever
/// t > 0: the same, but for a steps_offset that ends at t = 1). Variance-preserving models only.
public struct DDPM: Solver {
    public var variance: ReverseVariance

    public init(variance: ReverseVariance = .fixedSmall) { self.variance = variance }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        for i in 0..<schedule.steps {
            let e = D(x, sigma: schedule.sigmas[i], t: schedule.timesteps[i])
            let a = D.process.scales(schedule.sigmas[i]).signal, next = D.process.scales(schedule.sigmas[i + 1]).signal
            let (bar, barPrevious) = (a * a, next * next)
            let beta = 1 - bar / barPrevious
            let c0 = next * beta / (1 - bar), ct = (1 - beta).squareRoot() * (1 - barPrevious) / (1 - bar)
            x = e.x0 * Float(c0) + x * Float(ct)
            if schedule.sigmas[i + 1] > 0 {
                let small = max((1 - barPrevious) / (1 - bar) * beta, 1e-20)  // β̃, kept above 0 as diffusers does
                let z = noise(i)
                switch (variance, e.variance) {
                case (.learned, let v?): x = x + z * sqrt(v)
                case (.learnedRange, let v?):
                    // log σ² = f·log β + (1 − f)·log β̃, f = (v + 1)/2
                    let f = (v + 1) * 0.5
                    x = x + z * exp((f * Float(Foundation.log(beta)) + (-f + 1) * Float(Foundation.log(small))) * 0.5)
                case (.fixedLarge, _): x = x + z * Float(beta.squareRoot())
                default: x = x + z * Float(small.squareRoot())  // β̃ (also for a "learned" network without the channels)
                }
            }
            done(i, x)
        }
        return x
    }
}

/// DDIM (Song et al. 2021) as DDIMScheduler: x' = a'·x̂₀ + √(s'² − σ_η²)·ε̂ + σ_η·z with
/// σ_η = η·(s'/s)·√(1 − a²/a'²). With η = 0 it is deterministic (Euler's method); η = 1 is DDPM's step. ε̂ is the
/// network's (from the unclipped x̂₀), as in diffusers. The step goes to the next visited σ: diffusers goes to the
/// timestep t − ⌊T/n⌋, the same for leading spacing and for trailing spacing when n divides T.
public struct DDIM: Solver {
    public var eta: Double

    public init(eta: Double = 0) { self.eta = eta }

    /// One step from σ to σ', given the estimates at σ. With η = 0 and nothing clipped it is invertible: the step
    /// back from σ' to σ with the same ε̂ returns x_t (DDIM inversion).
    public func step(_ e: Estimate, process: NoiseProcess, from sigma: Double, to next: Double, noise z: Tensor?) -> Tensor {
        let (a, s) = process.scales(sigma), (a1, s1) = process.scales(next)
        // (η = 0 skips the root, which is of a negative number when the step goes to a noisier σ.)
        let deviation = eta == 0 ? 0 : eta * s1 / s * (1 - a * a / (a1 * a1)).squareRoot()
        var x = e.x0 * Float(a1) + e.networkNoise * Float(max(0, s1 * s1 - deviation * deviation).squareRoot())
        if deviation > 0, let z { x = x + z * Float(deviation) }
        return x
    }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        for i in 0..<schedule.steps {
            let e = D(x, sigma: schedule.sigmas[i], t: schedule.timesteps[i])
            x = step(e, process: D.process, from: schedule.sigmas[i], to: schedule.sigmas[i + 1], noise: eta > 0 ? noise(i) : nil)
            done(i, x)
        }
        return x
    }
}

/// Euler's method on the probability-flow ODE dx/dσ = ε̂ in x = x_t/a (Karras et al. 2022), as EulerDiscreteScheduler:
/// x' = x̂₀ + σ'·ε̂, i.e. x_t' = a'·x̂₀ + s'·ε̂, which for rectified flow is FlowMatchEulerDiscreteScheduler's
/// x_t + (t' − t)·v̂. With `ancestral` (EulerAncestralDiscreteScheduler) each step goes down to σ_down and adds
/// σ_up·z: σ_up² = σ'²(σ² − σ'²)/σ², σ_down² = σ'² − σ_up².
public struct Euler: Solver {
    public var ancestral: Bool

    public init(ancestral: Bool = false) { self.ancestral = ancestral }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        for i in 0..<schedule.steps {
            let e = D(x, sigma: schedule.sigmas[i], t: schedule.timesteps[i])
            let (a1, s1) = D.process.scales(schedule.sigmas[i + 1])
            if ancestral {
                let (from, to) = (Float(schedule.sigmas[i]), Float(schedule.sigmas[i + 1]))
                let up = (to * to * (from * from - to * to) / (from * from)).squareRoot()
                let down = (to * to - up * up).squareRoot()
                x = (e.x0 + e.noise * down + noise(i) * up) * Float(a1)
            } else {
                x = e.x0 * Float(a1) + e.noise * Float(s1)
            }
            done(i, x)
        }
        return x
    }
}

/// Heun's method (Karras et al. 2022, Algorithm 1 without churn) in the process' ODE frame (`NoiseProcess.odeState`),
/// as HeunDiscreteScheduler and FlowMatchHeunDiscreteScheduler: an Euler step to σ', a second slope there, and the
/// step redone with the mean, y' = y + (τ' − τ)·(k + k')/2 (for diffusion y = x_t/a, τ = σ, k = ε̂); the step to
/// σ = 0 is Euler's alone. 2n − 1 evaluations.
public struct Heun: Solver {
    public init() {}

    public func evaluations(steps n: Int) -> Int { 2 * n - 1 }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        for i in 0..<schedule.steps {
            let (sigma, next) = (schedule.sigmas[i], schedule.sigmas[i + 1])
            let (y, slope) = D.process.odeState(D(x, sigma: sigma, t: schedule.timesteps[i]), sigma: sigma)
            let (dt, c) = (D.process.odeTime(next) - D.process.odeTime(sigma), Float(D.process.odeScale(next)))
            let euler = (y + slope * Float(dt)) * c
            if next > 0 {
                let second = D.process.odeState(D(euler, sigma: next, t: schedule.timesteps[i + 1]), sigma: next).slope
                x = (y + (slope + second) * Float(dt / 2)) * c
            } else {
                x = euler
            }
            done(i, x)
        }
        return x
    }
}

/// The Adams–Bashforth combination of equally spaced slopes (oldest first, newest last; up to four):
/// 1: d₀; 2: (3d₀ − d₁)/2; 3: (23d₀ − 16d₁ + 5d₂)/12; 4: (55d₀ − 59d₁ + 37d₂ − 9d₃)/24, d₀ the newest.
func adamsBashforth(_ slopes: ArraySlice<Tensor>) -> Tensor {
    let d = Array(slopes.reversed())
    switch d.count {
    case 1: return d[0]
    case 2: return (d[0] * 3 - d[1]) / 2
    case 3: return (d[0] * 23 - d[1] * 16 + d[2] * 5) / 12
    default: return (d[0] * 55 - d[1] * 59 + d[2] * 37 - d[3] * 9) / 24
    }
}

/// PNDM's pseudo linear multistep method (Liu et al. 2022), as PNDMScheduler: DDIM's transfer x' = x + (σ' − σ)·ε̃ in
/// x = x_t/a, with ε̃ the noise implied at x_t by the Adams–Bashforth combination of the network's outputs so far (up
/// to four; for ε-prediction, of the ε̂). It starts with Heun's step (skip_prk_steps: a second output at the end of
/// the first step, and the step redone with the mean of the two; n + 1 evaluations), or with three steps of the
/// classical Runge–Kutta method through the half-way timesteps t − ⌊⌊T/n⌋/2⌋ (outputs e₁ at x, e₂ at the midpoint
/// along e₁, e₃ there along e₂, e₄ at the end along e₃; the step along (e₁ + 2e₂ + 2e₃ + e₄)/6; n + 9 evaluations).
/// (diffusers steps to t − ⌊T/n⌋, the next visited timestep for leading spacing.)
public struct PLMS: Solver {
    /// ᾱ_t of the model, for the Runge–Kutta start (PNDMScheduler's default, skip_prk_steps false); nil: Heun's.
    public var rungeKutta: [Double]?

    public init(rungeKutta: [Double]? = nil) { self.rungeKutta = rungeKutta }

    public func evaluations(steps n: Int) -> Int { rungeKutta != nil ? n + 9 : n == 1 ? 1 : n + 1 }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        /// x_t at σ' from x_t at σ along what `output` implies there: a'·x̂₀ + s'·ε̂ (= a'·(x_t/a + (σ' − σ)·ε̂)), with
        /// x̂₀ clipped as configured and ε̂ = (x_t − a·x̂₀)/s from the clipped x̂₀ (PNDMScheduler itself never clips).
        func transfer(_ x: Tensor, _ sigma: Double, _ next: Double, _ output: Tensor) -> Tensor {
            let (a, s) = D.process.scales(sigma), (a1, s1) = D.process.scales(next)
            var (x0, noise) = D.prediction.estimates(output: output, xt: x, signal: perSample([a], rank: x.rank),
                                                     noise: perSample([s], rank: x.rank))
            if let clipping = D.clipping {
                x0 = clipping.apply(x0)
                noise = (x - x0 * Float(a)) / Float(s)
            }
            return x0 * Float(a1) + noise * Float(s1)
        }
        var x = x
        var outputs: [Tensor] = []
        for i in 0..<schedule.steps {
            let (sigma, next) = (schedule.sigmas[i], schedule.sigmas[i + 1])
            let e = D(x, sigma: sigma, t: schedule.timesteps[i])
            outputs.append(e.output)
            if let alphaBar = rungeKutta, i < 3 {
                let t = schedule.timesteps[i] - Double(alphaBar.count / schedule.steps / 2)
                let middle = ((1 - alphaBar[Int(t)]) / alphaBar[Int(t)]).squareRoot()
                let e2 = D(transfer(x, sigma, middle, e.output), sigma: middle, t: t).output
                let e3 = D(transfer(x, sigma, middle, e2), sigma: middle, t: t).output
                let e4 = D(transfer(x, sigma, next, e3), sigma: next, t: schedule.timesteps[i + 1]).output
                x = transfer(x, sigma, next, (e.output + e2 * 2 + e3 * 2 + e4) / 6)
            } else if i == 0 && schedule.steps > 1 {
                let second = D(transfer(x, sigma, next, e.output), sigma: next, t: schedule.timesteps[1])
                x = transfer(x, sigma, next, (e.output + second.output) / 2)
            } else {
                x = transfer(x, sigma, next, adamsBashforth(outputs.suffix(4)))
            }
            done(i, x)
        }
        return x
    }
}

/// iPNDM (Zhang & Chen 2023), as k-diffusion's `sample_ipndm` (after zju-pi/diff-sampler): Adams–Bashforth with
/// fixed coefficients on the process' ODE (`NoiseProcess.odeState`; for diffusion dx/dσ = ε̂ in x = x_t/a), of order
/// min(i + 1, `order`), from Euler's at the first step; a step to σ = 0 gives x̂₀.
public struct IPNDM: Solver {
    public var order: Int

    public init(order: Int = 4) { self.order = order }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        var slopes: [Tensor] = []
        for i in 0..<schedule.steps {
            let (sigma, next) = (schedule.sigmas[i], schedule.sigmas[i + 1])
            let e = D(x, sigma: sigma, t: schedule.timesteps[i])
            let (y, slope) = D.process.odeState(e, sigma: sigma)
            slopes.append(slope)
            if next == 0 {
                x = e.x0
            } else {
                let dt = D.process.odeTime(next) - D.process.odeTime(sigma)
                x = (y + adamsBashforth(slopes.suffix(order)) * Float(dt)) * Float(D.process.odeScale(next))
            }
            done(i, x)
        }
        return x
    }
}

/// The order of step i of n of a multistep solver of order `order` that has seen min(i, order) earlier estimates,
/// as diffusers' DPMSolverMultistepScheduler and DEISMultistepScheduler choose it: lower at the last step (always,
/// with `firstOrderLast`) and the one before when `lowerOrderFinal` and n < 15.
func multistepOrder(_ order: Int, step i: Int, of n: Int, lowerOrderFinal: Bool, firstOrderLast: Bool) -> Int {
    let few = lowerOrderFinal && n < 15
    if order == 1 || i == 0 || (i == n - 1 && (few || firstOrderLast)) { return 1 }
    if order == 2 || i < 2 || (i == n - 2 && few) { return 2 }
    return 3
}

/// λ = log(a/s), the half log-SNR.
func halfLogSNR(_ process: NoiseProcess, _ sigma: Double) -> Double {
    let (a, s) = process.scales(sigma)
    return Foundation.log(a) - Foundation.log(s)
}

/// DPM-Solver++ (Lu et al. 2022) of order 1 to 3 and its SDE variant, as DPMSolverMultistepScheduler: with
/// h = λ' − λ, D₀ = x̂₀ and the divided differences D₁, D₂ of the last x̂₀ (r_k = h_{i−k}/h),
///   x' = (s'/s)·x_t − a'(e^{−h} − 1)·D₀ + a'((e^{−h} − 1)/h + 1)·D₁ − a'((e^{−h} − 1 + h)/h² − ½)·D₂,
/// the second order with the midpoint rule −½a'(e^{−h} − 1)·D₁ unless `heun`; the SDE form
///   x' = (s'/s)e^{−h}·x_t + a'(1 − e^{−2h})·D₀ + a'((1 − e^{−2h})/(−2h) + 1)·D₁ + a'((1 − e^{−2h} − 2h)/(2h)² + ½)·D₂
///        + s'√(1 − e^{−2h})·z   (midpoint: ½a'(1 − e^{−2h})·D₁).
/// First order at the start, and at the end with few steps, `eulerAtFinal`, or a final σ of 0. The SDE's D₂
/// coefficient is k-diffusion's (sample_dpmpp_3m_sde, φ₃ = φ₂/2h − ½ with the sign that makes it O(h)); diffusers
/// 0.42 writes − ½, which tends to −a' as h → 0: its 3M SDE converges slowly and on a flow model diverges.
public struct DPMSolver: Solver {
    public var order: Int
    public var stochastic: Bool
    public var heun: Bool
    public var lowerOrderFinal: Bool
    public var eulerAtFinal: Bool

    public init(order: Int = 2, stochastic: Bool = false, heun: Bool = false, lowerOrderFinal: Bool = true, eulerAtFinal: Bool = false) {
        (self.order, self.stochastic, self.heun, self.lowerOrderFinal, self.eulerAtFinal) = (order, stochastic, heun, lowerOrderFinal, eulerAtFinal)
    }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        var history: [(x0: Tensor, lambda: Double)] = []  // oldest first
        let n = schedule.steps
        for i in 0..<n {
            let (sigma, next) = (schedule.sigmas[i], schedule.sigmas[i + 1])
            let (_, s0) = D.process.scales(sigma), (a1, s1) = D.process.scales(next)
            let (l0, l1) = (halfLogSNR(D.process, sigma), halfLogSNR(D.process, next))
            let h = l1 - l0
            let x0 = D(x, sigma: sigma, t: schedule.timesteps[i]).x0
            let k = multistepOrder(order, step: i, of: n, lowerOrderFinal: lowerOrderFinal,
                                   firstOrderLast: eulerAtFinal || next == 0)
            var d1: Tensor?, d2: Tensor?
            if k >= 2 {
                let (m1, l1Previous) = history[history.count - 1]
                let r0 = (l0 - l1Previous) / h
                let d10 = (x0 - m1) / Float(r0)
                if k == 3 {
                    let (m2, l2Previous) = history[history.count - 2]
                    let r1 = (l1Previous - l2Previous) / h
                    let d11 = (m1 - m2) / Float(r1)
                    d1 = d10 + (d10 - d11) * Float(r0 / (r0 + r1))
                    d2 = (d10 - d11) / Float(r0 + r1)
                } else {
                    d1 = d10
                }
            }
            if stochastic {
                let e2 = 1 - Foundation.exp(-2 * h)  // 1 − e^{−2h}
                x = x * Float(s1 / s0 * Foundation.exp(-h)) + x0 * Float(a1 * e2) + noise(i) * Float(s1 * e2.squareRoot())
                if let d1 { x = x + d1 * Float(k == 2 && !heun ? 0.5 * a1 * e2 : a1 * (e2 / (-2 * h) + 1)) }
                if let d2 { x = x + d2 * Float(a1 * ((e2 - 2 * h) / (4 * h * h) + 0.5)) }
            } else {
                let e = Foundation.expm1(-h)  // e^{−h} − 1
                x = x * Float(s1 / s0) - x0 * Float(a1 * e)
                if let d1 { x = x + d1 * Float(k == 2 && !heun ? -0.5 * a1 * e : a1 * (e / h + 1)) }
                if let d2 { x = x - d2 * Float(a1 * ((e + h) / (h * h) - 0.5)) }
            }
            history.append((x0, l0))
            if history.count > 2 { history.removeFirst() }
            done(i, x)
        }
        return x
    }
}

/// DEIS (Zhang & Chen 2023) in its log-ρ form, as DEISMultistepScheduler: in x = x_t/a, with ε̂ from x̂₀,
///   x' = x + Σ_j c_j·ε̂_j,  c_j = ∫_σ^{σ'} ℓ_j(log ρ) dρ,
/// ℓ_j the Lagrange basis polynomials in log σ through the last k noise levels (k = 1: Euler, c = σ' − σ).
public struct DEIS: Solver {
    public var order: Int
    public var lowerOrderFinal: Bool

    public init(order: Int = 2, lowerOrderFinal: Bool = true) { (self.order, self.lowerOrderFinal) = (order, lowerOrderFinal) }

    /// ∫ ℓ(log ρ) dρ up to ρ = t for the basis polynomial of node b against c: t·(log t − log c − 1)/(log b − log c).
    static func integral(_ t: Double, _ b: Double, _ c: Double) -> Double {
        t * (-Foundation.log(c) + Foundation.log(t) - 1) / (Foundation.log(b) - Foundation.log(c))
    }

    /// The same for the node b of three, against c and d.
    static func integral(_ t: Double, _ b: Double, _ c: Double, _ d: Double) -> Double {
        let (lt, lc, ld) = (Foundation.log(t), Foundation.log(c), Foundation.log(d))
        let numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt * lt - 2 * lt + 2)
        return numerator / ((Foundation.log(b) - lc) * (Foundation.log(b) - ld))
    }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        var history: [(noise: Tensor, sigma: Double)] = []  // oldest first
        let n = schedule.steps
        for i in 0..<n {
            let (sigma, next) = (schedule.sigmas[i], schedule.sigmas[i + 1])
            let e = D(x, sigma: sigma, t: schedule.timesteps[i])
            let k = multistepOrder(order, step: i, of: n, lowerOrderFinal: lowerOrderFinal, firstOrderLast: false)
            var y = e.x0 + e.noise * Float(sigma)  // x_t/a
            switch k {
            case 1: y = y + e.noise * Float(next - sigma)
            case 2:
                let s1 = history[history.count - 1].sigma
                let c0 = Self.integral(next, sigma, s1) - Self.integral(sigma, sigma, s1)
                let c1 = Self.integral(next, s1, sigma) - Self.integral(sigma, s1, sigma)
                y = y + e.noise * Float(c0) + history[history.count - 1].noise * Float(c1)
            default:
                let (s1, s2) = (history[history.count - 1].sigma, history[history.count - 2].sigma)
                let c0 = Self.integral(next, sigma, s1, s2) - Self.integral(sigma, sigma, s1, s2)
                let c1 = Self.integral(next, s1, s2, sigma) - Self.integral(sigma, s1, s2, sigma)
                let c2 = Self.integral(next, s2, sigma, s1) - Self.integral(sigma, s2, sigma, s1)
                y = y + e.noise * Float(c0) + history[history.count - 1].noise * Float(c1) + history[history.count - 2].noise * Float(c2)
            }
            x = y * Float(D.process.scales(next).signal)
            history.append((e.noise, sigma))
            if history.count > 2 { history.removeFirst() }
            done(i, x)
        }
        return x
    }
}

/// UniPC (Zhao et al. 2023) with x̂₀ prediction, as UniPCMultistepScheduler: the predictor UniP of order k,
///   x' = (s'/s)·x_t − a'(e^{−h} − 1)·m₀ − a'·B(h)·Σ_j ρ_j·D_j,   D_j = (m_j − m₀)/r_j,  r_j = (λ_j − λ)/h,
/// and, once the network has seen x', the corrector UniC, which redoes the step with the new x̂₀ as one more
/// point; B(h) = −h (bh1) or e^{−h} − 1 (bh2); ρ solves R·ρ = b with R_{pj} = r_j^{p−1} and b_p = p!·φ_{p+1}(−h)/B(h)
/// (hφ₁(−h) = e^{−h} − 1, φ_{p+1} = (φ_p − 1/p!)/(−h)). Predictor and corrector of order 1 and 2 take ρ = ½.
public struct UniPC: Solver {
    public enum Variant: String, Sendable { case bh1, bh2 }
    public var order: Int
    public var variant: Variant
    public var lowerOrderFinal: Bool
    /// Steps after which the corrector is skipped (diffusers' disable_corrector).
    public var disableCorrector: Set<Int>

    public init(order: Int = 2, variant: Variant = .bh2, lowerOrderFinal: Bool = true, disableCorrector: Set<Int> = []) {
        (self.order, self.variant, self.lowerOrderFinal, self.disableCorrector) = (order, variant, lowerOrderFinal, disableCorrector)
    }

    /// One update of order k from x at σ to σ' with the x̂₀ history `models` (oldest first, the newest at σ); with
    /// `corrected`, the corrector's, whose extra point is the x̂₀ at σ'.
    func update(_ x: Tensor, process: NoiseProcess, from sigma: Double, to next: Double, models: [(x0: Tensor, sigma: Double)],
                order k: Int, corrected: Tensor?) -> Tensor {
        let (_, s0) = process.scales(sigma), (a1, s1) = process.scales(next)
        let lambda = halfLogSNR(process, sigma)
        let h = halfLogSNR(process, next) - lambda
        let m0 = models[models.count - 1].x0
        let previous = (1..<max(k, 1)).map { models[models.count - 1 - $0] }
        let r = previous.map { (halfLogSNR(process, $0.sigma) - lambda) / h } + [1]
        let differences = zip(previous, r).map { ($0.x0 - m0) / Float($1) }
        let hh = -h
        let hPhi1 = Foundation.expm1(hh)
        let B = variant == .bh1 ? hh : hPhi1
        var (R, b) = ([[Double]](), [Double]())
        var (hPhiK, factorial) = (hPhi1 / hh - 1, 1.0)
        for p in 1...k {
            R.append(r.map { Foundation.pow($0, Double(p - 1)) })
            b.append(hPhiK * factorial / B)
            factorial *= Double(p + 1)
            hPhiK = hPhiK / hh - 1 / factorial
        }
        var y = x * Float(s1 / s0) - m0 * Float(a1 * hPhi1)
        if let corrected {
            let rho = k == 1 ? [0.5] : solveLinear(R, b)
            var correction = (corrected - m0) * Float(rho[k - 1])
            for (j, d) in differences.enumerated() { correction = correction + d * Float(rho[j]) }
            y = y - correction * Float(a1 * B)
        } else if k >= 2 {
            let rho = k == 2 ? [0.5] : solveLinear(R.dropLast().map { Array($0.dropLast()) }, Array(b.dropLast()))
            var prediction = differences[0] * Float(rho[0])
            for (j, d) in differences.enumerated().dropFirst() { prediction = prediction + d * Float(rho[j]) }
            y = y - prediction * Float(a1 * B)
        }
        return y
    }

    public func solve(_ D: Denoiser, _ x: Tensor, _ schedule: SolverSchedule, noise: (Int) -> Tensor,
                      done: (Int, Tensor) -> Void) -> Tensor {
        var x = x
        var models: [(x0: Tensor, sigma: Double)] = []  // oldest first
        var last: (x: Tensor, order: Int)?
        let n = schedule.steps
        for i in 0..<n {
            let sigma = schedule.sigmas[i]
            let m = D(x, sigma: sigma, t: schedule.timesteps[i]).x0
            if let last, !disableCorrector.contains(i - 1) {
                x = update(last.x, process: D.process, from: schedule.sigmas[i - 1], to: sigma, models: models, order: last.order,
                           corrected: m)
            }
            models.append((m, sigma))
            if models.count > order { models.removeFirst() }
            let k = min(lowerOrderFinal ? min(order, n - i) : order, models.count)
            last = (x, k)
            x = update(x, process: D.process, from: sigma, to: schedule.sigmas[i + 1], models: models, order: k, corrected: nil)
            done(i, x)
        }
        return x
    }
}

/// The solution of the small linear system A·x = b, by Gaussian elimination with partial pivoting.
func solveLinear(_ A: [[Double]], _ b: [Double]) -> [Double] {
    var (A, b) = (A, b)
    let n = b.count
    for column in 0..<n {
        let pivot = (column..<n).max { Swift.abs(A[$0][column]) < Swift.abs(A[$1][column]) }!
        A.swapAt(column, pivot)
        b.swapAt(column, pivot)
        for row in (column + 1)..<n {
            let f = A[row][column] / A[column][column]
            for j in column..<n { A[row][j] -= f * A[column][j] }
            b[row] -= f * b[column]
        }
    }
    var x = [Double](repeating: 0, count: n)
    for row in (0..<n).reversed() {
        x[row] = (b[row] - ((row + 1)..<n).reduce(0) { $0 + A[row][$1] * x[$1] }) / A[row][row]
    }
    return x
}
