import DiffuseDiffusion
import DiffuseEngine
import XCTest

final class ScheduleTests: XCTestCase {
    /// β_t and ᾱ_t of every schedule against diffusers' DDPMScheduler (T = 1000). diffusers computes them in float32:
    /// β to a few ulps (rtol 5e-7); ᾱ is a float32 cumulative product whose error grows along t and is largest where
    /// the cosine schedule caps β at 0.999, where one ulp of β is 6e-5 of 1 − β (rtol 2e-5).
    func testSchedulesMatchDiffusers() throws {
        let f = try fixture()
        let schedules: [(String, NoiseSchedule)] = [
            ("linear", NoiseSchedule(.linear)),
            ("scaled_linear", NoiseSchedule(.scaledLinear, betaStart: 0.00085, betaEnd: 0.012)),
            ("squaredcos_cap_v2", NoiseSchedule(.cosine)),
            ("sigmoid", NoiseSchedule(.sigmoid)),
        ]
        for (name, s) in schedules {
            XCTAssertEqual(s.kind.rawValue, name)
            assertClose(s.betas, try f.doubles("schedule.\(name).betas"), rtol: 5e-7, "\(name) β")
            assertClose(s.alphaBar, try f.doubles("schedule.\(name).alphas_cumprod"), rtol: 2e-5, "\(name) ᾱ")
            assertClose(s.alphas, s.betas.map { 1 - $0 }, rtol: 0, "\(name) α = 1 − β")
        }
    }

    /// β̃_t and the posterior-mean coefficients of the linear schedule against DDPMScheduler's expressions
    /// (`_get_variance`, `step`) evaluated in float64 on its betas, for t = 1…999 (the paper's t = 2…1000). The
    /// betas are diffusers' float32 ones, within 1.1e-7 of the exact linspace (rtol 5e-7).
    func testPosteriorMatchesDiffusersExpressions() throws {
        let f = try fixture(), s = NoiseSchedule()
        let ts = Array(1..<1000)
        assertClose(ts.map(s.posteriorVariance), try f.doubles("posterior.variance"), rtol: 5e-7, "β̃_t")
        assertClose(ts.map { s.posteriorMeanCoefficients($0).x0 }, try f.doubles("posterior.coef_x0"), rtol: 5e-7, "x_0 coefficient")
        assertClose(ts.map { s.posteriorMeanCoefficients($0).xt }, try f.doubles("posterior.coef_xt"), rtol: 5e-7, "x_t coefficient")
        // At the first step the posterior is the point x_0: β̃_0 = 0, μ̃ = x_0.
        XCTAssertEqual(s.posteriorVariance(0), 0)
        XCTAssertEqual(s.posteriorMeanCoefficients(0).x0, 1, accuracy: 1e-12)
        XCTAssertEqual(s.posteriorMeanCoefficients(0).xt, 0)
        XCTAssertEqual(s.posteriorLogVarianceClipped(0), s.posteriorLogVarianceClipped(1))
    }

    /// The theory's schedule ends close to pure noise: ᾱ_T = Π(1 − β_t) = 4.0358e-5 for linear 1e-4…0.02 over
    /// T = 1000, so x_T keeps √ᾱ_T = 0.64% of x_0 and log SNR(T) = −10.12.
    func testDefaultScheduleEndsNearPureNoise() {
        let s = NoiseSchedule()
        XCTAssertEqual(s.timesteps, 1000)
        XCTAssertEqual(s.alphaBar[999], 4.0358e-5, accuracy: 1e-9)
        XCTAssertEqual(s.logSNR(999), -10.1177, accuracy: 1e-4)
        XCTAssertEqual(s.snr(0), 0.9999 / 0.0001, accuracy: 1e-6)
    }

    /// The zero-terminal-SNR rescaling against diffusers' `rescale_zero_terminal_snr`, run in float64 on its float32
    /// linear betas (which set the tolerance, rtol 5e-7). ᾱ_T is exactly 0 and ᾱ_0 unchanged.
    func testZeroTerminalSNRMatchesDiffusers() throws {
        let f = try fixture(), s = NoiseSchedule(), z = s.rescaledToZeroTerminalSNR()
        XCTAssertEqual(z.alphaBar[999], 0)
        XCTAssertEqual(z.betas[999], 1)
        XCTAssertEqual(z.alphaBar[0], s.alphaBar[0], accuracy: 1e-15)
        XCTAssertEqual(z.logSNR(999), -.infinity)
        assertClose(z.betas, try f.doubles("schedule.linear_zero_snr.betas"), rtol: 5e-7, "rescaled β")
        assertClose(z.alphaBar, try f.doubles("schedule.linear_zero_snr.alphas_cumprod"), rtol: 5e-7, "rescaled ᾱ")
    }

    /// Every spacing against DDIMScheduler.set_timesteps, exactly: leading with steps_offset 0 and 1, linspace and
    /// trailing, at 10, 25 and 50 steps of T = 1000.
    func testTimestepSpacingMatchesDiffusers() throws {
        let f = try fixture()
        let cases: [(TimestepSpacing, Int)] = [(.leading, 0), (.leading, 1), (.linspace, 0), (.trailing, 0)]
        for (spacing, offset) in cases {
            for n in [10, 25, 50] {
                let expected = try f.integers("spacing.\(spacing.rawValue).\(offset).\(n)").map { Int($0) }
                XCTAssertEqual(spacing.timesteps(steps: n, trainingSteps: 1000, offset: offset), expected, "\(spacing) offset \(offset), \(n) steps")
            }
        }
    }
}

/// The respaced σ that diffusers does not spell out as config keys: EDM's (k-diffusion's Karras formula over EDM's
/// range) and Align Your Steps' (diffusers' AysSchedules, NVIDIA's interpolation), on Stable Diffusion's schedule.
final class RespacedSigmaTests: XCTestCase {
    func sampling(_ spacing: SigmaSpacing, steps: Int) -> Sampling {
        let alphaBar = NoiseSchedule(.scaledLinear, betaStart: 0.00085, betaEnd: 0.012).float32AlphaBar
        var s = Sampling(kind: .dpmSolver, steps: steps, alphaBar: alphaBar, prediction: .epsilon, betaSchedule: .scaledLinear)
        s.sigmaSpacing = spacing
        return s
    }

    /// σ to float32 rounding (the multistep schedulers keep σ in float32).
    func testEDMAndAlignYourStepsSigmas() throws {
        let f = try fixture()
        for n in [10, 25] {
            for spacing in [SigmaSpacing.edm, .alignYourSteps] {
                let schedule = sampling(spacing, steps: n).schedule()
                assertClose(Array(schedule.sigmas.dropLast()), try f.doubles("respaced.\(spacing == .edm ? "edm" : "ays").\(n)"),
                            rtol: 1e-6, "\(spacing.rawValue), \(n) steps")
                XCTAssertEqual(schedule.sigmas.last, 0)
            }
        }
        // Ten steps of AYS are the published timesteps themselves.
        XCTAssertEqual(sampling(.alignYourSteps, steps: 10).schedule().timesteps,
                       try f.integers("respaced.ays.timesteps").map(Double.init))
    }
}
