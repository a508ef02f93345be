import Foundation

// Scaled dot-product attention as one fused kernel each way, head by head, so that the L×S score matrix of a
// head never leaves cache (for a 16×16 feature map at batch 8 with 32 heads, the scores alone would be 67 MB per
// layer). Keys and values are held transposed, 16 keys to a vector, which suits any head size (diffusers' U-Nets
// use heads of 8 channels). The backward pass recomputes the probabilities from the saved log-sum-exp of each row.

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

/// One head of attention: L queries and S keys of D values, values of E; keys padded to a multiple of 16. The query
/// rows go 8 at a time (a last block repeats its last row, with a zero output gradient), so that each pass over Kᵀ,
/// Vᵀ and their gradients, read from L2, serves 8 rows.
private struct AttentionHead {
    let l, s, d, e: Int
    let scale: Float
    /// Whether query i sees only the keys j ≤ i.
    let causal: Bool
    var padded: Int { (s + 15) / 16 * 16 }

    /// Eight vectors, one per row of a block.
    typealias Rows = (Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes, Lanes)
    static let zeroRows: Rows = (Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes(), Lanes())

    /// Floats for Kᵀ and Vᵀ (zero-padded), their gradients, 8 rows of scores and 8 of their gradients, and E zeros
    /// (the output gradient of a block's repeated rows).
    var scratch: Int { padded * (2 * d + 2 * e + 16) + e }

    /// dst[c][j] = src[j][c] for j < S, zero for S ≤ j < padded.
    private func transpose(_ src: UnsafePointer<Float>, columns: Int, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<columns {
            let row = dst + c * padded
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

    /// out[r][j] = scale·Σ_c Q[first + r][c]·kt[c][j] for r < 8 (rows of `padded`), −∞ past S and, when causal,
    /// past the row's own index (the forward and the backward pass both take their scores here).
    private func scores(_ q: UnsafePointer<Float>, first: Int, _ kt: UnsafePointer<Float>,
                        into out: UnsafeMutablePointer<Float>) {
        let query = rows(q, first, width: d)
        for j in Swift.stride(from: 0, to: padded, by: 16) {
            var acc = AttentionHead.zeroRows
            for c in 0..<d {
                let kv = Kernels.load(kt + c * padded + j)
                acc.0 = acc.0.addingProduct(Lanes(repeating: query.0[c]), kv)
                acc.1 = acc.1.addingProduct(Lanes(repeating: query.1[c]), kv)
                acc.2 = acc.2.addingProduct(Lanes(repeating: query.2[c]), kv)
                acc.3 = acc.3.addingProduct(Lanes(repeating: query.3[c]), kv)
                acc.4 = acc.4.addingProduct(Lanes(repeating: query.4[c]), kv)
                acc.5 = acc.5.addingProduct(Lanes(repeating: query.5[c]), kv)
                acc.6 = acc.6.addingProduct(Lanes(repeating: query.6[c]), kv)
                acc.7 = acc.7.addingProduct(Lanes(repeating: query.7[c]), kv)
            }
            AttentionHead.store(acc, scaledBy: scale, out + j, padded)
        }
        for r in 0..<8 {
            let end = causal ? Swift.min(Swift.min(first + r, l - 1) + 1, s) : s
            for j in end..<padded { out[r * padded + j] = -.infinity }
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

    func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                 logSumExp: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        let (kt, vt) = (scratch, scratch + d * padded)
        let p = scratch + (2 * d + 2 * e) * padded
        transpose(k, columns: d, into: kt)
        transpose(v, columns: e, into: vt)
        var inverse = [Float](repeating: 0, count: 8)
        for first in Swift.stride(from: 0, to: l, by: 8) {
            let count = Swift.min(8, l - first)
            scores(q, first: first, kt, into: p)
            for r in 0..<8 {
                let row = p + r * padded
                let m = Kernels.maximum(row, s)
                for j in 0..<padded { row[j] = fastExp(row[j] - m) }
                for j in s..<padded { row[j] = 0 }
                let total = Kernels.sum(row, s)
                inverse[r] = 1 / total
                if r < count { logSumExp?[first + r] = m + Foundation.log(total) }
            }
            // O[first + r][c] = Σ_j P[r][j]·Vᵀ[c][j] / total_r, the 8 rows against each row of Vᵀ.
            for c in 0..<e {
                var acc = AttentionHead.zeroRows
                for j in Swift.stride(from: 0, to: padded, by: 16) {
                    let vv = Kernels.load(vt + c * padded + j), pr = load(p, j)
                    acc.0 = acc.0.addingProduct(pr.0, vv); acc.1 = acc.1.addingProduct(pr.1, vv)
                    acc.2 = acc.2.addingProduct(pr.2, vv); acc.3 = acc.3.addingProduct(pr.3, vv)
                    acc.4 = acc.4.addingProduct(pr.4, vv); acc.5 = acc.5.addingProduct(pr.5, vv)
                    acc.6 = acc.6.addingProduct(pr.6, vv); acc.7 = acc.7.addingProduct(pr.7, vv)
                }
                @inline(__always) func put(_ r: Int, _ v: Lanes) {
                    if r < count { out[(first + r) * e + c] = Kernels.laneTotal(v) * inverse[r] }
                }
                put(0, acc.0); put(1, acc.1); put(2, acc.2); put(3, acc.3)
                put(4, acc.4); put(5, acc.5); put(6, acc.6); put(7, acc.7)
            }
        }
    }

    func backward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafePointer<Float>,
                  logSumExp: UnsafePointer<Float>, gradOut: UnsafePointer<Float>, gradQ: UnsafeMutablePointer<Float>,
                  gradK: UnsafeMutablePointer<Float>, gradV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let (kt, vt) = (scratch, scratch + d * padded)
        let (gkt, gvt) = (scratch + (d + e) * padded, scratch + (2 * d + e) * padded)
        let (p, gs) = (scratch + (2 * d + 2 * e) * padded, scratch + (2 * d + 2 * e + 8) * padded)
        let zeros = scratch + (2 * d + 2 * e + 16) * padded  // the output gradient of repeated rows
        transpose(k, columns: d, into: kt)
        transpose(v, columns: e, into: vt)
        gkt.update(repeating: 0, count: (d + e) * padded)
        zeros.update(repeating: 0, count: e)
        var delta = [Float](repeating: 0, count: 8)
        for first in Swift.stride(from: 0, to: l, by: 8) {
            let count = Swift.min(8, l - first)
            scores(q, first: first, kt, into: p)
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
                    let vv = Kernels.load(vt + c * padded + j), grow = gvt + c * padded + j
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
                    let kv = Kernels.load(kt + c * padded + j), grow = gkt + c * padded + j, g = load(gs, j)
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
            for c in 0..<d { gradK[j * d + c] = gkt[c * padded + j] }
            for c in 0..<e { gradV[j * e + c] = gvt[c * padded + j] }
        }
    }
}
