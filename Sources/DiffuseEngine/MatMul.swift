import COpenBLAS

extension Kernels {
    /// C[m×n] = α·op(A)·op(B) + β·C, row-major, through OpenBLAS.
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, beta: Float = 0,
                      _ c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(transA ? m : k), b, Int32(transB ? k : n),
                    beta, c, Int32(n))
    }

    /// op(A)·op(B) for each of the leading (batch) indices; both operands have the same batch shape.
    static func matmul(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool) -> Tensor {
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transA ? (ac, ar) : (ar, ac)
        let (k2, n) = transB ? (bc, br) : (br, bc)
        let batch = Array(a.shape.dropLast(2))
        precondition(k == k2 && batch == Array(b.shape.dropLast(2)),
                     "matmul of \(a.shape)\(transA ? "ᵀ" : "") and \(b.shape)\(transB ? "ᵀ" : "")")
        let out = Tensor(uninitialized: batch + [m, n])
        for i in 0..<batch.reduce(1, *) {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a.storage.pointer + i * m * k,
                  b.storage.pointer + i * k * n, out.storage.pointer + i * m * n)
        }
        return out
    }
}

/// C = op(A)·op(B) over the last two dimensions, op being a transpose where asked. A and B have the same leading
/// (batch) dimensions, or B is a matrix shared by every batch of A.
///   ∂L/∂A = ∂L/∂C·Bᵀ, ∂L/∂B = Aᵀ·∂L/∂C (transposed to match op)
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
    if b.rank == 2 && a.rank > 2 && !transposeA {
        let flat = matmul(a.reshaped([-1, a.shape[a.rank - 1]]), b, transposeB: transposeB)
        return flat.reshaped(Array(a.shape.dropLast()) + [flat.shape[1]])
    }
    let c = Kernels.matmul(a, b, transA: transposeA, transB: transposeB)
    return c.recording(inputs: [a, b]) { g in
        let ga: Tensor?, gb: Tensor?
        switch (transposeA, transposeB) {
        case (false, false):
            ga = a.requiresGrad ? Kernels.matmul(g, b, transA: false, transB: true) : nil
            gb = b.requiresGrad ? Kernels.matmul(a, g, transA: true, transB: false) : nil
        case (false, true):
            ga = a.requiresGrad ? Kernels.matmul(g, b, transA: false, transB: false) : nil
            gb = b.requiresGrad ? Kernels.matmul(g, a, transA: true, transB: false) : nil
        case (true, false):
            ga = a.requiresGrad ? Kernels.matmul(b, g, transA: false, transB: true) : nil
            gb = b.requiresGrad ? Kernels.matmul(a, g, transA: false, transB: false) : nil
        case (true, true):
            ga = a.requiresGrad ? Kernels.matmul(b, g, transA: true, transB: true) : nil
            gb = b.requiresGrad ? Kernels.matmul(g, a, transA: true, transB: true) : nil
        }
        return [ga, gb]
    }
}

/// y = x·Wᵀ + b, with W of shape [out, in] (PyTorch's layout) and x of shape [..., in].
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    let y = matmul(x, weight, transposeB: true)
    return bias.map { add(y, $0) } ?? y
}
