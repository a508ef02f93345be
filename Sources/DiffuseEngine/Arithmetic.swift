import Foundation

// Elementwise arithmetic with broadcasting, and reductions. Each op's gradient is written beside it.

/// a + b   ∂/∂a = 1, ∂/∂b = 1 (summed over broadcast dimensions)
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    Kernels.broadcast(a, b, AddFunction.self).recording(inputs: [a, b]) { g in
        [a.requiresGrad ? Kernels.sum(g, to: a.shape) : nil, b.requiresGrad ? Kernels.sum(g, to: b.shape) : nil]
    }
}

/// a − b   ∂/∂a = 1, ∂/∂b = −1
public func sub(_ a: Tensor, _ b: Tensor) -> Tensor {
    Kernels.broadcast(a, b, SubFunction.self).recording(inputs: [a, b]) { g in
        [a.requiresGrad ? Kernels.sum(g, to: a.shape) : nil, b.requiresGrad ? Kernels.sum(neg(g), to: b.shape) : nil]
    }
}

/// a ⊙ b   ∂/∂a = b, ∂/∂b = a
public func mul(_ a: Tensor, _ b: Tensor) -> Tensor {
    Kernels.broadcast(a, b, MulFunction.self).recording(inputs: [a, b]) { g in
        [a.requiresGrad ? Kernels.sum(mul(g, b), to: a.shape) : nil,
         b.requiresGrad ? Kernels.sum(mul(g, a), to: b.shape) : nil]
    }
}

/// a / b   ∂/∂a = 1/b, ∂/∂b = −a/b²
public func div(_ a: Tensor, _ b: Tensor) -> Tensor {
    Kernels.broadcast(a, b, DivFunction.self).recording(inputs: [a, b]) { g in
        [a.requiresGrad ? Kernels.sum(div(g, b), to: a.shape) : nil,
         b.requiresGrad ? Kernels.sum(neg(div(mul(g, a), mul(b, b))), to: b.shape) : nil]
    }
}

/// −x
public func neg(_ x: Tensor) -> Tensor { scale(x, -1) }

/// c·x   ∂/∂x = c
public func scale(_ x: Tensor, _ c: Float) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = c * x[i] } }
        .recording(inputs: [x]) { g in [scale(g, c)] }
}

/// x + c   ∂/∂x = 1
public func shift(_ x: Tensor, _ c: Float) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = x[i] + c } }
        .recording(inputs: [x]) { g in [g] }
}

/// eˣ   ∂/∂x = eˣ
public func exp(_ x: Tensor) -> Tensor {
    let y = Kernels.map(x) { y, x, r in for i in r { y[i] = Foundation.exp(x[i]) } }
    return y.recording(inputs: [x]) { g in [mul(g, y)] }
}

/// ln x   ∂/∂x = 1/x
public func log(_ x: Tensor) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = Foundation.log(x[i]) } }
        .recording(inputs: [x]) { g in [div(g, x)] }
}

/// √x   ∂/∂x = 1/(2√x)
public func sqrt(_ x: Tensor) -> Tensor {
    let y = Kernels.map(x) { y, x, r in for i in r { y[i] = x[i].squareRoot() } }
    return y.recording(inputs: [x]) { g in [div(scale(g, 0.5), y)] }
}

/// xᵖ   ∂/∂x = p·xᵖ⁻¹
public func pow(_ x: Tensor, _ p: Float) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = Foundation.pow(x[i], p) } }
        .recording(inputs: [x]) { g in [mul(g, scale(pow(x, p - 1), p))] }
}

/// x²   ∂/∂x = 2x
public func square(_ x: Tensor) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = x[i] * x[i] } }
        .recording(inputs: [x]) { g in [mul(g, scale(x, 2))] }
}

/// |x|   ∂/∂x = sign(x) (0 at 0, as PyTorch)
public func abs(_ x: Tensor) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = Swift.abs(x[i]) } }
        .recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in for i in r { o[i] = x[i] > 0 ? g[i] : (x[i] < 0 ? -g[i] : 0) } }]
        }
}

