import COpenBLAS

extension Kernels {
    /// OpenBLAS runs single-threaded: the engine splits products over its own threads, so that one pool of threads
    /// serves every kernel (OpenBLAS's idle threads would otherwise spin beside the engine's) and the split, fixed
    /// by the shape alone, never changes the result.
    static let blasSingleThreaded: Void = openblas_set_num_threads(1)

    /// C[m×n] = α·op(A)·op(B) + β·C, row-major, through OpenBLAS. Large products are cut into column blocks (or row
    /// blocks when C is tall) computed in parallel; each element of C is the same dot product whatever the cut.
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, beta: Float = 0,
                      _ c: UnsafeMutablePointer<Float>) {
        _ = blasSingleThreaded
        let (lda, ldb) = (transA ? m : k, transB ? k : n)
        func block(rows: Range<Int>, columns: Range<Int>) {
            let ai = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            let bj = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(rows.count), Int32(columns.count), Int32(k), alpha, ai, Int32(lda), bj, Int32(ldb),
                        beta, c + rows.lowerBound * n + columns.lowerBound, Int32(n))
        }
        let splitColumns = n >= m
        let length = splitColumns ? n : m
        // Two halves (one per core here) when each has ≥ 64 rows or columns and ≥ 2¹⁸ multiply-adds: more pieces
        // would pack the shared operand again for each one.
        guard m * n * k >= 1 << 19, length >= 128 else { return block(rows: 0..<m, columns: 0..<n) }
        let pieces = 2
        let size = (length + pieces - 1) / pieces
        parallelFor(pieces, grain: 1) { r in
            for i in r {
                let range = (i * size)..<min(length, (i + 1) * size)
                if range.isEmpty { continue }
                splitColumns ? block(rows: 0..<m, columns: range) : block(rows: range, columns: 0..<n)
            }
        }
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
        let (pa, pb, po) = (a.storage.pointer, b.storage.pointer, out.storage.pointer)
        parallelFor(batch.reduce(1, *), grain: 1) { r in
            for i in r { sgemm(transA: transA, transB: transB, m: m, n: n, k: k, pa + i * m * k, pb + i * k * n, po + i * m * n) }
        }
        return out
    }
}

/// C = op(A)·op(B) over the last two dimensions, op being a transpose where asked. A and B have the same leading
/// (batch) dimensions, or B is a matrix shared by every batch of A.
///   ∂L/∂A = ∂L/∂C·Bᵀ, ∂L/∂B = Aᵀ·∂L/∂C (transposed to match op)
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
    if b.rank == 2 && a.rank > 2 {
        if !transposeA {
            let flat = matmul(a.reshaped([-1, a.shape[a.rank - 1]]), b, transposeB: transposeB)
            return flat.reshaped(Array(a.shape.dropLast()) + [flat.shape[1]])
        }
        // Each batch's Aᵀ is not a block of one flat matrix: give every batch B (expand sums the gradients back).
        let batch = Array(a.shape.dropLast(2))
        let shared = expand(b.reshaped([Int](repeating: 1, count: batch.count) + b.shape), to: batch + b.shape)
        return matmul(a, shared, transposeA: true, transposeB: transposeB)
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
