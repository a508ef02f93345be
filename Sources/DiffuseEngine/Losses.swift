import Foundation

// Losses, embedding lookup and dropout.

/// mean((ŷ − y)²)
public func mseLoss(_ prediction: Tensor, _ target: Tensor) -> Tensor { mean(square(prediction - target)) }

/// mean(|ŷ − y|)
public func l1Loss(_ prediction: Tensor, _ target: Tensor) -> Tensor { mean(abs(prediction - target)) }

/// Binary cross-entropy of logits x against targets y ∈ [0, 1], averaged:
/// mean(max(x, 0) − x·y + log(1 + e^{−|x|}))   ∂/∂x = (σ(x) − y)/n
public func binaryCrossEntropyWithLogits(_ logits: Tensor, _ targets: Tensor) -> Tensor {
    precondition(logits.shape == targets.shape, "logits \(logits.shape) and targets \(targets.shape) differ")
    let n = logits.count
    let px = logits.storage.pointer, py = targets.storage.pointer
    let total = parallelSum(n) { r in
        var s: Double = 0
        for i in r { let x = px[i]; s += Double(Swift.max(x, 0) - x * py[i] + Foundation.log1p(Foundation.exp(-Swift.abs(x)))) }
        return s
    }
    return Tensor(scalar: Float(total / Double(n))).recording(inputs: [logits]) { g in
        let k = g.item / Float(n)
        return [Kernels.zip(logits, targets) { o, x, y, r in for i in r { o[i] = k * (sigmoidScalar(x[i]) - y[i]) } }]
    }
}

/// Cross-entropy of logits [N, C] against class indices, averaged over N: mean_i(−log softmax(x_i)[label_i])
///   ∂/∂x_i = (softmax(x_i) − onehot(label_i))/N
public func crossEntropy(_ logits: Tensor, labels: [Int]) -> Tensor {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count, "logits \(logits.shape) for \(labels.count) labels")
    let c = logits.shape[1]
    precondition(labels.allSatisfy { $0 >= 0 && $0 < c }, "a label is outside 0..<\(c)")
    let logp = withoutGradients { logSoftmax(logits) }
    let p = logp.storage.pointer
    let loss = -labels.enumerated().reduce(0.0) { $0 + Double(p[$1.offset * c + $1.element]) } / Double(labels.count)
    return Tensor(scalar: Float(loss)).recording(inputs: [logits]) { g in
        let k = g.item / Float(labels.count)
        let gx = Kernels.map(logp) { o, lp, r in for i in r { o[i] = k * Foundation.exp(lp[i]) } }
        for (i, label) in labels.enumerated() { gx.storage.pointer[i * c + label] -= k }
        return [gx]
    }
}

/// KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) elementwise for diagonal Gaussians given by means and log-variances:
/// ½(−1 + v₂ − v₁ + e^{v₁ − v₂} + (μ₁ − μ₂)²·e^{−v₂})
public func gaussianKL(mean1: Tensor, logVariance1: Tensor, mean2: Tensor, logVariance2: Tensor) -> Tensor {
    let terms = (logVariance2 - logVariance1) + exp(logVariance1 - logVariance2)
        + square(mean1 - mean2) * exp(neg(logVariance2))
    return scale(shift(terms, -1), 0.5)
}

/// Rows of `weight` [V, D] picked by `indices` (of shape `shape`): output [shape..., D].
///   ∂L/∂weight[v] = Σ over the positions that picked v of ∂L/∂y
public func embedding(_ weight: Tensor, indices: [Int], shape: [Int]? = nil) -> Tensor {
    let (v, d) = (weight.shape[0], weight.shape[1])
    precondition(indices.allSatisfy { $0 >= 0 && $0 < v }, "an index is outside the \(v) rows of the embedding")
    precondition((shape ?? [indices.count]).reduce(1, *) == indices.count, "\(indices.count) indices in shape \(shape!)")
    let out = Tensor(uninitialized: (shape ?? [indices.count]) + [d])
    let pw = weight.storage.pointer, po = out.storage.pointer
    for (i, idx) in indices.enumerated() { (po + i * d).update(from: pw + idx * d, count: d) }
    return out.recording(inputs: [weight]) { g in
        let gw = Tensor(zeros: weight.shape)
        let pg = g.storage.pointer, pgw = gw.storage.pointer
        for (i, idx) in indices.enumerated() { for j in 0..<d { pgw[idx * d + j] += pg[i * d + j] } }
        return [gw]
    }
}

/// Inverted dropout: each value zeroed with probability p, the others scaled by 1/(1 − p). On a share of a batch, the
/// mask is the share's rows of the whole batch's.
public func dropout(_ x: Tensor, p: Float, generator: inout RandomGenerator, share: BatchShare? = nil) -> Tensor {
    guard p > 0 else { return x }
    let keep = 1 - p
    let u = generator.uniform(x.shape, share: share)
    let mask = Kernels.map(u) { o, u, r in for i in r { o[i] = u[i] < keep ? 1 / keep : 0 } }
    return mul(x, mask)
}
