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
                        let mu = Kernels.sum(s, n) / Float(n)
                        let v = Kernels.squaredDeviation(s, n, from: mu) / Float(n)
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
                let mg = Kernels.sum(pg + o, n) / Float(n), mgy = Kernels.dot(pg + o, py + o, n) / Float(n)
                let rstd = 1 / (stats.variance[row] + eps).squareRoot()
                for i in 0..<n { pgx[o + i] = rstd * (pg[o + i] - mg - py[o + i] * mgy) }
            }
        }
        return [gx]
    }
    return (out, stats)
}

/// GroupNorm: the channels of each sample split into `groups`, each group normalized over its channels and
/// positions with its mean μ and biased variance σ², then z = x̂·γ_c + β_c with x̂ = (x − μ)/√(σ² + ε); with `silu`,
/// y = z·σ(z) in the same pass (the normalization before every convolution of a diffusion U-Net). One fused kernel
/// each way (memory-bound: two passes over x forward, two over x and ∂L/∂y backward):
///   g = ∂L/∂z (= ∂L/∂y·(σ(z) + z·σ(z)·(1 − σ(z))) with silu),  ∂L/∂β_c = Σ_{n,s} g,  ∂L/∂γ_c = Σ_{n,s} g·x̂,
///   ∂L/∂x = (1/√(σ² + ε))·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·γ_c, means over the group.
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5,
                      silu: Bool = false) -> Tensor {
    precondition(x.rank >= 2 && x.shape[1] % groups == 0, "group norm of \(x.shape) in \(groups) groups")
    let (n, c) = (x.shape[0], x.shape[1])
    precondition(weight.map { $0.count == c } ?? true && bias.map { $0.count == c } ?? true, "group norm affine of \(c) channels")
    let spatial = x.count / max(n * c, 1), perGroup = c / groups, m = perGroup * spatial
    let rows = n * groups
    var mean = [Float](repeating: 0, count: rows), rstd = mean
    let y = Tensor(uninitialized: x.shape)
    let px = x.storage.pointer, py = y.storage.pointer
    let pw = weight?.storage.pointer, pb = bias?.storage.pointer
    /// The affine map of channel ch in a group with mean mu and 1/σ r: z = x·scale + shift.
    @inline(__always) func affine(_ ch: Int, _ mu: Float, _ r: Float) -> (scale: Float, shift: Float) {
        let scale = r * (pw?[ch] ?? 1)
        return (scale, (pb?[ch] ?? 0) - mu * scale)
    }
    mean.withUnsafeMutableBufferPointer { pm in
        rstd.withUnsafeMutableBufferPointer { pr in
            parallelFor(rows, grain: max(1, 8192 / max(m, 1))) { range in
                for row in range {
                    let base = row * m
                    let mu = Kernels.sum(px + base, m) / Float(m)
                    let r = 1 / (Kernels.squaredDeviation(px + base, m, from: mu) / Float(m) + eps).squareRoot()
                    pm[row] = mu
                    pr[row] = r
                    let firstChannel = (row % groups) * perGroup
                    for k in 0..<perGroup {
                        let (scale, shift) = affine(firstChannel + k, mu, r)
                        let o = base + k * spatial
                        var s = 0
                        if silu {
                            while s + 16 <= spatial {
                                let z = Kernels.load(px + o + s) * scale + shift
                                Kernels.store(z / (1 + fastExp(-z)), py + o + s)
                                s += 16
                            }
                            while s < spatial { let z = px[o + s] * scale + shift; py[o + s] = z / (1 + fastExp(-z)); s += 1 }
                        } else {
                            while s < spatial { py[o + s] = px[o + s] * scale + shift; s += 1 }
                        }
                    }
                }
            }
        }
    }
    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    return y.recording(inputs: inputs) { gy in
        let gx = Tensor(uninitialized: x.shape)
        let pgy = gy.storage.pointer, pgx = gx.storage.pointer
        // With silu, ∂L/∂z is formed group by group in the gradient's buffer: nothing else reads it.
        let g = silu ? Tensor(uninitialized: x.shape) : gy
        let pg = g.storage.pointer
        // Per (sample, channel): Σ_s g and Σ_s g·x̂, summed over samples afterwards in order.
        var sumG = [Float](repeating: 0, count: n * c), sumGX = sumG
        sumG.withUnsafeMutableBufferPointer { sg in
            sumGX.withUnsafeMutableBufferPointer { sgx in
                parallelFor(rows, grain: max(1, 8192 / max(m, 1))) { range in
                    for row in range {
                        let base = row * m, mu = mean[row], r = rstd[row]
                        let firstChannel = (row % groups) * perGroup, sample = row / groups
                        if silu {
                            for k in 0..<perGroup {
                                let (scale, shift) = affine(firstChannel + k, mu, r)
                                let o = base + k * spatial
                                var s = 0
                                while s + 16 <= spatial {
                                    let z = Kernels.load(px + o + s) * scale + shift, sz = 1 / (1 + fastExp(-z))
                                    Kernels.store(Kernels.load(pgy + o + s) * (sz + z * sz * (1 - sz)), pg + o + s)
                                    s += 16
                                }
                                while s < spatial {
                                    let z = px[o + s] * scale + shift, sz = sigmoidScalar(z)
                                    pg[o + s] = pgy[o + s] * (sz + z * sz * (1 - sz))
                                    s += 1
                                }
                            }
                        }
                        var a: Float = 0, b: Float = 0  // Σ ĝ and Σ ĝ·x̂ over the group
                        for k in 0..<perGroup {
                            let ch = firstChannel + k, gamma = pw?[ch] ?? 1, o = base + k * spatial
                            // Σ g and Σ g·x̂ = r·(Σ g·x − μ·Σ g)
                            let s1 = Kernels.sum(pg + o, spatial)
                            let s2 = r * (Kernels.dot(pg + o, px + o, spatial) - mu * s1)
                            sg[sample * c + ch] = s1
                            sgx[sample * c + ch] = s2
                            a += s1 * gamma
                            b += s2 * gamma
                        }
                        let meanG = a / Float(m), meanGX = b / Float(m)
                        for k in 0..<perGroup {
                            let ch = firstChannel + k, gamma = pw?[ch] ?? 1, o = base + k * spatial
                            for s in 0..<spatial {
                                let xh = (px[o + s] - mu) * r
                                pgx[o + s] = r * (pg[o + s] * gamma - meanG - xh * meanGX)
                            }
                        }
                    }
                }
            }
        }
        func channelSums(_ perSample: [Float]) -> Tensor {
            let out = Tensor(zeros: [c])
            for s in 0..<n { for ch in 0..<c { out.storage.pointer[ch] += perSample[s * c + ch] } }
            return out
        }
        var grads: [Tensor?] = [x.requiresGrad ? gx : nil]
        if let weight { grads.append(weight.requiresGrad ? channelSums(sumGX).reshaped(weight.shape) : nil) }
        if let bias { grads.append(bias.requiresGrad ? channelSums(sumG).reshaped(bias.shape) : nil) }
        return grads
    }
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

/// BatchNorm in training mode over a batch shared between processes (SyncBatchNorm): each channel's mean and
/// biased variance are those of the whole batch, μ_c = Σ_ranks Σ x / N and σ²_c = Σ_ranks Σ (x − μ_c)² / N over the
/// N values of the channel in all shares, the gradient flowing back through the sums over processes
/// (`processSum`). Returns what `batchNorm(_:weight:bias:eps:)` does, the statistics being the whole batch's.
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5, group: ProcessGroup)
    -> (output: Tensor, mean: [Float], unbiasedVariance: [Float]) {
    precondition(x.rank >= 2, "batch norm of \(x.shape)")
    let c = x.shape[1]
    let axes = [0] + Array(2..<x.rank)
    let n = Float(group.sum([Double(x.count / c)])[0])
    let mu = processSum(sum(x, axes: axes, keepDims: true), group: group) / n
    let centred = x - mu
    let variance = processSum(sum(square(centred), axes: axes, keepDims: true), group: group) / n
    let xhat = centred / sqrt(variance + eps)
    let channelShape = [1, c] + [Int](repeating: 1, count: x.rank - 2)
    let y = affine(xhat, weight?.reshaped(channelShape), bias?.reshaped(channelShape))
    let correction = n / Swift.max(n - 1, 1)
    return (y, mu.scalars, variance.scalars.map { $0 * correction })
}

/// S = Σ_ranks x_rank, the same on every process of `group`. Each process' loss reaches S, so
///   ∂L/∂x_rank = Σ_ranks ∂L_rank/∂S: the backward sums the gradients over the processes too.
public func processSum(_ x: Tensor, group: ProcessGroup) -> Tensor {
    let out = x.detached.copy()
    group.sum(UnsafeMutableBufferPointer(start: out.storage.pointer, count: out.count))
    return out.recording(inputs: [x]) { g in
        let total = g.copy()
        group.sum(UnsafeMutableBufferPointer(start: total.storage.pointer, count: total.count))
        return [total]
    }
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
