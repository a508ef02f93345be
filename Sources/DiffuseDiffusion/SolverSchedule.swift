import Foundation

/// The noise levels a solver visits: σ_0 > σ_1 > … > σ_{n−1} with the network's timestep t_i at each, then the final
/// σ_n (0, or σ_min). Data: each diffusers scheduler's rule builds one (`SolverSchedule.discrete`, `.euler`,
/// `.multistep`), and `SigmaSpacing` respaces its σ.
public struct SolverSchedule: Equatable, Sendable {
    /// n + 1 values.
    public var sigmas: [Double]
    /// n values.
    public var timesteps: [Double]
    /// x_T ~ N(0, I) times this is the chain's first x_t: 1 (x_T is x_t at σ_0), or for diffusers' Euler-type
    /// schedulers with linspace or trailing spacing s_0 = σ_0/√(σ_0² + 1) (their initial x is σ_0·x_T in x_t/a).
    public var initialScale: Double

    public var steps: Int { timesteps.count }

    /// The visited timesteps of a DDPM, DDIM or PNDM chain, with σ_t = √((1 − ᾱ_t)/ᾱ_t) in full precision; the
    /// final σ is that of ᾱ = `finalAlphaBar` (1: σ = 0).
    public static func discrete(_ t: [Int], alphaBar: [Double], finalAlphaBar: Double) -> SolverSchedule {
        let sigma = { (a: Double) in ((1 - a) / a).squareRoot() }
        return SolverSchedule(sigmas: t.map { sigma(alphaBar[$0]) } + [sigma(finalAlphaBar)], timesteps: t.map(Double.init),
                              initialScale: 1)
    }

    /// Euler, Euler ancestral and Heun (EulerDiscreteScheduler's rule): linspace timesteps as float32 fractions, σ
    /// interpolated over the float32 table; respaced σ over the range of those σ, their timesteps fractional.
    public static func euler(steps n: Int, alphaBar: [Double], spacing: TimestepSpacing, offset: Int, respacing: SigmaSpacing,
                             finalSigma: FinalSigma) -> SolverSchedule {
        let T = alphaBar.count
        var timesteps: [Double]
        switch spacing {
        case .linspace:
            timesteps = (0..<n).reversed().map { n == 1 ? 0 : Double(Float(Double($0) * Double(T - 1) / Double(n - 1))) }
        case .leading: timesteps = (0..<n).reversed().map { Double($0 * (T / n) + offset) }
        case .trailing: timesteps = TimestepSpacing.trailing(from: T, steps: n, trainingSteps: T).map(Double.init)
        }
        let table = sigmaTable(alphaBar)
        var sigmas = timesteps.map { interpolatedSigma($0, table) }
        if respacing != .discrete {
            sigmas = respacing.sigmas(max: sigmas[0], min: sigmas[sigmas.count - 1], steps: n, table: table)
            let logSigmas = table.map { Double(Foundation.log(Float($0))) }
            timesteps = sigmas.map { Double(Float(timestep(ofSigma: $0, logSigmas: logSigmas))) }
        }
        let top = Float(sigmas.max()!)
        return SolverSchedule(sigmas: (sigmas + [finalSigma == .zero ? 0 : table[0]]).map { Double(Float($0)) }, timesteps: timesteps,
                              initialScale: spacing == .leading ? 1 : Double(top / (top * top + 1).squareRoot()))
    }

    /// The multistep solvers' rule (DPMSolverMultistepScheduler, UniPCMultistepScheduler, DEISMultistepScheduler):
    /// n + 1 integer timesteps spaced over the T steps with the last (0) dropped, σ from the float32 table;
    /// respaced σ over the whole table, their timesteps rounded (truncated for exponential σ, and for Karras σ on
    /// the cosine schedule when `truncateCosine`, as DPM-Solver does).
    public static func multistep(steps n: Int, alphaBar: [Double], spacing: TimestepSpacing, offset: Int, respacing: SigmaSpacing,
                                 finalSigma: FinalSigma, truncateCosine: Bool = false) -> SolverSchedule {
        let T = alphaBar.count
        var steps: [Int]
        switch spacing {
        case .linspace: steps = (1...n).reversed().map { Int((Double($0) * Double(T - 1) / Double(n)).rounded(.toNearestOrEven)) }
        case .leading: steps = (1...n).reversed().map { $0 * (T / (n + 1)) + offset }
        case .trailing: steps = TimestepSpacing.trailing(from: T, steps: n, trainingSteps: T)
        }
        let table = sigmaTable(alphaBar)
        var sigmas = steps.map { table[$0] }
        if respacing != .discrete {
            let logSigmas = table.map { Double(Foundation.log(Float($0))) }
            sigmas = respacing.sigmas(max: table[T - 1], min: table[0], steps: n, table: table)
            steps = sigmas.map {
                let t = timestep(ofSigma: $0, logSigmas: logSigmas)
                return respacing == .exponential || truncateCosine ? Int(t) : Int(t.rounded(.toNearestOrEven))
            }
        }
        return SolverSchedule(sigmas: (sigmas + [finalSigma == .zero ? 0 : table[0]]).map { Double(Float($0)) },
                              timesteps: steps.map(Double.init), initialScale: 1)
    }
}

