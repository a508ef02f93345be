import DiffuseEngine
import Foundation

/// Φ(x) ≈ ½(1 + tanh(√(2/π)·(x + 0.044715x³))), the approximation of the standard normal CDF used by DDPM.
@inline(__always) func approximateStandardNormalCDF(_ x: Double) -> Double {
    0.5 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
}

/// log p(x | μ, e^{logScale}) of data discretised to 256 levels in [−1, 1] (DDPM's decoder L_0): the Gaussian mass of
/// the bin [x − 1/255, x + 1/255], the outer bins extended to ±∞. Summed over each sample's values, in nats.
public func discretizedGaussianLogLikelihood(_ x: Tensor, mean: Tensor, logScale: Tensor) -> [Double] {
    precondition(x.shape == mean.shape && x.shape == logScale.shape, "shapes \(x.shape), \(mean.shape), \(logScale.shape)")
    let n = x.shape[0], per = x.count / max(n, 1)
    let px = x.storage.pointer, pm = mean.storage.pointer, ps = logScale.storage.pointer
    return (0..<n).map { s in
        var total = 0.0
        for i in (s * per)..<((s + 1) * per) {
            let xi = Double(px[i]), inv = Foundation.exp(-Double(ps[i])), centered = xi - Double(pm[i])
            let cdfPlus = approximateStandardNormalCDF(inv * (centered + 1 / 255))
            let cdfMinus = approximateStandardNormalCDF(inv * (centered - 1 / 255))
            let p = xi < -0.999 ? cdfPlus : (xi > 0.999 ? 1 - cdfMinus : cdfPlus - cdfMinus)
            total += Foundation.log(max(p, 1e-12))
        }
        return total
    }
}

/// KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) summed over each sample's values, in nats.
public func normalKL(mean1: Tensor, logVariance1: Tensor, mean2: Tensor, logVariance2: Tensor) -> [Double] {
    let kl = withoutGradients { gaussianKL(mean1: mean1, logVariance1: logVariance1, mean2: mean2, logVariance2: logVariance2) }
    let n = kl.shape[0], per = kl.count / max(n, 1), p = kl.storage.pointer
    return (0..<n).map { s in ((s * per)..<((s + 1) * per)).reduce(0.0) { $0 + Double(p[$1]) } }
}

extension GaussianDiffusion {
    /// One term of the variational bound −log p(x_0) ≤ L_T + Σ_{t≥1} L_{t−1} + L_0, per sample, in bits per dimension,
    /// for the model output at x_t (fixed reverse variance σ_t² = β̃_t, or β_t with `largeVariance`):
    /// t > 0: L = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t));  t = 0: L = −log p_θ(x_0 | x_1), the discretised decoder.
    public func variationalBoundTerm(x0: Tensor, xt: Tensor, t: Int, output: Tensor, largeVariance: Bool = false) -> [Double] {
        withoutGradients {
            let n = x0.shape[0], dims = Double(x0.count / max(n, 1))
            let steps = [Int](repeating: t, count: n)
            let x0Hat = clamp(estimates(output: output, xt: xt, t: steps).x0, min: -1, max: 1)
            let (c0, ct) = schedule.posteriorMeanCoefficients(t)
            let modelMean = x0Hat * Float(c0) + xt * Float(ct)
            let modelLogVariance = largeVariance ? Foundation.log(t == 0 ? schedule.posteriorVariance(1) : schedule.betas[t])
                                                 : schedule.posteriorLogVarianceClipped(t)
            let logVar = Tensor(repeating: Float(modelLogVariance), shape: x0.shape)
            let nats: [Double]
            if t == 0 {
                nats = discretizedGaussianLogLikelihood(x0, mean: modelMean, logScale: logVar * 0.5).map { -$0 }
            } else {
                let trueMean = x0 * Float(c0) + xt * Float(ct)
                let trueLogVar = Tensor(repeating: Float(schedule.posteriorLogVarianceClipped(t)), shape: x0.shape)
                nats = normalKL(mean1: trueMean, logVariance1: trueLogVar, mean2: modelMean, logVariance2: logVar)
            }
            return nats.map { $0 / (dims * Foundation.log(2)) }
        }
    }

    /// L_T = KL(q(x_T | x_0) ‖ N(0, I)) per sample, in bits per dimension (no parameters: near 0 for a good schedule).
    public func priorTerm(x0: Tensor) -> [Double] {
        withoutGradients {
            let T = schedule.timesteps - 1, n = x0.shape[0], dims = Double(x0.count / max(n, 1))
            let mean = x0 * Float(schedule.alphaBar[T].squareRoot())
            let logVar = Tensor(repeating: Float(Foundation.log(1 - schedule.alphaBar[T])), shape: x0.shape)
            let zero = Tensor(zeros: x0.shape)
            return normalKL(mean1: mean, logVariance1: logVar, mean2: zero, logVariance2: zero).map { $0 / (dims * Foundation.log(2)) }
        }
    }
}

extension GaussianDiffusion {
    /// The negative log-likelihood bound of images x_0 (values on the 256 levels of [−1, 1]) in bits per dimension,
    /// per sample: the whole variational bound L_T + Σ_{t=1}^{T−1} L_{t−1} + L_0 over all T steps, each term at one
    /// x_t ~ q(x_t | x_0) (noise from `generator`, drawn for t = 0, 1, …, T − 1 in turn), with DDPM's fixed reverse
    /// variance and discretised decoder. `model(x_t, t)` is the network's output; `progress(t)` follows the steps.
    public func negativeLogLikelihood(_ x0: Tensor, model: (Tensor, [Int]) -> Tensor, largeVariance: Bool = false,
                                      generator: inout RandomGenerator, progress: ((Int) -> Void)? = nil) -> [Double] {
        var total = priorTerm(x0: x0)
        let n = x0.shape[0]
        for t in 0..<schedule.timesteps {
            let steps = [Int](repeating: t, count: n)
            let xt = noised(x0, t: steps, noise: generator.normal(x0.shape))
            let output = withoutGradients { model(xt, steps) }
            let term = variationalBoundTerm(x0: x0, xt: xt, t: t, output: output, largeVariance: largeVariance)
            for i in 0..<n { total[i] += term[i] }
            progress?(t + 1)
        }
        return total
    }
}
