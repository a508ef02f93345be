import Foundation

// Scaled dot-product attention as one fused kernel each way, head by head, so that the L×S score matrix of a
// head never leaves cache (for a 16×16 feature map at batch 8 with 32 heads, the scores alone would be 67 MB per
// layer). Keys and values are held transposed, 16 keys to a vector, which suits any head size (diffusers' U-Nets
// use heads of 8 channels). The backward pass recomputes the probabilities from the saved log-sum-exp of each row.

/// Attention(Q, K, V) = softmax(Q·Kᵀ·scale)·V over the last two dimensions: queries [..., L, D], keys [..., S, D],
/// values [..., S, E], the same leading (batch, head) dimensions; scale defaults to 1/√D. With P = softmax(Q·Kᵀ·s),
/// O = P·V and δ_i = Σ_e ∂L/∂O[i,e]·O[i,e]:
///   ∂L/∂V = Pᵀ·∂L/∂O,  ∂L/∂S = P ⊙ (∂L/∂O·Vᵀ − δ),  ∂L/∂Q = s·∂L/∂S·K,  ∂L/∂K = s·(∂L/∂S)ᵀ·Q
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float? = nil) -> Tensor {
    precondition(q.rank >= 2 && k.rank == q.rank && v.rank == q.rank, "attention of \(q.shape), \(k.shape), \(v.shape)")
    let batch = Array(q.shape.dropLast(2))
    let (l, d, s, e) = (q.shape[q.rank - 2], q.shape[q.rank - 1], k.shape[k.rank - 2], v.shape[v.rank - 1])
    precondition(Array(k.shape.dropLast(2)) == batch && Array(v.shape.dropLast(2)) == batch
                 && k.shape[k.rank - 1] == d && v.shape[v.rank - 2] == s,
                 "attention of queries \(q.shape), keys \(k.shape) and values \(v.shape)")
    let heads = batch.reduce(1, *)
    let geometry = AttentionHead(l: l, s: s, d: d, e: e, scale: scale ?? 1 / Float(d).squareRoot())
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

/// One head of attention: L queries and S keys of D values, values of E; keys padded to a multiple of 16.
private struct AttentionHead {
    let l, s, d, e: Int
    let scale: Float
    var padded: Int { (s + 15) / 16 * 16 }

    /// Floats for Kᵀ and Vᵀ (zero-padded), their gradients, and one row of scores and one of their gradients.
    var scratch: Int { padded * (2 * d + 2 * e + 2) }

    /// dst[c][j] = src[j][c] for j < S, zero for S ≤ j < padded.
    private func transpose(_ src: UnsafePointer<Float>, columns: Int, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<columns {
            let row = dst + c * padded
            for j in 0..<s { row[j] = src[j * columns + c] }
            for j in s..<padded { row[j] = 0 }
        }
    }

    /// row[j] = scale·Σ_c query[c]·kt[c][j] for j < S, −∞ for the padding.
    private func scores(_ query: UnsafePointer<Float>, _ kt: UnsafePointer<Float>, into row: UnsafeMutablePointer<Float>) {
        for j in Swift.stride(from: 0, to: padded, by: 16) {
            var acc = Lanes()
            for c in 0..<d { acc = acc.addingProduct(Lanes(repeating: query[c]), Kernels.load(kt + c * padded + j)) }
            Kernels.store(acc * scale, row + j)
        }
        for j in s..<padded { row[j] = -.infinity }
    }

    /// Σ_j a[j]·b[j] over the padded row.
    private func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float { Kernels.dot(a, b, padded) }

    func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                 logSumExp: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        let (kt, vt) = (scratch, scratch + d * padded)
        let row = scratch + (2 * d + 2 * e) * padded
        transpose(k, columns: d, into: kt)
        transpose(v, columns: e, into: vt)
        for i in 0..<l {
            scores(q + i * d, kt, into: row)
            let m = Kernels.maximum(row, s)
            for j in 0..<padded { row[j] = fastExp(row[j] - m) }
            for j in s..<padded { row[j] = 0 }
            let total = Kernels.sum(row, s)
            let inverse = 1 / total
            for c in 0..<e { out[i * e + c] = dot(row, vt + c * padded) * inverse }
            logSumExp?[i] = m + Foundation.log(total)
        }
    }

    func backward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafePointer<Float>,
                  logSumExp: UnsafePointer<Float>, gradOut: UnsafePointer<Float>, gradQ: UnsafeMutablePointer<Float>,
                  gradK: UnsafeMutablePointer<Float>, gradV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let (kt, vt) = (scratch, scratch + d * padded)
        let (gkt, gvt) = (scratch + (d + e) * padded, scratch + (2 * d + e) * padded)
        let (p, gs) = (scratch + (2 * d + 2 * e) * padded, scratch + (2 * d + 2 * e + 1) * padded)
        transpose(k, columns: d, into: kt)
        transpose(v, columns: e, into: vt)
        gkt.update(repeating: 0, count: (d + e) * padded)
        for i in 0..<l {
            scores(q + i * d, kt, into: p)
            let lse = logSumExp[i]
            for j in 0..<padded { p[j] = fastExp(p[j] - lse) }
            for j in s..<padded { p[j] = 0 }
            let go = gradOut + i * e
            var delta: Float = 0
            for c in 0..<e { delta += go[c] * out[i * e + c] }
            // ∂L/∂P = ∂L/∂O·Vᵀ, then ∂L/∂S = P ⊙ (∂L/∂P − δ); ∂L/∂Vᵀ += ∂L/∂O[i]ᵀ·P[i]
            for j in Swift.stride(from: 0, to: padded, by: 16) {
                let pj = Kernels.load(p + j)
                var dp = Lanes()
                for c in 0..<e {
                    let row = vt + c * padded + j, grow = gvt + c * padded + j
                    dp = dp.addingProduct(Lanes(repeating: go[c]), Kernels.load(row))
                    Kernels.store(Kernels.load(grow).addingProduct(Lanes(repeating: go[c]), pj), grow)
                }
                Kernels.store(pj * (dp - delta) * scale, gs + j)
            }
            // ∂L/∂Q[i] = s·∂L/∂S[i]·K;  ∂L/∂Kᵀ += s·Q[i]ᵀ·∂L/∂S[i]  (the scale is in gs)
            for c in 0..<d {
                gradQ[i * d + c] = dot(gs, kt + c * padded)
                let qc = Lanes(repeating: q[i * d + c]), grow = gkt + c * padded
                for j in Swift.stride(from: 0, to: padded, by: 16) {
                    Kernels.store(Kernels.load(grow + j).addingProduct(qc, Kernels.load(gs + j)), grow + j)
                }
            }
        }
        for j in 0..<s {
            for c in 0..<d { gradK[j * d + c] = gkt[c * padded + j] }
            for c in 0..<e { gradV[j * e + c] = gvt[c * padded + j] }
        }
    }
}
