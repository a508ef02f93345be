// Convolutions on the register tile, without im2col. A batch is laid out "wide": for each channel, the images side
// by side in one zero-padded plane (one plane per phase of the stride), so that a kernel tap for 48 consecutive
// output positions reads 48 consecutive floats. Forward convolution, its input gradient (a transposed
// convolution) and its weight gradient are all correlations over such planes.

/// One tap of a correlation: output (Y, X) reads phase plane `phase` of the source at (Y + dy, X + dx).
struct Tap {
    var phase, dy, dx: Int
}

/// Where a batch of source images lies in a wide buffer. Image n's block of columns starts at n·period; source
/// column u of a phase sits at block column padLeft + u, source row r at plane row padTop + r; everything else is
/// zero. Where the zero columns needed right of an image fit in the next image's left padding, the two share them.
/// Built for a set of taps and output sizes, so that every tap of every output stays inside the buffer.
struct WideLayout {
    let images, channels, phases: Int
    let sourceRows, sourceColumns: Int
    let padTop, padLeft, period, rowLength, rows, phasePlane, channelStride: Int
    /// Floats to allocate: the planes, and room for tiles that run past the last output position.
    let count: Int

    init(images: Int, channels: Int, phases: Int, sourceRows: Int, sourceColumns: Int, outputRows: Int,
         outputColumns: Int, taps: [Tap]) {
        self.images = images
        self.channels = channels
        self.phases = phases
        self.sourceRows = sourceRows
        self.sourceColumns = sourceColumns
        let (minY, maxY) = (taps.map(\.dy).min() ?? 0, taps.map(\.dy).max() ?? 0)
        let (minX, maxX) = (taps.map(\.dx).min() ?? 0, taps.map(\.dx).max() ?? 0)
        padTop = Swift.max(0, -minY)
        padLeft = Swift.max(0, -minX)
        let overhang = Swift.max(0, outputColumns - 1 + maxX - (sourceColumns - 1))
        let shared = overhang <= padLeft
        period = Swift.max(padLeft + sourceColumns + (shared ? 0 : overhang), outputColumns)
        rowLength = images * period + (shared ? overhang : 0)
        rows = padTop + Swift.max(sourceRows, outputRows + maxY)
        phasePlane = rows * rowLength
        // A channel stride that is a multiple of 4 KiB would put every channel's rows in the same L1 sets.
        let planes = phases * phasePlane
        channelStride = planes + (planes % 1024 == 0 ? 16 : 0)
        let maxOffset = taps.map { [phasePlane, padTop, rowLength, padLeft] in
            Correlation.offset($0, phasePlane: phasePlane, padTop: padTop, rowLength: rowLength, padLeft: padLeft)
        }.max() ?? 0
        let positions = Correlation.positions(outputRows: outputRows, outputColumns: outputColumns, images: images,
                                              rowLength: rowLength, period: period)
        count = Swift.max(1, (channels - 1) * channelStride + Swift.max(planes, Correlation.reach(positions, maxOffset)))
    }

    /// Fills the wide buffer from images `batch` of NCHW `source` (in blocks 0, 1, …): phase
    /// (a, b) of channel c holds source[n, c, stride·r + a, stride·u + b] at row padTop + r, block column
    /// padLeft + u; zero elsewhere. Over the channels in parallel when `parallel`.
    func fill(_ dst: UnsafeMutablePointer<Float>, from source: UnsafePointer<Float>, images batch: Range<Int>,
              height: Int, width: Int, stride: Int, parallel: Bool = true) {
        let body = { (range: Range<Int>) in
            for c in range {
                let plane = dst + c * channelStride
                for phase in 0..<phases {
                    let (a, b) = (phase / stride, phase % stride)
                    let base = plane + phase * phasePlane
                    for r in 0..<rows {
                        let row = base + r * rowLength
                        let sy = (r - padTop) * stride + a
                        guard r >= padTop, r - padTop < sourceRows, sy < height else {
                            row.update(repeating: 0, count: rowLength)
                            continue
                        }
                        for n in 0..<images {
                            let block = row + n * period
                            guard n < batch.count else { block.update(repeating: 0, count: period); continue }
                            let src = source + (((batch.lowerBound + n) * channels + c) * height + sy) * width
                            block.update(repeating: 0, count: padLeft)
                            let valid = Swift.min(sourceColumns, (width - b + stride - 1) / stride)
                            if stride == 1 {
                                (block + padLeft).update(from: src, count: valid)
                            } else {
                                for u in 0..<valid { block[padLeft + u] = src[u * stride + b] }
                            }
                            (block + padLeft + valid).update(repeating: 0, count: period - padLeft - valid)
                        }
                        (row + images * period).update(repeating: 0, count: rowLength - images * period)
                    }
                }
            }
        }
        if parallel { parallelFor(channels, grain: 1, body) } else { body(0..<channels) }
        let used = (channels - 1) * channelStride + phases * phasePlane
        (dst + used).update(repeating: 0, count: count - used)
        for c in 0..<(channels - 1) {
            let gap = dst + c * channelStride + phases * phasePlane
            gap.update(repeating: 0, count: channelStride - phases * phasePlane)
        }
    }

}

