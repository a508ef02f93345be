// A convolution's weight gradient with the output positions in the vector lanes (gradientTile), summed across the
// lanes at the end of each block of positions.

extension Kernels {
    /// ∂W[o, c, t] = Σ_{n, Y, X} g[n, o, Y, X] · source[c][q + offsets[t]] for ∂L/∂y g (NCHW) at the output positions
    /// q = Y·rowLength + n·period + X of `plan`: g laid out at those positions (outputPlanes), then summed in lanes.
    static func positionLaneWeightGradient(_ plan: Correlation, source: UnsafePointer<Float>, g: UnsafePointer<Float>,
                                           outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let planeStride = (plan.positions + 47) / 16 * 16  // whole vectors, 16 zeros past the end
        withBuffer(outputs * planeStride) { gw in
            outputPlanes(g, plan, channels: outputs, stride: planeStride, into: gw)
            positionLaneSums(plan, source: source, gw: gw, gwStride: planeStride, outputs: outputs, into: dw)
        }
    }

    /// g laid out at `plan`'s output positions: gw[o][q] = g[n, o, Y, X] at q = Y·rowLength + n·period + X, zero at
    /// the junk positions between images and past the last; `stride` (≥ positions + 16) floats per channel.
    private static func outputPlanes(_ g: UnsafePointer<Float>, _ plan: Correlation, channels: Int, stride: Int,
                             into gw: UnsafeMutablePointer<Float>) {
        let layout = plan.layout
        parallelFor(channels, grain: 1) { range in
            for o in range {
                let plane = gw + o * stride
                plane.update(repeating: 0, count: stride)
                for n in 0..<layout.images {
                    for y in 0..<plan.outputRows {
                        let src = g + ((n * channels + o) * plan.outputRows + y) * plan.outputColumns
                        (plane + y * layout.rowLength + n * layout.period).update(from: src, count: plan.outputColumns)
                    }
                }
            }
        }
    }

