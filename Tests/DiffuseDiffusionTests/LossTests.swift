import DiffuseDiffusion
import DiffuseEngine
import Foundation
import XCTest

final class LossTests: XCTestCase {
    /// min-SNR-γ weights against Hang et al.'s formulas with SNR = ᾱ/(1 − ᾱ) from a Double product, and the loss
    /// of one sample with unit error equal to its weight.
    func testMinSNRWeights() {
        let schedule = NoiseSchedule(), gamma = 5.0
        var bar = 1.0
        let snr = schedule.betas.map { beta -> Double in bar *= 1 - beta; return bar / (1 - bar) }
        let ts = [0, 50, 100, 200, 400, 999]
        let expected: [Prediction: (Double) -> Double] = [
            .epsilon: { min($0, gamma) / $0 }, .sample: { min($0, gamma) }, .velocity: { min($0, gamma) / ($0 + 1) },
        ]
        for prediction in Prediction.diffusion {
            let diffusion = GaussianDiffusion(schedule: schedule, prediction: prediction)
            let weights = diffusion.minSNRWeights(t: ts, gamma: gamma)
            assertClose(weights, ts.map { expected[prediction]!(snr[$0]) }, rtol: 1e-12, "\(prediction) weights")
            for (t, w) in zip(ts, weights) {
                let target = Tensor(zeros: [1, 2, 2]), output = Tensor(repeating: 1, shape: [1, 2, 2])
                let loss = diffusion.loss(output: output, target: target, t: [t], minSNRGamma: gamma).item
                XCTAssertEqual(Double(loss), w, accuracy: 1e-6 * max(w, 1), "\(prediction) loss at t = \(t)")
            }
        }
        // Where SNR is below γ the ε weight is 1, also where SNR = 0 (the last step of a zero-terminal-SNR schedule).
        let zero = GaussianDiffusion(schedule: schedule.rescaledToZeroTerminalSNR())
        XCTAssertEqual(zero.minSNRWeights(t: [999], gamma: gamma), [1])
    }

    /// Per-element terms of the bound, written out in Double from the schedule's β alone.
    struct Reference {
        let betas: [Double]
        var alphaBar: [Double] { var p = 1.0; return betas.map { p *= 1 - $0; return p } }
        func bar(_ t: Int) -> Double { t < 0 ? 1 : alphaBar[t] }
        /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t
        func posteriorVariance(_ t: Int) -> Double { (1 - bar(t - 1)) / (1 - bar(t)) * betas[t] }
        /// μ̃_t(x_t, x_0) = √ᾱ_{t−1}·β_t/(1 − ᾱ_t)·x_0 + √(1 − β_t)·(1 − ᾱ_{t−1})/(1 − ᾱ_t)·x_t
        func posteriorMean(_ t: Int, x0: Double, xt: Double) -> Double {
            (bar(t - 1).squareRoot() * betas[t] * x0 + (1 - betas[t]).squareRoot() * (1 - bar(t - 1)) * xt) / (1 - bar(t))
        }
        /// x̂_0 = clamp((x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, −1, 1)
        func x0Hat(_ t: Int, xt: Double, eps: Double) -> Double {
            min(max((xt - (1 - bar(t)).squareRoot() * eps) / bar(t).squareRoot(), -1), 1)
        }
        /// KL(N(μ₁, v₁) ‖ N(μ₂, v₂)) = ½·(log(v₂/v₁) + v₁/v₂ − 1 + (μ₁ − μ₂)²/v₂), in nats.
        func kl(_ m1: Double, _ v1: Double, _ m2: Double, _ v2: Double) -> Double {
            0.5 * (Foundation.log(v2 / v1) + v1 / v2 - 1 + (m1 - m2) * (m1 - m2) / v2)
        }
        /// −log of the mass that N(μ, σ²) gives to x's bin [x − 1/255, x + 1/255] (the outer bins open), with the
        /// exact Φ(z) = ½(1 + erf(z/√2)).
        func decoderNLL(x: Double, mean: Double, variance: Double) -> Double {
            func cdf(_ y: Double) -> Double { 0.5 * (1 + erf((y - mean) / (2 * variance).squareRoot())) }
            let upper = x > 0.999 ? 1 : cdf(x + 1 / 255), lower = x < -0.999 ? 0 : cdf(x - 1 / 255)
            return -Foundation.log(upper - lower)
        }
    }

