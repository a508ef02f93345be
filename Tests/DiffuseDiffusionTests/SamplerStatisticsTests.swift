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

    /// ε̂ for data N(μ, s²) at σ_t = `sigmas[t]`, ᾱ = 1/(1 + σ²).
    func exactPredictor(mu: Double, s: Double, sigmas: [Double]) -> Network {
        { x, t in
            let sigma = sigmas[Int(t)]
            let a = 1 / (1 + sigma * sigma)
            let gain = (1 - a).squareRoot() / (a * s * s + 1 - a)
            return x * Float(gain) - Float(gain * a.squareRoot() * mu)
        }
    }

    /// The sampler of `settings` on its own σ, with the step's index for timestep, so that the exact predictor sees
    /// the σ each step assumes (diffusers' float32 tables and rounded timesteps put the σ of a timestep up to ~1e-3
    /// away, and its respaced schedules give one timestep to several σ: a floor that is not the solver's).
    func indexed(_ settings: Sampling) throws -> Sampler {
        let sampler = try settings.makeSampler()
        var schedule = sampler.schedule
        schedule.timesteps = schedule.timesteps.indices.map(Double.init)
        return Sampler(solver: sampler.solver, schedule: schedule, prediction: .epsilon, clipping: nil, process: .variancePreserving)
    }

    /// The settings of `kind` with its diffusers defaults, unclipped (clipping is not affine).
    func settings(_ kind: SamplerKind, steps: Int, sigmas: SigmaSpacing = .discrete) -> Sampling {
        var settings = Sampling(kind: kind, steps: steps, alphaBar: schedule.alphaBar, prediction: .epsilon)
        settings.clipping = nil
        settings.sigmaSpacing = sigmas
        return settings
    }

    /// The exact law N(c, A² + Σ B_i²) of the sampler's output: element 0 runs from x_T = 0 with no noise (c),
    /// element 1 from x_T = 1 (c + A), element 2 + i from 0 with z = 1 at step i only (c + B_i).
    func law(_ settings: Sampling, mu: Double, s: Double) throws -> (mean: Double, sd: Double) {
        let width = settings.steps + 2
        func unit(_ j: Int) -> Tensor {
            var values = [Float](repeating: 0, count: width)
            values[j] = 1
            return Tensor(values, shape: [1, 1, 1, width])
        }
        let sampler = try indexed(settings)
        let model = exactPredictor(mu: mu, s: s, sigmas: sampler.schedule.sigmas)
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
            settings.solver = DDPM(variance: .fixedLarge)
            let (mean, sd) = try law(settings, mu: mu, s: 1)
            let first = Int(settings.schedule().timesteps[0])
            XCTAssertEqual(mean, mu * (1 - schedule.alphaBar[first]), accuracy: 1e-6, "\(steps) steps: mean")
            XCTAssertEqual(sd, schedule.alphaBar[0].squareRoot(), accuracy: 1e-6, "\(steps) steps: sd")
        }
    }

    /// Every sampler and σ spacing, on x_0 ~ N(0.5, 0.2²), against what an exact chain would give: the law of x_t at
    /// the final σ, N(a·μ, a²s² + s_t²), for PNDM and DEIS, which end at σ_min; for a chain to σ = 0, whose last step
    /// returns x̂₀ = E[x_0 | x_t] at the last σ > 0, the law of that, N(μ, (a·s²)²/(a²s² + s_t²)):
    /// - the mean is a·μ up to what starting from N(0, 1) instead of N(√ᾱ_{t₁}·μ, v_{t₁}) costs, at most
    ///   s·|μ|·√ᾱ_{t₁}/√v_{t₁} for the probability-flow ODE (which maps x_T to x_0 linearly with gain s/√v_{t₁}) and
    ///   less for the ancestral samplers; t₁ ≥ 900 in every schedule here, so √ᾱ_{t₁} ≤ √ᾱ_900;
    /// - the standard deviation's error shrinks at least 3-fold from 100 to 500 steps (5-fold for a first-order
    ///   method, 25-fold for a second-order one), or stays below 1e-5, float32's floor over 500 steps.
    func testEverySamplerConvergesToTheDataDistribution() throws {
        let (mu, s) = (0.5, 0.2)
        let meanBound = s * mu * schedule.alphaBar[900].squareRoot()
        for kind in SamplerKind.allCases {
            for sigmas in SigmaSpacing.allCases {
                var errors: [Double] = []
                for steps in [100, 500] {
                    let settings = settings(kind, steps: steps, sigmas: sigmas)
                    guard (try? settings.validate()) != nil else { continue }
                    let levels = settings.schedule().sigmas
                    let final = levels.last!, (a, noise) = NoiseProcess.variancePreserving.scales(levels.last(where: { $0 > 0 })!)
                    let variance = a * a * s * s + noise * noise
                    let (expectedMean, expectedSD) = final > 0 ? (a * mu, variance.squareRoot()) : (mu, a * s * s / variance.squareRoot())
                    let (mean, sd) = try law(settings, mu: mu, s: s)
                    let name = "\(kind.rawValue), σ \(sigmas.rawValue), \(steps) steps"
                    XCTAssertLessThanOrEqual(abs(mean - expectedMean), meanBound, "\(name): mean \(mean)")
                    errors.append(abs(sd - expectedSD))
                }
                guard errors.count == 2 else { continue }
                XCTAssertLessThanOrEqual(errors[1], max(errors[0] / 3, 1e-5), "\(kind.rawValue), σ \(sigmas.rawValue): sd errors \(errors)")
            }
        }
    }

    /// The same law from sampling itself, with each step's z drawn from the generator: 16384 elements of DDPM on
    /// N(μ, 1) data give a mean and standard deviation within 5 standard errors (1/√n and 1/√(2n)) of the exact law.
    /// A generator that reused one z, or drew none, would be far off.
    func testSampledStatisticsMatchTheLaw() throws {
        let mu = 0.5
        var settings = settings(.ddpm, steps: 50)
        settings.solver = DDPM(variance: .fixedLarge)
        let (mean, sd) = try law(settings, mu: mu, s: 1)
        var generator = RandomGenerator(seed: 11)
        let xT = generator.normal([4, 1, 64, 64])
        let sampler = try indexed(settings)
        let model = exactPredictor(mu: mu, s: 1, sigmas: sampler.schedule.sigmas)
        let x = sampler.sample(from: xT, model: model, generator: &generator).scalars.map(Double.init)
        let n = Double(x.count)
        let sampleMean = x.reduce(0, +) / n
        let sampleSD = (x.map { ($0 - sampleMean) * ($0 - sampleMean) }.reduce(0, +) / (n - 1)).squareRoot()
        XCTAssertEqual(sampleMean, mean, accuracy: 5 * sd / n.squareRoot())
        XCTAssertEqual(sampleSD, sd, accuracy: 5 * sd / (2 * n).squareRoot())
    }
}