    /// ∂W[o, c, t] = Σ_q gw[o][q] · source[c][q + offsets[t]] over the output positions of `plan`, gw from
    /// outputPlanes (zero between images). Tiles of 4 output channels × 6 (channel, tap) pairs, 16 positions a step
    /// in 24 accumulators summed across their lanes at the end of each block of positions. Groups of 8 × 8 tiles
    /// share a block whose rows stay in L2; each ∂W element adds its blocks in order, so that the result depends
    /// on the shape alone.
    private static func positionLaneSums(_ plan: Correlation, source: UnsafePointer<Float>, gw: UnsafePointer<Float>,
                                         gwStride: Int, outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let taps = plan.offsets.count
        let pairs = plan.layout.channels * taps
        let chunks = (pairs + 5) / 6, quads = (outputs + 3) / 4
        let steps = (plan.positions + 15) / 16
        let group = 8
        let (quadGroups, chunkGroups) = ((quads + group - 1) / group, (chunks + group - 1) / group)
        // Rows a group of tiles reads: 4 per quad, and the channels of its chunks.
        let rows = 4 * group + group * ((6 + taps - 1) / taps)
        let blockSteps = Engine.caches.positionSteps(rows: rows)
        parallelFor(quadGroups * chunkGroups, grain: 1) { range in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 6 * group) { offsets in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 24 * group * group + 24) { scratch in
            let (sums, part) = (scratch.baseAddress!, scratch.baseAddress! + 24 * group * group)
            for unit in range {
                let quadRange = (unit / chunkGroups * group)..<Swift.min(quads, (unit / chunkGroups + 1) * group)
                let chunkRange = (unit % chunkGroups * group)..<Swift.min(chunks, (unit % chunkGroups + 1) * group)
                for (i, chunk) in chunkRange.enumerated() {
                    for k in 0..<6 {
                        let pair = Swift.min(chunk * 6 + k, pairs - 1)
                        offsets[i * 6 + k] = (pair / taps) * plan.layout.channelStride + plan.offsets[pair % taps]
                    }
                }
                Kernels.zero(sums, 24 * group * group)
                for block in Swift.stride(from: 0, to: steps, by: blockSteps) {
                    let count = Swift.min(blockSteps, steps - block), first = block * 16
                    for (qi, quad) in quadRange.enumerated() {
                        func row(_ r: Int) -> UnsafePointer<Float> { gw + Swift.min(quad * 4 + r, outputs - 1) * gwStride + first }
                        for ci in 0..<chunkRange.count {
                            gradientTile(steps: count, g: (row(0), row(1), row(2), row(3)), source: source + first,
                                         offsets: offsets.baseAddress! + ci * 6, out: part)
                            let base = (qi * group + ci) * 24
                            for k in 0..<24 { sums[base + k] += part[k] }
                        }
                    }
                }
                for (qi, quad) in quadRange.enumerated() {
                    for (ci, chunk) in chunkRange.enumerated() {
                        let base = (qi * group + ci) * 24
                        for r in 0..<Swift.min(4, outputs - quad * 4) {
                            for k in 0..<Swift.min(6, pairs - chunk * 6) {
                                dw[(quad * 4 + r) * pairs + chunk * 6 + k] = sums[base + r * 6 + k]
                            }
                        }
                    }
                }
            }
        } }
        }
    }

    /// out[r·6 + k] = Σ_{s < 16·steps} g_r[s] · source[offsets[k] + s] for r < 4, k < 6: 24 accumulators, each
    /// step 4 loads of g (aligned rows) and 6 of the source for 24 multiply-adds.
    @inline(never) @_optimize(size)  // unrolled (as -O does), the loop would spill its accumulators
    static func gradientTile(steps: Int, g: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
                             source: UnsafePointer<Float>, offsets: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>) {
        let (g0, g1, g2, g3) = g
        let x0 = source + offsets[0], x1 = source + offsets[1], x2 = source + offsets[2]
        let x3 = source + offsets[3], x4 = source + offsets[4], x5 = source + offsets[5]
        var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes(), a4 = Lanes(), a5 = Lanes()
        var b0 = Lanes(), b1 = Lanes(), b2 = Lanes(), b3 = Lanes(), b4 = Lanes(), b5 = Lanes()
        var c0 = Lanes(), c1 = Lanes(), c2 = Lanes(), c3 = Lanes(), c4 = Lanes(), c5 = Lanes()
        var d0 = Lanes(), d1 = Lanes(), d2 = Lanes(), d3 = Lanes(), d4 = Lanes(), d5 = Lanes()
        var i = 0
        for _ in 0..<steps {
            let p = load(g0 + i), q = load(g1 + i), r = load(g2 + i), u = load(g3 + i)
            var x = load(x0 + i)
            a0 = a0.addingProduct(p, x); b0 = b0.addingProduct(q, x); c0 = c0.addingProduct(r, x); d0 = d0.addingProduct(u, x)
            x = load(x1 + i)
            a1 = a1.addingProduct(p, x); b1 = b1.addingProduct(q, x); c1 = c1.addingProduct(r, x); d1 = d1.addingProduct(u, x)
            x = load(x2 + i)
            a2 = a2.addingProduct(p, x); b2 = b2.addingProduct(q, x); c2 = c2.addingProduct(r, x); d2 = d2.addingProduct(u, x)
            x = load(x3 + i)
            a3 = a3.addingProduct(p, x); b3 = b3.addingProduct(q, x); c3 = c3.addingProduct(r, x); d3 = d3.addingProduct(u, x)
            x = load(x4 + i)
            a4 = a4.addingProduct(p, x); b4 = b4.addingProduct(q, x); c4 = c4.addingProduct(r, x); d4 = d4.addingProduct(u, x)
            x = load(x5 + i)
            a5 = a5.addingProduct(p, x); b5 = b5.addingProduct(q, x); c5 = c5.addingProduct(r, x); d5 = d5.addingProduct(u, x)
            i += 16
        }
        out[0] = laneTotal(a0); out[1] = laneTotal(a1); out[2] = laneTotal(a2); out[3] = laneTotal(a3)
        out[4] = laneTotal(a4); out[5] = laneTotal(a5); out[6] = laneTotal(b0); out[7] = laneTotal(b1)
        out[8] = laneTotal(b2); out[9] = laneTotal(b3); out[10] = laneTotal(b4); out[11] = laneTotal(b5)
        out[12] = laneTotal(c0); out[13] = laneTotal(c1); out[14] = laneTotal(c2); out[15] = laneTotal(c3)
        out[16] = laneTotal(c4); out[17] = laneTotal(c5); out[18] = laneTotal(d0); out[19] = laneTotal(d1)
        out[20] = laneTotal(d2); out[21] = laneTotal(d3); out[22] = laneTotal(d4); out[23] = laneTotal(d5)
    }
}
