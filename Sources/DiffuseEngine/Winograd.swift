import COpenBLAS

// Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
// for the 3×3 convolutions at stride 1 and padding 1 that make up most of a U-Net, and for their input and weight
// gradients.
// Each 2×2 block of outputs (a tile) comes from the 4×4 patch d of input around it:
//   Y = Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A,
//   Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]],  G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]],
//   Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]],
// 16 multiplications per channel and tile where the direct sum takes 36. For each of the 16 positions ξ of a
// transformed patch, the sum over channels is a matrix product, U_ξ (output channels × channels) times V_ξ (channels ×
// tiles), which runs on the 8 × 48 register tiles. The batch's tiles are cut into bands whose transformed inputs stay
// in L2. ∂W takes the same transformed inputs, and its own products on the channel tiles (weightGradient).

enum Winograd {
    /// Floats of transformed weights (transformWeights) for `outputs` × `inputs` channels.
    static func weightCount(outputs: Int, inputs: Int) -> Int { 16 * ((outputs + 7) / 8 * 8) * inputs }

    /// U_{o,c} = G g Gᵀ for each 3×3 kernel g of output channel o and input channel c, packed for `tile` (8 output
    /// channels per step, the input channels as the steps): u[((ξ·groups + ⌊o/8⌋)·inputs + c)·8 + o mod 8] = U_{o,c}[ξ]
    /// for ξ = 4·row + column, zero past the last output channel; 8 output channels at a time, in vectors. Kernel
    /// element (i, j) lies at w[o·outputStride + c·inputStride + 3i + j], or at 8 − (3i + j) when `flipped` (rotated
    /// by 180°, as an input gradient takes it). 16-bit kernels are widened first, 16 input channels of 8 output
    /// channels at a time where each output channel's kernels lie side by side (runs of 144 values), else one.
    static func transformWeights<S: WeightSource>(_ w: S, outputs: Int, inputs: Int, outputStride: Int,
                                                  inputStride: Int, flipped: Bool, into u: UnsafeMutablePointer<Float>) {
        typealias Eight = SIMD8<Float>
        let groups = (outputs + 7) / 8, plane = groups * inputs * 8
        // G times a column (a, b, d) of g, or Gᵀ a row of G g: (a, (a + b + d)/2, (a − b + d)/2, d).
        @inline(__always) func times(_ a: Eight, _ b: Eight, _ d: Eight) -> (Eight, Eight, Eight, Eight) {
            (a, 0.5 * (a + b + d), 0.5 * (a - b + d), d)
        }
        let span = inputStride == 9 ? 16 : 1, staging = w.floats == nil ? 8 * 9 * span : 0
        parallelFor(groups * inputs, grain: 256) { range in withUnsafeTemporaryAllocation(of: Float.self, capacity: staging) { staged in
            var stagedFrom = 0  // the first input channel staged
            for unit in range {
                let (group, c) = (unit / inputs, unit % inputs)
                let valid = Swift.min(8, outputs - group * 8), first = group * 8 * outputStride + c * inputStride
                let (k, os): (UnsafePointer<Float>, Int)
                if let floats = w.floats {
                    (k, os) = (floats + first, outputStride)
                } else {
                    if unit == range.lowerBound || c % span == 0 {
                        let count = 9 * Swift.min(span - c % span, inputs - c)
                        for i in 0..<valid {
                            w.copy(first + i * outputStride, count: count, into: staged.baseAddress! + 9 * span * i)
                        }
                        stagedFrom = c
                    }
                    (k, os) = (UnsafePointer(staged.baseAddress! + 9 * (c - stagedFrom)), 9 * span)
                }
                @inline(__always) func g(_ r: Int, _ s: Int) -> Eight {
                    let e = flipped ? 8 - 3 * r - s : 3 * r + s
                    if valid == 8 {
                        return Eight(k[e], k[os + e], k[2 * os + e], k[3 * os + e], k[4 * os + e], k[5 * os + e],
                                     k[6 * os + e], k[7 * os + e])
                    }
                    var v = Eight()
                    for i in 0..<valid { v[i] = k[i * os + e] }
                    return v
                }
                let (c0, c1, c2) = (times(g(0, 0), g(1, 0), g(2, 0)), times(g(0, 1), g(1, 1), g(2, 1)),
                                    times(g(0, 2), g(1, 2), g(2, 2)))
                let to = u + (group * inputs + c) * 8
                @inline(__always) func put(_ r: Int, _ row: (Eight, Eight, Eight, Eight)) {
                    let p = UnsafeMutableRawPointer(to + 4 * r * plane)
                    p.storeBytes(of: row.0, as: Eight.self)
                    p.storeBytes(of: row.1, toByteOffset: plane * 4, as: Eight.self)
                    p.storeBytes(of: row.2, toByteOffset: 2 * plane * 4, as: Eight.self)
                    p.storeBytes(of: row.3, toByteOffset: 3 * plane * 4, as: Eight.self)
                }
                put(0, times(c0.0, c1.0, c2.0))
                put(1, times(c0.1, c1.1, c2.1))
                put(2, times(c0.2, c1.2, c2.2))
                put(3, times(c0.3, c1.3, c2.3))
            }
        } }
    }