extension SolverSchedule {
    /// FlowMatchEulerDiscreteScheduler's rule for rectified flow: n values of t from 1 down to the training table's
    /// smallest, t·T spaced linearly, each shifted t ← shift·t/(1 + (shift − 1)·t) (the smallest shifted twice, as in
    /// diffusers), then t = 0; σ = t/(1 − t) (∞ at t = 1), the network's timestep t·T, in float32 as diffusers.
    public static func flowMatch(steps n: Int, flow: RectifiedFlow) -> SolverSchedule {
        let T = Double(flow.trainingSteps)
        let shifted = { (t: Double) in flow.shift * t / (1 + (flow.shift - 1) * t) }
        let (top, bottom) = (Double(Float(shifted(1))) * T, Double(Float(shifted(1 / T))) * T)
        let t = (0..<n).map { i in Float(shifted((n == 1 ? top : top + (bottom - top) * Double(i) / Double(n - 1)) / T)) }
        return SolverSchedule(sigmas: (t + [0]).map { $0 == 1 ? .infinity : Double($0) / (1 - Double($0)) },
                              timesteps: t.map { Double($0 * Float(T)) }, initialScale: 1)
    }
}

/// Where a chain's last step lands.
public enum FinalSigma: String, Codable, Sendable {
    /// σ = 0: the last step gives x̂₀.
    case zero
    /// σ_min, the first training timestep's.
    case minimum = "sigma_min"
}

/// How σ is spaced between σ_max and σ_min, beside the timestep spacing of diffusers' schedulers.
public enum SigmaSpacing: String, CaseIterable, Codable, Sendable {
    /// σ at the spaced timesteps (diffusers' default).
    case discrete
    /// Karras et al. (2022): (σ_max^(1/ρ) + r·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, r = linspace(0, 1, n), ρ = 7.
    case karras
    /// Uniform in log σ: exp(linspace(log σ_max, log σ_min, n)).
    case exponential
    /// EDM's (Karras et al. 2022, Table 1): Karras' spacing between σ_max = 80 and σ_min = 0.002, held within the model's range.
    case edm
    /// Align Your Steps (Sabour et al. 2024): the ten timesteps optimised for Stable Diffusion 1.5
    /// (999, 850, 736, 645, 545, 455, 343, 233, 124, 24; diffusers' AysSchedules) taken on this model's σ, and for
    /// other step counts the eleven levels down to σ_min interpolated log-linearly to n + 1, as NVIDIA does.
    case alignYourSteps = "ays"

    /// n values from σ_max down to σ_min, as the spacing says; `table` is σ_t for t = 0..<T (needed by AYS).
    func sigmas(max sigmaMax: Double, min sigmaMin: Double, steps n: Int, table: [Double] = []) -> [Double] {
        let ramp = (0..<n).map { n == 1 ? 0 : Double($0) / Double(n - 1) }
        switch self {
        case .discrete: preconditionFailure("discrete σ come from the timesteps")
        case .karras, .edm:
            let (hi, lo) = self == .edm ? (Swift.min(sigmaMax, 80), Swift.max(sigmaMin, 0.002)) : (sigmaMax, sigmaMin)
            let rho = 7.0
            let (a, b) = (pow(hi, 1 / rho), pow(lo, 1 / rho))
            return ramp.map { pow(a + $0 * (b - a), rho) }
        case .exponential:
            let (a, b) = (Foundation.log(sigmaMax), Foundation.log(sigmaMin))
            return ramp.map { Foundation.exp(a + $0 * (b - a)) }
        case .alignYourSteps:
            // The ten timesteps and t = 0 (σ_min), n + 1 levels interpolated in log σ; the last gives way to the final σ.
            let points = [999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0].map { t in
                Foundation.log(table[Swift.min(t * table.count / 1000, table.count - 1)])
            }
            return (0..<n).map { i in
                let position = Double(i) * Double(points.count - 1) / Double(n), low = Swift.min(Int(position), points.count - 2)
                let w = position - Double(low)
                return Foundation.exp(points[low] + (points[low + 1] - points[low]) * w)
            }
        }
    }
}

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

/// σ_t for t = 0..<T from ᾱ, in float32 as diffusers computes it.
func sigmaTable(_ alphaBar: [Double]) -> [Double] {
    alphaBar.map { a in Double(((1 - Float(a)) / Float(a)).squareRoot()) }
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
