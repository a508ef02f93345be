import Foundation

/// How the noise variances β_t grow over the T steps of the forward process.
public enum BetaSchedule: String, CaseIterable, Codable, Sendable {
    /// β_t = linspace(β_start, β_end, T), the DDPM paper's schedule (1e-4 → 0.02 over T = 1000).
    case linear
    /// β_t = linspace(√β_start, √β_end, T)², Stable Diffusion's.
    case scaledLinear = "scaled_linear"
    /// ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2) with s = 0.008, β_t = min(1 − ᾱ(t+1)/ᾱ(t), 0.999) (Nichol & Dhariwal).
    case cosine = "squaredcos_cap_v2"
    /// β_t = σ(linspace(−6, 6, T))·(β_end − β_start) + β_start.
    case sigmoid
}

/// The noise schedule of a diffusion model and every coefficient derived from it, in Float64, indexed by the
/// timestep t ∈ 0..<T (t = 0 is the first noising step, the paper's t = 1).
public struct NoiseSchedule: Sendable {
    public let kind: BetaSchedule
    public let betas: [Double]
    /// α_t = 1 − β_t
    public let alphas: [Double]
    /// ᾱ_t = Π_{s ≤ t} α_s, the fraction of signal variance left after t + 1 steps.
    public let alphaBar: [Double]

    public var timesteps: Int { betas.count }

    public init(_ kind: BetaSchedule = .linear, timesteps T: Int = 1000, betaStart: Double = 1e-4, betaEnd: Double = 0.02) {
        precondition(T > 1, "a schedule needs at least 2 timesteps")
        func linspace(_ a: Double, _ b: Double) -> [Double] { (0..<T).map { a + (b - a) * Double($0) / Double(T - 1) } }
        let betas: [Double]
        switch kind {
        case .linear: betas = linspace(betaStart, betaEnd)
        case .scaledLinear: betas = linspace(betaStart.squareRoot(), betaEnd.squareRoot()).map { $0 * $0 }
        case .cosine:
            func f(_ t: Double) -> Double { let c = Foundation.cos((t + 0.008) / 1.008 * .pi / 2); return c * c }
            betas = (0..<T).map { min(1 - f(Double($0 + 1) / Double(T)) / f(Double($0) / Double(T)), 0.999) }
        case .sigmoid: betas = linspace(-6, 6).map { 1 / (1 + Foundation.exp(-$0)) * (betaEnd - betaStart) + betaStart }
        }
        self.init(kind: kind, betas: betas)
    }

    /// A schedule from explicit β values (diffusers' `trained_betas`).
    public init(kind: BetaSchedule = .linear, betas: [Double]) {
        self.kind = kind
        self.betas = betas
        alphas = betas.map { 1 - $0 }
        var product = 1.0
        alphaBar = alphas.map { product *= $0; return product }
    }

    /// ᾱ_t as diffusers holds it: α_t = 1 − β_t in float32 (β_t rounded to float32), their running product
    /// accumulated in double and stored in float32 (torch.cumprod's accumulator). Samplers that copy a diffusers
    /// scheduler use these values.
    public var float32AlphaBar: [Double] {
        var product = 1.0
        return betas.map { beta in
            product *= Double(1 - Float(beta))
            return Double(Float(product))
        }
    }

    /// ᾱ of the step before t, with ᾱ_{−1} = 1.
    public func alphaBarPrevious(_ t: Int) -> Double { t > 0 ? alphaBar[t - 1] : 1 }

    /// SNR(t) = ᾱ_t / (1 − ᾱ_t), the signal-to-noise ratio of x_t.
    public func snr(_ t: Int) -> Double { alphaBar[t] / (1 - alphaBar[t]) }

    /// log SNR(t)
    public func logSNR(_ t: Int) -> Double { Foundation.log(snr(t)) }

    /// The variance of the posterior q(x_{t−1} | x_t, x_0): β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t).
    public func posteriorVariance(_ t: Int) -> Double { betas[t] * (1 - alphaBarPrevious(t)) / (1 - alphaBar[t]) }

    /// log β̃_t, with β̃_0 (which is 0) replaced by β̃_1, as in the DDPM code.
    public func posteriorLogVarianceClipped(_ t: Int) -> Double { Foundation.log(posteriorVariance(max(t, 1))) }

    /// The posterior mean μ̃_t(x_t, x_0) = c₀·x_0 + c_t·x_t with
    /// c₀ = β_t·√ᾱ_{t−1}/(1 − ᾱ_t) and c_t = (1 − ᾱ_{t−1})·√α_t/(1 − ᾱ_t).
    public func posteriorMeanCoefficients(_ t: Int) -> (x0: Double, xt: Double) {
        let oneMinus = 1 - alphaBar[t]
        return (betas[t] * alphaBarPrevious(t).squareRoot() / oneMinus,
                (1 - alphaBarPrevious(t)) * alphas[t].squareRoot() / oneMinus)
    }

    /// The schedule with ᾱ_T rescaled to exactly zero terminal SNR (Lin et al. 2023, diffusers'
    /// `rescale_betas_zero_snr`): √ᾱ shifted and scaled so that its last value is 0 and its first unchanged.
    public func rescaledToZeroTerminalSNR() -> NoiseSchedule {
        let s = alphaBar.map { $0.squareRoot() }
        let (first, last) = (s[0], s[s.count - 1])
        let shifted = s.map { ($0 - last) * first / (first - last) }
        let bars = shifted.map { $0 * $0 }
        let alphas = bars.indices.map { $0 == 0 ? bars[0] : bars[$0] / bars[$0 - 1] }
        return NoiseSchedule(kind: kind, betas: alphas.map { 1 - $0 })
    }
}