    /// `variationalBoundTerm` against the reference for t = 0 (the decoder) and t > 0 (KL between posterior and
    /// model step), both variances, on a batch of 2 images of 2×2 values including ±1, in bits per dimension.
    /// The KL terms agree to float32 rounding (rtol 1e-4); the decoder uses DDPM's tanh approximation of Φ, off
    /// from the exact Φ by at most 1.8e-4, which moves the log of a bin mass of ~0.3 by up to ~1e-3 nats (atol 2e-3 bits).
    func testVariationalBoundTerms() {
        let diffusion = GaussianDiffusion(), reference = Reference(betas: diffusion.schedule.betas)
        let x0Values: [Float] = [-1, -0.5, 0.2, 1, 1, 0.9, -0.3, 0.05]
        let x0 = Tensor(x0Values, shape: [2, 1, 2, 2])
        var generator = RandomGenerator(seed: 7)
        let noise = generator.normal([2, 1, 2, 2]), wrong = generator.normal([2, 1, 2, 2])
        for t in [0, 1, 10, 300, 999] {
            let xt = diffusion.noised(x0, t: [t, t], noise: noise)
            // The model's ε̂: the true noise, off by an amount that shrinks with t so that x̂_0 stays informative.
            let miss: Float = t == 0 ? 0.001 : 0.3
            let output = noise + wrong * miss
            for large in [false, true] {
                let terms = diffusion.variationalBoundTerm(x0: x0, xt: xt, t: t, output: output, largeVariance: large)
                let (px, pt, po) = (x0.scalars, xt.scalars, output.scalars)
                let expected = (0..<2).map { s -> Double in
                    let nats = (4 * s..<4 * s + 4).reduce(0.0) { sum, i in
                        let (x, y, e) = (Double(px[i]), Double(pt[i]), Double(po[i]))
                        let modelMean = reference.posteriorMean(t, x0: reference.x0Hat(t, xt: y, eps: e), xt: y)
                        if t == 0 {  // β̃_0 = 0, so both variances take β̃_1 here
                            return sum + reference.decoderNLL(x: x, mean: modelMean, variance: reference.posteriorVariance(1))
                        }
                        let v = reference.posteriorVariance(t)
                        return sum + reference.kl(reference.posteriorMean(t, x0: x, xt: y), v, modelMean, large ? reference.betas[t] : v)
                    }
                    return nats / (4 * Foundation.log(2))
                }
                assertClose(terms, expected, rtol: t == 0 ? 0 : 1e-4, atol: t == 0 ? 2e-3 : 1e-6, "L at t = \(t), large variance \(large)")
            }
        }
    }

    /// L_T = KL(N(√ᾱ_T·x_0, 1 − ᾱ_T) ‖ N(0, 1)) for a short schedule that leaves signal at T (ᾱ_T ≈ 0.13), and
    /// almost nothing for the default schedule.
    func testPriorTerm() {
        let diffusion = GaussianDiffusion(schedule: NoiseSchedule(timesteps: 20, betaStart: 0.01, betaEnd: 0.2))
        let reference = Reference(betas: diffusion.schedule.betas), bar = reference.alphaBar[19]
        let x0Values: [Float] = [-1, 0.4, 0.8, 1]
        let terms = diffusion.priorTerm(x0: Tensor(x0Values, shape: [2, 2]))
        let perElement = x0Values.map { reference.kl(bar.squareRoot() * Double($0), 1 - bar, 0, 1) / Foundation.log(2) }
        let expected = [(perElement[0] + perElement[1]) / 2, (perElement[2] + perElement[3]) / 2]
        assertClose(terms, expected, rtol: 1e-5, "L_T")
        XCTAssertLessThan(GaussianDiffusion().priorTerm(x0: Tensor(repeating: 1, shape: [1, 4])).first!, 1e-4)
    }
}
