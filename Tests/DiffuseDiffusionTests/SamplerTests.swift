import DiffuseDiffusion
import DiffuseEngine
import XCTest

/// The toy network of the fixture, a pure function of (x, t) that both languages evaluate alike: 0.3·x + 0.001·t.
let toyModel: Network = { x, t in x * 0.3 + Float(0.001 * Double(t)) }

final class SamplerTests: XCTestCase {
    /// Runs `sampler` from the fixture's x_T with the fixture's per-step noise z (the one diffusers drew at the same
    /// step) and returns the state after each step.
    func chain(_ sampler: Sampler, _ f: SafeTensorsFile) throws -> [Tensor] {
        let noise = try f.tensor("sampler.noise")
        let shape = Array(noise.shape.dropFirst())
        var states: [Tensor] = []
        _ = sampler.sample(from: try f.tensor("sampler.x_T"), model: toyModel,
                           stepNoise: { i in noise.slice(axis: 0, i..<(i + 1)).reshaped(shape) },
                           observe: { _, x in states.append(x) })
        return states
    }

    /// Settings for the toy chains: 10 leading steps of the default linear schedule.
    func settings(_ kind: SamplerKind, _ prediction: Prediction = .epsilon, steps: Int = 10, clip: Bool) -> Sampling {
        Sampling(kind: kind, steps: steps, diffusion: GaussianDiffusion(prediction: prediction), clip: clip ? 1 : nil)
    }

    /// Compares each of the 10 states with diffusers' (leading spacing, T = 1000, linear schedule). The tolerance,
    /// 2e-5 of the state's largest value (seen: ≤ 5.1e-6), covers float32 arithmetic on both sides and diffusers'
    /// float32 ᾱ (≤ 4e-7 relative), grown along a chain that multiplies its values by up to ~60 without clipping.
    func assertMatches(_ states: [Tensor], _ expected: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(states.count, expected.shape[0], "\(what): steps", file: file, line: line)
        let shape = Array(expected.shape.dropFirst())
        for (i, state) in states.enumerated() {
            let error = relativeToMax(state, expected.slice(axis: 0, i..<(i + 1)).reshaped(shape))
            XCTAssertLessThanOrEqual(error, 2e-5, "\(what): state after step \(i + 1)", file: file, line: line)
        }
    }

    /// DDPM over 10 leading steps against DDPMScheduler.step, for every prediction, both fixed variances, clip on/off.
    func testDDPMMatchesDiffusers() throws {
        let f = try fixture()
        for prediction in Prediction.diffusion {
            for variance in [ReverseVariance.fixedSmall, .fixedLarge] {
                for clip in [false, true] {
                    var s = settings(.ddpm, prediction, clip: clip)
                    s.solver = DDPM(variance: variance)
                    let sampler = try s.makeSampler()
                    XCTAssertEqual(sampler.schedule.timesteps, stride(from: 900, through: 0, by: -100).map(Double.init))
                    let name = "ddpm.\(prediction.rawValue).\(variance.rawValue).clip\(clip ? 1 : 0)"
                    assertMatches(try chain(sampler, f), try f.tensor("sampler.\(name)"), name)
                }
            }
        }
    }

    /// DDIM over 10 leading steps against DDIMScheduler.step (set_alpha_to_one), η = 0 and 1, every prediction,
    /// clip on/off; with η = 1 the same z as diffusers' `variance_noise`.
    func testDDIMMatchesDiffusers() throws {
        let f = try fixture()
        for prediction in Prediction.diffusion {
            for eta in [0.0, 1.0] {
                for clip in [false, true] {
                    var s = settings(.ddim, prediction, clip: clip)
                    s.solver = DDIM(eta: eta)
                    let name = "ddim.\(prediction.rawValue).eta\(Int(eta)).clip\(clip ? 1 : 0)"
                    assertMatches(try chain(s.makeSampler(), f), try f.tensor("sampler.\(name)"), name)
                }
            }
        }
    }

    /// With η = 1 and nothing clipped, a DDIM step is DDPM's ancestral step with σ² = β̃ (the same mean, written
    /// through x̂_0 and ε̂ instead of x̂_0 and x_t), so the two chains agree given the same noise.
    func testDDIMWithEtaOneIsDDPM() throws {
        let f = try fixture()
        var s = settings(.ddim, clip: false)
        s.solver = DDIM(eta: 1)
        let a = try chain(s.makeSampler(), f), b = try chain(settings(.ddpm, clip: false).makeSampler(), f)
        XCTAssertLessThanOrEqual(relativeToMax(a.last!, b.last!), 1e-5)
    }

