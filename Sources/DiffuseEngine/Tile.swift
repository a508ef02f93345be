// The register tiles that the engine's matrix products and convolutions run on, for AVX-512. `tile512`: 8 rows × 48
// columns of Float32 in 24 SIMD16 accumulators (24 of the 32 AVX-512 registers), each step one broadcast of 8 values
// of A and three 16-lane loads of B for 24 fused multiply-adds; `narrowTile512`, its 32-column variant;
// `channelTile512`, 6 rows broadcast from 6 addresses × 64 columns loaded. Tile256.swift holds the same tiles for 16
// registers of 8 floats and the entry points that pick by `Engine.instructionSet`. Everything else (packing, layouts,
// threads) feeds them.

/// Sixteen Float32 lanes: one AVX-512 register on the machines this is built for.
typealias Lanes = SIMD16<Float>

extension Lanes {
    /// The lanes where `mask` (Kernels.laneMask) is all ones, zero elsewhere.
    @inline(__always) func keeping(_ mask: SIMD16<Int32>) -> Lanes {
        unsafeBitCast(unsafeBitCast(self, to: SIMD16<Int32>.self) & mask, to: Lanes.self)
    }
}

extension Kernels {
    /// Rows and columns of the register tile.
    static let tileRows = 8, tileColumns = 48

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Lanes {
        UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
    }