    /// A convolution's sizes, and its tiles: 2×2 blocks of outputs, ⌈height/2⌉ rows × ⌈width/2⌉ columns of them per
    /// image.
    struct Plan {
        let images, channels, outputs, height, width: Int
        var tileRows: Int { (height + 1) / 2 }
        var tileColumns: Int { (width + 1) / 2 }
        var tiles: Int { images * tileRows * tileColumns }
        var groups: Int { (outputs + 7) / 8 }
        /// Whether rows are read and written in place, a tile row (9 to 16 tiles, in lanes) at a time: rows of 17 to 32
        /// columns, which a pair of 16-lane loads from column −1 or 0 covers with at most 15 floats read past a row.
        var rowsInPlace: Bool { width >= 17 && width <= 32 }
    }

    /// A range of the batch's tiles, numbered image by image, row by row: tile (n, ty, tx) is
    /// (n·tileRows + ty)·tileColumns + tx.
    struct Band {
        let tiles: Range<Int>
        let tileRows, tileColumns: Int
        var count: Int { tiles.count }

        /// Floats between the rows (one per channel and position ξ) of a band's transformed inputs and products: its
        /// tiles rounded up to 16, and 16 more for a last narrow tile; not a multiple of 4 KiB, whose rows would
        /// share L1 sets.
        var stride: Int {
            let t = (count + 15) / 16 * 16 + 16
            return t % 1024 == 0 ? t + 16 : t
        }

        /// Floats between the positions ξ of `rows` rows (channels or output channels) of transformed inputs or
        /// products: the rows, and 16 more, so that the 16 positions of a tile fall in different L1 sets.
        func plane(_ rows: Int) -> Int { rows * stride + 16 }

        /// Floats between the runs of strips that transformInput lays out for one image: tileRows + 1 rows of
        /// 2·tileColumns floats, and 16 for the zeros that a copy writes past the last.
        var run: Int { 2 * (tileRows + 1) * tileColumns + 16 }
        /// Floats of the strips: 4 runs, and 64 more for the loads of a last 16 tiles past an image's last.
        var strips: Int { 4 * run + 64 }

        /// The band's tiles in image n, as tile numbers within the image.
        func within(_ n: Int) -> Range<Int> {
            let perImage = tileRows * tileColumns
            return (Swift.max(tiles.lowerBound, n * perImage) - n * perImage)..<(Swift.min(tiles.upperBound,
                                                                                          (n + 1) * perImage) - n * perImage)
        }

        /// The images that the band's tiles lie in.
        var images: Range<Int> {
            let perImage = tileRows * tileColumns
            return tiles.lowerBound / perImage..<((tiles.upperBound + perImage - 1) / perImage)
        }

        /// The pieces of the band's tiles first..<last (numbered from the band's first) that lie in one row of one
        /// image: (image, tile row, first tile column, tiles, first tile).
        func pieces(_ first: Int, _ last: Int, _ body: (Int, Int, Int, Int, Int) -> Void) {
            var t = first
            while t < last {
                let (row, tx) = ((tiles.lowerBound + t) / tileColumns, (tiles.lowerBound + t) % tileColumns)
                let count = Swift.min(tileColumns - tx, last - t)
                body(row / tileRows, row % tileRows, tx, count, t)
                t += count
            }
        }
    }

