extension Kernels {
    /// Steps of the inner dimension per pass over a packed panel of B: 256 × 48 floats (48 KiB) stay near L1.
    static let depthBlock = 256
    /// The tap table of a plain product: B's rows are consecutive.
    nonisolated(unsafe) static let noTaps: UnsafeMutablePointer<Int> = {
        let p = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// C[m×n] = α·op(A)·op(B) + β·C, row-major, on the engine's register tile (or, for tall products whose n is a
    /// multiple of 64, on channel tiles: rowsTimesBlocks). A is packed once, 8 rows at a time with α folded in; C's
    /// columns are cut into panels of 48 (or of 32, on the narrow tile, where that wastes less) that the threads
    /// share out (or, with a single panel, C's row groups), and each panel of B is packed 256 rows deep and swept
    /// by the row groups: by a block of them at a time whose packed A stays in L2 (Caches.productGroups), every
    /// panel sweeping one block before the next. The pieces depend on the shape alone and every element of C is one
    /// sum in one order, so the result does not depend on the thread count. B may be 16-bit values (HalfValues),
    /// widened as they are packed.
    static func sgemm<B: WeightSource>(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                                       _ a: UnsafePointer<Float>, _ b: B, beta: Float = 0,
                                       _ c: UnsafeMutablePointer<Float>) {
        guard m > 0 && n > 0 else { return }
        if beta != 1 { scaleInPlace(c, count: m * n, by: beta) }
        guard k > 0 else { return }
        if m <= tileRows && transB && !transA && alpha == 1 {
            return b.withFloats(count: k * n) { rowsTimesRows(m: m, n: n, k: k, a, $0, accumulate: beta != 0, c) }
        }
        // Taller than wide, B's packing (k·n) costs less than A's (m·k) that it saves.
        if n % channelTileOutputs == 0 && !transA && alpha == 1 && m >= n {
            return rowsTimesBlocks(m: m, n: n, k: k, a, b, transB: transB, accumulate: beta != 0, c)
        }
        // Cost in columns of the wide tile: a narrow tile's 32 cost ~35 (Tiling's 8.8 cycles a step against 12).
        let narrowCost = 32 * 8.8 / 12
        let wideCost = Double(n / tileColumns * tileColumns)
            + (n % tileColumns == 0 ? 0 : n % tileColumns <= 32 ? narrowCost : Double(tileColumns))
        let width = Double((n + 31) / 32) * narrowCost < wideCost ? 32 : tileColumns
        let groups = (m + tileRows - 1) / tileRows, panels = (n + width - 1) / width
        withBuffer(groups * tileRows * k) { pa in
            packRows(a, rows: m, depth: k, rowStride: transA ? 1 : k, kStride: transA ? m : 1, scale: alpha, into: pa)
            let product = PackedProduct(a: pa, b: b, c: c, m: m, n: n, k: k, width: width, transB: transB,
                                        accumulate: beta != 0)
            let scratch = depthBlock * tileColumns + tileRows * tileColumns
            if panels >= 2 {
                let block = Engine.caches.productGroups
                for first in stride(from: 0, to: groups, by: block) {
                    let rows = first..<Swift.min(first + block, groups)
                    parallelFor(panels, grain: 1, scratch: scratch) { product.sweep(panels: $0, groups: rows, scratch: $1) }
                }
            } else {
                parallelFor(groups, grain: Swift.max(1, (groups + 1) / 2), scratch: scratch) {
                    product.sweep(panels: 0..<1, groups: $0, scratch: $1)
                }
            }
        }
    }

    /// C (+)= A·Bᵀ for at most 8 rows of A (a linear layer over a small batch: x·Wᵀ): each output the dot product of
    /// a row of A and a row of B, both read in place, B's rows shared out among the threads. B, the weights, is read
    /// from memory once and each of its rows serves every row of A from L1, where packing it into the register
    /// tile's panels would read and write it all for a single row group.
    private static func rowsTimesRows(m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                      accumulate: Bool, _ c: UnsafeMutablePointer<Float>) {
        parallelFor(n, grain: Swift.max(1, 16384 / (m * k))) { columns in
            for j in columns {
                for i in 0..<m {
                    let product = dot(a + i * k, b + j * k, k)
                    c[i * n + j] = accumulate ? c[i * n + j] + product : product
                }
            }
        }
    }

    /// C (+)= A·op(B) for n a multiple of 64 on channel tiles: 6 rows × 64 columns of C at a time, each step
    /// broadcasting one value of each of 6 rows of A, read in place (no packing of A: for the short inner dimensions
    /// of linear layers over channels, packing A cost as much as the product), against a row of B's 64 columns
    /// (packed [block][k][64] unless B is one such block already). A long inner dimension is cut into depth blocks
    /// whose rows of B stay in L2 while every tile sweeps them (Caches.productDepth), C accumulated over them.
    private static func rowsTimesBlocks<B: WeightSource>(m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: B,
                                                         transB: Bool, accumulate: Bool,
                                                         _ c: UnsafeMutablePointer<Float>) {
        let (rows, width) = (channelTilePositions, channelTileOutputs)
        let (tiles, blocks) = ((m + rows - 1) / rows, n / width)
        let packs = transB || blocks > 1 || b.floats == nil
        withBuffer(packs ? k * n : 0) { packed in
            if packs {
                // B's column j, row s as a correlation's weight (output j, step s): packed as channel tiles' are.
                let weights = TapWeights(values: b.values, count: k * n, outputs: n, inputs: k,
                                         outputStride: transB ? k : 1, inputStride: transB ? 1 : n, tapOffsets: [0])
                packTaps(weights, group: width, into: packed)
            }
            let w = packs ? UnsafePointer(packed) : b.floats!
            let depthBlock = Engine.caches.productDepth(columns: n)
            withUnsafeTemporaryAllocation(of: Int.self, capacity: k) { index in
                for s in 0..<k { index[s] = s }
                for k0 in stride(from: 0, to: k, by: depthBlock) {
                    let depth = Swift.min(depthBlock, k - k0), add = accumulate || k0 > 0
                    parallelFor(tiles, grain: Swift.max(1, 4096 / Swift.max(depth * blocks, 1)), scratch: rows * width) { range, scratch in
                        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: rows) { bases in
                            for t in range {
                                let count = Swift.min(rows, m - t * rows)
                                for i in 0..<rows { bases[i] = a + (t * rows + Swift.min(i, count - 1)) * k }
                                for block in 0..<blocks {
                                    let (out, wb) = (c + t * rows * n + block * width, w + (block * k + k0) * width)
                                    if count == rows {
                                        channelTile(steps: depth, positions: bases.baseAddress!, index: index.baseAddress! + k0,
                                                    w: wb, out: out, ldo: n, accumulate: add)
                                        continue
                                    }
                                    channelTile(steps: depth, positions: bases.baseAddress!, index: index.baseAddress! + k0,
                                                w: wb, out: scratch, accumulate: false)
                                    for i in 0..<count {
                                        for j in 0..<width { out[i * n + j] = (add ? out[i * n + j] : 0) + scratch[i * width + j] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// C (+)= A·op(B) with A packed by packRows: the register tile over panels of `width` (48 or 32) columns of C,
    /// each panel of B packed 256 rows deep at a time, C accumulated over the depth blocks.
    private struct PackedProduct<B: WeightSource> {
        let a: UnsafePointer<Float>
        let b: B
        let c: UnsafeMutablePointer<Float>
        let m, n, k, width: Int
        let transB, accumulate: Bool

        func sweep(panels: Range<Int>, groups: Range<Int>, scratch bp: UnsafeMutablePointer<Float>) {
            let sp = bp + depthBlock * tileColumns
            // Depth blocks outside the panels: a block of packed A (all rows, 256 deep) is swept by every panel
            // while it is in cache, instead of all of A once per panel.
            for k0 in stride(from: 0, to: k, by: depthBlock) {
                let depth = Swift.min(depthBlock, k - k0)
                for p in panels {
                    let j0 = p * self.width, width = Swift.min(self.width, n - j0)
                    packColumns(b, transposed: transB, n: n, k: k, rows: k0..<(k0 + depth),
                                columns: j0..<(j0 + width), into: bp)
                    let add = k0 > 0 || accumulate
                    for g in groups {
                        let i0 = g * tileRows, height = Swift.min(tileRows, m - i0)
                        let ap = a + (g * k + k0) * tileRows
                        if height == tileRows && (width == tileColumns || width == 32) {
                            if width == 32 {
                                narrowTile(channels: depth, taps: 1, a: ap, b: bp, bChannel: tileColumns, bTap: noTaps,
                                           out: c + i0 * n + j0, ldo: n, accumulate: add)
                            } else {
                                tile(channels: depth, taps: 1, a: ap, b: bp, bChannel: tileColumns, bTap: noTaps,
                                     out: c + i0 * n + j0, ldo: n, accumulate: add)
                            }
                            continue
                        }
                        if width <= 32 {
                            narrowTile(channels: depth, taps: 1, a: ap, b: bp, bChannel: tileColumns, bTap: noTaps,
                                       out: sp, ldo: tileColumns)
                        } else {
                            tile(channels: depth, taps: 1, a: ap, b: bp, bChannel: tileColumns, bTap: noTaps,
                                 out: sp, ldo: tileColumns, accumulate: false)
                        }
                        for i in 0..<height {
                            let d = c + (i0 + i) * n + j0, s = sp + i * tileColumns
                            if add { for j in 0..<width { d[j] += s[j] } } else { d.update(from: s, count: width) }
                        }
                    }
                }
            }
        }
    }

    /// Packs rows `rows` × columns `columns` of B (k × n; stored transposed, n × k, when `transposed`) into
    /// rows of 48 floats, zero past the last column.
    fileprivate static func packColumns<B: WeightSource>(_ b: B, transposed: Bool, n: Int, k: Int, rows: Range<Int>,
                                                         columns: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        let width = columns.count
        if transposed {
            // By 16 × 16 transpositions, where whole; one by one at the edges.
            let (whole, deep) = (width / 16 * 16, rows.count / 16 * 16)
            for j in Swift.stride(from: 0, to: whole, by: 16) {
                for r in Swift.stride(from: 0, to: deep, by: 16) {
                    let start = (columns.lowerBound + j) * k + rows.lowerBound + r
                    b.withRows(16, from: start, stride: k, count: 16) { block, ls in
                        transpose16(block, ls, dst + r * tileColumns + j, tileColumns)
                    }
                }
            }
            for j in 0..<width {
                let src = (columns.lowerBound + j) * k + rows.lowerBound
                for r in (j < whole ? deep : 0)..<rows.count { dst[r * tileColumns + j] = b[at: src + r] }
            }
        } else {
            for (r, row) in rows.enumerated() {
                let (src, to) = (row * n + columns.lowerBound, dst + r * tileColumns)
                b.copy(src, count: width, into: to)
            }
        }
        if width < tileColumns {
            for r in 0..<rows.count { (dst + r * tileColumns + width).update(repeating: 0, count: tileColumns - width) }
        }
    }

    /// x ← s·x (zeros when s = 0, whatever x held).
    static func scaleInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
        parallelFor(count, grain: 1 << 16) { r in
            if s == 0 { (x + r.lowerBound).update(repeating: 0, count: r.count) } else { for i in r { x[i] *= s } }
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
        // One product after another, each on every thread: products run side by side would take their scratch from
        // the pool in an order that changes from run to run.
        for i in 0..<batch.reduce(1, *) {
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, pa + i * m * k, UnsafePointer(pb + i * k * n),
                  po + i * m * n)
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

/// linear with a weight kept in 16 bits, packed for the product straight from its 16-bit values (no widened copy of
/// it is made): the same values as linear of `weight.widened()`. For inference: the gradient reaches x and the
/// bias, never the weight.
public func linear(_ x: Tensor, weight: HalfTensor, bias: Tensor?) -> Tensor {
    precondition(x.rank >= 2 && weight.shape.count == 2 && x.shape.last == weight.shape[1],
                 "linear of \(x.shape) with a weight of shape \(weight.shape)")
    let (n, k) = (weight.shape[0], weight.shape[1])
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [n])
    let (a, c, m) = (UnsafePointer(x.storage.pointer), out.storage.pointer, x.count / k)
    withExtendedLifetime(weight) {
        switch weight.format {
        case .float16: Kernels.sgemm(transA: false, transB: true, m: m, n: n, k: k, a, HalfValues<Float16Format>(weight), c)
        case .bfloat16: Kernels.sgemm(transA: false, transB: true, m: m, n: n, k: k, a, HalfValues<BFloat16Format>(weight), c)
        }
    }
    let y = out.recording(inputs: [x]) { g in
        [x.requiresGrad ? matmul(g.reshaped([-1, n]), weight.widened()).reshaped(x.shape) : nil]
    }
    return bias.map { add(y, $0) } ?? y
}
