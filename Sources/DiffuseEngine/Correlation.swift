// Convolutions on the register tiles, without im2col. A batch is laid out "wide": for each channel, the images side
// by side in one zero-padded plane (one plane per phase of the stride), so that a kernel tap for 48 consecutive
// output positions reads 48 consecutive floats (`tile`), and a tap of any output position is one address plus the
// tap's offset (`channelTile`, which broadcasts it). Forward convolution, its input gradient (a transposed
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
        // 16 floats between phase planes and between channels take the zeros that a fill writes past a row
        // (Kernels.copyZeroPadded, splitEvenOdd, which fills two phase planes row by row); a channel stride that is a
        // multiple of 4 KiB would put every channel's rows in the same L1 sets.
        phasePlane = rows * rowLength + (phases > 1 ? 16 : 0)
        let planes = phases * phasePlane
        channelStride = planes + ((planes + 16) % 1024 == 0 ? 32 : 16)
        let maxOffset = taps.map { [phasePlane, padTop, rowLength, padLeft] in
            Correlation.offset($0, phasePlane: phasePlane, padTop: padTop, rowLength: rowLength, padLeft: padLeft)
        }.max() ?? 0
        let positions = Correlation.positions(outputRows: outputRows, outputColumns: outputColumns, images: images,
                                              rowLength: rowLength, period: period)
        count = Swift.max(1, (channels - 1) * channelStride + Swift.max(planes, Correlation.reach(positions, maxOffset)))
    }

    /// Fills the wide buffer from images `batch` of NCHW `source` (in blocks 0, 1, …): phase
    /// (a, b) of channel c holds source[n, c, stride·r + a, stride·u + b] at row padTop + r, block column
    /// padLeft + u; zero elsewhere. Each channel is zeroed, then its rows copied in whole vectors (their lanes past
    /// a row zeroed, so that what they write past it is zeros too). Over the channels in parallel when `parallel`.
    func fill(_ dst: UnsafeMutablePointer<Float>, from source: UnsafePointer<Float>, images batch: Range<Int>,
              height: Int, width: Int, stride: Int, parallel: Bool = true) {
        let body = { (range: Range<Int>) in
            for c in range {
                let plane = dst + c * channelStride
                Kernels.zero(plane, Swift.min(channelStride, count - c * channelStride))
                if stride == 2 {
                    // Each source row split once into its even and odd columns, phases (a, 0) and (a, 1).
                    let (evens, odds) = (Swift.min(sourceColumns, (width + 1) / 2), Swift.min(sourceColumns, width / 2))
                    for a in 0..<2 {
                        for r in 0..<Swift.min(sourceRows, (height - a + 1) / 2) {
                            Kernels.splitEvenOdd(source + ((batch.lowerBound * channels + c) * height + 2 * r + a) * width,
                                                 rows: batch.count, stride: channels * height * width,
                                                 plane + 2 * a * phasePlane + (padTop + r) * rowLength + padLeft,
                                                 phasePlane, period, evens: evens, odds: odds, readable: width + 16)
                        }
                    }
                    continue
                }
                for phase in 0..<phases {
                    let (a, b) = (phase / stride, phase % stride)
                    let valid = Swift.min(sourceColumns, (width - b + stride - 1) / stride)
                    for r in 0..<Swift.min(sourceRows, (height - a + stride - 1) / stride) {
                        let row = plane + phase * phasePlane + (padTop + r) * rowLength + padLeft
                        let first = source + ((batch.lowerBound * channels + c) * height + r * stride + a) * width + b
                        for n in 0..<batch.count {
                            let (src, to) = (first + n * channels * height * width, row + n * period)
                            if stride == 1 {
                                Kernels.copyZeroPadded(src, to, valid)
                            } else {
                                for u in 0..<valid { to[u] = src[u * stride] }
                            }
                        }
                    }
                }
            }
        }
        if parallel { parallelFor(channels, grain: 1, body) } else { body(0..<channels) }
        let used = channels * channelStride  // the last channel's tiles may read past its planes
        if count > used { Kernels.zero(dst + used, count - used) }
    }
}

/// The weights of a correlation where they lie: output channel o's step (c, t) (source channel c, tap t) is
/// w[o·outputStride + c·inputStride + tapOffsets[t]]; `count` floats are readable from w.
struct TapWeights {
    let values: WeightValues
    let count, outputs, inputs, outputStride, inputStride: Int
    let tapOffsets: [Int]
    var taps: Int { tapOffsets.count }
    var depth: Int { inputs * taps }
    /// Each output channel's steps are one contiguous row (a forward convolution's [O, C, KH, KW] kernel).
    var rowsContiguous: Bool { inputStride == taps && tapOffsets == Array(0..<taps) }
    /// Each (output, source) channel pair's taps are contiguous (the kernel of an input gradient at stride 1).
    var tapsContiguous: Bool { outputStride == taps && tapOffsets == Array(0..<taps) && taps <= 16 }
    /// Steps that channel tiles streaming these weights pack at a time (Caches.channelTileChunk), whole source
    /// channels where each pair's taps are packed together.
    var chunk: Int {
        let chunk = Engine.caches.channelTileChunk
        return tapsContiguous && !rowsContiguous ? chunk / taps * taps : chunk
    }
}

