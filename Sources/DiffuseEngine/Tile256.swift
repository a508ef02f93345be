// The register tiles for 16 registers of 8 floats (AVX2 + FMA, and the portable build): each tile of Tile.swift as
// passes over parts of it, 12 accumulators each (+ 3 loads and a broadcast: BLIS's Haswell kernel keeps 12 too),
// reading the same packed operands. Every output sums its products in the order of the 16-float tile, with the
// same fused multiply-adds, so that the results are the same bits on either. The entry points (`tile`,
// `narrowTile`, `channelTile`, `pairedChannelTile`) run the kind of `Engine.instructionSet`.

/// Eight Float32 lanes: one AVX2 register.
typealias HalfLanes = SIMD8<Float>

extension Kernels {
    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> HalfLanes {
        UnsafeRawPointer(p).loadUnaligned(as: HalfLanes.self)
    }

    @inline(__always) static func store8(_ v: HalfLanes, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: HalfLanes.self)
    }

    /// `tile512`'s product (8 rows × 48 columns) on the register tiles of `Engine.instructionSet`.
    @inline(__always)
    static func tile(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                     bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool) {
        if Engine.instructionSet == .avx512 {
            tile512(channels: channels, taps: taps, a: a, b: b, bChannel: bChannel, bTap: bTap, out: out, ldo: ldo,
                    accumulate: accumulate)
            return
        }
        for part in 0..<4 {
            let (row, column) = (part / 2 * 4, part % 2 * 24)
            quarterTile(channels: channels, taps: taps, a: a + row, b: b + column, bChannel: bChannel, bTap: bTap,
                        out: out + row * ldo + column, ldo: ldo, accumulate: accumulate)
        }
    }

    /// `narrowTile512`'s product (8 rows × 32 columns) on the register tiles of `Engine.instructionSet`.
    @inline(__always)
    static func narrowTile(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                           bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool = false) {
        if Engine.instructionSet == .avx512 {
            narrowTile512(channels: channels, taps: taps, a: a, b: b, bChannel: bChannel, bTap: bTap, out: out, ldo: ldo,
                          accumulate: accumulate)
            return
        }
        for part in 0..<4 {
            let (row, column) = (part / 2 * 4, part % 2 * 16)
            sixteenthTile(channels: channels, taps: taps, a: a + row, b: b + column, bChannel: bChannel, bTap: bTap,
                          out: out + row * ldo + column, ldo: ldo, accumulate: accumulate)
        }
    }

    /// `channelTile512`'s product (6 positions × 64 output channels) on the register tiles of `Engine.instructionSet`.
    @inline(__always)
    static func channelTile(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                            w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ldo: Int = 64, accumulate: Bool) {
        if Engine.instructionSet == .avx512 {
            channelTile512(steps: steps, positions: positions, index: index, w: w, out: out, ldo: ldo, accumulate: accumulate)
            return
        }
        for column in Swift.stride(from: 0, to: 64, by: 16) {
            channelQuarter(steps: steps, positions: positions, index: index, w: w + column, out: out + column, ldo: ldo,
                           accumulate: accumulate)
        }
    }

    /// `pairedChannelTile512`'s product (6 pairs × 32 output channels) on the register tiles of
    /// `Engine.instructionSet`.
    @inline(__always)
    static func pairedChannelTile(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                                  w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if Engine.instructionSet == .avx512 {
            pairedChannelTile512(steps: steps, positions: positions, index: index, w: w, out: out, accumulate: accumulate)
            return
        }
        for column in Swift.stride(from: 0, to: 32, by: 8) {
            pairedChannelQuarter(steps: steps, positions: positions, index: index, w: w + column, out: out + column,
                                 accumulate: accumulate)
        }
    }

    /// out[i][j] (+)= Σ_ch Σ_t A[ch, t, i] · B[ch, t, j] for i < 4, j < 24: rows 4r..<4r+4 and columns 24c..<24c+24 of
    /// `tile512` when a and b point at that row of A's packed groups of 8 and that column of B.
    @inline(never)
    static func quarterTile(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                            bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool) {
        var c00 = HalfLanes(), c01 = HalfLanes(), c02 = HalfLanes(), c10 = HalfLanes(), c11 = HalfLanes(), c12 = HalfLanes()
        var c20 = HalfLanes(), c21 = HalfLanes(), c22 = HalfLanes(), c30 = HalfLanes(), c31 = HalfLanes(), c32 = HalfLanes()
        var a = a
        forEachStep(channels: channels, taps: taps, b: b, bChannel: bChannel, bTap: bTap) { p in
            let b0 = load8(p), b1 = load8(p + 8), b2 = load8(p + 16)
            var s = HalfLanes(repeating: a[0])
            c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1); c02 = c02.addingProduct(s, b2)
            s = HalfLanes(repeating: a[1])
            c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1); c12 = c12.addingProduct(s, b2)
            s = HalfLanes(repeating: a[2])
            c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1); c22 = c22.addingProduct(s, b2)
            s = HalfLanes(repeating: a[3])
            c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1); c32 = c32.addingProduct(s, b2)
            a += 8
        }
        @inline(__always) func row(_ r: Int, _ v0: HalfLanes, _ v1: HalfLanes, _ v2: HalfLanes) {
            let p = out + r * ldo
            if accumulate {
                store8(load8(p) + v0, p); store8(load8(p + 8) + v1, p + 8); store8(load8(p + 16) + v2, p + 16)
            } else {
                store8(v0, p); store8(v1, p + 8); store8(v2, p + 16)
            }
        }
        row(0, c00, c01, c02); row(1, c10, c11, c12); row(2, c20, c21, c22); row(3, c30, c31, c32)
    }

    /// `quarterTile` 16 columns wide (8 accumulators): the parts of `narrowTile512`, whose 32 columns 24 does not
    /// divide.
    @inline(never)
    static func sixteenthTile(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                              bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool) {
        var c00 = HalfLanes(), c01 = HalfLanes(), c10 = HalfLanes(), c11 = HalfLanes()
        var c20 = HalfLanes(), c21 = HalfLanes(), c30 = HalfLanes(), c31 = HalfLanes()
        var a = a
        forEachStep(channels: channels, taps: taps, b: b, bChannel: bChannel, bTap: bTap) { p in
            let b0 = load8(p), b1 = load8(p + 8)
            var s = HalfLanes(repeating: a[0])
            c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
            s = HalfLanes(repeating: a[1])
            c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
            s = HalfLanes(repeating: a[2])
            c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
            s = HalfLanes(repeating: a[3])
            c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
            a += 8
        }
        @inline(__always) func row(_ r: Int, _ v0: HalfLanes, _ v1: HalfLanes) {
            let p = out + r * ldo
            if accumulate {
                store8(load8(p) + v0, p); store8(load8(p + 8) + v1, p + 8)
            } else {
                store8(v0, p); store8(v1, p + 8)
            }
        }
        row(0, c00, c01); row(1, c10, c11); row(2, c20, c21); row(3, c30, c31)
    }

    /// Columns 16c..<16c+16 of `channelTile512` (6 positions × 16 output channels, 12 accumulators) when w and out
    /// point at that column.
    @inline(never)
    static func channelQuarter(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                               w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool) {
        var c00 = HalfLanes(), c01 = HalfLanes(), c10 = HalfLanes(), c11 = HalfLanes(), c20 = HalfLanes(), c21 = HalfLanes()
        var c30 = HalfLanes(), c31 = HalfLanes(), c40 = HalfLanes(), c41 = HalfLanes(), c50 = HalfLanes(), c51 = HalfLanes()
        let x0 = positions[0], x1 = positions[1], x2 = positions[2]
        let x3 = positions[3], x4 = positions[4], x5 = positions[5]
        var w = w
        for s in 0..<steps {
            let k = index[s]
            let b0 = load8(w), b1 = load8(w + 8)
            var a = HalfLanes(repeating: x0[k])
            c00 = c00.addingProduct(a, b0); c01 = c01.addingProduct(a, b1)
            a = HalfLanes(repeating: x1[k])
            c10 = c10.addingProduct(a, b0); c11 = c11.addingProduct(a, b1)
            a = HalfLanes(repeating: x2[k])
            c20 = c20.addingProduct(a, b0); c21 = c21.addingProduct(a, b1)
            a = HalfLanes(repeating: x3[k])
            c30 = c30.addingProduct(a, b0); c31 = c31.addingProduct(a, b1)
            a = HalfLanes(repeating: x4[k])
            c40 = c40.addingProduct(a, b0); c41 = c41.addingProduct(a, b1)
            a = HalfLanes(repeating: x5[k])
            c50 = c50.addingProduct(a, b0); c51 = c51.addingProduct(a, b1)
            w += 64
        }
        @inline(__always) func row(_ r: Int, _ v0: HalfLanes, _ v1: HalfLanes) {
            let p = out + r * ldo
            if accumulate {
                store8(load8(p) + v0, p); store8(load8(p + 8) + v1, p + 8)
            } else {
                store8(v0, p); store8(v1, p + 8)
            }
        }
        row(0, c00, c01); row(1, c10, c11); row(2, c20, c21); row(3, c30, c31); row(4, c40, c41); row(5, c50, c51)
    }

    /// Columns 8c..<8c+8 of `pairedChannelTile512` when w and out point at that column: each pair's even and odd
    /// steps in accumulators of their own (12), added at the end as there.
    @inline(never)
    static func pairedChannelQuarter(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                                     w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        var c0 = HalfLanes(), c1 = HalfLanes(), c2 = HalfLanes(), c3 = HalfLanes(), c4 = HalfLanes(), c5 = HalfLanes()
        var e0 = HalfLanes(), e1 = HalfLanes(), e2 = HalfLanes(), e3 = HalfLanes(), e4 = HalfLanes(), e5 = HalfLanes()
        let x0 = positions[0], x1 = positions[1], x2 = positions[2]
        let x3 = positions[3], x4 = positions[4], x5 = positions[5]
        var w = w
        for s in Swift.stride(from: 0, to: steps, by: 2) {
            let (k, l) = (index[s], index[s + 1])
            let b = load8(w), d = load8(w + 32)
            c0 = c0.addingProduct(HalfLanes(repeating: x0[k]), b); e0 = e0.addingProduct(HalfLanes(repeating: x0[l]), d)
            c1 = c1.addingProduct(HalfLanes(repeating: x1[k]), b); e1 = e1.addingProduct(HalfLanes(repeating: x1[l]), d)
            c2 = c2.addingProduct(HalfLanes(repeating: x2[k]), b); e2 = e2.addingProduct(HalfLanes(repeating: x2[l]), d)
            c3 = c3.addingProduct(HalfLanes(repeating: x3[k]), b); e3 = e3.addingProduct(HalfLanes(repeating: x3[l]), d)
            c4 = c4.addingProduct(HalfLanes(repeating: x4[k]), b); e4 = e4.addingProduct(HalfLanes(repeating: x4[l]), d)
            c5 = c5.addingProduct(HalfLanes(repeating: x5[k]), b); e5 = e5.addingProduct(HalfLanes(repeating: x5[l]), d)
            w += 64
        }
        @inline(__always) func row(_ r: Int, _ v: HalfLanes) {
            let p = out + r * 32
            store8(accumulate ? load8(p) + v : v, p)
        }
        row(0, c0 + e0); row(1, c1 + e1); row(2, c2 + e2); row(3, c3 + e3); row(4, c4 + e4); row(5, c5 + e5)
    }
}