/// A chain asked to stop (`StopRequest`) while watched (`EstimateWatch`): the denoiser stops calling the network and
/// answers with its last estimate, so the solver runs out its steps at once, ending for DDIM exactly at that x̂₀.
/// Unwatched, or not asked, the chain runs whole.
final class StoppedChainTests: XCTestCase {
    func testStopEndsTheChainAtTheLastEstimate() throws {
        for kind in [SamplerKind.ddim, .dpmSolver, .eulerAncestral, .heun] {
            let sampler = try Sampling(kind: kind, steps: 20, alphaBar: NoiseSchedule().alphaBar, prediction: .epsilon).makeSampler()
            var calls = 0
            let network: Network = { x, _ in
                calls += 1
                return x * 0.5
            }
            let noise = Tensor((0..<32).map { Float($0) / 16 - 1 }, shape: [2, 1, 4, 4])
            func run(watched: Bool, stopAt: Int?) -> (Tensor, Int, EstimateWatch) {
                calls = 0
                let stop = StopRequest(), watch = EstimateWatch()
                let result = StopRequest.$current.withValue(stop) {
                    EstimateWatch.$current.withValue(watched ? watch : nil) {
                        sampler.sample(from: noise, model: network, stepNoise: { _ in noise * 0.1 }) { i, _ in
                            if i == stopAt { stop.request() }
                        }
                    }
                }
                return (result, calls, watch)
            }
            let whole = run(watched: true, stopAt: nil)
            XCTAssertEqual(whole.1, sampler.evaluations, "\(kind)")
            XCTAssertEqual(run(watched: false, stopAt: 4).1, sampler.evaluations, "\(kind): unwatched, the chain runs whole")
            let (stopped, stoppedCalls, watch) = run(watched: true, stopAt: 4)
            // Heun evaluates twice a step.
            XCTAssertEqual(stoppedCalls, kind == .heun ? 10 : 5, "\(kind): the network runs for the first 5 steps only")
            XCTAssertTrue(stopped.scalars.allSatisfy(\.isFinite), "\(kind)")
            if kind == .ddim {
                let x0 = try XCTUnwrap(watch.latest?.x0)
                XCTAssertEqual(zip(stopped.scalars, x0.scalars).map { abs($0 - $1) }.max()!, 0, accuracy: 1e-5)
            }
        }
    }
}