    /// V_ξ for channels `channels` of a band: v[ξ·plane(channels) + c·stride + t] = (Bᵀ d B)[ξ] for tile t's patch d
    /// of x[n, c] (rows 2·ty − 1 ..< 2·ty + 3, columns 2·tx − 1 ..< 2·tx + 3, zero outside the image), 16 tiles at a
    /// time. Rows of 17 to 32 columns are read in place, a tile row at a time (rowTiles); others, and a band's first
    /// tile row where the band starts inside it, through strips (stripTiles). Each group of 16 may write past its
    /// last tile the next tiles' places, which are written after it.
    static func transformInput(_ x: UnsafePointer<Float>, _ plan: Plan, _ band: Band, channels: Range<Int>,
                               into v: UnsafeMutablePointer<Float>, strips: UnsafeMutablePointer<Float>) {
        let (h, w, tw) = (plan.height, plan.width, plan.tileColumns)
        for c in channels {
            // The next channel's rows, ahead of their reads below.
            if c + 1 < channels.upperBound {
                for n in band.images {
                    let tiles = band.within(n)
                    let first = Swift.max(0, 2 * (tiles.lowerBound / tw) - 1)
                    let last = Swift.min(h, 2 * ((tiles.upperBound - 1) / tw) + 3)
                    let rows = x + ((n * plan.channels + c + 1) * h + first) * w
                    for offset in Swift.stride(from: 0, to: (last - first) * w, by: 16) { diffuse_prefetch(rows + offset) }
                }
            }
            for n in band.images {
                let tiles = band.within(n)
                let image = x + (n * plan.channels + c) * h * w
                let out = v + c * band.stride + n * plan.tileRows * tw - band.tiles.lowerBound  // the image's tile 0
                guard plan.rowsInPlace else {
                    stripTiles(image, plan, band, tiles, into: out, strips: strips)
                    continue
                }
                let full = Swift.min(tiles.upperBound, (tiles.lowerBound + tw - 1) / tw * tw)
                if tiles.lowerBound < full { stripTiles(image, plan, band, tiles.lowerBound..<full, into: out, strips: strips) }
                for ty in Swift.stride(from: full / tw, to: (tiles.upperBound + tw - 1) / tw, by: 1) {
                    rowTiles(image, plan, row: ty, plane: band.plane(plan.channels), into: out + ty * tw)
                }
            }
        }
    }

    /// The transformed patches of tile row `row` of one image (17 to 32 columns; its tiles in lanes), read in place:
    /// columns 2·tx − 1, 2·tx and 2·tx + 1, 2·tx + 2 from the even and odd lanes of 32 floats at columns −1 and 1,
    /// the lanes past the image zeroed. Reads 1 float before a row (the pool's slack, for row 0 of a buffer) and up
    /// to 15 past it.
    @inline(__always)
    private static func rowTiles(_ image: UnsafePointer<Float>, _ plan: Plan, row ty: Int, plane: Int,
                                 into out: UnsafeMutablePointer<Float>) {
        let (h, w) = (plan.height, plan.width)
        // Lanes that hold columns inside the image: 2k − 1 ≥ 0, 2k + 1 < w, 2k + 2 < w.
        let (d0Mask, d2Mask, d3Mask) = (~Kernels.laneMask(1), Kernels.laneMask(w / 2), Kernels.laneMask((w - 1) / 2))
        @inline(__always) func row(_ i: Int) -> (Lanes, Lanes, Lanes, Lanes) {
            let y = 2 * ty - 1 + i
            guard y >= 0 && y < h else { return (Lanes(), Lanes(), Lanes(), Lanes()) }
            let p = image + y * w
            let (d0, d1) = Kernels.evenOddLanes(Kernels.load(p - 1), Kernels.load(p + 15))
            let (d2, d3) = Kernels.evenOddLanes(Kernels.load(p + 1), Kernels.load(p + 17))
            return transformRow(d0.keeping(d0Mask), d1, d2.keeping(d2Mask), d3.keeping(d3Mask))
        }
        transformColumns(row(0), row(1), row(2), row(3), plane: plane, into: out)
    }