/// The weights of a correlation and where its outputs go: out[n, o, rowStep·Y + rowOffset, colStep·X + colOffset],
/// plus bias[o] when given. The weights are packed beforehand (packTaps) or, on channel tiles only, streamed: packed
/// a chunk of steps at a time as the tiles use them.
struct CorrelationTarget {
    enum Weights {
        case packed(UnsafePointer<Float>)
        case streamed(TapWeights)
    }
    let weights: Weights
    let outputs: Int
    var streamed: Bool { if case .streamed = weights { true } else { false } }
    let bias: UnsafePointer<Float>?
    let out: UnsafeMutablePointer<Float>
    let height, width: Int
    var rowStep = 1, rowOffset = 0, colStep = 1, colOffset = 0

    /// Where output row `row`, column 0, of `image` goes in output channel 0.
    func offset(image: Int, row: Int) -> Int {
        ((image * outputs * height) + rowStep * row + rowOffset) * width + colOffset
    }
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

    /// Valid outputs: images × rows × columns.
    var valid: Int { outputRows * layout.images * outputColumns }

    /// The runs of valid outputs in position order, one per image row: (first position, image, row).
    var runs: [(q: Int, image: Int, row: Int)] {
        var list: [(q: Int, image: Int, row: Int)] = []
        list.reserveCapacity(outputRows * layout.images)
        for y in 0..<outputRows {
            for n in 0..<layout.images { list.append((y * layout.rowLength + n * layout.period, n, y)) }
        }
        return list
    }
}

extension Kernels {
    /// Packs the weights of a correlation for its tiles: for each group of `group` output channels o (8 for `tile`,
    /// 64 for `channelTile`), step (c, t) holds weight (o, c, t), zero past the last output channel. Channel tiles'
    /// blocks of 64 (whole, as channel tiles need) are packed chunk by chunk, as their tiles pack streamed weights.
    static func packTaps(_ weights: TapWeights, group: Int, into packed: UnsafeMutablePointer<Float>) {
        switch weights.values {
        case .float(let w): packTaps(weights, from: w, group: group, into: packed)
        case .float16(let w): packTaps(weights, from: w, group: group, into: packed)
        case .bfloat16(let w): packTaps(weights, from: w, group: group, into: packed)
        }
    }

    private static func packTaps<S: WeightSource>(_ weights: TapWeights, from w: S, group: Int,
                                                  into packed: UnsafeMutablePointer<Float>) {
        let (outputs, inputs, taps, depth) = (weights.outputs, weights.inputs, weights.taps, weights.depth)
        let (outputStride, inputStride) = (weights.outputStride, weights.inputStride)
        let groups = (outputs + group - 1) / group
        if group == channelTileOutputs {
            let chunk = weights.chunk
            let chunks = (depth + chunk - 1) / chunk
            parallelFor(groups * chunks, grain: 8) { range in
                for unit in range {
                    let (b, first) = (unit / chunks, unit % chunks * chunk)
                    packChunk(weights, from: w, block: b, steps: first..<Swift.min(depth, first + chunk),
                              into: packed + (b * depth + first) * group)
                }
            }
            return
        }
        weights.tapOffsets.withUnsafeBufferPointer { tapOffsets in
            parallelFor(groups * inputs, grain: Swift.max(1, inputs / 4)) { range in
                for unit in range {
                    let (g, c) = (unit / inputs, unit % inputs)
                    var p = packed + (g * inputs + c) * taps * group
                    let valid = Swift.min(group, outputs - g * group)
                    for t in 0..<taps {
                        let src = g * group * outputStride + c * inputStride + tapOffsets[t]
                        for i in 0..<valid { p[i] = w[at: src + i * outputStride] }
                        for i in valid..<group { p[i] = 0 }
                        p += group
                    }
                }
            }
        }
    }

