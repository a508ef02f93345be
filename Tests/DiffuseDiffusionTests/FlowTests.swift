import DiffuseDiffusion
import DiffuseEngine
import Foundation
import XCTest

/// Rectified flow: its forward process, its training time law, and its sampling through the same denoiser and
/// solvers as diffusion (Euler as diffusers' FlowMatchEulerDiscreteScheduler).
final class FlowTests: XCTestCase {
    /// x_t = (1 − t)·x_0 + t·ε for x_0 ~ N(μ, s²) has mean (1 − t)·μ and variance (1 − t)²s² + t²: over 2¹⁸ elements
    /// the sample moments lie within 5 standard errors. The velocity target ε − x_0 has mean −μ, variance s² + 1.
    func testForwardProcessMoments() {
        let flow = RectifiedFlow()
        var g = RandomGenerator(seed: 4)
        let (mu, s, n) = (0.5, 0.2, 1 << 18)
        let x0 = g.normal([4, 1, 256, 256]) * Float(s) + Float(mu), noise = g.normal([4, 1, 256, 256])
        func moments(_ x: Tensor) -> (Double, Double) {
            let v = x.scalars.map(Double.init), m = v.reduce(0, +) / Double(n)
            return (m, (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n - 1)).squareRoot())
        }
        for t in [0.0, 0.3, 0.9, 1.0] {
            let (mean, sd) = moments(flow.noised(x0, t: [Double](repeating: t, count: 4), noise: noise))
            let expected = ((1 - t) * (1 - t) * s * s + t * t).squareRoot()
            XCTAssertEqual(mean, (1 - t) * mu, accuracy: 5 * expected / Double(n).squareRoot(), "t = \(t): mean")
            XCTAssertEqual(sd, expected, accuracy: 5 * expected / Double(2 * n).squareRoot(), "t = \(t): sd")
        }
        let (mean, sd) = moments(flow.target(x0: x0, noise: noise))
        XCTAssertEqual(mean, -mu, accuracy: 5 * 1.02 / Double(n).squareRoot())
        XCTAssertEqual(sd, (s * s + 1).squareRoot(), accuracy: 5 * 1.02 / Double(2 * n).squareRoot())
    }

    /// The logit-normal t = σ(u), u ~ N(0, 1): inside (0, 1), symmetric about ½ (median and mean ½), and its
    /// quartiles σ(±0.6745) = 0.3375 and 0.6625, within sampling error over 10⁵ draws.
    func testLogitNormalTimes() {
        var g = RandomGenerator(seed: 9)
        let t = RectifiedFlow.logitNormal(100_000, generator: &g).sorted()
        XCTAssertTrue(t.allSatisfy { $0 > 0 && $0 < 1 })
        XCTAssertEqual(t.reduce(0, +) / Double(t.count), 0.5, accuracy: 0.003)
        XCTAssertEqual(t[25_000], 1 / (1 + exp(0.6745)), accuracy: 0.005)
        XCTAssertEqual(t[50_000], 0.5, accuracy: 0.005)
        XCTAssertEqual(t[75_000], 1 / (1 + exp(-0.6745)), accuracy: 0.005)
    }

    /// Euler on a flow model against FlowMatchEulerDiscreteScheduler (shift 1 and 3, 10 steps) for the toy network
    /// 0.3·x + 0.001·t: the timesteps to float32 rounding, every state within 2e-5 of its largest value.
    func testEulerMatchesFlowMatchEulerDiscreteScheduler() throws {
        let f = try fixture()
        let noise = try f.tensor("sampler.x_T")
        for shift in [1, 3] {
            let sampler = try Sampling(kind: .euler, steps: 10, flow: RectifiedFlow(shift: Double(shift))).makeSampler()
            assertClose(sampler.schedule.timesteps, try f.doubles("flow.shift\(shift).timesteps"), rtol: 1e-6, "shift \(shift): timesteps")
            var states: [Tensor] = []
            _ = sampler.sample(from: noise, model: toyModel, stepNoise: { _ in noise }, observe: { states.append($1) })
            let expected = try f.tensor("flow.shift\(shift).states")
            let shape = Array(expected.shape.dropFirst())
            for (i, state) in states.enumerated() {
                XCTAssertLessThanOrEqual(relativeToMax(state, expected.slice(axis: 0, i..<(i + 1)).reshaped(shape)), 2e-5,
                                         "shift \(shift), step \(i)")
            }
        }
    }

    /// Heun on a flow model against FlowMatchHeunDiscreteScheduler (10 steps, 19 evaluations), shift 1 and 3.
    func testHeunMatchesFlowMatchHeunDiscreteScheduler() throws {
        let f = try fixture()
        let noise = try f.tensor("sampler.x_T")
        for shift in [1, 3] {
            let sampler = try Sampling(kind: .heun, steps: 10, flow: RectifiedFlow(shift: Double(shift))).makeSampler()
            XCTAssertEqual(sampler.evaluations, 19)
            let out = sampler.sample(from: noise, model: toyModel, stepNoise: { _ in noise })
            XCTAssertLessThanOrEqual(relativeToMax(out, try f.tensor("flow_heun.shift\(shift).final")), 2e-5, "shift \(shift)")
        }
    }

    /// With the exact velocity of Gaussian data x_0 ~ N(μ, s²), v̂ = E[ε | x_t] − E[x_0 | x_t], every sampler that runs
    /// flow models returns N(μ, s²) as its steps grow (elements never mix, and each step is affine: the law is read
    /// from one run, as in SamplerStatisticsTests): the mean within 1e-3 and the standard deviation's error at 200
    /// steps at most a third of that at 20. The other samplers are refused with a message.
    func testFlowSamplersConvergeToTheData() throws {
        let (mu, s) = (0.5, 0.2)
        let velocity: Network = { x, timestep in
            let t = timestep / 1000, a = 1 - t
            let gain = a * s * s / (a * a * s * s + t * t)  // E[x_0 | x_t] = μ + gain·(x_t − a·μ)
            let x0 = (x - Float(a * mu)) * Float(gain) + Float(mu)
            let eps = t == 0 ? x0 * 0 : (x - x0 * Float(a)) / Float(t)
            return eps - x0
        }
        for kind in SamplerKind.allCases {
            guard Sampling.flowSamplers.contains(kind) else {
                XCTAssertThrowsError(try Sampling(kind: kind, steps: 10, flow: RectifiedFlow()).makeSampler(), "\(kind)")
                continue
            }
            var errors: [Double] = []
            for steps in [20, 200] {
                let width = steps + 2
                func unit(_ j: Int) -> Tensor {
                    var values = [Float](repeating: 0, count: width)
                    values[j] = 1
                    return Tensor(values, shape: [1, 1, 1, width])
                }
                let sampler = try Sampling(kind: kind, steps: steps, flow: RectifiedFlow(shift: 3)).makeSampler()
                let out = sampler.sample(from: unit(1), model: velocity, stepNoise: { unit(2 + $0) }).scalars.map(Double.init)
                let c = out[0]
                let sd = out.dropFirst().map { ($0 - c) * ($0 - c) }.reduce(0, +).squareRoot()
                XCTAssertEqual(c, mu, accuracy: 1e-3, "\(kind), \(steps) steps: mean")
                errors.append(abs(sd - s))
            }
            XCTAssertLessThanOrEqual(errors[1], max(errors[0] / 3, 1e-5), "\(kind): sd errors \(errors)")
        }
    }
}
