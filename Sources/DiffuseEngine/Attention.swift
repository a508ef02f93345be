import Foundation

// Scaled dot-product attention as one fused kernel each way, head by head, so that the L×S score matrix of a
// head never leaves cache (for a 16×16 feature map at batch 8 with 32 heads, the scores alone would be 67 MB per
// layer). The scores run on the register tile (8 query rows × 48 keys), Kᵀ packed in its panels, which suits any
// head size (diffusers' U-Nets use heads of 8 channels, Stable Diffusion's of 40 to 160). The backward pass
// recomputes the probabilities from the saved log-sum-exp of each row.

/// Attention(Q, K, V) = softmax(Q·Kᵀ·scale)·V over the last two dimensions: queries [..., L, D], keys [..., S, D],
/// values [..., S, E], the same leading (batch, head) dimensions; scale defaults to 1/√D. `causal`: query i sees the
/// keys j ≤ i only (PyTorch's is_causal, the mask aligned at the top left). With P = softmax(Q·Kᵀ·s),
/// O = P·V and δ_i = Σ_e ∂L/∂O[i,e]·O[i,e]:
///   ∂L/∂V = Pᵀ·∂L/∂O,  ∂L/∂S = P ⊙ (∂L/∂O·Vᵀ − δ),  ∂L/∂Q = s·∂L/∂S·K,  ∂L/∂K = s·(∂L/∂S)ᵀ·Q
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float? = nil, causal: Bool = false) -> Tensor {
    precondition(q.rank >= 2 && k.rank == q.rank && v.rank == q.rank, "attention of \(q.shape), \(k.shape), \(v.shape)")
    let batch = Array(q.shape.dropLast(2))
    let (l, d, s, e) = (q.shape[q.rank - 2], q.shape[q.rank - 1], k.shape[k.rank - 2], v.shape[v.rank - 1])
    precondition(Array(k.shape.dropLast(2)) == batch && Array(v.shape.dropLast(2)) == batch
                 && k.shape[k.rank - 1] == d && v.shape[v.rank - 2] == s,
                 "attention of queries \(q.shape), keys \(k.shape) and values \(v.shape)")
    let heads = batch.reduce(1, *)
    let geometry = AttentionHead(l: l, s: s, d: d, e: e, scale: scale ?? 1 / Float(d).squareRoot(), causal: causal)
    let out = Tensor(uninitialized: batch + [l, e])
    let needsGradient = GradMode.isEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
    let lse = Tensor(uninitialized: [heads * l])
    let (pq, pk, pv, po, pl) = (q.storage.pointer, k.storage.pointer, v.storage.pointer, out.storage.pointer,
                                lse.storage.pointer)
    parallelFor(heads, grain: 1, scratch: geometry.scratch) { range, scratch in
        for h in range {
            geometry.forward(q: pq + h * l * d, k: pk + h * s * d, v: pv + h * s * e, out: po + h * l * e,
                             logSumExp: needsGradient ? pl + h * l : nil, scratch: scratch)
        }
    }
    return out.recording(inputs: [q, k, v]) { g in
        let (gq, gk, gv) = (Tensor(uninitialized: q.shape), Tensor(uninitialized: k.shape), Tensor(uninitialized: v.shape))
        let (pg, pgq, pgk, pgv) = (g.storage.pointer, gq.storage.pointer, gk.storage.pointer, gv.storage.pointer)
        let (pq, pk, pv, po, pl) = (q.storage.pointer, k.storage.pointer, v.storage.pointer, out.storage.pointer,
                                    lse.storage.pointer)
        parallelFor(heads, grain: 1, scratch: geometry.scratch) { range, scratch in
            for h in range {
                geometry.backward(q: pq + h * l * d, k: pk + h * s * d, v: pv + h * s * e, out: po + h * l * e,
                                  logSumExp: pl + h * l, gradOut: pg + h * l * e, gradQ: pgq + h * l * d,
                                  gradK: pgk + h * s * d, gradV: pgv + h * s * e, scratch: scratch)
            }
        }
        return [gq, gk, gv]
    }
}