/// Packed weights of a correlation (from packTaps) and where its outputs go:
/// out[n, o, rowStep·Y + rowOffset, colStep·X + colOffset], plus bias[o] when given.
struct CorrelationTarget {
    let packed: UnsafePointer<Float>
    let outputs: Int
    let bias: UnsafePointer<Float>?
    let out: UnsafeMutablePointer<Float>
    let height, width: Int
    var rowStep = 1, rowOffset = 0, colStep = 1, colOffset = 0
}

/// Taps over a wide layout, and the outputs they give: output (n, Y, X) sits at flat position
/// q = Y·rowLength + n·period + X, and tap t reads each source channel at q + offsets[t].
struct Correlation {
    let layout: WideLayout
    let offsets: [Int]
    let outputRows, outputColumns: Int
    /// Flat output positions, the junk ones between images included.
    let positions: Int

    init(_ layout: WideLayout, taps: [Tap], outputRows: Int, outputColumns: Int) {
        self.layout = layout
        self.outputRows = outputRows
        self.outputColumns = outputColumns
        offsets = taps.map {
            Correlation.offset($0, phasePlane: layout.phasePlane, padTop: layout.padTop, rowLength: layout.rowLength,
                               padLeft: layout.padLeft)
        }
        positions = Correlation.positions(outputRows: outputRows, outputColumns: outputColumns, images: layout.images,
                                          rowLength: layout.rowLength, period: layout.period)
    }

    static func offset(_ tap: Tap, phasePlane: Int, padTop: Int, rowLength: Int, padLeft: Int) -> Int {
        tap.phase * phasePlane + (tap.dy + padTop) * rowLength + tap.dx + padLeft
    }

    static func positions(outputRows: Int, outputColumns: Int, images: Int, rowLength: Int, period: Int) -> Int {
        outputRows == 0 || outputColumns == 0 || images == 0 ? 0
            : (outputRows - 1) * rowLength + (images - 1) * period + outputColumns
    }

    /// The end of what tiles of 48 positions (and the weight gradient's steps of 16) read in a channel.
    static func reach(_ positions: Int, _ maxOffset: Int) -> Int {
        (positions + Kernels.tileColumns - 1) / Kernels.tileColumns * Kernels.tileColumns + maxOffset + 16
    }

    /// The runs of valid outputs among positions [q0, q1): (first position, image, row, column, length).
    func runs(_ q0: Int, _ q1: Int, _ body: (Int, Int, Int, Int, Int) -> Void) {
        let (rowLength, period) = (layout.rowLength, layout.period)
        var q = q0
        while q < q1 {
            let y = q / rowLength, col = q % rowLength
            let n = col / period, x = col % period
            let end = Swift.min(q1, q + period - x, (y + 1) * rowLength)
            if n < layout.images && x < outputColumns {
                body(q, n, y, x, Swift.min(end, q + outputColumns - x) - q)
            }
            q = end
        }
    }
}

extension Kernels {
    /// Packs the weights of a correlation for `tile`: for each group of 8 output channels o, step (c, t) holds
    /// weight(o, c, t), zero past the last output channel.
    static func packTaps(outputs: Int, inputs: Int, taps: Int, into packed: UnsafeMutablePointer<Float>,
                         _ weight: (Int, Int, Int) -> Float) {
        let groups = (outputs + tileRows - 1) / tileRows
        parallelFor(groups, grain: 1) { range in
            for g in range {
                var p = packed + g * inputs * taps * tileRows
                for c in 0..<inputs {
                    for t in 0..<taps {
                        for i in 0..<tileRows {
                            let o = g * tileRows + i
                            p[i] = o < outputs ? weight(o, c, t) : 0
                        }
                        p += tileRows
                    }
                }
            }
        }
    }