    /// DDIM with η = 0 draws no noise: two runs from the same x_T with different generators give the same bits.
    func testDeterministicDDIM() throws {
        let sampler = try settings(.ddim, steps: 20, clip: true).makeSampler()
        var noiseGenerator = RandomGenerator(seed: 5)
        let xT = noiseGenerator.normal([2, 1, 4, 4])
        var g1 = RandomGenerator(seed: 1), g2 = RandomGenerator(seed: 2)
        let a = sampler.sample(from: xT, model: toyModel, generator: &g1)
        let b = sampler.sample(from: xT, model: toyModel, generator: &g2)
        XCTAssertEqual(a.scalars.map(\.bitPattern), b.scalars.map(\.bitPattern))
        XCTAssertEqual(g1, RandomGenerator(seed: 1), "no number was drawn")
    }

    /// One DDIM η = 0 step x_t → x_{t'} = √ᾱ_{t'}·x̂_0 + √(1 − ᾱ_{t'})·ε̂ is undone by the step from t' to t with the
    /// same ε̂ (DDIM inversion), to float32 rounding amplified by 1/√ᾱ_t (≤ 71 at t = 900): 1e-5 of max |x_t|.
    func testDDIMStepIsInvertible() {
        let ddim = DDIM()
        let a = NoiseSchedule().alphaBar
        var generator = RandomGenerator(seed: 3)
        for (t, previous) in [(900, 800), (500, 480), (20, 0)] {
            let xt = generator.normal([2, 3, 4, 4]), eps = generator.normal([2, 3, 4, 4])
            let D = Denoiser(network: { _, _ in eps }, prediction: .epsilon)
            let (sigma, target) = (((1 - a[t]) / a[t]).squareRoot(), ((1 - a[previous]) / a[previous]).squareRoot())
            let next = ddim.step(D(xt, sigma: sigma, t: Double(t)), process: .variancePreserving, from: sigma, to: target, noise: nil)
            let back = ddim.step(D(next, sigma: target, t: Double(previous)), process: .variancePreserving, from: target,
                                 to: sigma, noise: nil)
            XCTAssertLessThanOrEqual(relativeToMax(back, xt), 1e-5, "\(t) → \(previous) → \(t)")
            XCTAssertGreaterThan(relativeToMax(next, xt), 1e-2, "the step moved x")
        }
    }

    /// 1000 linspace steps of DPM-Solver repeat a rounded timestep, a step of h = 0 that diffusers turns into NaN:
    /// here it is refused before any work, naming the timestep; 999 steps are fine.
    func testRepeatedDPMSolverTimestepIsAnError() throws {
        var s = Sampling(kind: .dpmSolver, steps: 1000, alphaBar: NoiseSchedule().alphaBar, prediction: .epsilon)
        XCTAssertThrowsError(try s.makeSampler()) { error in
            XCTAssertTrue("\(error)".contains("repeat timestep"), "\(error)")
        }
        s.steps = 999
        XCTAssertNoThrow(try s.makeSampler())
    }

    /// `diffuse sample --help` lists every sampler with its line of advice, which fits the help's 80 columns beside
    /// the name (60 characters), and names the class it copies.
    func testEverySamplerSaysWhenToUseIt() {
        for kind in SamplerKind.allCases {
            XCTAssertFalse(kind.advice.isEmpty, kind.rawValue)
            XCTAssertLessThanOrEqual(kind.advice.count, 60, kind.rawValue)
            XCTAssertFalse(kind.diffusersClass.isEmpty, kind.rawValue)
        }
        XCTAssertEqual(Set(SamplerKind.allCases.map(\.advice)).count, SamplerKind.allCases.count, "one line each")
    }

    /// A run's sampling clamps x̂₀ for every sampler: with a network whose x̂₀ is 10 everywhere, each chain that
    /// ends at σ = 0 ends inside [−1, 1], and those that end at σ_min (PNDM, DEIS: a'·x̂₀ + s'·ε̂ with s' = 0.01)
    /// near it, where the unclamped x̂₀ would put them near 10.
    func testEverySamplerClampsARunsEstimates() throws {
        let wild: Network = { x, _ in x * 0 + 10 }
        var g = RandomGenerator(seed: 4)
        let noise = g.normal([2, 1, 4, 4])
        for kind in SamplerKind.allCases {
            let settings = Sampling(kind: kind, steps: 6, diffusion: GaussianDiffusion(prediction: .sample), clip: 1)
            guard let sampler = try? settings.makeSampler() else {
                XCTAssertEqual(kind, .eulerAncestral, "only euler-ancestral refuses x₀ predictions")
                continue
            }
            let bound: Float = sampler.schedule.sigmas.last == 0 ? 1 + 1e-5 : 1.1
            let out = sampler.sample(from: noise, model: wild, generator: &g).scalars
            XCTAssertTrue(out.allSatisfy { abs($0) <= bound }, "\(kind.rawValue): \(out.map(abs).max()!)")
        }
    }
}