    @inline(__always) static func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
    }

    /// dst[0..<n] = src[0..<n] in whole 16-lane moves: a call to memmove costs more than a short row. It reads
    /// and writes up to 15 floats past n: src must have them (every pooled buffer does), and whatever dst holds there
    /// must be written afterwards.
    @inline(__always) static func copyRounded(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i < n { store(load(src + i), dst + i); i += 16 }
    }

    /// The even and the odd lanes of low followed by high: each vector's lanes seen as 8 pairs, narrowed to their
    /// low or high halves (one permute each; a narrowing of all 16 pairs at once, or the standard library's
    /// evenHalf, compiles to element-wise permutes 2× slower).
    @inline(__always) static func evenOddLanes(_ low: Lanes, _ high: Lanes) -> (even: Lanes, odd: Lanes) {
        let (l, h) = (unsafeBitCast(low, to: SIMD8<UInt64>.self), unsafeBitCast(high, to: SIMD8<UInt64>.self))
        let half = { (v: SIMD8<UInt64>) in SIMD8<UInt32>(truncatingIfNeeded: v) }
        return (unsafeBitCast(SIMD16(lowHalf: half(l), highHalf: half(h)), to: Lanes.self),
                unsafeBitCast(SIMD16(lowHalf: half(l &>> 32), highHalf: half(h &>> 32)), to: Lanes.self))
    }

    /// For `rows` rows (row k at src + k·stride): even[k·period + i] = row[2i] for i < evens and
    /// even[oddOffset + k·period + i] = row[2i + 1] for i < odds (odds ≤ evens), 16 of each at a time (the even and
    /// odd lanes of 32 loaded) while those loads stay within the first `readable` floats of a row, then one by one.
    /// Like copyZeroPadded, each may get up to 15 zeros past its last value. Rows of up to 16 evens take one pair of
    /// loads each, their masks made once. Not inlined: inlined into a fill, the shuffles compiled to stack round trips
    /// and a generic call.
    @inline(never)
    static func splitEvenOdd(_ src: UnsafePointer<Float>, rows: Int, stride: Int, _ even: UnsafeMutablePointer<Float>,
                             _ oddOffset: Int, _ period: Int, evens: Int, odds: Int, readable: Int) {
        var (from, to) = (src, even)
        if evens <= 16 && readable >= 32 {
            let masks = (laneMask(evens), laneMask(odds))
            for _ in 0..<rows {
                let (e, o) = evenOddLanes(load(from), load(from + 16))
                store(e.keeping(masks.0), to)
                store(o.keeping(masks.1), to + oddOffset)
                (from, to) = (from + stride, to + period)
            }
            return
        }
        for _ in 0..<rows {
            let odd = to + oddOffset
            var i = 0
            while i < evens && 2 * i + 32 <= readable {
                let (e, o) = evenOddLanes(load(from + 2 * i), load(from + 2 * i + 16))
                store(i + 16 <= evens ? e : firstLanes(e, evens - i), to + i)
                if i < odds { store(i + 16 <= odds ? o : firstLanes(o, odds - i), odd + i) }
                i += 16
            }
            for j in Swift.min(i, evens)..<evens { to[j] = from[2 * j] }
            for j in Swift.min(i, odds)..<odds { odd[j] = from[2 * j + 1] }
            (from, to) = (from + stride, to + period)
        }
    }

    /// dst[0..<n] = src[0..<n] in whole 16-lane moves, the lanes of the last one past n zeroed: up to 15 zeros
    /// past dst[n − 1]. It reads up to 15 floats past src[n − 1], which src must have (every pooled buffer does).
    @inline(__always) static func copyZeroPadded(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(load(src + i), dst + i); i += 16 }
        if i < n { store(firstLanes(load(src + i), n - i), dst + i) }
    }

    /// v with its lanes from n (< 16) on zeroed, by integer ops (Lanes.replacing(with:where:) compiles to a loop
    /// over the lanes).
    @inline(__always) static func firstLanes(_ v: Lanes, _ n: Int) -> Lanes { v.keeping(laneMask(n)) }

    /// All ones in lanes below n, zero from n on.
    @inline(__always) static func laneMask(_ n: Int) -> SIMD16<Int32> {
        let indices = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        return (indices &- Int32(truncatingIfNeeded: n)) &>> 31
    }

    /// dst[j·ld + i] = src[i·ls + j] for i < 16, j < rows (≤ 16), in blocks of 4 × 4, whose columns built from
    /// the rows' lanes compile to unpack shuffles (2–3× faster than rounds of even/odd splits of whole vectors).
    /// With `bias`, row j of dst gets bias[j] added.
    @inline(__always) static func transpose16(_ src: UnsafePointer<Float>, _ ls: Int, _ dst: UnsafeMutablePointer<Float>,
                                              _ ld: Int, rows: Int = 16, adding bias: UnsafePointer<Float>? = nil) {
        @inline(__always) func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
            UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
        }
        for i0 in Swift.stride(from: 0, to: 16, by: 4) {
            for j0 in Swift.stride(from: 0, to: rows, by: 4) {
                let s = src + i0 * ls + j0, d = dst + j0 * ld + i0
                let r0 = load4(s), r1 = load4(s + ls), r2 = load4(s + 2 * ls), r3 = load4(s + 3 * ls)
                for j in 0..<Swift.min(4, rows - j0) {
                    var column = SIMD4(r0[j], r1[j], r2[j], r3[j])
                    if let bias { column += SIMD4(repeating: bias[j0 + j]) }
                    UnsafeMutableRawPointer(d + j * ld).storeBytes(of: column, as: SIMD4<Float>.self)
                }
            }
        }
    }

    /// dst[i] = src[i] + b for i < n, in vectors of 16, 8, 4 and 2 floats (none past dst[n − 1]; the compiler's
    /// own loop leaves up to 15 scalar stores).
    @inline(__always) static func addCopy(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int,
                                          _ b: Float) {
        var i = 0
        while i + 16 <= n { store(load(src + i) + Lanes(repeating: b), dst + i); i += 16 }
        @inline(__always) func part<V: SIMD>(_: V.Type) where V.Scalar == Float {
            guard i + V.scalarCount <= n else { return }
            let v = UnsafeRawPointer(src + i).loadUnaligned(as: V.self) + V(repeating: b)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: v, as: V.self)
            i += V.scalarCount
        }
        part(SIMD8<Float>.self)
        part(SIMD4<Float>.self)
        part(SIMD2<Float>.self)
        if i < n { dst[i] = src[i] + b }
    }

    /// dst[i] = v[i] for i < n (≤ 16), in stores of 16, 8, 4, 2 and 1 floats (none past dst[n − 1]).
    @inline(__always) static func storeFirst(_ v: Lanes, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        if n >= 16 { return store(v, dst) }
        let p = UnsafeMutableRawPointer(dst)
        var (at, rest8) = (0, v.lowHalf)
        if n & 8 != 0 { p.storeBytes(of: v.lowHalf, as: SIMD8<Float>.self); (at, rest8) = (8, v.highHalf) }
        var rest4 = rest8.lowHalf
        if n & 4 != 0 { p.storeBytes(of: rest4, toByteOffset: 4 * at, as: SIMD4<Float>.self); at += 4; rest4 = rest8.highHalf }
        var rest2 = rest4.lowHalf
        if n & 2 != 0 { p.storeBytes(of: rest2, toByteOffset: 4 * at, as: SIMD2<Float>.self); at += 2; rest2 = rest4.highHalf }
        if n & 1 != 0 { dst[at] = rest2[0] }
    }

    /// dst[0..<n] = 0.
    @inline(__always) static func zero(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(Lanes(), dst + i); i += 16 }
        while i < n { dst[i] = 0; i += 1 }
    }

    /// Calls `step` with B's row of each (channel, tap) of a register tile in order, b + ch·bChannel + bTap[t]. With
    /// one tap (matrix products, Winograd's products) that is a pointer stepped by bChannel: no table read and no
    /// inner loop per step, whose overhead is as large as the multiply-adds of a 12-accumulator pass.
    @inline(__always)
    static func forEachStep(channels: Int, taps: Int, b: UnsafePointer<Float>, bChannel: Int, bTap: UnsafePointer<Int>,
                            _ step: (UnsafePointer<Float>) -> Void) {
        if taps == 1 {
            var p = b + bTap[0]
            for _ in 0..<channels {
                step(p)
                p += bChannel
            }
            return
        }
        var bc = b
        for _ in 0..<channels {
            for t in 0..<taps { step(bc + bTap[t]) }
            bc += bChannel
        }
    }

    /// out[i][j] = (accumulate ? out[i][j] : 0) + Σ_{ch < channels} Σ_{t < taps} A[ch, t, i] · B[ch, t, j]
    /// for i < 8, j < 48, where A[ch, t, i] = a[(ch·taps + t)·8 + i] (A packed: 8 values per step) and
    /// B[ch, t, j] = b[ch·bChannel + bTap[t] + j] (48 consecutive values at a per-step offset). A matrix product is
    /// the case taps = 1 (ch running over the inner dimension); a convolution runs ch over input channels and t over
    /// the kernel's taps, bTap holding each tap's offset in the input. Rows of out are ldo apart.
    @inline(never)
    static func tile512(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                     bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool) {
        var c00 = Lanes(), c01 = Lanes(), c02 = Lanes(), c10 = Lanes(), c11 = Lanes(), c12 = Lanes()
        var c20 = Lanes(), c21 = Lanes(), c22 = Lanes(), c30 = Lanes(), c31 = Lanes(), c32 = Lanes()
        var c40 = Lanes(), c41 = Lanes(), c42 = Lanes(), c50 = Lanes(), c51 = Lanes(), c52 = Lanes()
        var c60 = Lanes(), c61 = Lanes(), c62 = Lanes(), c70 = Lanes(), c71 = Lanes(), c72 = Lanes()
        var a = a
        forEachStep(channels: channels, taps: taps, b: b, bChannel: bChannel, bTap: bTap) { p in
            let b0 = load(p), b1 = load(p + 16), b2 = load(p + 32)
            var s = Lanes(repeating: a[0])
            c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1); c02 = c02.addingProduct(s, b2)
            s = Lanes(repeating: a[1])
            c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1); c12 = c12.addingProduct(s, b2)
            s = Lanes(repeating: a[2])
            c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1); c22 = c22.addingProduct(s, b2)
            s = Lanes(repeating: a[3])
            c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1); c32 = c32.addingProduct(s, b2)
            s = Lanes(repeating: a[4])
            c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1); c42 = c42.addingProduct(s, b2)
            s = Lanes(repeating: a[5])
            c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1); c52 = c52.addingProduct(s, b2)
            s = Lanes(repeating: a[6])
            c60 = c60.addingProduct(s, b0); c61 = c61.addingProduct(s, b1); c62 = c62.addingProduct(s, b2)
            s = Lanes(repeating: a[7])
            c70 = c70.addingProduct(s, b0); c71 = c71.addingProduct(s, b1); c72 = c72.addingProduct(s, b2)
            a += 8
        }
        @inline(__always) func row(_ r: Int, _ v0: Lanes, _ v1: Lanes, _ v2: Lanes) {
            let p = out + r * ldo
            if accumulate {
                store(load(p) + v0, p); store(load(p + 16) + v1, p + 16); store(load(p + 32) + v2, p + 32)
            } else {
                store(v0, p); store(v1, p + 16); store(v2, p + 32)
            }
        }
        row(0, c00, c01, c02); row(1, c10, c11, c12); row(2, c20, c21, c22); row(3, c30, c31, c32)
        row(4, c40, c41, c42); row(5, c50, c51, c52); row(6, c60, c61, c62); row(7, c70, c71, c72)
    }

    /// `tile` 32 columns wide (j < 32, 16 accumulators): per column ~10% slower than 48, it serves the last tile of a
    /// correlation or product when no more than 32 columns remain, and outputs that 32 divides and 48 does not.
    @inline(never)
    static func narrowTile512(channels: Int, taps: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, bChannel: Int,
                           bTap: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int, accumulate: Bool = false) {
        var c00 = Lanes(), c01 = Lanes(), c10 = Lanes(), c11 = Lanes(), c20 = Lanes(), c21 = Lanes()
        var c30 = Lanes(), c31 = Lanes(), c40 = Lanes(), c41 = Lanes(), c50 = Lanes(), c51 = Lanes()
        var c60 = Lanes(), c61 = Lanes(), c70 = Lanes(), c71 = Lanes()
        var a = a
        forEachStep(channels: channels, taps: taps, b: b, bChannel: bChannel, bTap: bTap) { p in
            let b0 = load(p), b1 = load(p + 16)
            var s = Lanes(repeating: a[0])
            c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
            s = Lanes(repeating: a[1])
            c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
            s = Lanes(repeating: a[2])
            c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
            s = Lanes(repeating: a[3])
            c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
            s = Lanes(repeating: a[4])
            c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1)
            s = Lanes(repeating: a[5])
            c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1)
            s = Lanes(repeating: a[6])
            c60 = c60.addingProduct(s, b0); c61 = c61.addingProduct(s, b1)
            s = Lanes(repeating: a[7])
            c70 = c70.addingProduct(s, b0); c71 = c71.addingProduct(s, b1)
            a += 8
        }
        @inline(__always) func row(_ r: Int, _ v0: Lanes, _ v1: Lanes) {
            let p = out + r * ldo
            if accumulate {
                store(load(p) + v0, p); store(load(p + 16) + v1, p + 16)
            } else {
                store(v0, p); store(v1, p + 16)
            }
        }
        row(0, c00, c01); row(1, c10, c11); row(2, c20, c21); row(3, c30, c31)
        row(4, c40, c41); row(5, c50, c51); row(6, c60, c61); row(7, c70, c71)
    }

    /// Positions and output channels of `channelTile`.
    static let channelTilePositions = 6, channelTileOutputs = 64

    /// out[i·ldo + j] = (accumulate ? that : 0) + Σ_{s < steps} x_i[index[s]] · w[64s + j] for i < 6, j < 64, where
    /// x_i = positions[i]: a convolution's 64 output channels (j) at 6 output positions (i), each step one input value
    /// per position, broadcast, against 64 packed weights. The transpose of `tile`'s arrangement, at the same rate
    /// (~265 GFLOP/s a core here): since each position has its own address, no position is computed for the padding
    /// between images and rows, and no panel is copied.
    @inline(never)
    static func channelTile512(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                            w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, ldo: Int = 64, accumulate: Bool) {
        var c00 = Lanes(), c01 = Lanes(), c02 = Lanes(), c03 = Lanes(), c10 = Lanes(), c11 = Lanes(), c12 = Lanes()
        var c13 = Lanes(), c20 = Lanes(), c21 = Lanes(), c22 = Lanes(), c23 = Lanes(), c30 = Lanes(), c31 = Lanes()
        var c32 = Lanes(), c33 = Lanes(), c40 = Lanes(), c41 = Lanes(), c42 = Lanes(), c43 = Lanes(), c50 = Lanes()
        var c51 = Lanes(), c52 = Lanes(), c53 = Lanes()
        let x0 = positions[0], x1 = positions[1], x2 = positions[2]
        let x3 = positions[3], x4 = positions[4], x5 = positions[5]
        var w = w
        for s in 0..<steps {
            let k = index[s]
            let b0 = load(w), b1 = load(w + 16), b2 = load(w + 32), b3 = load(w + 48)
            var a = Lanes(repeating: x0[k])
            c00 = c00.addingProduct(a, b0); c01 = c01.addingProduct(a, b1); c02 = c02.addingProduct(a, b2); c03 = c03.addingProduct(a, b3)
            a = Lanes(repeating: x1[k])
            c10 = c10.addingProduct(a, b0); c11 = c11.addingProduct(a, b1); c12 = c12.addingProduct(a, b2); c13 = c13.addingProduct(a, b3)
            a = Lanes(repeating: x2[k])
            c20 = c20.addingProduct(a, b0); c21 = c21.addingProduct(a, b1); c22 = c22.addingProduct(a, b2); c23 = c23.addingProduct(a, b3)
            a = Lanes(repeating: x3[k])
            c30 = c30.addingProduct(a, b0); c31 = c31.addingProduct(a, b1); c32 = c32.addingProduct(a, b2); c33 = c33.addingProduct(a, b3)
            a = Lanes(repeating: x4[k])
            c40 = c40.addingProduct(a, b0); c41 = c41.addingProduct(a, b1); c42 = c42.addingProduct(a, b2); c43 = c43.addingProduct(a, b3)
            a = Lanes(repeating: x5[k])
            c50 = c50.addingProduct(a, b0); c51 = c51.addingProduct(a, b1); c52 = c52.addingProduct(a, b2); c53 = c53.addingProduct(a, b3)
            w += 64
        }
        @inline(__always) func row(_ r: Int, _ v0: Lanes, _ v1: Lanes, _ v2: Lanes, _ v3: Lanes) {
            let p = out + r * ldo
            if accumulate {
                store(load(p) + v0, p); store(load(p + 16) + v1, p + 16)
                store(load(p + 32) + v2, p + 32); store(load(p + 48) + v3, p + 48)
            } else {
                store(v0, p); store(v1, p + 16); store(v2, p + 32); store(v3, p + 48)
            }
        }
        row(0, c00, c01, c02, c03); row(1, c10, c11, c12, c13); row(2, c20, c21, c22, c23)
        row(3, c30, c31, c32, c33); row(4, c40, c41, c42, c43); row(5, c50, c51, c52, c53)
    }

    /// out[32i + j] = (accumulate ? that : 0) + Σ_{s < steps} x_i[index[s]] · w[32s + j] for i < 6, j < 32, steps
    /// even: channelTile for 32 output channels (a weight gradient's, j, against 6 (channel, tap) pairs, i). Two steps
    /// at a time, each with its own broadcasts, keep 24 accumulators (and both FMA units) busy; the two steps' sums
    /// are added at the end.
    @inline(never)
    static func pairedChannelTile512(steps: Int, positions: UnsafePointer<UnsafePointer<Float>>, index: UnsafePointer<Int>,
                                  w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        var c00 = Lanes(), c01 = Lanes(), c02 = Lanes(), c03 = Lanes(), c10 = Lanes(), c11 = Lanes(), c12 = Lanes()
        var c13 = Lanes(), c20 = Lanes(), c21 = Lanes(), c22 = Lanes(), c23 = Lanes(), c30 = Lanes(), c31 = Lanes()
        var c32 = Lanes(), c33 = Lanes(), c40 = Lanes(), c41 = Lanes(), c42 = Lanes(), c43 = Lanes(), c50 = Lanes()
        var c51 = Lanes(), c52 = Lanes(), c53 = Lanes()
        let x0 = positions[0], x1 = positions[1], x2 = positions[2]
        let x3 = positions[3], x4 = positions[4], x5 = positions[5]
        var w = w
        for s in Swift.stride(from: 0, to: steps, by: 2) {
            let (k, l) = (index[s], index[s + 1])
            let b0 = load(w), b1 = load(w + 16), b2 = load(w + 32), b3 = load(w + 48)
            var a = Lanes(repeating: x0[k]), e = Lanes(repeating: x0[l])
            c00 = c00.addingProduct(a, b0); c01 = c01.addingProduct(a, b1); c02 = c02.addingProduct(e, b2); c03 = c03.addingProduct(e, b3)
            a = Lanes(repeating: x1[k]); e = Lanes(repeating: x1[l])
            c10 = c10.addingProduct(a, b0); c11 = c11.addingProduct(a, b1); c12 = c12.addingProduct(e, b2); c13 = c13.addingProduct(e, b3)
            a = Lanes(repeating: x2[k]); e = Lanes(repeating: x2[l])
            c20 = c20.addingProduct(a, b0); c21 = c21.addingProduct(a, b1); c22 = c22.addingProduct(e, b2); c23 = c23.addingProduct(e, b3)
            a = Lanes(repeating: x3[k]); e = Lanes(repeating: x3[l])
            c30 = c30.addingProduct(a, b0); c31 = c31.addingProduct(a, b1); c32 = c32.addingProduct(e, b2); c33 = c33.addingProduct(e, b3)
            a = Lanes(repeating: x4[k]); e = Lanes(repeating: x4[l])
            c40 = c40.addingProduct(a, b0); c41 = c41.addingProduct(a, b1); c42 = c42.addingProduct(e, b2); c43 = c43.addingProduct(e, b3)
            a = Lanes(repeating: x5[k]); e = Lanes(repeating: x5[l])
            c50 = c50.addingProduct(a, b0); c51 = c51.addingProduct(a, b1); c52 = c52.addingProduct(e, b2); c53 = c53.addingProduct(e, b3)
            w += 64
        }
        @inline(__always) func row(_ r: Int, _ v0: Lanes, _ v1: Lanes) {
            let p = out + r * 32
            if accumulate {
                store(load(p) + v0, p); store(load(p + 16) + v1, p + 16)
            } else {
                store(v0, p); store(v1, p + 16)
            }
        }
        row(0, c00 + c02, c01 + c03); row(1, c10 + c12, c11 + c13); row(2, c20 + c22, c21 + c23)
        row(3, c30 + c32, c31 + c33); row(4, c40 + c42, c41 + c43); row(5, c50 + c52, c51 + c53)
    }

    /// Packs rows of A for `tile`: for each group of 8 rows, packed[g][k][i] = scale·A(8g + i, k), zero past the
    /// last row. A(r, k) = a[r·rowStride + k·kStride] (rowStride 1 and kStride m read a transposed matrix).
    static func packRows(_ a: UnsafePointer<Float>, rows m: Int, depth k: Int, rowStride: Int, kStride: Int,
                         scale: Float = 1, into packed: UnsafeMutablePointer<Float>) {
        let groups = (m + tileRows - 1) / tileRows
        parallelFor(groups, grain: Swift.max(1, 16384 / Swift.max(8 * k, 1))) { range in
            for g in range {
                let dst = packed + g * k * tileRows
                let valid = Swift.min(tileRows, m - g * tileRows)
                let first = a + g * tileRows * rowStride
                if rowStride == 1 {  // the 8 values of a step are adjacent in memory
                    for kk in 0..<k {
                        let src = first + kk * kStride
                        for i in 0..<valid { dst[kk * tileRows + i] = scale * src[i] }
                    }
                } else {
                    for i in 0..<valid {
                        let src = first + i * rowStride
                        for kk in 0..<k { dst[kk * tileRows + i] = scale * src[kk * kStride] }
                    }
                }
                for i in valid..<tileRows { for kk in 0..<k { dst[kk * tileRows + i] = 0 } }
            }
        }
    }
}