    /// Runs correlations over a batch of `images`, a band of images at a time: `bands(k)` gives the wide layout
    /// of k images and the correlations to run over it, `fill(layout, buffer, images, parallel)` lays a band out.
    /// Each band is sized to stay in L2 while its tiles run; bands go to different threads (or, with fewer
    /// bands than threads, the tiles of one band do). Every output is the same sum whatever the banding.
    static func correlate(images: Int, bands: (Int) -> (WideLayout, [(Correlation, CorrelationTarget)]),
                          fill: (WideLayout, UnsafeMutablePointer<Float>, Range<Int>, Bool) -> Void) {
        guard images > 0 else { return }
        let perImage = bands(1).0.count * MemoryLayout<Float>.stride
        let fits = Swift.max(1, (512 << 10) / Swift.max(perImage, 1))
        let threads = Swift.max(1, Engine.threads)
        let size = Swift.min(fits, (images + threads - 1) / threads)
        let count = (images + size - 1) / size
        let full = bands(size), last = images % size == 0 ? full : bands(images % size)
        if count >= threads {
            parallelFor(count, grain: 1) { range in
                for band in range {
                    let (layout, jobs) = band == count - 1 ? last : full
                    let first = band * size
                    withBuffer(layout.count) { buffer in
                        fill(layout, buffer, first..<Swift.min(images, first + size), false)
                        for (plan, target) in jobs {
                            let tiles = (plan.positions + tileColumns - 1) / tileColumns
                            run(plan, target, source: buffer, firstImage: first, tiles: 0..<tiles)
                        }
                    }
                }
            }
        } else {
            for band in 0..<count {
                let (layout, jobs) = band == count - 1 ? last : full
                let first = band * size
                withBuffer(layout.count) { buffer in
                    fill(layout, buffer, first..<Swift.min(images, first + size), true)
                    for (plan, target) in jobs {
                        let tiles = (plan.positions + tileColumns - 1) / tileColumns
                        parallelFor(tiles, grain: Swift.max(4, tiles / 16)) { range in
                            run(plan, target, source: buffer, firstImage: first, tiles: range)
                        }
                    }
                }
            }
        }
    }

    /// Tiles `tiles` of one correlation: 8 output channels × 48 positions at a time, 4 tiles sharing each group's
    /// packed weights, the valid outputs scattered to the target.
    private static func run(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
                            firstImage: Int, tiles: Range<Int>) {
        let outputs = target.outputs
        let groups = (outputs + tileRows - 1) / tileRows
        let channels = plan.layout.channels, channelStride = plan.layout.channelStride
        let depth = channels * plan.offsets.count
        withBuffer(tileRows * tileColumns) { sp in plan.offsets.withUnsafeBufferPointer { offsets in
            var block = tiles.lowerBound
            while block < tiles.upperBound {
                let blockEnd = Swift.min(tiles.upperBound, block + 4)
                for g in 0..<groups {
                    let rows = Swift.min(tileRows, outputs - g * tileRows)
                    for t in block..<blockEnd {
                        let q0 = t * tileColumns
                        tile(channels: channels, taps: offsets.count, a: target.packed + g * depth * tileRows,
                             b: source + q0, bChannel: channelStride, bTap: offsets.baseAddress!, out: sp,
                             ldo: tileColumns, accumulate: false)
                        plan.runs(q0, Swift.min(plan.positions, q0 + tileColumns)) { q, n, y, x, length in
                            let oy = target.rowStep * y + target.rowOffset
                            for i in 0..<rows {
                                let o = g * tileRows + i
                                let b = target.bias?[o] ?? 0
                                let src = sp + i * tileColumns + (q - q0)
                                let dst = target.out + (((firstImage + n) * outputs + o) * target.height + oy) * target.width
                                    + target.colOffset
                                if target.colStep == 1 {
                                    for k in 0..<length { dst[x + k] = src[k] + b }
                                } else {
                                    for k in 0..<length { dst[(x + k) * target.colStep] = src[k] + b }
                                }
                            }
                        }
                    }
                }
                block = blockEnd
            }
        } }
    }