/// One head of attention: L queries and S keys of D values, values of E; keys padded to whole panels of the register
/// tile (48), on which the scores are taken. The query rows go 8 at a time (a last block repeats its last row, with
/// a zero output gradient), so that each pass over Kᵀ, Vᵀ and their gradients, read from L2, serves 8 rows.
private struct AttentionHead {
    let l, s, d, e: Int
    let scale: Float
    /// Whether query i sees only the keys j ≤ i.
    let causal: Bool
    var padded: Int { (s + Kernels.tileColumns - 1) / Kernels.tileColumns * Kernels.tileColumns }
    /// The distance between the rows of Kᵀ, Vᵀ and their gradients: 16 floats past `padded`, so that the rows (of
    /// a power-of-two length, often) do not all fall in the same sets of the L1 cache.
    var rowStride: Int { padded + 16 }

    /// Eight vectors, one per row of a block.
    typealias Rows = (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes)
    static let zeroRows: Rows = (Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes())

    /// The forward pass' blocks: `queryBlock` query rows against `keyBlock` keys (5 panels) at a time, so that a
    /// block of Kᵀ and V stays in cache while every row of the query block uses it.
    static let queryBlock = 128, keyBlock = 5 * Kernels.tileColumns
    /// V's rows padded to whole vectors.
    var paddedE: Int { (e + 15) / 16 * 16 }

    /// Floats for the forward pass (Kᵀ in panels, V's padded rows, 8 rows of a key block's scores, 8 packed query
    /// rows, the query block's outputs, running maxima and sums) or the backward pass (Kᵀ in panels, Kᵀ and Vᵀ
    /// zero-padded, their gradients, 8 rows of scores and 8 of their gradients, 8 packed query rows, and E zeros: the
    /// output gradient of a block's repeated rows), whichever is more.
    var scratch: Int {
        let forward = d * padded + padded * paddedE + 8 * Self.keyBlock + 8 * d + Self.queryBlock * (paddedE + 2)
        return Swift.max(forward, d * padded + rowStride * (2 * d + 2 * e) + 16 * padded + 8 * d + e)
    }

    /// Kᵀ in the register tile's panels: kp[(j / 48)·48·D + 48·c + j mod 48] = K[j][c] for j < S, zero past S.
    private func panels(_ k: UnsafePointer<Float>, into kp: UnsafeMutablePointer<Float>) {
        let columns = Kernels.tileColumns
        for j0 in Swift.stride(from: 0, to: padded, by: columns) {
            let panel = kp + j0 * d
            for c in 0..<d {
                for jj in 0..<columns { panel[c * columns + jj] = j0 + jj < s ? k[(j0 + jj) * d + c] : 0 }
            }
        }
    }

    /// dst[c][j] = src[j][c] for j < S, zero for S ≤ j < padded.
    private func transpose(_ src: UnsafePointer<Float>, columns: Int, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<columns {
            let row = dst + c * rowStride
            for j in 0..<s { row[j] = src[j * columns + c] }
            for j in s..<padded { row[j] = 0 }
        }
    }