    /// A patch row times B: (d₀ − d₂, d₁ + d₂, d₂ − d₁, d₁ − d₃).
    @inline(__always)
    private static func transformRow(_ d0: Lanes, _ d1: Lanes, _ d2: Lanes, _ d3: Lanes) -> (Lanes, Lanes, Lanes, Lanes) {
        (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
    }

    /// Bᵀ times the 4 transformed rows: position ξ = 4a + b to out + ξ·plane.
    @inline(__always)
    private static func transformColumns(_ r0: (Lanes, Lanes, Lanes, Lanes), _ r1: (Lanes, Lanes, Lanes, Lanes),
                                         _ r2: (Lanes, Lanes, Lanes, Lanes), _ r3: (Lanes, Lanes, Lanes, Lanes),
                                         plane: Int, into out: UnsafeMutablePointer<Float>) {
        @inline(__always) func put(_ a: Int, _ q: (Lanes, Lanes, Lanes, Lanes)) {
            Kernels.store(q.0, out + (4 * a) * plane)
            Kernels.store(q.1, out + (4 * a + 1) * plane)
            Kernels.store(q.2, out + (4 * a + 2) * plane)
            Kernels.store(q.3, out + (4 * a + 3) * plane)
        }
        put(0, (r0.0 - r2.0, r0.1 - r2.1, r0.2 - r2.2, r0.3 - r2.3))
        put(1, (r1.0 + r2.0, r1.1 + r2.1, r1.2 + r2.2, r1.3 + r2.3))
        put(2, (r2.0 - r1.0, r2.1 - r1.1, r2.2 - r1.2, r2.3 - r1.3))
        put(3, (r1.0 - r3.0, r1.1 - r3.1, r1.2 - r3.2, r1.3 - r3.3))
    }

    /// The transformed patches of tiles `tiles` of one image (numbered within it), through strips: the input rows
    /// they read are laid out, for even rows and odd rows, with columns 2·tx − 1, 2·tx (S) and 2·tx + 1, 2·tx + 2 (S′)
    /// of tile j at 2j, so that the 4 rows of every patch are 4 runs of strips and 16 tiles at a time, whatever their
    /// rows, take their columns from the even and odd lanes of 32 floats.
    private static func stripTiles(_ image: UnsafePointer<Float>, _ plan: Plan, _ band: Band, _ tiles: Range<Int>,
                                   into out: UnsafeMutablePointer<Float>, strips: UnsafeMutablePointer<Float>) {
        let (h, w, tw, run) = (plan.height, plan.width, plan.tileColumns, band.run)
        let wide = 2 * tw
        let (top, bottom) = (tiles.lowerBound / tw, (tiles.upperBound - 1) / tw + 1)
        // Input row y = 2·ty − 1 + j (j < 2·(bottom − top) + 2) in row j/2 of the even or odd runs.
        for j in 0..<(2 * (bottom - top) + 2) {
            let y = 2 * top - 1 + j
            let (to, to2) = (strips + (j % 2) * run + (j / 2) * wide, strips + (2 + j % 2) * run + (j / 2) * wide)
            guard y >= 0 && y < h else {
                Kernels.zero(to, wide)
                Kernels.zero(to2, wide)
                continue
            }
            let row = image + y * w
            // S: column −1 (zero), then columns 0 ..< 2·tw − 1; S′: columns 1 ..< w, zeros to 2·tw. (The zeros a copy
            // writes past its row fall in the next one, written after it.)
            to[0] = 0
            Kernels.copyZeroPadded(row, to + 1, wide - 1)
            Kernels.copyZeroPadded(row + 1, to2, w - 1)
            for i in (w - 1)..<wide { to2[i] = 0 }
        }
        let (even, odd, even2, odd2) = (strips, strips + run, strips + 2 * run, strips + 3 * run)
        for j in Swift.stride(from: tiles.lowerBound, to: tiles.upperBound, by: 16) {
            // Patch row i of 16 tiles times B: columns (0, 1) from S, (2, 3) from S′.
            let at = 2 * (j - top * tw)
            @inline(__always) func row(_ s: UnsafePointer<Float>, _ s2: UnsafePointer<Float>) -> (Lanes, Lanes, Lanes, Lanes) {
                let (d0, d1) = Kernels.evenOddLanes(Kernels.load(s + at), Kernels.load(s + at + 16))
                let (d2, d3) = Kernels.evenOddLanes(Kernels.load(s2 + at), Kernels.load(s2 + at + 16))
                return transformRow(d0, d1, d2, d3)
            }
            transformColumns(row(even, even2), row(odd, odd2), row(even + wide, even2 + wide), row(odd + wide, odd2 + wide),
                             plane: band.plane(plan.channels), into: out + j)
        }
    }

    /// Output channels of groups `groups` (8 each) for a band: M_ξ = U_ξ V_ξ on the register tiles into `m` (16
    /// planes of 8·groups.count rows), each ξ's panel of 48 tiles serving every group from L1, then out[n, o] (NCHW)
    /// at the tiles' 2×2 blocks = bias[o] + Aᵀ M A. `m` holds 16·plane(8·groups.count) + 32 floats.
    static func multiply(_ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>, _ plan: Plan, _ band: Band,
                         groups: Range<Int>, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>,
                         scratch m: UnsafeMutablePointer<Float>) {
        let (channels, tiles, stride, rows) = (plan.channels, band.count, band.stride, 8 * groups.count)
        var zeroTap = 0
        withUnsafePointer(to: &zeroTap) { tap in
            for xi in 0..<16 {
                for t in Swift.stride(from: 0, to: tiles, by: Kernels.tileColumns) {
                    let b = v + xi * band.plane(channels) + t
                    for group in groups {
                        let a = u + (xi * plan.groups + group) * channels * 8
                        let to = m + xi * band.plane(rows) + (group - groups.lowerBound) * 8 * stride + t
                        if tiles - t <= 32 {
                            Kernels.narrowTile(channels: channels, taps: 1, a: a, b: b, bChannel: stride, bTap: tap,
                                               out: to, ldo: stride)
                        } else {
                            Kernels.tile(channels: channels, taps: 1, a: a, b: b, bChannel: stride, bTap: tap, out: to,
                                         ldo: stride, accumulate: false)
                        }
                    }
                }
            }
        }
        transformOutput(m, plan, band, outputs: (groups.lowerBound * 8)..<Swift.min(plan.outputs, groups.upperBound * 8),
                        rows: rows, bias: bias, out: out, scratch: m + 16 * band.plane(rows))
    }

    /// out[n, o] at a band's tiles = bias[o] + Aᵀ M A, M_ξ of output channel o at m[ξ·plane(rows) + (o − first)·stride +
    /// t] (first: the first of `outputs`). 16 tiles at a time, or, in rows of 9 to 16 tiles, one row's: each output
    /// row of them is the interleaved lanes of its even and odd columns, stored straight from the lanes where they
    /// start a piece (tiles in one row of one image), else through `scratch` (32 floats).
    private static func transformOutput(_ m: UnsafePointer<Float>, _ plan: Plan, _ band: Band, outputs: Range<Int>,
                                        rows: Int, bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>,
                                        scratch: UnsafeMutablePointer<Float>) {
        let (h, w, tw, tiles, stride, planes) = (plan.height, plan.width, plan.tileColumns, band.count, band.stride,
                                                 band.plane(rows))
        let byRows = plan.rowsInPlace
        for o in outputs {
            let b = bias?[o] ?? 0
            let first = m + (o - outputs.lowerBound) * stride
            let plane = out + o * h * w
            var t = 0
            while t < tiles {
                let end = Swift.min(tiles, byRows ? t + tw - (band.tiles.lowerBound + t) % tw : t + 16)
                @inline(__always) func at(_ xi: Int) -> Lanes { Kernels.load(first + xi * planes + t) }
                // M A, row by row: (m₀ + m₁ + m₂, m₁ − m₂ − m₃).
                @inline(__always) func row(_ a: Int) -> (Lanes, Lanes) {
                    let (m0, m1, m2, m3) = (at(4 * a), at(4 * a + 1), at(4 * a + 2), at(4 * a + 3))
                    return (m0 + m1 + m2, m1 - m2 - m3)
                }
                let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3))
                let y0 = interleave(s0.0 + s1.0 + s2.0, s0.1 + s1.1 + s2.1)
                let y1 = interleave(s1.0 - s2.0 - s3.0, s1.1 - s2.1 - s3.1)
                band.pieces(t, end) { n, ty, tx, count, from in
                    let top = plane + (n * plan.outputs * h + 2 * ty) * w + 2 * tx
                    let columns = Swift.min(2 * count, w - 2 * tx)
                    for dy in 0..<Swift.min(2, h - 2 * ty) {
                        let y = dy == 0 ? y0 : y1
                        if from == t {
                            let bias = Lanes(repeating: b)
                            Kernels.storeFirst(y.0 + bias, top + dy * w, columns)
                            if columns > 16 { Kernels.storeFirst(y.1 + bias, top + dy * w + 16, columns - 16) }
                        } else {
                            Kernels.store(y.0, scratch)
                            Kernels.store(y.1, scratch + 16)
                            Kernels.addCopy(scratch + 2 * (from - t), top + dy * w, columns, b)
                        }
                    }
                }
                t = end
            }
        }
    }

    /// (e₀, o₀, e₁, o₁, …, e₁₅, o₁₅) as two vectors: each pair of 32-bit lanes one 64-bit lane.
    @inline(__always) static func interleave(_ even: Lanes, _ odd: Lanes) -> (Lanes, Lanes) {
        let (e, o) = (unsafeBitCast(even, to: SIMD16<UInt32>.self), unsafeBitCast(odd, to: SIMD16<UInt32>.self))
        let wide = { (a: SIMD8<UInt32>, b: SIMD8<UInt32>) in
            unsafeBitCast(SIMD8<UInt64>(truncatingIfNeeded: a) | (SIMD8<UInt64>(truncatingIfNeeded: b) &<< 32),
                          to: Lanes.self)
        }
        return (wide(e.lowHalf, o.lowHalf), wide(e.highHalf, o.highHalf))
    }

    /// y[n, o] = bias[o] + Σ_c w[o, c] ⋆ x[n, c] (3×3, stride 1, padding 1) for NCHW x, from weights u that
    /// transformWeights gave. The batch's tiles are cut into bands whose transformed inputs stay in L2
    /// (Caches.winogradBand), whole panels of 48; as many bands per thread. With fewer bands than threads, or no more
    /// than 4 panels in all (then one band, so that the transformed weights are read once), a band's channels and
    /// then its groups of output channels are shared out instead. Each output is the same sum whatever the banding.
    static func correlate(_ x: UnsafePointer<Float>, _ plan: Plan, weights u: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>) {
        let (th, tw) = (plan.tileRows, plan.tileColumns)
        let total = plan.tiles
        guard total > 0 else { return }
        // Panels of 48 tiles (the register tile's width), as many per band as fit the budget; as many bands per
        // thread where there are panels enough.
        let threads = Swift.max(1, Engine.threads), panels = (total + 47) / 48
        let perBand = Swift.max(1, Engine.caches.winogradBand / plan.channels / 48)
        var count = (panels + perBand - 1) / perBand
        count = Swift.min(panels, (count + threads - 1) / threads * threads)
        if panels <= 4 { count = 1 }
        let bands = (0..<count).map { i in
            Band(tiles: (i * panels / count * 48)..<Swift.min(total, (i + 1) * panels / count * 48), tileRows: th,
                 tileColumns: tw)
        }
        let largest = bands.max { $0.count < $1.count }!
        let inputs = 16 * largest.plane(plan.channels)
        if bands.count >= threads {
            let (grain, products) = ((bands.count + threads - 1) / threads, 16 * largest.plane(8 * plan.groups) + 32)
            parallelFor(bands.count, grain: grain, scratch: inputs + products + largest.strips) { range, s in
                for band in bands[range] {
                    transformInput(x, plan, band, channels: 0..<plan.channels, into: s, strips: s + inputs + products)
                    multiply(u, s, plan, band, groups: 0..<plan.groups, bias: bias, out: out, scratch: s + inputs)
                }
            }
            return
        }
        withBuffer(inputs) { v in
            for band in bands {
                parallelFor(plan.channels, grain: Swift.max(1, plan.channels / (4 * threads)), scratch: band.strips) {
                    range, s in
                    transformInput(x, plan, band, channels: range, into: v, strips: s)
                }
                // As many pieces as threads, each with the products of its groups.
                let grain = (plan.groups + threads - 1) / threads
                parallelFor(plan.groups, grain: grain, scratch: 16 * band.plane(8 * grain) + 32) { range, s in
                    multiply(u, v, plan, band, groups: range, bias: bias, out: out, scratch: s)
                }
            }
        }
    }
}

