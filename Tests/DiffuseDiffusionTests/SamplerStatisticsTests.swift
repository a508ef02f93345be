import DiffuseDiffusion
import DiffuseEngine
import Foundation
import XCTest

/// The samplers' statistics: driven by the exact noise predictor of a known data distribution, every sampler must
/// return that distribution, to within its discretisation error. For data x_0 ~ N(μ, s²), each element alone,
/// x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε is Gaussian too and the best ε-predictor is linear:
///   ε̂(x_t, t) = E[ε | x_t] = √(1 − ᾱ_t)·(x_t − √ᾱ_t·μ) / v_t,   v_t = ᾱ_t·s² + 1 − ᾱ_t.
/// With a linear predictor (and no clipping) every step of every sampler is affine in x and in its noise z, and
/// elements never mix, so the output is c + A·x_T + Σ_i B_i·z_i, alike for each element: its law is
/// N(c, A² + Σ_i B_i²) exactly, read from one run (`law`) with no Monte Carlo error.
final class SamplerStatisticsTests: XCTestCase {
    let schedule = NoiseSchedule()

    /// ᾱ at a timestep, fractional for the σ samplers: σ_t = √((1 − ᾱ_t)/ᾱ_t) interpolated linearly between integer
    /// steps, as those samplers place their σ, and ᾱ = 1/(1 + σ²).
    func alphaBar(_ t: Double) -> Double {
        let sigma = { (i: Int) in ((1 - self.schedule.alphaBar[i]) / self.schedule.alphaBar[i]).squareRoot() }
        let low = min(Int(t.rounded(.down)), schedule.timesteps - 1), w = t - Double(low)
        let sigmaT = w == 0 ? sigma(low) : sigma(low) + w * (sigma(low + 1) - sigma(low))
        return 1 / (1 + sigmaT * sigmaT)
    }

    /// ε̂ for data N(μ, s²).
    func exactPredictor(mu: Double, s: Double) -> Denoiser {
        { x, t in
            let a = self.alphaBar(t)
            let gain = (1 - a).squareRoot() / (a * s * s + 1 - a)
            return x * Float(gain) - Float(gain * a.squareRoot() * mu)
        }
    }

    /// The settings of `kind` with its diffusers defaults, unclipped (clipping is not affine).
    func settings(_ kind: SamplerKind, steps: Int, karras: Bool = false) -> Sampling {
        var settings = Sampling(kind: kind, steps: steps, alphaBar: schedule.alphaBar, prediction: .epsilon)
        settings.clipping = nil
        settings.karras = karras
        return settings
    }

    /// The exact law N(c, A² + Σ B_i²) of the sampler's output: element 0 runs from x_T = 0 with no noise (c),
    /// element 1 from x_T = 1 (c + A), element 2 + i from 0 with z = 1 at step i only (c + B_i).
    func law(_ settings: Sampling, _ model: Denoiser) throws -> (mean: Double, sd: Double) {
        let width = settings.steps + 2
        func unit(_ j: Int) -> Tensor {
            var values = [Float](repeating: 0, count: width)
            values[j] = 1
            return Tensor(values, shape: [1, 1, 1, width])
        }
        let sampler = try settings.makeSampler()
        let out = sampler.sample(from: unit(1), model: model, stepNoise: { unit(2 + $0) }, observe: nil)
            .scalars.map(Double.init)
        let c = out[0]
        return (c, out.dropFirst().map { ($0 - c) * ($0 - c) }.reduce(0, +).squareRoot())
    }