    /// The 8 rows of `matrix` (rows of `width`) from row `first` on, the last row repeated past L.
    private func rows(_ matrix: UnsafePointer<Float>, _ first: Int, width: Int)
        -> (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
            UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) {
        func row(_ r: Int) -> UnsafePointer<Float> { matrix + Swift.min(first + r, l - 1) * width }
        return (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    }

    /// out[r][j − keys.lowerBound] = scale·Σ_c Q[first + r][c]·K[j][c] for r < 8 and j in `keys` (rows of
    /// `keys.count`, whole panels), −∞ past S and, when causal, past the row's own index (the forward and the
    /// backward pass both take their scores here). The product runs on the register tile, the 8 query rows packed
    /// into `qa` ([c][r]) against Kᵀ's panels `kp` (`panels`); each score is one sum over c in order, then scaled.
    private func scores(_ q: UnsafePointer<Float>, first: Int, _ kp: UnsafePointer<Float>, keys: Range<Int>,
                        qa: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let width = keys.count, columns = Kernels.tileColumns
        for r in 0..<8 {
            let row = q + Swift.min(first + r, l - 1) * d
            for c in 0..<d { qa[c * 8 + r] = row[c] }
        }
        for j in Swift.stride(from: keys.lowerBound, to: keys.upperBound, by: columns) {
            Kernels.tile(channels: d, taps: 1, a: qa, b: kp + j * d, bChannel: columns, bTap: Kernels.noTaps,
                         out: out + j - keys.lowerBound, ldo: width, accumulate: false)
        }
        let factor = Lanes(repeating: scale)
        for i in Swift.stride(from: 0, to: 8 * width, by: 16) { Kernels.store(Kernels.load(out + i) * factor, out + i) }
        for r in 0..<8 {
            let end = causal ? Swift.min(Swift.min(first + r, l - 1) + 1, s) : s
            for j in Swift.min(Swift.max(end, keys.lowerBound), keys.upperBound)..<keys.upperBound {
                out[r * width + j - keys.lowerBound] = -.infinity
            }
        }
    }

    /// at[r·stride] = v.r·factor for r < 8.
    private static func store(_ v: Rows, scaledBy factor: Float, _ at: UnsafeMutablePointer<Float>, _ stride: Int) {
        let f = Lanes(repeating: factor)
        Kernels.store(v.0 * f, at); Kernels.store(v.1 * f, at + stride)
        Kernels.store(v.2 * f, at + 2 * stride); Kernels.store(v.3 * f, at + 3 * stride)
        Kernels.store(v.4 * f, at + 4 * stride); Kernels.store(v.5 * f, at + 5 * stride)
        Kernels.store(v.6 * f, at + 6 * stride); Kernels.store(v.7 * f, at + 7 * stride)
    }

    /// The 8 rows' vectors at columns j..<j + 16 of rows `padded` apart.
    private func load(_ rows: UnsafePointer<Float>, _ j: Int) -> Rows {
        let p = rows + j
        return (Kernels.load(p), Kernels.load(p + padded), Kernels.load(p + 2 * padded), Kernels.load(p + 3 * padded),
                Kernels.load(p + 4 * padded), Kernels.load(p + 5 * padded), Kernels.load(p + 6 * padded),
                Kernels.load(p + 7 * padded))
    }

    /// Online softmax over blocks of keys (as FlashAttention computes it): for each query row, over the key blocks in
    /// order, m' = max(m, max_j S_j), ℓ' = ℓ·e^(m − m') + Σ_j e^(S_j − m'), O' = O·e^(m − m') + Σ_j e^(S_j − m')·V_j;
    /// at the end O/ℓ, and the log-sum-exp m + log ℓ for the backward pass.
    func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                 logSumExp: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        let ep = paddedE
        let kp = scratch, vp = scratch + d * padded
        let p = vp + padded * ep, qa = p + 8 * Self.keyBlock, o = qa + 8 * d
        let m = o + Self.queryBlock * ep, total = m + Self.queryBlock
        panels(k, into: kp)
        for j in 0..<padded {
            let row = vp + j * ep
            if j < s { row.update(from: v + j * e, count: e) } else { row.update(repeating: 0, count: e) }
            for c in e..<ep { row[c] = 0 }
        }
        for block in Swift.stride(from: 0, to: l, by: Self.queryBlock) {
            let rowsInBlock = Swift.min(Self.queryBlock, l - block), groups = (rowsInBlock + 7) / 8
            o.update(repeating: 0, count: groups * 8 * ep)
            m.update(repeating: -.infinity, count: groups * 8)
            total.update(repeating: 0, count: groups * 8)
            for keyStart in Swift.stride(from: 0, to: padded, by: Self.keyBlock) {
                let keys = keyStart..<Swift.min(keyStart + Self.keyBlock, padded), width = keys.count
                for group in 0..<groups {
                    let first = block + 8 * group
                    scores(q, first: first, kp, keys: keys, qa: qa, into: p)
                    for r in 0..<8 {
                        let row = p + r * width, i = 8 * group + r
                        let blockMax = Kernels.maximum(row, width), newMax = Swift.max(m[i], blockMax)
                        // A row whose keys so far are all masked keeps m = −∞ and nothing summed.
                        guard newMax > -.infinity else { continue }
                        let correction = fastExp(m[i] - newMax)
                        total[i] = total[i] * correction + Self.exponentiate(row, width, minus: newMax)
                        m[i] = newMax
                        if correction != 1 {
                            let oi = o + i * ep
                            for c in 0..<ep { oi[c] *= correction }
                        }
                    }
                    accumulate(p, width: width, vp + keys.lowerBound * ep, into: o + 8 * group * ep)
                }
            }
            for r in 0..<rowsInBlock {
                let inverse = 1 / total[r], oi = o + r * ep, target = out + (block + r) * e
                for c in 0..<e { target[c] = oi[c] * inverse }
                logSumExp?[block + r] = m[r] + Foundation.log(total[r])
            }
        }
    }