extension Winograd {
    /// The runs of tiles whose sums weightGradient keeps apart and then adds in order: one per thread on the
    /// machines this is built for, and a fixed count, so that ∂W does not depend on the threads.
    static let slices = 2

    /// ∂W of conv2d (3×3, stride 1, padding 1) from its input x and ∂L/∂y g (NCHW) on F(2×2, 3×3). As y =
    /// Aᵀ[(G w Gᵀ) ⊙ V]A on each tile,
    ///   ∂U_ξ[o][c] = Σ_tiles ∂M_ξ[o] · V_ξ[c],  ∂M = A ∂Y Aᵀ,   ∂W[o, c] = Gᵀ ∂U[o, c] G,
    /// each sum over tiles a product on channel tiles: 6 input channels (rows of V_ξ, broadcast) × a block of output
    /// channels (∂M_ξ transposed to [tile][block]), the tiles as the steps. The tiles are cut into `slices` runs of
    /// bands whose V and ∂M stay in L2, each run summed on its own thread; the runs' sums are added in order.
    static func weightGradient(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ plan: Plan, block: Int,
                               into dw: UnsafeMutablePointer<Float>) {
        let (channels, outputs, total) = (plan.channels, plan.outputs, plan.tiles)
        let (blocks, sextets) = (outputs / block, (channels + 5) / 6)
        let perBand = Swift.max(64, Engine.caches.winogradGradientBand / (channels + outputs) / 16 * 16)
        let largest = Band(tiles: 0..<perBand, tileRows: plan.tileRows, tileColumns: plan.tileColumns)
        let (inputs, products) = (16 * largest.plane(channels), 16 * outputs * perBand)
        let plane = blocks * sextets * 6 * block, sums = 16 * plane  // ∂U: [ξ][block][sextet][6][block]
        let gather = 16 * 16 * 16 + 128  // transformGradient's scratch
        let scratch = inputs + products + gather + largest.strips
        withBuffer(slices * sums) { partial in
            parallelFor(slices, grain: 1, scratch: scratch) { range, s in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: perBand) { index in
                let (v, mt, spare) = (s, s + inputs, s + inputs + products)
                let strips = spare + gather
                for t in 0..<perBand { index[t] = t }
                Kernels.zero(strips, largest.strips)  // finite values for the tiles past a band's last
                for slice in range {
                    let dU = partial + slice * sums
                    Kernels.zero(dU, sums)
                    let first = slice * total / slices / 16 * 16
                    let last = slice + 1 == slices ? total : (slice + 1) * total / slices / 16 * 16
                    for start in Swift.stride(from: first, to: last, by: perBand) {
                        let band = Band(tiles: start..<Swift.min(last, start + perBand), tileRows: plan.tileRows,
                                        tileColumns: plan.tileColumns)
                        transformInput(x, plan, band, channels: 0..<channels, into: v, strips: strips)
                        transformGradient(g, plan, band, block: block, into: mt, scratch: spare)
                        accumulate(v, mt, plan, band, block: block, index: index.baseAddress!, into: dU)
                    }
                }
            } }
            // ∂W[o, c] = Gᵀ (Σ_slices ∂U[o, c]) G, 16 output channels at a time in lanes.
            parallelFor(channels, grain: Swift.max(1, 64 / Swift.max(1, outputs / 16))) { range in
                for c in range {
                    for o0 in Swift.stride(from: 0, to: outputs, by: 16) {
                        let at = ((o0 / block) * sextets + c / 6) * 6 * block + (c % 6) * block + o0 % block
                        @inline(__always) func u(_ xi: Int) -> Lanes {
                            var total = Kernels.load(partial + xi * plane + at)
                            for slice in 1..<slices { total += Kernels.load(partial + slice * sums + xi * plane + at) }
                            return total
                        }
                        // Gᵀ times a column (u₀, u₁, u₂, u₃), or a row of Gᵀ ∂U times G: (u₀ + (u₁ + u₂)/2,
                        // (u₁ − u₂)/2, (u₁ + u₂)/2 + u₃).
                        @inline(__always) func times(_ u0: Lanes, _ u1: Lanes, _ u2: Lanes, _ u3: Lanes) -> (Lanes, Lanes, Lanes) {
                            let (sum, difference) = (0.5 * (u1 + u2), 0.5 * (u1 - u2))
                            return (u0 + sum, difference, sum + u3)
                        }
                        let (c0, c1) = (times(u(0), u(4), u(8), u(12)), times(u(1), u(5), u(9), u(13)))
                        let (c2, c3) = (times(u(2), u(6), u(10), u(14)), times(u(3), u(7), u(11), u(15)))
                        @inline(__always) func put(_ i: Int, _ row: (Lanes, Lanes, Lanes)) {
                            let to = dw + (o0 * channels + c) * 9 + 3 * i
                            for lane in 0..<16 {
                                (to[lane * channels * 9], to[lane * channels * 9 + 1], to[lane * channels * 9 + 2])
                                    = (row.0[lane], row.1[lane], row.2[lane])
                            }
                        }
                        put(0, times(c0.0, c1.0, c2.0, c3.0))
                        put(1, times(c0.1, c1.1, c2.1, c3.1))
                        put(2, times(c0.2, c1.2, c2.2, c3.2))
                    }
                }
            }
        }
    }

    /// ∂M_ξ = (A ∂Y Aᵀ)[ξ] of a band's tiles, transposed for the channel tiles: mt[((ξ·blocks + b)·stride + t)·block
    /// + o mod block] for output channel o in block b, ∂Y the tile's 2×2 block of g[n, o] (zero past the image);
    /// a zero row past an odd count of tiles (pairedChannelTile takes the tiles two at a time). 16 output channels ×
    /// 16 tiles (or one tile row of 9 to 16) at a time: the tiles in lanes, their two rows read in place or gathered
    /// piece by piece into `scratch` (16·16·16 + 128 floats; the rows 48 apart, for the zeros a copy writes past 32),
    /// then each ξ's 16 × 16 transposed.
    private static func transformGradient(_ g: UnsafePointer<Float>, _ plan: Plan, _ band: Band, block: Int,
                                          into mt: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let (h, w, count, blocks) = (plan.height, plan.width, band.count, plan.outputs / block)
        let stride = (count + 1) / 2 * 2
        let rows = scratch + 16 * 16 * 16  // two rows of 32 floats, 48 apart
        let (tw, byRows, oddMask) = (plan.tileColumns, plan.rowsInPlace, Kernels.laneMask(w / 2))
        for o0 in Swift.stride(from: 0, to: plan.outputs, by: 16) {
            var t0 = 0
            while t0 < count {
                // 16 tiles, or, in rows of 17 to 32 columns, the rest of a tile row: read in place where it starts
                // at the row's first tile (the odd columns past the image masked; up to 15 floats read past a row).
                let (row, column) = ((band.tiles.lowerBound + t0) / tw, (band.tiles.lowerBound + t0) % tw)
                let end = Swift.min(count, byRows ? t0 + tw - column : t0 + 16)
                for oi in 0..<16 {
                    let plane = g + (o0 + oi) * h * w
                    var (a, b, c, d) = (Lanes(), Lanes(), Lanes(), Lanes())
                    if byRows && column == 0 {
                        let (n, ty) = (row / plan.tileRows, row % plan.tileRows)
                        let top = UnsafePointer(plane + (n * plan.outputs * h + 2 * ty) * w)
                        (a, b) = Kernels.evenOddLanes(Kernels.load(top), Kernels.load(top + 16))
                        b = b.keeping(oddMask)
                        if 2 * ty + 1 < h {
                            (c, d) = Kernels.evenOddLanes(Kernels.load(top + w), Kernels.load(top + w + 16))
                            d = d.keeping(oddMask)
                        }
                    } else {
                        band.pieces(t0, end) { n, ty, tx, tiles, from in
                            let top = plane + (n * plan.outputs * h + 2 * ty) * w + 2 * tx
                            let (columns, at) = (Swift.min(2 * tiles, w - 2 * tx), 2 * (from - t0))
                            Kernels.copyZeroPadded(top, rows + at, columns)
                            if 2 * ty + 1 < h {
                                Kernels.copyZeroPadded(top + w, rows + 48 + at, columns)
                            } else {
                                Kernels.zero(rows + 48 + at, 2 * tiles)
                            }
                        }
                        (a, b) = Kernels.evenOddLanes(Kernels.load(rows), Kernels.load(rows + 16))
                        (c, d) = Kernels.evenOddLanes(Kernels.load(rows + 48), Kernels.load(rows + 64))
                    }
                    // A ∂Y: rows (a, b), (a + c, b + d), (a − c, b − d), (−c, −d); each row (p, q) times Aᵀ:
                    // (p, p + q, p − q, −q).
                    let out = scratch + oi * 16
                    @inline(__always) func put(_ i: Int, _ p: Lanes, _ q: Lanes) {
                        Kernels.store(p, out + (4 * i) * 256)
                        Kernels.store(p + q, out + (4 * i + 1) * 256)
                        Kernels.store(p - q, out + (4 * i + 2) * 256)
                        Kernels.store(-q, out + (4 * i + 3) * 256)
                    }
                    put(0, a, b)
                    put(1, a + c, b + d)
                    put(2, a - c, b - d)
                    put(3, -c, -d)
                }
                for xi in 0..<16 {
                    Kernels.transpose16(scratch + xi * 256, 16,
                                        mt + ((xi * blocks + o0 / block) * stride + t0) * block + o0 % block, block,
                                        rows: end - t0)
                }
                t0 = end
            }
        }
        if count % 2 == 1 {
            for xi in 0..<16 {
                for b in 0..<blocks { Kernels.zero(mt + ((xi * blocks + b) * stride + count) * block, block) }
            }
        }
    }

    /// dU[((ξ·blocks + b)·sextets + k)·6·block + i·block + j] += Σ_t V_ξ[6k + i][t] · ∂M_ξ[t][b·block + j] over a
    /// band's tiles, on channelTile (blocks of 64) or pairedChannelTile (32, the tiles two at a time).
    private static func accumulate(_ v: UnsafePointer<Float>, _ mt: UnsafePointer<Float>, _ plan: Plan, _ band: Band,
                                   block: Int, index: UnsafePointer<Int>, into dU: UnsafeMutablePointer<Float>) {
        let (channels, blocks, sextets) = (plan.channels, plan.outputs / block, (plan.channels + 5) / 6)
        let steps = (band.count + 1) / 2 * 2
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 6 * sextets) { bases in
            for xi in 0..<16 {
                for i in 0..<(6 * sextets) {
                    bases[i] = v + xi * band.plane(channels) + Swift.min(i, channels - 1) * band.stride
                }
                for b in 0..<blocks {
                    let w = mt + (xi * blocks + b) * steps * block
                    for k in 0..<sextets {
                        let out = dU + ((xi * blocks + b) * sextets + k) * 6 * block
                        if block == Kernels.channelTileOutputs {
                            Kernels.channelTile(steps: band.count, positions: bases.baseAddress! + 6 * k, index: index,
                                                w: w, out: out, accumulate: true)
                        } else {
                            Kernels.pairedChannelTile(steps: steps, positions: bases.baseAddress! + 6 * k, index: index,
                                                      w: w, out: out, accumulate: true)
                        }
                    }
                }
            }
        }
    }
}
