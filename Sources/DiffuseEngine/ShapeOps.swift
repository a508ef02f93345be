// Ops that move values without computing: reshape, permute, slice, pad, concat.

extension Kernels {
    /// dst[Σ i_d·dstStrides_d] = src[Σ i_d·srcStrides_d] for every index i of `dims`.
    static func copy(dims: [Int], from src: UnsafePointer<Float>, _ srcStrides: [Int],
                     to dst: UnsafeMutablePointer<Float>, _ dstStrides: [Int]) {
        if dims.contains(0) { return }
        let walk = BroadcastWalk(dims: dims, strides: [srcStrides, dstStrides])
        let n = walk.inner, last = walk.dims.count - 1
        let ss = walk.strides[0][last], ds = walk.strides[1][last]
        parallelFor(walk.rows, grain: max(1, 4096 / max(n, 1))) { rows in
            for r in rows {
                let s = src + walk.offset(row: r, operand: 0), d = dst + walk.offset(row: r, operand: 1)
                if ss == 1 && ds == 1 { d.update(from: s, count: n) } else { for i in 0..<n { d[i * ds] = s[i * ss] } }
            }
        }
    }
}

extension Tensor {
    /// The same values in another shape of the same size; one dimension may be -1. Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var newShape = newShape
        if let i = newShape.firstIndex(of: -1) {
            newShape[i] = count / Swift.max(1, newShape.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *))
        }
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        let old = shape
        return Tensor(storage: storage, shape: newShape).recording(inputs: [self]) { g in [g.reshaped(old)] }
    }

    /// Flattens all dimensions from `axis` on into one.
    public func flattened(from axis: Int = 1) -> Tensor {
        reshaped(Array(shape[..<axis]) + [shape[axis...].reduce(1, *)])
    }

    /// Dimensions reordered: dimension i of the result is dimension `order[i]` of this tensor.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permutation \(order) for rank \(rank)")
        if order == Array(0..<rank) { return self }
        let s = Tensor.strides(shape)
        let out = Tensor(uninitialized: order.map { shape[$0] })
        Kernels.copy(dims: out.shape, from: storage.pointer, order.map { s[$0] },
                     to: out.storage.pointer, Tensor.strides(out.shape))
        var inverse = order
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.recording(inputs: [self]) { g in [g.permuted(inverse)] }
    }

    /// Swaps two dimensions.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(axis(a), axis(b))
        return permuted(order)
    }

    /// The block `ranges[d]` of each dimension d (a range per dimension, in order).
    public func slice(_ ranges: [Range<Int>]) -> Tensor {
        precondition(ranges.count == rank && zip(ranges, shape).allSatisfy { $0.lowerBound >= 0 && $0.upperBound <= $1 },
                     "slice \(ranges) out of shape \(shape)")
        let s = Tensor.strides(shape)
        let base = zip(ranges, s).map { $0.lowerBound * $1 }.reduce(0, +)
        let out = Tensor(uninitialized: ranges.map(\.count))
        Kernels.copy(dims: out.shape, from: storage.pointer + base, s, to: out.storage.pointer, Tensor.strides(out.shape))
        let widths = zip(ranges, shape).map { ($0.lowerBound, $1 - $0.upperBound) }
        return out.recording(inputs: [self]) { g in [g.padded(widths)] }
    }

    /// The part `range` of dimension `axis`.
    public func slice(axis a: Int, _ range: Range<Int>) -> Tensor {
        var ranges = shape.map { 0..<$0 }
        ranges[axis(a)] = range
        return slice(ranges)
    }

    /// Surrounded by `value`: `widths[d]` = (before, after) for each dimension d.
    public func padded(_ widths: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(widths.count == rank, "padding \(widths.count) dimensions of a rank-\(rank) tensor")
        let out = Tensor(repeating: value, shape: zip(shape, widths).map { $0 + $1.0 + $1.1 })
        let os = Tensor.strides(out.shape)
        let base = zip(widths, os).map { $0.0 * $1 }.reduce(0, +)
        Kernels.copy(dims: shape, from: storage.pointer, Tensor.strides(shape), to: out.storage.pointer + base, os)
        let ranges = zip(widths, shape).map { $0.0..<($0.0 + $1) }
        return out.recording(inputs: [self]) { g in [g.slice(ranges)] }
    }
}

/// The tensors joined along `axis`; all other dimensions must agree.
public func concat(_ parts: [Tensor], axis a: Int) -> Tensor {
    let axis = parts[0].axis(a)
    var shape = parts[0].shape
    for p in parts.dropFirst() {
        precondition(p.rank == shape.count && p.shape.indices.allSatisfy { $0 == axis || p.shape[$0] == shape[$0] },
                     "cannot concatenate \(p.shape) to \(shape) along axis \(axis)")
    }
    shape[axis] = parts.map { $0.shape[axis] }.reduce(0, +)
    let out = Tensor(uninitialized: shape)
    let os = Tensor.strides(shape)
    var offset = 0
    var ranges: [Range<Int>] = []
    for p in parts {
        Kernels.copy(dims: p.shape, from: p.storage.pointer, Tensor.strides(p.shape),
                     to: out.storage.pointer + offset * os[axis], os)
        ranges.append(offset..<(offset + p.shape[axis]))
        offset += p.shape[axis]
    }
    return out.recording(inputs: parts) { g in
        zip(parts, ranges).map { p, r in p.requiresGrad ? g.slice(axis: axis, r) : nil }
    }
}