    /// For x_0 ~ N(μ, 1) the reverse step is exactly DDPM's with σ_t² = β_t (fixed_large), at any spacing: x_t is
    /// N(√ᾱ_t·μ, 1) at every t, a stationary Gaussian chain. Starting from N(0, 1) rather than N(√ᾱ_{t₁}·μ, 1) leaves
    /// a mean of μ·(1 − ᾱ_{t₁}); the last step returns x̂_0 = E[x_0 | x_0'] (no noise at t = 0), of variance ᾱ_0.
    /// So the law is known in closed form, and is met to float32 rounding (seen: ≤ 5e-8).
    func testDDPMIsExactForUnitVarianceData() throws {
        let mu = 0.5
        for steps in [10, 50] {
            var settings = settings(.ddpm, steps: steps)
            settings.variance = .fixedLarge
            let (mean, sd) = try law(settings, exactPredictor(mu: mu, s: 1))
            let first = DDPMSampler(settings).timesteps[0]
            XCTAssertEqual(mean, mu * (1 - schedule.alphaBar[first]), accuracy: 1e-6, "\(steps) steps: mean")
            XCTAssertEqual(sd, schedule.alphaBar[0].squareRoot(), accuracy: 1e-6, "\(steps) steps: sd")
        }
    }

    /// Every sampler, on x_0 ~ N(0.5, 0.2²):
    /// - the mean is μ up to what starting from N(0, 1) instead of N(√ᾱ_{t₁}·μ, v_{t₁}) costs, at most
    ///   s·|μ|·√ᾱ_{t₁}/√v_{t₁} for the probability-flow ODE (which maps x_T to x_0 linearly with gain s/√v_{t₁}) and
    ///   less for the ancestral samplers; t₁ ≥ 900 in every schedule here, so √ᾱ_{t₁} ≤ √ᾱ_900;
    /// - the standard deviation's error shrinks at least 4-fold from 40 to 320 steps: 8-fold for a first-order
    ///   method, 64-fold for a second-order one, less where a floor independent of the steps (the mean's, and DDPM's
    ///   fixed_small variance, which misses Var(x_0 | x_t)) takes over.
    func testEverySamplerConvergesToTheDataDistribution() throws {
        let (mu, s) = (0.5, 0.2)
        let model = exactPredictor(mu: mu, s: s)
        let meanBound = s * mu * schedule.alphaBar[900].squareRoot()
        for kind in SamplerKind.allCases {
            for karras in [false, true] where !karras || [.dpmSolver, .dpmSolverSDE, .euler, .heun].contains(kind) {
                let name = kind.rawValue + (karras ? " karras" : "")
                var errors: [Double] = []
                for steps in [40, 320] {
                    let (mean, sd) = try law(settings(kind, steps: steps, karras: karras), model)
                    XCTAssertLessThanOrEqual(abs(mean - mu), meanBound, "\(name), \(steps) steps: mean \(mean)")
                    errors.append(abs(sd - s))
                }
                XCTAssertLessThanOrEqual(errors[1], errors[0] / 4, "\(name): sd errors \(errors) at 40 and 320 steps")
            }
        }
    }

    /// The same law from sampling itself, with each step's z drawn from the generator: 16384 elements of DDPM on
    /// N(μ, 1) data give a mean and standard deviation within 5 standard errors (1/√n and 1/√(2n)) of the exact law.
    /// A generator that reused one z, or drew none, would be far off.
    func testSampledStatisticsMatchTheLaw() throws {
        let mu = 0.5
        var settings = settings(.ddpm, steps: 50)
        settings.variance = .fixedLarge
        let model = exactPredictor(mu: mu, s: 1)
        let (mean, sd) = try law(settings, model)
        var generator = RandomGenerator(seed: 11)
        let xT = generator.normal([4, 1, 64, 64])
        let x = try settings.makeSampler().sample(from: xT, model: model, generator: &generator).scalars.map(Double.init)
        let n = Double(x.count)
        let sampleMean = x.reduce(0, +) / n
        let sampleSD = (x.map { ($0 - sampleMean) * ($0 - sampleMean) }.reduce(0, +) / (n - 1)).squareRoot()
        XCTAssertEqual(sampleMean, mean, accuracy: 5 * sd / n.squareRoot())
        XCTAssertEqual(sampleSD, sd, accuracy: 5 * sd / (2 * n).squareRoot())
    }
}