    /// g laid out at `plan`'s output positions: gw[o][q] = g[n, o, Y, X] at q = Y·rowLength + n·period + X, zero at
    /// the junk positions between images and past the last; `stride` (≥ positions + 16) floats per channel.
    static func outputPlanes(_ g: UnsafePointer<Float>, _ plan: Correlation, channels: Int, stride: Int,
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
    /// outputPlanes (zero between images). Tiles of 3 output channels × 9 (channel, tap) pairs, 16 positions a step
    /// in 27 accumulators, each summed across its lanes at the end: every ∂W element is one sum in a fixed order.
    static func weightGradient(_ plan: Correlation, source: UnsafePointer<Float>, gw: UnsafePointer<Float>,
                               gwStride: Int, outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let taps = plan.offsets.count
        let pairs = plan.layout.channels * taps
        let chunks = (pairs + 8) / 9, triples = (outputs + 2) / 3
        let steps = (plan.positions + 15) / 16
        parallelFor(triples * chunks, grain: 1) { range in
            var offsets = [Int](repeating: 0, count: 9)
            var sums = [Float](repeating: 0, count: 27)
            for unit in range {
                let (triple, chunk) = (unit / chunks, unit % chunks)
                for k in 0..<9 {
                    let pair = Swift.min(chunk * 9 + k, pairs - 1)
                    offsets[k] = (pair / taps) * plan.layout.channelStride + plan.offsets[pair % taps]
                }
                let o0 = triple * 3
                let rows = (0..<3).map { gw + Swift.min(o0 + $0, outputs - 1) * gwStride }
                offsets.withUnsafeBufferPointer { off in
                    sums.withUnsafeMutableBufferPointer { s in
                        gradientTile(steps: steps, g0: rows[0], g1: rows[1], g2: rows[2], source: source,
                                     offsets: off.baseAddress!, out: s.baseAddress!)
                    }
                }
                for r in 0..<Swift.min(3, outputs - o0) {
                    for k in 0..<Swift.min(9, pairs - chunk * 9) {
                        dw[(o0 + r) * pairs + chunk * 9 + k] = sums[r * 9 + k]
                    }
                }
            }
        }
    }

    /// out[r·9 + k] = Σ_{s < 16·steps} g_r[s] · source[offsets[k] + s] for r < 3, k < 9.
    @inline(never)
    static func gradientTile(steps: Int, g0: UnsafePointer<Float>, g1: UnsafePointer<Float>, g2: UnsafePointer<Float>,
                             source: UnsafePointer<Float>, offsets: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>) {
        let x0 = source + offsets[0], x1 = source + offsets[1], x2 = source + offsets[2]
        let x3 = source + offsets[3], x4 = source + offsets[4], x5 = source + offsets[5]
        let x6 = source + offsets[6], x7 = source + offsets[7], x8 = source + offsets[8]
        var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes(), a4 = Lanes(), a5 = Lanes(), a6 = Lanes()
        var a7 = Lanes(), a8 = Lanes(), b0 = Lanes(), b1 = Lanes(), b2 = Lanes(), b3 = Lanes(), b4 = Lanes()
        var b5 = Lanes(), b6 = Lanes(), b7 = Lanes(), b8 = Lanes(), c0 = Lanes(), c1 = Lanes(), c2 = Lanes()
        var c3 = Lanes(), c4 = Lanes(), c5 = Lanes(), c6 = Lanes(), c7 = Lanes(), c8 = Lanes()
        var i = 0
        for _ in 0..<steps {
            let g = load(g0 + i), h = load(g1 + i), e = load(g2 + i)
            var x = load(x0 + i); a0 = a0.addingProduct(g, x); b0 = b0.addingProduct(h, x); c0 = c0.addingProduct(e, x)
            x = load(x1 + i); a1 = a1.addingProduct(g, x); b1 = b1.addingProduct(h, x); c1 = c1.addingProduct(e, x)
            x = load(x2 + i); a2 = a2.addingProduct(g, x); b2 = b2.addingProduct(h, x); c2 = c2.addingProduct(e, x)
            x = load(x3 + i); a3 = a3.addingProduct(g, x); b3 = b3.addingProduct(h, x); c3 = c3.addingProduct(e, x)
            x = load(x4 + i); a4 = a4.addingProduct(g, x); b4 = b4.addingProduct(h, x); c4 = c4.addingProduct(e, x)
            x = load(x5 + i); a5 = a5.addingProduct(g, x); b5 = b5.addingProduct(h, x); c5 = c5.addingProduct(e, x)
            x = load(x6 + i); a6 = a6.addingProduct(g, x); b6 = b6.addingProduct(h, x); c6 = c6.addingProduct(e, x)
            x = load(x7 + i); a7 = a7.addingProduct(g, x); b7 = b7.addingProduct(h, x); c7 = c7.addingProduct(e, x)
            x = load(x8 + i); a8 = a8.addingProduct(g, x); b8 = b8.addingProduct(h, x); c8 = c8.addingProduct(e, x)
            i += 16
        }
        out[0] = a0.sum(); out[1] = a1.sum(); out[2] = a2.sum(); out[3] = a3.sum(); out[4] = a4.sum()
        out[5] = a5.sum(); out[6] = a6.sum(); out[7] = a7.sum(); out[8] = a8.sum()
        out[9] = b0.sum(); out[10] = b1.sum(); out[11] = b2.sum(); out[12] = b3.sum(); out[13] = b4.sum()
        out[14] = b5.sum(); out[15] = b6.sum(); out[16] = b7.sum(); out[17] = b8.sum()
        out[18] = c0.sum(); out[19] = c1.sum(); out[20] = c2.sum(); out[21] = c3.sum(); out[22] = c4.sum()
        out[23] = c5.sum(); out[24] = c6.sum(); out[25] = c7.sum(); out[26] = c8.sum()
    }
}
