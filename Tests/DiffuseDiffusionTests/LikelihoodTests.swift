import DiffuseDiffusion
import DiffuseEngine
import Foundation
import XCTest

final class LikelihoodTests: XCTestCase {
    /// The whole bound of a tiny model (T = 10, ε̂ = 0.5·x_t + 0.01·t) on 2×1×2×2 images of the 256 levels, against
    /// the same bound written out here in Float64 from the definitions, with the same x_t:
    ///   L_T = KL(N(√ᾱ_{T−1}·x_0, 1 − ᾱ_{T−1}) ‖ N(0, 1)),
    ///   L_{t−1} = (μ̃_t(x_t, x_0) − μ̃_t(x_t, x̂_0))²/(2β̃_t) for t ≥ 1 (equal variances),
    ///   L_0 = −log ∫_bin N(x; x̂_0, β̃_1) with DDPM's tanh approximation of Φ and open outer bins,
    /// summed over values and divided by D·ln 2.
    func testNegativeLogLikelihoodMatchesTheBoundWrittenOut() {
        let T = 10
        let schedule = NoiseSchedule(.linear, timesteps: T, betaStart: 0.01, betaEnd: 0.5)
        let diffusion = GaussianDiffusion(schedule: schedule)
        var g = RandomGenerator(seed: 2)
        let levels = g.integers(8, below: 256)
        let x0 = Tensor(levels.map { Float($0) / 127.5 - 1 }, shape: [2, 1, 2, 2])
        let model: (Tensor, [Int]) -> Tensor = { x, t in x * 0.5 + Float(0.01 * Double(t[0])) }
        var noise = RandomGenerator(seed: 5)
        let bits = diffusion.negativeLogLikelihood(x0, model: model, generator: &noise)

        var replay = RandomGenerator(seed: 5)
        let x = x0.scalars.map(Double.init)
        let (betas, alphaBar) = (schedule.betas, schedule.alphaBar)
        func phi(_ v: Double) -> Double { 0.5 * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
        var nats = [Double](repeating: 0, count: 8)
        for i in 0..<8 {  // L_T
            let (m, v) = (alphaBar[T - 1].squareRoot() * x[i], 1 - alphaBar[T - 1])
            nats[i] += 0.5 * (-log(v) + v + m * m - 1)
        }
        let tildeBeta = { (t: Int) in betas[t] * (1 - alphaBar[t - 1]) / (1 - alphaBar[t]) }
        for t in 0..<T {
            let eps = replay.normal([2, 1, 2, 2]).scalars.map(Double.init)
            let previous = t == 0 ? 1 : alphaBar[t - 1]
            let c0 = betas[t] * previous.squareRoot() / (1 - alphaBar[t])
            let ct = (1 - previous) * (1 - betas[t]).squareRoot() / (1 - alphaBar[t])
            for i in 0..<8 {
                let xt = Double(Float(alphaBar[t].squareRoot()) * Float(x[i]) + Float((1 - alphaBar[t]).squareRoot()) * Float(eps[i]))
                let epsHat = 0.5 * xt + 0.01 * Double(t)
                let x0Hat = min(max((xt - (1 - alphaBar[t]).squareRoot() * epsHat) / alphaBar[t].squareRoot(), -1), 1)
                if t > 0 {
                    let difference = c0 * (x[i] - x0Hat)
                    nats[i] += difference * difference / (2 * tildeBeta(t))
                } else {
                    let (mean, sigma) = (c0 * x0Hat + ct * xt, tildeBeta(1).squareRoot())
                    let upper = phi((x[i] + 1 / 255 - mean) / sigma), lower = phi((x[i] - 1 / 255 - mean) / sigma)
                    nats[i] -= log(x[i] < -0.999 ? upper : x[i] > 0.999 ? 1 - lower : upper - lower)
                }
            }
        }
        for s in 0..<2 {
            let expected = nats[(4 * s)..<(4 * s + 4)].reduce(0, +) / (4 * log(2))
            XCTAssertEqual(bits[s], expected, accuracy: 1e-5 * expected, "sample \(s)")
        }
        XCTAssertGreaterThan(bits[0], 0)
    }
}