    /// row[j] ← e^(row[j] − shift) for j < n (a multiple of 16); returns their sum, added as Kernels.sum adds.
    private static func exponentiate(_ row: UnsafeMutablePointer<Float>, _ n: Int, minus shift: Float) -> Float {
        let m = Lanes(repeating: shift)
        var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
        var i = 0
        while i + 64 <= n {
            let (p0, p1, p2, p3) = (row + i, row + i + 16, row + i + 32, row + i + 48)
            let (y0, y1) = (fastExp(Kernels.load(p0) - m), fastExp(Kernels.load(p1) - m))
            let (y2, y3) = (fastExp(Kernels.load(p2) - m), fastExp(Kernels.load(p3) - m))
            Kernels.store(y0, p0); Kernels.store(y1, p1); Kernels.store(y2, p2); Kernels.store(y3, p3)
            a0 += y0; a1 += y1; a2 += y2; a3 += y3
            i += 64
        }
        while i < n {
            let y = fastExp(Kernels.load(row + i) - m)
            Kernels.store(y, row + i)
            a0 += y
            i += 16
        }
        return Kernels.laneTotal((a0 + a1) + (a2 + a3))
    }

    /// o[r][c] += Σ_j p[r][j]·vp[j][c] for 8 rows r, j < width, over V's padded rows (`paddedE` wide), 48 columns
    /// (three vectors for each of the 8 rows) at a time: a key's row of V is loaded once for the 8 rows.
    private func accumulate(_ p: UnsafePointer<Float>, width: Int, _ vp: UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>) {
        let ep = paddedE
        for c0 in Swift.stride(from: 0, to: ep, by: 48) {
            let vectors = Swift.min(3, (ep - c0) / 16)
            var a0 = AttentionHead.zeroRows, a1 = AttentionHead.zeroRows, a2 = AttentionHead.zeroRows
            for j in 0..<width {
                let row = vp + j * ep + c0
                let v0 = Kernels.load(row)
                let v1 = vectors > 1 ? Kernels.load(row + 16) : Lanes(), v2 = vectors > 2 ? Kernels.load(row + 32) : Lanes()
                @inline(__always) func add(_ acc: inout Lanes, _ b: inout Lanes, _ c: inout Lanes, _ r: Int) {
                    let w = Lanes(repeating: p[r * width + j])
                    acc = acc.addingProduct(w, v0)
                    b = b.addingProduct(w, v1)
                    c = c.addingProduct(w, v2)
                }
                add(&a0.0, &a1.0, &a2.0, 0); add(&a0.1, &a1.1, &a2.1, 1); add(&a0.2, &a1.2, &a2.2, 2); add(&a0.3, &a1.3, &a2.3, 3)
                add(&a0.4, &a1.4, &a2.4, 4); add(&a0.5, &a1.5, &a2.5, 5); add(&a0.6, &a1.6, &a2.6, 6); add(&a0.7, &a1.7, &a2.7, 7)
            }
            @inline(__always) func put(_ r: Int, _ x: Lanes, _ y: Lanes, _ z: Lanes) {
                let row = o + r * ep + c0
                Kernels.store(Kernels.load(row) + x, row)
                if vectors > 1 { Kernels.store(Kernels.load(row + 16) + y, row + 16) }
                if vectors > 2 { Kernels.store(Kernels.load(row + 32) + z, row + 32) }
            }
            put(0, a0.0, a1.0, a2.0); put(1, a0.1, a1.1, a2.1); put(2, a0.2, a1.2, a2.2); put(3, a0.3, a1.3, a2.3)
            put(4, a0.4, a1.4, a2.4); put(5, a0.5, a1.5, a2.5); put(6, a0.6, a1.6, a2.6); put(7, a0.7, a1.7, a2.7)
        }
    }