/// min(max(x, lo), hi)   ∂/∂x = 1 inside [lo, hi], 0 outside
public func clamp(_ x: Tensor, min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = Swift.min(Swift.max(x[i], lo), hi) } }
        .recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in for i in r { o[i] = x[i] >= lo && x[i] <= hi ? g[i] : 0 } }]
        }
}

public func + (a: Tensor, b: Tensor) -> Tensor { add(a, b) }
public func - (a: Tensor, b: Tensor) -> Tensor { sub(a, b) }
public func * (a: Tensor, b: Tensor) -> Tensor { mul(a, b) }
public func / (a: Tensor, b: Tensor) -> Tensor { div(a, b) }
public func + (a: Tensor, c: Float) -> Tensor { shift(a, c) }
public func - (a: Tensor, c: Float) -> Tensor { shift(a, -c) }
public func * (a: Tensor, c: Float) -> Tensor { scale(a, c) }
public func * (c: Float, a: Tensor) -> Tensor { scale(a, c) }
public func / (a: Tensor, c: Float) -> Tensor { scale(a, 1 / c) }
public prefix func - (a: Tensor) -> Tensor { neg(a) }

// MARK: - Reductions

extension Tensor {
    /// The shape after reducing `axes`, keeping them as dimensions of size 1.
    func reducedShape(_ axes: [Int]) -> [Int] {
        let set = Set(axes.map(axis))
        return shape.indices.map { set.contains($0) ? 1 : shape[$0] }
    }
}

/// Copies `x` along its dimensions of size 1 to fill `shape` (the gradient of a sum).
public func expand(_ x: Tensor, to shape: [Int]) -> Tensor {
    if x.shape == shape { return x }
    let out = Tensor(uninitialized: shape)
    let walk = BroadcastWalk(out: shape, operands: [x.shape])
    let px = x.storage.pointer, po = out.storage.pointer
    let n = walk.inner, sx = walk.strides[0][walk.dims.count - 1]
    parallelFor(walk.rows, grain: max(1, 4096 / max(n, 1))) { rows in
        for r in rows {
            let xi = px + walk.offset(row: r, operand: 0), o = po + r * n
            if sx == 0 { o.update(repeating: xi[0], count: n) } else { for i in 0..<n { o[i] = xi[i * sx] } }
        }
    }
    return out.recording(inputs: [x]) { g in [Kernels.sum(g, to: x.shape)] }
}

/// Σ over `axes` (all axes when nil)   ∂/∂x = 1, spread back over the summed axes
public func sum(_ x: Tensor, axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
    let axes = axes ?? Array(x.shape.indices)
    let kept = x.reducedShape(axes)
    let set = Set(axes.map(x.axis))
    let final = keepDims ? kept : x.shape.indices.filter { !set.contains($0) }.map { x.shape[$0] }
    let s = Tensor(storage: Kernels.sum(x, to: kept).storage, shape: final)
    return s.recording(inputs: [x]) { g in [expand(g.reshaped(kept), to: x.shape)] }
}

/// The mean over `axes` (all axes when nil).
public func mean(_ x: Tensor, axes: [Int]? = nil, keepDims: Bool = false) -> Tensor {
    let axes = axes ?? Array(x.shape.indices)
    let n = axes.map { x.shape[x.axis($0)] }.reduce(1, *)
    return scale(sum(x, axes: axes, keepDims: keepDims), 1 / Float(n))
}

/// The variance over `axes`: Σ(x − mean)² / (n − 1) when `unbiased`, else / n.
public func variance(_ x: Tensor, axes: [Int]? = nil, unbiased: Bool = true, keepDims: Bool = false) -> Tensor {
    let axes = axes ?? Array(x.shape.indices)
    let n = axes.map { x.shape[x.axis($0)] }.reduce(1, *)
    let centered = x - mean(x, axes: axes, keepDims: true)
    let ss = sum(square(centered), axes: axes, keepDims: keepDims)
    return scale(ss, 1 / Float(unbiased ? n - 1 : n))
}
