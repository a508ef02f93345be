/// Broadcasting as in NumPy and PyTorch: shapes are aligned at the right, a dimension of 1 stretches.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = max(a.count, b.count)
    return (0..<r).map { i in
        let x = i < r - a.count ? 1 : a[i - (r - a.count)]
        let y = i < r - b.count ? 1 : b[i - (r - b.count)]
        precondition(x == y || x == 1 || y == 1, "shapes \(a) and \(b) do not broadcast")
        return max(x, y)
    }
}

/// How to walk an output of some shape while reading operands that broadcast to it: the dimensions after merging
/// every pair of neighbours that are contiguous for all operands, and each operand's stride per dimension
/// (0 where it is broadcast). The last dimension is the inner loop.
@usableFromInline
struct BroadcastWalk {
    @usableFromInline var dims: [Int]
    @usableFromInline var strides: [[Int]]

    @usableFromInline
    init(out: [Int], operands: [[Int]]) {
        self.init(dims: out, strides: operands.map { shape in
            let padded = [Int](repeating: 1, count: out.count - shape.count) + shape
            let s = Tensor.strides(padded)
            return (0..<out.count).map { padded[$0] == 1 && out[$0] != 1 ? 0 : s[$0] }
        })
    }

    /// A walk over `dims` where operand k advances by `strides[k][d]` along dimension d.
    @usableFromInline
    init(dims: [Int], strides: [[Int]]) {
        var dims = dims
        var strides = strides
        if dims.isEmpty {
            dims = [1]
            strides = strides.map { _ in [0] }
        }
        var i = dims.count - 2
        while i >= 0 {
            if strides.allSatisfy({ $0[i] == $0[i + 1] * dims[i + 1] }) {
                dims[i] *= dims[i + 1]
                dims.remove(at: i + 1)
                for k in strides.indices { strides[k].remove(at: i) }
            }
            i -= 1
        }
        self.dims = dims
        self.strides = strides
    }

    @usableFromInline var inner: Int { dims[dims.count - 1] }
    @usableFromInline var rows: Int { dims.dropLast().reduce(1, *) }

    /// The offset of row `row` (an index over all dimensions but the last) in operand `k`.
    @inlinable
    func offset(row: Int, operand k: Int) -> Int {
        var r = row
        var off = 0
        var d = dims.count - 2
        while d >= 0 {
            off += (r % dims[d]) * strides[k][d]
            r /= dims[d]
            d -= 1
        }
        return off
    }
}

/// A binary elementwise function, applied by a kernel specialised for it.
public protocol BinaryFunction {
    static func apply(_ a: Float, _ b: Float) -> Float
}

public enum AddFunction: BinaryFunction { @inlinable public static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
public enum SubFunction: BinaryFunction { @inlinable public static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
public enum MulFunction: BinaryFunction { @inlinable public static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
public enum DivFunction: BinaryFunction { @inlinable public static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

enum Kernels {
    /// out = F(a, b) with broadcasting.
    static func broadcast<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, _: F.Type) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : broadcastShape(a.shape, b.shape)
        let out = Tensor(uninitialized: shape)
        let walk = BroadcastWalk(out: shape, operands: [a.shape, b.shape])
        let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
        let n = walk.inner
        let sa = walk.strides[0][walk.dims.count - 1], sb = walk.strides[1][walk.dims.count - 1]
        @inline(__always) func row(_ o: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                   _ y: UnsafePointer<Float>, _ range: Range<Int>) {
            switch (sa, sb) {
            case (1, 1): for i in range { o[i] = F.apply(x[i], y[i]) }
            case (1, 0): let v = y[0]; for i in range { o[i] = F.apply(x[i], v) }
            case (0, 1): let v = x[0]; for i in range { o[i] = F.apply(v, y[i]) }
            default: for i in range { o[i] = F.apply(x[i * sa], y[i * sb]) }
            }
        }
        if walk.rows == 1 {
            parallelFor(n) { r in row(po, pa, pb, r) }
        } else {
            parallelFor(walk.rows, grain: max(1, 4096 / max(n, 1))) { rows in
                for r in rows {
                    row(po + r * n, pa + walk.offset(row: r, operand: 0), pb + walk.offset(row: r, operand: 1), 0..<n)
                }
            }
        }
        return out
    }

    /// Sums `x` down to `shape`, a shape that broadcasts to `x.shape` (the gradient of a broadcast).
    static func sum(_ x: Tensor, to shape: [Int]) -> Tensor {
        if x.shape == shape { return x }
        let out = Tensor(zeros: shape)
        let walk = BroadcastWalk(out: x.shape, operands: [shape])
        let px = x.storage.pointer, po = out.storage.pointer
        let n = walk.inner
        let so = walk.strides[0][walk.dims.count - 1]
        // Parallel over output rows would race where rows share an output; each output element is written by
        // rows in increasing order, sequentially, so the sum has one fixed order.
        for r in 0..<walk.rows {
            let o = po + walk.offset(row: r, operand: 0)
            let xi = px + r * n
            if so == 0 {
                o[0] += Kernels.sum(xi, n)
            } else {
                for i in 0..<n { o[i * so] += xi[i] }
            }
        }
        return out
    }

    /// y = body(x) elementwise, `body` being a loop over a range of indices.
    static func map(_ x: Tensor, _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Range<Int>) -> Void) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        let po = out.storage.pointer, px = UnsafePointer(x.storage.pointer)
        parallelFor(x.count) { r in body(po, px, r) }
        return out
    }

    /// y = body(a, b) elementwise for two tensors of one shape.
    static func zip(_ a: Tensor, _ b: Tensor,
                    _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Range<Int>) -> Void) -> Tensor {
        precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape) differ")
        let out = Tensor(uninitialized: a.shape)
        let po = out.storage.pointer, pa = UnsafePointer(a.storage.pointer), pb = UnsafePointer(b.storage.pointer)
        parallelFor(a.count) { r in body(po, pa, pb, r) }
        return out
    }
}
