import Foundation

/// Per-row statistics of a normalization: the mean and the biased variance of each row.
public struct RowStatistics {
    public let mean: [Float]
    public let variance: [Float]
}

extension Kernels {
    /// x̂ = (x − μ)/√(σ² + ε) for each row of length `n` of x (σ² biased), and the rows' μ and σ².
    static func normalizeRows(_ x: Tensor, n: Int, eps: Float) -> (Tensor, RowStatistics) {
        let rows = x.count / n
        let y = Tensor(uninitialized: x.shape)
        var mean = [Float](repeating: 0, count: rows), variance = mean
        let px = x.storage.pointer, py = y.storage.pointer
        mean.withUnsafeMutableBufferPointer { pm in
            variance.withUnsafeMutableBufferPointer { pv in
                parallelFor(rows, grain: Swift.max(1, 4096 / n)) { range in
                    for row in range {
                        let s = px + row * n, d = py + row * n
                        var acc: Double = 0
                        for i in 0..<n { acc += Double(s[i]) }
                        let mu = Float(acc / Double(n))
                        var sq: Double = 0
                        for i in 0..<n { let c = s[i] - mu; sq += Double(c * c) }
                        let v = Float(sq / Double(n))
                        let rstd = 1 / (v + eps).squareRoot()
                        for i in 0..<n { d[i] = (s[i] - mu) * rstd }
                        pm[row] = mu
                        pv[row] = v
                    }
                }
            }
        }
        return (y, RowStatistics(mean: mean, variance: variance))
    }
}

/// x̂ = (x − μ)/√(σ² + ε) over rows of `n` consecutive values (x's count must be a multiple of n).
///   ∂L/∂x = (1/√(σ² + ε))·(g − mean(g) − x̂·mean(g ⊙ x̂)), means over the row
public func normalizeRows(_ x: Tensor, length n: Int, eps: Float) -> (Tensor, RowStatistics) {
    precondition(n > 0 && x.count % n == 0, "rows of \(n) do not divide shape \(x.shape)")
    let (y, stats) = Kernels.normalizeRows(x, n: n, eps: eps)
    let out = y.recording(inputs: [x]) { g in
        let gx = Tensor(uninitialized: x.shape)
        let pg = g.storage.pointer, py = y.storage.pointer, pgx = gx.storage.pointer
        parallelFor(x.count / n, grain: Swift.max(1, 4096 / n)) { range in
            for row in range {
                let o = row * n
                var sg: Double = 0, sgy: Double = 0
                for i in 0..<n { sg += Double(pg[o + i]); sgy += Double(pg[o + i] * py[o + i]) }
                let mg = Float(sg / Double(n)), mgy = Float(sgy / Double(n))
                let rstd = 1 / (stats.variance[row] + eps).squareRoot()
                for i in 0..<n { pgx[o + i] = rstd * (pg[o + i] - mg - py[o + i] * mgy) }
            }
        }
        return [gx]
    }
    return (out, stats)
}

/// GroupNorm: the channels of each sample split into `groups`, each group normalized over its channels and
/// positions, then y = x̂·γ_c + β_c.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    precondition(x.rank >= 2 && x.shape[1] % groups == 0, "group norm of \(x.shape) in \(groups) groups")
    let c = x.shape[1]
    let (xhat, _) = normalizeRows(x, length: x.count / (x.shape[0] * groups), eps: eps)
    let channelShape = [1, c] + [Int](repeating: 1, count: x.rank - 2)
    return affine(xhat, weight?.reshaped(channelShape), bias?.reshaped(channelShape))
}

/// LayerNorm over the last dimension: y = x̂·γ + β.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let (xhat, _) = normalizeRows(x, length: x.shape[x.rank - 1], eps: eps)
    return affine(xhat, weight, bias)
}

/// BatchNorm in training mode: each channel normalized over the batch and positions with the batch statistics,
/// then y = x̂·γ_c + β_c. Also returns each channel's batch mean and unbiased variance (for running averages).
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5)
    -> (output: Tensor, mean: [Float], unbiasedVariance: [Float]) {
    precondition(x.rank >= 2, "batch norm of \(x.shape)")
    let c = x.shape[1]
    let order = [1, 0] + Array(2..<x.rank)
    let channelsFirst = x.permuted(order)
    let n = x.count / c
    let (xhat, stats) = normalizeRows(channelsFirst, length: n, eps: eps)
    let channelShape = [1, c] + [Int](repeating: 1, count: x.rank - 2)
    let y = affine(xhat.permuted(order), weight?.reshaped(channelShape), bias?.reshaped(channelShape))
    let correction = Float(n) / Float(Swift.max(n - 1, 1))
    return (y, stats.mean, stats.variance.map { $0 * correction })
}

/// BatchNorm in evaluation mode: y = (x − running mean)/√(running variance + ε)·γ + β, per channel.
public func batchNorm(_ x: Tensor, runningMean: Tensor, runningVariance: Tensor, weight: Tensor?, bias: Tensor?,
                      eps: Float = 1e-5) -> Tensor {
    let channelShape = [1, x.shape[1]] + [Int](repeating: 1, count: x.rank - 2)
    let xhat = (x - runningMean.reshaped(channelShape)) / sqrt(runningVariance.reshaped(channelShape) + eps)
    return affine(xhat, weight?.reshaped(channelShape), bias?.reshaped(channelShape))
}

/// x·γ + β with broadcasting, either factor optional.
func affine(_ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?) -> Tensor {
    let scaled = gamma.map { mul(x, $0) } ?? x
    return beta.map { add(scaled, $0) } ?? scaled
}