    /// Runs correlations over a batch of `images` on `kind`'s tiles, a band of images at a time: `bands(k)` gives the
    /// wide layout of k images and the correlations to run over it, `fill(layout, buffer, images, parallel)` lays a
    /// band out.
    /// Each band is sized to stay in L2 while its tiles run; bands go to different threads. With fewer images than
    /// threads, or where the bands' partial tiles would waste more than one band of the whole batch does (small
    /// planes), the tiles of one band are shared by the threads instead; with streamed weights, one band's blocks of
    /// output channels are. Every output is the same sum whatever the banding.
    static func correlate(images: Int, kind: Tiling.Kind, bands: (Int) -> (WideLayout, [(Correlation, CorrelationTarget)]),
                          fill: (WideLayout, UnsafeMutablePointer<Float>, Range<Int>, Bool) -> Void) {
        guard images > 0 else { return }
        let perImage = bands(1).0.count * MemoryLayout<Float>.stride
        let fits = Swift.max(1, Engine.caches.band / Swift.max(perImage, 1))
        let threads = Swift.max(1, Engine.threads)
        // As many bands per thread, each as large as fits.
        let wanted = threads * ((images + threads * fits - 1) / (threads * fits))
        // A band of k images: its layout, its correlations and their tilings.
        typealias Band = (layout: WideLayout, jobs: [(Correlation, CorrelationTarget)], tilings: [Tiling])
        func band(_ k: Int) -> Band {
            let (layout, jobs) = bands(k)
            return (layout, jobs, jobs.map { Tiling($0.0, outputs: $0.1.outputs, kind: kind) })
        }
        func cost(_ b: Band) -> Double {
            Swift.zip(b.jobs, b.tilings).reduce(0) { total, job in
                total + job.1.cost(outputs: job.0.1.outputs)
            }
        }
        if bands(1).1.contains(where: { $0.1.streamed }) {
            // Streamed weights: one band, whose blocks of 64 output channels go to different threads, so that each
            // chunk of weights is packed once.
            let whole = band(images)
            let scratch = Swift.zip(whole.jobs, whole.tilings).map { runScratch($0.0, tiling: $1) }.max() ?? 0
            withBuffer(whole.layout.count) { buffer in
                fill(whole.layout, buffer, 0..<images, true)
                for ((plan, target), tiling) in Swift.zip(whole.jobs, whole.tilings) {
                    parallelFor(target.outputs / channelTileOutputs, grain: 1, scratch: scratch) { range, sp in
                        runChannelTiles(plan, target, source: buffer, firstImage: 0, tiles: 0..<tiling.count,
                                        blocks: range, scratch: sp)
                    }
                }
            }
            return
        }
        // Band i holds images i·images/count ..< (i + 1)·images/count, ⌊images/count⌋ or ⌈images/count⌉ of them,
        // so that the threads get as many images each.
        var count = Swift.min(images, wanted)
        func span(_ i: Int) -> Range<Int> { (i * images / count)..<((i + 1) * images / count) }
        var large = band((images + count - 1) / count)
        if images >= threads && count > 1 && perImage * images <= Engine.caches.sharedBatch {
            let whole = band(images)
            // The busiest thread's bands, as many images as any other's.
            let bandedCost = Double((images + threads - 1) / threads) / Double(large.layout.images) * cost(large)
            // Tiles shared out: the busiest thread's share, and 5% for the extra synchronisation.
            let tiles = whole.tilings.map(\.count).reduce(0, +)
            let share = Double((tiles + threads - 1) / threads) / Double(Swift.max(tiles, 1))
            if 1.05 * cost(whole) * share < bandedCost { (count, large) = (1, whole) }
        }
        let small = images % count == 0 ? large : band(images / count)
        let scratch = Swift.zip(large.jobs, large.tilings).map { runScratch($0.0, tiling: $1) }.max() ?? 0
        if count > 1 && images >= threads {
            parallelFor(count, grain: 1, scratch: large.layout.count + scratch) { range, buffer in
                for index in range {
                    let span = span(index)
                    let b = span.count == large.layout.images ? large : small
                    fill(b.layout, buffer, span, false)
                    for ((plan, target), tiling) in Swift.zip(b.jobs, b.tilings) {
                        runTiles(plan, target, source: buffer, firstImage: span.lowerBound, tiling: tiling,
                                 tiles: 0..<tiling.count, scratch: buffer + large.layout.count)
                    }
                }
            }
        } else {
            for index in 0..<count {
                let span = span(index)
                let b = span.count == large.layout.images ? large : small
                withBuffer(b.layout.count) { buffer in
                    fill(b.layout, buffer, span, true)
                    for ((plan, target), tiling) in Swift.zip(b.jobs, b.tilings) {
                        let tiles = tiling.count
                        parallelFor(tiles, grain: Swift.max(tiling.packed ? 1 : 4, tiles / 16), scratch: scratch) { range, sp in
                            runTiles(plan, target, source: buffer, firstImage: span.lowerBound, tiling: tiling,
                                     tiles: range, scratch: sp)
                        }
                    }
                }
            }
        }
    }

    /// Tiles `tiles` of one correlation on `tiling`'s tiles.
    private static func runTiles(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
                                 firstImage: Int, tiling: Tiling, tiles: Range<Int>, scratch: UnsafeMutablePointer<Float>) {
        if tiling.kind == .channels {
            runChannelTiles(plan, target, source: source, firstImage: firstImage, tiles: tiles,
                            blocks: 0..<target.outputs / channelTileOutputs, scratch: scratch)
        } else {
            runRowTiles(plan, target, source: source, firstImage: firstImage, tiling: tiling, tiles: tiles,
                        scratch: scratch)
        }
    }

    /// Floats a tile run needs for its tile and, when it packs, its panel.
    private static func runScratch(_ plan: Correlation, tiling: Tiling) -> Int {
        if tiling.kind == .channels {
            return (channelTileGroup * channelTilePositions + Engine.caches.channelTileChunk) * channelTileOutputs
        }
        return tileRows * tileColumns + (tiling.packed ? plan.layout.channels * plan.offsets.count * tileColumns + 16 : 0)
    }
}