// MARK: - Reductions over a row

extension Kernels {
    // Four 16-lane accumulators (for the adder's latency) over whole vectors, added in a fixed order, then the
    // tail one by one: the result depends on n alone, never on the thread count.

    /// The sum of the 16 lanes, halving in shuffles (the standard library's sum() goes lane by lane).
    @inline(__always) static func laneTotal(_ v: Lanes) -> Float {
        let h8 = v.lowHalf + v.highHalf, h4 = h8.lowHalf + h8.highHalf, h2 = h4.lowHalf + h4.highHalf
        return h2[0] + h2[1]
    }

    /// Σ x[i] for i < n.
    @inline(__always) static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
        var i = 0
        while i + 64 <= n { a0 += load(x + i); a1 += load(x + i + 16); a2 += load(x + i + 32); a3 += load(x + i + 48); i += 64 }
        while i + 16 <= n { a0 += load(x + i); i += 16 }
        var total = laneTotal((a0 + a1) + (a2 + a3))
        while i < n { total += x[i]; i += 1 }
        return total
    }

    /// Σ x[i]·y[i] for i < n.
    @inline(__always) static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
        var i = 0
        while i + 64 <= n {
            a0 = a0.addingProduct(load(x + i), load(y + i)); a1 = a1.addingProduct(load(x + i + 16), load(y + i + 16))
            a2 = a2.addingProduct(load(x + i + 32), load(y + i + 32)); a3 = a3.addingProduct(load(x + i + 48), load(y + i + 48))
            i += 64
        }
        while i + 16 <= n { a0 = a0.addingProduct(load(x + i), load(y + i)); i += 16 }
        var total = laneTotal((a0 + a1) + (a2 + a3))
        while i < n { total += x[i] * y[i]; i += 1 }
        return total
    }

    /// Σ (x[i] − c)² for i < n.
    @inline(__always) static func squaredDeviation(_ x: UnsafePointer<Float>, _ n: Int, from c: Float) -> Float {
        let cv = Lanes(repeating: c)
        var a0 = Lanes(), a1 = Lanes()
        var i = 0
        while i + 32 <= n {
            let d0 = load(x + i) - cv, d1 = load(x + i + 16) - cv
            a0 = a0.addingProduct(d0, d0); a1 = a1.addingProduct(d1, d1)
            i += 32
        }
        while i + 16 <= n { let d = load(x + i) - cv; a0 = a0.addingProduct(d, d); i += 16 }
        var total = laneTotal(a0 + a1)
        while i < n { let d = x[i] - c; total += d * d; i += 1 }
        return total
    }

    /// max x[i] for i < n (n > 0). A NaN may or may not win; the callers subtract the maximum from every x[i],
    /// which carries a NaN on either way.
    @inline(__always) static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = Lanes(repeating: -.infinity)
        var i = 0
        while i + 16 <= n { let v = load(x + i); m = m.replacing(with: v, where: v .> m); i += 16 }
        var best = -Float.infinity
        for k in 0..<16 { best = Swift.max(best, m[k]) }  // (the standard library's pointwiseMax and max() go lane by lane)
        while i < n { best = Swift.max(best, x[i]); i += 1 }
        return best
    }
}