    func backward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafePointer<Float>,
                  logSumExp: UnsafePointer<Float>, gradOut: UnsafePointer<Float>, gradQ: UnsafeMutablePointer<Float>,
                  gradK: UnsafeMutablePointer<Float>, gradV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let kp = scratch, kt = scratch + d * padded, vt = kt + d * rowStride
        let (gkt, gvt) = (kt + (d + e) * rowStride, kt + (2 * d + e) * rowStride)
        let p = kt + (2 * d + 2 * e) * rowStride, gs = p + 8 * padded, qa = gs + 8 * padded
        let zeros = qa + 8 * d  // the output gradient of repeated rows
        panels(k, into: kp)
        transpose(k, columns: d, into: kt)
        transpose(v, columns: e, into: vt)
        gkt.update(repeating: 0, count: (d + e) * rowStride)
        zeros.update(repeating: 0, count: e)
        var delta = [Float](repeating: 0, count: 8)
        for first in Swift.stride(from: 0, to: l, by: 8) {
            let count = Swift.min(8, l - first)
            scores(q, first: first, kp, keys: 0..<padded, qa: qa, into: p)
            for r in 0..<8 {
                let (row, lse) = (p + r * padded, logSumExp[Swift.min(first + r, l - 1)])
                for j in 0..<padded { row[j] = fastExp(row[j] - lse) }
                for j in s..<padded { row[j] = 0 }
                delta[r] = 0
                if r < count { for c in 0..<e { delta[r] += gradOut[(first + r) * e + c] * out[(first + r) * e + c] } }
            }
            // ∂L/∂P = ∂L/∂O·Vᵀ, then ∂L/∂S = P ⊙ (∂L/∂P − δ); ∂L/∂Vᵀ += Σ_r ∂L/∂O[r]ᵀ·P[r]
            @inline(__always) func gradientRow(_ r: Int) -> UnsafePointer<Float> {
                r < count ? gradOut + (first + r) * e : UnsafePointer(zeros)
            }
            let go = (gradientRow(0), gradientRow(1), gradientRow(2), gradientRow(3), gradientRow(4), gradientRow(5),
                      gradientRow(6), gradientRow(7))
            for j in Swift.stride(from: 0, to: padded, by: 16) {
                let pr = load(p, j)
                var dp = AttentionHead.zeroRows
                for c in 0..<e {
                    let (g0, g1, g2, g3) = (Lanes(repeating: go.0[c]), Lanes(repeating: go.1[c]),
                                            Lanes(repeating: go.2[c]), Lanes(repeating: go.3[c]))
                    let (g4, g5, g6, g7) = (Lanes(repeating: go.4[c]), Lanes(repeating: go.5[c]),
                                            Lanes(repeating: go.6[c]), Lanes(repeating: go.7[c]))
                    let vv = Kernels.load(vt + c * rowStride + j), grow = gvt + c * rowStride + j
                    dp.0 = dp.0.addingProduct(g0, vv); dp.1 = dp.1.addingProduct(g1, vv)
                    dp.2 = dp.2.addingProduct(g2, vv); dp.3 = dp.3.addingProduct(g3, vv)
                    dp.4 = dp.4.addingProduct(g4, vv); dp.5 = dp.5.addingProduct(g5, vv)
                    dp.6 = dp.6.addingProduct(g6, vv); dp.7 = dp.7.addingProduct(g7, vv)
                    var sum = Kernels.load(grow).addingProduct(g0, pr.0).addingProduct(g1, pr.1)
                    sum = sum.addingProduct(g2, pr.2).addingProduct(g3, pr.3).addingProduct(g4, pr.4)
                    Kernels.store(sum.addingProduct(g5, pr.5).addingProduct(g6, pr.6).addingProduct(g7, pr.7), grow)
                }
                @inline(__always) func gradient(_ pj: Lanes, _ dpj: Lanes, _ r: Int) -> Lanes {
                    pj * (dpj - delta[r]) * scale
                }
                AttentionHead.store((gradient(pr.0, dp.0, 0), gradient(pr.1, dp.1, 1), gradient(pr.2, dp.2, 2),
                                     gradient(pr.3, dp.3, 3), gradient(pr.4, dp.4, 4), gradient(pr.5, dp.5, 5),
                                     gradient(pr.6, dp.6, 6), gradient(pr.7, dp.7, 7)), scaledBy: 1, gs + j, padded)
            }
            // ∂L/∂Q[r] = s·∂L/∂S[r]·K;  ∂L/∂Kᵀ += s·Σ_r Q[r]ᵀ·∂L/∂S[r]  (the scale is in gs)
            let query = rows(q, first, width: d)
            for c in 0..<d {
                var acc = AttentionHead.zeroRows
                let (q0, q1, q2, q3) = (Lanes(repeating: query.0[c]), Lanes(repeating: query.1[c]),
                                        Lanes(repeating: query.2[c]), Lanes(repeating: query.3[c]))
                let (q4, q5, q6, q7) = (Lanes(repeating: query.4[c]), Lanes(repeating: query.5[c]),
                                        Lanes(repeating: query.6[c]), Lanes(repeating: query.7[c]))
                for j in Swift.stride(from: 0, to: padded, by: 16) {
                    let kv = Kernels.load(kt + c * rowStride + j), grow = gkt + c * rowStride + j, g = load(gs, j)
                    acc.0 = acc.0.addingProduct(g.0, kv); acc.1 = acc.1.addingProduct(g.1, kv)
                    acc.2 = acc.2.addingProduct(g.2, kv); acc.3 = acc.3.addingProduct(g.3, kv)
                    acc.4 = acc.4.addingProduct(g.4, kv); acc.5 = acc.5.addingProduct(g.5, kv)
                    acc.6 = acc.6.addingProduct(g.6, kv); acc.7 = acc.7.addingProduct(g.7, kv)
                    var sum = Kernels.load(grow).addingProduct(q0, g.0).addingProduct(q1, g.1)
                    sum = sum.addingProduct(q2, g.2).addingProduct(q3, g.3).addingProduct(q4, g.4)
                    Kernels.store(sum.addingProduct(q5, g.5).addingProduct(q6, g.6).addingProduct(q7, g.7), grow)
                }
                @inline(__always) func put(_ r: Int, _ v: Lanes) {
                    if r < count { gradQ[(first + r) * d + c] = Kernels.laneTotal(v) }
                }
                put(0, acc.0); put(1, acc.1); put(2, acc.2); put(3, acc.3)
                put(4, acc.4); put(5, acc.5); put(6, acc.6); put(7, acc.7)
            }
        }
        for j in 0..<s {
            for c in 0..<d { gradK[j * d + c] = gkt[c * rowStride + j] }
            for c in 0..<e { gradV[j * e + c] = gvt[c * rowStride + j] }
        }
    }
}
