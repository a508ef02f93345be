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
    let w: UnsafePointer<Float>
    let count, outputs, inputs, outputStride, inputStride: Int
    let tapOffsets: [Int]
    var taps: Int { tapOffsets.count }
    var depth: Int { inputs * taps }
    /// Each output channel's steps are one contiguous row (a forward convolution's [O, C, KH, KW] kernel).
    var rowsContiguous: Bool { inputStride == taps && tapOffsets == Array(0..<taps) }
    /// Each (output, source) channel pair's taps are contiguous (the kernel of an input gradient at stride 1).
    var tapsContiguous: Bool { outputStride == taps && tapOffsets == Array(0..<taps) && taps <= 16 }
    /// Steps that channel tiles streaming these weights pack at a time: 128 (32 KiB of packed weights), whole
    /// source channels where each pair's taps are packed together.
    var chunk: Int { tapsContiguous && !rowsContiguous ? 128 / taps * taps : 128 }
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

/// How a correlation's outputs are cut into register tiles. Where the output channels come in whole blocks of 64,
/// `channels`: 6 valid outputs × 64 output channels per tile (`channelTile`: no junk position, no panel).
/// Otherwise 8 output channels × up to 48 positions (`tile`), read in place over the flat positions (`flat`: the
/// junk ones between images computed and dropped), or over the valid outputs, each tile's inputs first copied into
/// a panel (`packed`); such tiles are `width` columns (48, or 32 where that wastes less), and a last tile of no
/// more than 32 columns runs the narrow kernel.
struct Tiling {
    enum Kind { case flat, packed, channels }
    let kind: Kind
    let width, columns: Int
    var count: Int { (columns + width - 1) / width }
    var packed: Bool { kind == .packed }

    /// The columns of tile t.
    func span(_ t: Int) -> Range<Int> { (t * width)..<Swift.min(columns, t * width + width) }

    /// Whether a correlation of `inputs` source channels into `outputs` output channels runs on channel tiles; its
    /// weights are then packed in blocks of 64 output channels, else of 8. Few source channels (a first layer)
    /// leave too few steps per tile to pay for scattering its outputs across 64 channel planes.
    static func byChannels(outputs: Int, inputs: Int) -> Bool {
        outputs % Kernels.channelTileOutputs == 0 && inputs >= 16 && Engine.convolutionTiles != .flat
            && Engine.convolutionTiles != .packed
    }

    /// The cheapest tiling of `plan` for `outputs` output channels, in cycles per (channel, tap) step: a 48-wide tile
    /// costs 12 per group of 8 output channels (24 multiply-adds on 2 units), a 32-wide one 8.8 (16, at the
    /// measured ~91% of the wide kernel's rate), and a panel ~2 per piece of 16 floats it copies.
    init(_ plan: Correlation, outputs: Int) {
        if Tiling.byChannels(outputs: outputs, inputs: plan.layout.channels) {
            self.init(kind: .channels, width: Kernels.channelTilePositions, columns: plan.valid)
            return
        }
        var best: (cost: Double, tiling: Tiling)?
        let kinds: [Kind] = Engine.convolutionTiles == .flat ? [.flat] : Engine.convolutionTiles == .packed ? [.packed]
            : [.flat, .packed]
        for kind in kinds {
            for width in [48, 32] {
                let tiling = Tiling(kind: kind, width: width, columns: kind == .packed ? plan.valid : plan.positions)
                let cost = tiling.cost(outputs: outputs, outputColumns: plan.outputColumns)
                if best.map({ cost < $0.cost }) ?? true { best = (cost, tiling) }
            }
        }
        self = best!.tiling
    }

    private init(kind: Kind, width: Int, columns: Int) {
        self.kind = kind
        self.width = width
        self.columns = columns
    }

    /// Cycles per (channel, tap) step, as above; a channel tile's 24 multiply-adds cost 12.
    func cost(outputs: Int, outputColumns: Int) -> Double {
        if kind == .channels { return Double(count * outputs / Kernels.channelTileOutputs) * 12 }
        let groups = Double((outputs + Kernels.tileRows - 1) / Kernels.tileRows)
        let pieces = Double(width / Swift.min(outputColumns, width) + 2)
        return (0..<count).reduce(0) { total, t in
            total + groups * (span(t).count <= 32 ? 8.8 : 12) + (packed ? 2 * pieces : 0)
        }
    }
}

extension Kernels {
    /// Packs the weights of a correlation for its tiles: for each group of `group` output channels o (8 for `tile`,
    /// 64 for `channelTile`), step (c, t) holds weight (o, c, t), zero past the last output channel. Channel tiles'
    /// blocks of 64 (whole, as channel tiles need) are packed chunk by chunk, as their tiles pack streamed weights.
    static func packTaps(_ weights: TapWeights, group: Int, into packed: UnsafeMutablePointer<Float>) {
        let (outputs, inputs, taps, depth) = (weights.outputs, weights.inputs, weights.taps, weights.depth)
        let (w, outputStride, inputStride) = (weights.w, weights.outputStride, weights.inputStride)
        let groups = (outputs + group - 1) / group
        if group == channelTileOutputs {
            let chunk = weights.chunk
            let chunks = (depth + chunk - 1) / chunk
            parallelFor(groups * chunks, grain: 8) { range in
                for unit in range {
                    let (b, first) = (unit / chunks, unit % chunks * chunk)
                    packChunk(weights, block: b, steps: first..<Swift.min(depth, first + chunk),
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
                        let src = w + g * group * outputStride + c * inputStride + tapOffsets[t]
                        for i in 0..<valid { p[i] = src[i * outputStride] }
                        for i in valid..<group { p[i] = 0 }
                        p += group
                    }
                }
            }
        }
    }

    /// Packs steps `steps` of output channels 64b..<64b + 64: chunk[(s − first)·64 + i] = weight (64b + i, c, t) for
    /// step s = (c, t). By 16 × 16 transpositions where each output's steps form a row, or where each pair's taps do
    /// (then `steps` holds whole source channels, and the 16 rows of a transposition overlap: row i starts at pair
    /// i's taps); one by one otherwise.
    static func packChunk(_ weights: TapWeights, block b: Int, steps: Range<Int>, into chunk: UnsafeMutablePointer<Float>) {
        let (group, first, taps) = (channelTileOutputs, steps.lowerBound, weights.taps)
        let (w, outputStride, inputStride) = (weights.w, weights.outputStride, weights.inputStride)
        let o0 = b * group
        if outputStride == 1 {  // each step's 64 weights lie side by side: copies
            for s in steps {
                let src = w + o0 + s / taps * inputStride + weights.tapOffsets[s % taps], dst = chunk + (s - first) * group
                for j in Swift.stride(from: 0, to: group, by: 16) { store(load(src + j), dst + j) }
            }
            return
        }
        if weights.rowsContiguous && steps.count % 16 == 0 {
            for s0 in Swift.stride(from: 0, to: steps.count, by: 16) {
                for i0 in Swift.stride(from: 0, to: group, by: 16) {
                    transpose16(w + (o0 + i0) * outputStride + first + s0, outputStride, chunk + s0 * group + i0, group)
                }
            }
            return
        }
        let (c0, c1) = (first / taps, (steps.upperBound + taps - 1) / taps)
        if weights.tapsContiguous && first % taps == 0 && steps.count % taps == 0
            && (c1 - 1) * inputStride + (o0 + group - 1) * outputStride + 16 <= weights.count {
            for c in c0..<c1 {
                for i0 in Swift.stride(from: 0, to: group, by: 16) {
                    transpose16(w + c * inputStride + (o0 + i0) * outputStride, outputStride,
                                chunk + (c * taps - first) * group + i0, group, rows: taps)
                }
            }
            return
        }
        for s in steps {
            let src = w + o0 * outputStride + s / taps * inputStride + weights.tapOffsets[s % taps]
            let dst = chunk + (s - first) * group
            for i in 0..<group { dst[i] = src[i * outputStride] }
        }
    }

    /// Whether channel tiles stream a correlation's weights (packChunk) rather than pack them all first: where its
    /// `valid` outputs make a single group of channel tiles, packing would write out and read back every weight for
    /// one use.
    static func streamsWeights(outputs: Int, inputs: Int, valid: Int) -> Bool {
        Tiling.byChannels(outputs: outputs, inputs: inputs) && valid <= channelTileGroup * channelTilePositions
    }

    /// The weights' group for `packTaps` when a correlation has `inputs` source and `outputs` output channels.
    static func packGroup(outputs: Int, inputs: Int) -> Int {
        Tiling.byChannels(outputs: outputs, inputs: inputs) ? channelTileOutputs : tileRows
    }

    /// Runs correlations over a batch of `images`, a band of images at a time: `bands(k)` gives the wide layout
    /// of k images and the correlations to run over it, `fill(layout, buffer, images, parallel)` lays a band out.
    /// Each band is sized to stay in L2 while its tiles run; bands go to different threads. With fewer images than
    /// threads, or where the bands' partial tiles would waste more than one band of the whole batch does (small
    /// planes), the tiles of one band are shared by the threads instead; with streamed weights, one band's blocks of
    /// output channels are. Every output is the same sum whatever the banding.
    static func correlate(images: Int, bands: (Int) -> (WideLayout, [(Correlation, CorrelationTarget)]),
                          fill: (WideLayout, UnsafeMutablePointer<Float>, Range<Int>, Bool) -> Void) {
        guard images > 0 else { return }
        let perImage = bands(1).0.count * MemoryLayout<Float>.stride
        let fits = Swift.max(1, (512 << 10) / Swift.max(perImage, 1))
        let threads = Swift.max(1, Engine.threads)
        // As many bands per thread, each as large as fits.
        let wanted = threads * ((images + threads * fits - 1) / (threads * fits))
        // A band of k images: its layout, its correlations and their tilings.
        typealias Band = (layout: WideLayout, jobs: [(Correlation, CorrelationTarget)], tilings: [Tiling])
        func band(_ k: Int) -> Band {
            let (layout, jobs) = bands(k)
            return (layout, jobs, jobs.map { Tiling($0.0, outputs: $0.1.outputs) })
        }
        func cost(_ b: Band) -> Double {
            Swift.zip(b.jobs, b.tilings).reduce(0) { total, job in
                total + job.1.cost(outputs: job.0.1.outputs, outputColumns: job.0.0.outputColumns)
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
                        runByChannels(plan, target, source: buffer, firstImage: 0, tiles: 0..<tiling.count,
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
        if images >= threads && count > 1 && perImage * images <= 8 << 20 {
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
                        run(plan, target, source: buffer, firstImage: span.lowerBound, tiling: tiling,
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
                            run(plan, target, source: buffer, firstImage: span.lowerBound, tiling: tiling, tiles: range,
                                scratch: sp)
                        }
                    }
                }
            }
        }
    }

    /// Floats `run` needs for its tile and, when it packs, its panel.
    private static func runScratch(_ plan: Correlation, tiling: Tiling) -> Int {
        if tiling.kind == .channels {
            return (channelTileGroup * channelTilePositions + channelTileChunk) * channelTileOutputs
        }
        return tileRows * tileColumns + (tiling.packed ? plan.layout.channels * plan.offsets.count * tileColumns + 16 : 0)
    }

    /// Tiles `tiles` of one correlation, 8 output channels × up to 48 outputs at a time, the valid outputs (runs of
    /// outputColumns positions) copied from the tile to the target. Read in place, a tile covers consecutive
    /// positions; packed, it covers consecutive valid outputs and its inputs are gathered into a panel (C·T rows of
    /// 48 floats) that all groups share.
    private static func run(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
                            firstImage: Int, tiling: Tiling, tiles: Range<Int>, scratch sp: UnsafeMutablePointer<Float>) {
        if tiling.kind == .channels {
            return runByChannels(plan, target, source: source, firstImage: firstImage, tiles: tiles,
                                 blocks: 0..<target.outputs / channelTileOutputs, scratch: sp)
        }
        guard case .packed(let weights) = target.weights else { preconditionFailure("streamed weights on 8 × 48 tiles") }
        let packed = tiling.packed
        let outputs = target.outputs
        let groups = (outputs + tileRows - 1) / tileRows
        let channels = plan.layout.channels, channelStride = plan.layout.channelStride, taps = plan.offsets.count
        let depth = channels * taps
        let (width, plane, colStep) = (plan.outputColumns, target.height * target.width, target.colStep)
        let runList = plan.runs
        // A piece: `count` outputs at tile column `column`, read at flat position `from`, written from `to` (output
        // channel 0; channel o adds o·plane).
        typealias Piece = (column: Int, from: Int, to: Int, count: Int)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * runList.count) { runInfo in
        withUnsafeTemporaryAllocation(of: Piece.self, capacity: tileColumns + 1) { pieces in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: taps) { panelTaps in
        plan.offsets.withUnsafeBufferPointer { offsets in
            let (runQ, runTo) = (runInfo.baseAddress!, runInfo.baseAddress! + runList.count)
            for (r, run) in runList.enumerated() {
                runQ[r] = run.q
                runTo[r] = target.offset(image: firstImage + run.image, row: run.row)
            }
            for t in 0..<taps { panelTaps[t] = t * tileColumns }
            let panel = sp + tileRows * tileColumns
            var first = 0  // flat tiles: the first run that ends after the tile starts
            for t in tiles {
                // The tile's pieces: flat, the runs crossing its positions; packed, its valid outputs (run f / width,
                // column f % width).
                let span = tiling.span(t), narrow = span.count <= 32
                var count = 0
                if packed {
                    let (f0, f1) = (span.lowerBound, span.upperBound)
                    var f = f0
                    while f < f1 {
                        let (r, x) = (f / width, f % width)
                        let n = Swift.min(width - x, f1 - f)
                        pieces[count] = (f - f0, runQ[r] + x, runTo[r] + x * colStep, n)
                        count += 1
                        f += n
                    }
                } else {
                    let (q0, q1) = (span.lowerBound, span.upperBound)
                    while first < runList.count && runQ[first] + width <= q0 { first += 1 }
                    var r = first
                    while r < runList.count && runQ[r] < q1 {
                        let lo = Swift.max(q0, runQ[r]), hi = Swift.min(q1, runQ[r] + width)
                        pieces[count] = (lo - q0, lo, runTo[r] + (lo - runQ[r]) * colStep, hi - lo)
                        count += 1
                        r += 1
                    }
                }
                if packed {
                    // Gather the tile's inputs: row (c, tap) of the panel holds its outputs' source values.
                    var row = panel
                    for c in 0..<channels {
                        for tap in 0..<taps {
                            let base = source + c * channelStride + offsets[tap]
                            for k in 0..<count {
                                let piece = pieces[k]
                                copyRounded(base + piece.from, row + piece.column, piece.count)
                            }
                            row += tileColumns
                        }
                    }
                }
                let (b, bChannel, bTap) = packed ? (UnsafePointer(panel), taps * tileColumns, UnsafePointer(panelTaps.baseAddress!))
                    : (source + span.lowerBound, channelStride, offsets.baseAddress!)
                for g in 0..<groups {
                    let a = weights + g * depth * tileRows
                    if narrow {
                        narrowTile(channels: channels, taps: taps, a: a, b: b, bChannel: bChannel, bTap: bTap, out: sp,
                                   ldo: tileColumns)
                    } else {
                        tile(channels: channels, taps: taps, a: a, b: b, bChannel: bChannel, bTap: bTap, out: sp,
                             ldo: tileColumns, accumulate: false)
                    }
                    for i in 0..<Swift.min(tileRows, outputs - g * tileRows) {
                        let o = g * tileRows + i
                        let b = target.bias?[o] ?? 0
                        let row = sp + i * tileColumns, out = target.out + o * plane
                        for k in 0..<count {
                            let piece = pieces[k]
                            let src = row + piece.column, dst = out + piece.to
                            if colStep == 1 {
                                addCopy(src, dst, piece.count, b)
                            } else {
                                for j in 0..<piece.count { dst[j * colStep] = src[j] + b }
                            }
                        }
                    }
                }
            }
        } } } }
    }

    /// Channel tiles run in groups of 32 that take the steps 128 at a time, so that those steps' weights (32 KiB)
    /// serve the whole group from L1.
    static let channelTileGroup = 32, channelTileChunk = 128

    /// Tiles `tiles` of a correlation on channel tiles: valid outputs 6t..<6t + 6 (counted image by image, row by row)
    /// × 64 output channels of `blocks`, the blocks of 64 in the outer loop so that a block's packed weights stay in
    /// L2 across the tiles. A last tile of fewer than 6 outputs repeats its last one and drops the copies.
    private static func runByChannels(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
                                      firstImage: Int, tiles: Range<Int>, blocks: Range<Int>,
                                      scratch out: UnsafeMutablePointer<Float>) {
        let (positions, block) = (channelTilePositions, channelTileOutputs)
        let channels = plan.layout.channels, taps = plan.offsets.count, steps = channels * taps
        let (width, plane, colStep) = (plan.outputColumns, target.height * target.width, target.colStep)
        let runList = plan.runs
        let valid = runList.count * width
        withUnsafeTemporaryAllocation(of: Int.self, capacity: steps) { index in
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: tiles.count * positions) { bases in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: tiles.count * positions) { to in
            for c in 0..<channels {
                for t in 0..<taps { index[c * taps + t] = c * plan.layout.channelStride + plan.offsets[t] }
            }
            // Valid outputs image by image (runList is row by row), so that consecutive ones are consecutive in
            // their output planes.
            let (rows, images) = (plan.outputRows, plan.layout.images)
            for (k, t) in tiles.enumerated() {
                for i in 0..<positions {
                    let f = Swift.min(t * positions + i, valid - 1)
                    let (n, y) = ((f / width) / rows, (f / width) % rows)
                    let (run, x) = (runList[y * images + n], f % width)
                    bases[k * positions + i] = source + run.q + x
                    to[k * positions + i] = target.offset(image: firstImage + run.image, row: run.row) + x * colStep
                }
            }
            let group = channelTileGroup
            let streamed = out + group * positions * block  // a chunk of streamed weights
            let chunk: Int
            switch target.weights {
            case .packed: chunk = channelTileChunk
            case .streamed(let weights): chunk = weights.chunk
            }
            for b in blocks {
                for g in Swift.stride(from: 0, to: tiles.count, by: group) {
                    let members = g..<Swift.min(tiles.count, g + group)
                    for first in Swift.stride(from: 0, to: steps, by: chunk) {
                        let count = Swift.min(chunk, steps - first)
                        let w: UnsafePointer<Float>
                        switch target.weights {
                        case .packed(let packed): w = packed + (b * steps + first) * block
                        case .streamed(let weights):
                            packChunk(weights, block: b, steps: first..<first + count, into: streamed)
                            w = UnsafePointer(streamed)
                        }
                        for k in members {
                            channelTile(steps: count, positions: bases.baseAddress! + k * positions,
                                        index: index.baseAddress! + first, w: w,
                                        out: out + (k - g) * positions * block, accumulate: first > 0)
                        }
                    }
                    // 16 outputs at a time: transposed 16 channels at a time straight into the output planes where the
                    // 16 lie side by side in them (one image), else channel by channel. (Not into planes a multiple of
                    // 4 KiB apart: a transposition's 16 rows would all fall in one L1 set.)
                    let start = (tiles.lowerBound + g) * positions
                    let outputs = Swift.min(valid, start + members.count * positions) - start
                    let at = to.baseAddress! + g * positions
                    for p0 in Swift.stride(from: 0, to: outputs, by: 16) {
                        let count = Swift.min(16, outputs - p0)
                        if count == 16 && colStep == 1 && plane % 1024 != 0 && at[p0 + 15] == at[p0] + 15 {
                            for j0 in Swift.stride(from: 0, to: block, by: 16) {
                                let o0 = b * block + j0
                                transpose16(out + p0 * block + j0, block, target.out + o0 * plane + at[p0], plane,
                                            adding: target.bias.map { $0 + o0 })
                            }
                            continue
                        }
                        for j in 0..<block {
                            let o = b * block + j
                            let (bias, dst) = (target.bias?[o] ?? 0, target.out + o * plane)
                            var src = UnsafePointer(out + p0 * block + j)  // stepped: p·block compiled to a checked multiply
                            for p in p0..<(p0 + count) {
                                dst[at[p]] = src.pointee + bias
                                src += block
                            }
                        }
                    }
                }
            }
        } } }
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
    /// outputPlanes (zero between images). Tiles of 4 output channels × 6 (channel, tap) pairs, 16 positions a step
    /// in 24 accumulators summed across their lanes at the end of each block of positions. Groups of 8 × 8 tiles
    /// share a block whose rows stay in L2; each ∂W element adds its blocks in order, so that the result depends
    /// on the shape alone.
    static func weightGradient(_ plan: Correlation, source: UnsafePointer<Float>, gw: UnsafePointer<Float>,
                               gwStride: Int, outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let taps = plan.offsets.count
        let pairs = plan.layout.channels * taps
        let chunks = (pairs + 5) / 6, quads = (outputs + 3) / 4
        let steps = (plan.positions + 15) / 16
        let group = 8
        let (quadGroups, chunkGroups) = ((quads + group - 1) / group, (chunks + group - 1) / group)
        // Rows a group of tiles reads: 4 per quad, and the channels of its chunks.
        let rows = 4 * group + group * ((6 + taps - 1) / taps)
        let blockSteps = Swift.min(512, Swift.max(16, (512 << 10) / (rows * 64)))
        parallelFor(quadGroups * chunkGroups, grain: 1) { range in
            var offsets = [Int](repeating: 0, count: 6 * group)
            var part = [Float](repeating: 0, count: 24)
            var sums = [Float](repeating: 0, count: 24 * group * group)
            for unit in range {
                let quadRange = (unit / chunkGroups * group)..<Swift.min(quads, (unit / chunkGroups + 1) * group)
                let chunkRange = (unit % chunkGroups * group)..<Swift.min(chunks, (unit % chunkGroups + 1) * group)
                for (i, chunk) in chunkRange.enumerated() {
                    for k in 0..<6 {
                        let pair = Swift.min(chunk * 6 + k, pairs - 1)
                        offsets[i * 6 + k] = (pair / taps) * plan.layout.channelStride + plan.offsets[pair % taps]
                    }
                }
                for i in sums.indices { sums[i] = 0 }
                for block in Swift.stride(from: 0, to: steps, by: blockSteps) {
                    let count = Swift.min(blockSteps, steps - block), first = block * 16
                    for (qi, quad) in quadRange.enumerated() {
                        let g = (0..<4).map { gw + Swift.min(quad * 4 + $0, outputs - 1) * gwStride + first }
                        for ci in 0..<chunkRange.count {
                            offsets.withUnsafeBufferPointer { off in
                                part.withUnsafeMutableBufferPointer { p in
                                    gradientTile(steps: count, g: (g[0], g[1], g[2], g[3]), source: source + first,
                                                 offsets: off.baseAddress! + ci * 6, out: p.baseAddress!)
                                }
                            }
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
        }
    }

    /// The output channels per vector block of channelWeightGradient for a correlation of `inputs` source and
    /// `outputs` output channels: 64 where its forward runs on channel tiles, 32 for other layers of 32·k output
    /// channels (pairedChannelTile); nil where ∂W runs on gradientTile (and always under forced flat or packed tiles,
    /// for tests).
    static func weightGradientBlock(outputs: Int, inputs: Int) -> Int? {
        if Tiling.byChannels(outputs: outputs, inputs: inputs) { return channelTileOutputs }
        return outputs % 32 == 0 && outputs % 64 != 0 && Engine.convolutionTiles != .flat
            && Engine.convolutionTiles != .packed ? 32 : nil
    }

    /// ∂W on channel tiles, for output channels in whole blocks of `block` (64, or 32): ∂W[o, (c, t)] = Σ_p g[p][o] ·
    /// source[c][q_p + offsets[t]] over the valid outputs p (at flat positions q_p), the block's output channels in
    /// vectors and 6 (channel, tap) pairs broadcast, the outputs as the steps. g is transposed to [block][p][block]
    /// first (blocks of 32 get a zero row past an odd count, as pairedChannelTile takes steps two by two). The
    /// outputs run in chunks of 256, whose rows of g (64 KiB) serve every pair from L2; each pair's sums accumulate
    /// over the chunks in order, so that the result does not depend on the threads.
    static func channelWeightGradient(_ plan: Correlation, source: UnsafePointer<Float>, g: UnsafePointer<Float>,
                                      outputs: Int, block: Int, into dw: UnsafeMutablePointer<Float>) {
        let (positions, chunk) = (channelTilePositions, 256)
        let runs = plan.runs, width = plan.outputColumns, rows = plan.outputRows
        let valid = runs.count * width, blocks = outputs / block
        let steps = block == channelTileOutputs ? valid : (valid + 1) / 2 * 2
        let taps = plan.offsets.count, pairs = plan.layout.channels * taps
        let groups = (pairs + positions - 1) / positions
        withBuffer(outputs * steps + blocks * groups * positions * block) { gt in
            let dwt = gt + outputs * steps  // per block, the groups' tiles: [pair][block]
            parallelFor(runs.count, grain: Swift.max(1, 4096 / Swift.max(width * outputs, 1))) { range in
                for r in range {
                    let (n, y) = (runs[r].image, runs[r].row)
                    // 16 channels × 16 columns at a time (reading past the row's end into the next one, or into the
                    // pool's slack after the last).
                    for o0 in Swift.stride(from: 0, to: outputs, by: 16) {
                        for x0 in Swift.stride(from: 0, to: width, by: 16) {
                            transpose16(g + ((n * outputs + o0) * rows + y) * width + x0, rows * width,
                                        gt + ((o0 / block) * steps + r * width + x0) * block + o0 % block, block,
                                        rows: Swift.min(16, width - x0))
                        }
                    }
                }
            }
            for b in 0..<blocks { Kernels.zero(gt + (b * steps + valid) * block, (steps - valid) * block) }
            withUnsafeTemporaryAllocation(of: Int.self, capacity: steps) { index in
            withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: groups * positions) { bases in
                for (r, run) in runs.enumerated() { for x in 0..<width { index[r * width + x] = run.q + x } }
                for p in valid..<steps { index[p] = index[valid - 1] }
                for i in 0..<(groups * positions) {
                    let pair = Swift.min(i, pairs - 1)
                    bases[i] = source + pair / taps * plan.layout.channelStride + plan.offsets[pair % taps]
                }
                parallelFor(blocks * groups, grain: Swift.max(1, groups / 8)) { range in
                    for b in 0..<blocks {
                        let (lower, upper) = (Swift.max(range.lowerBound, b * groups), Swift.min(range.upperBound, (b + 1) * groups))
                        guard lower < upper else { continue }
                        let mine = lower..<upper
                        for first in Swift.stride(from: 0, to: steps, by: chunk) {
                            let (w, count) = (gt + (b * steps + first) * block, Swift.min(chunk, steps - first))
                            for unit in mine {
                                let (group, out) = (unit - b * groups, dwt + unit * positions * block)
                                if block == channelTileOutputs {
                                    channelTile(steps: count, positions: bases.baseAddress! + group * positions,
                                                index: index.baseAddress! + first, w: w, out: out, accumulate: first > 0)
                                } else {
                                    pairedChannelTile(steps: count, positions: bases.baseAddress! + group * positions,
                                                      index: index.baseAddress! + first, w: w, out: out,
                                                      accumulate: first > 0)
                                }
                            }
                        }
                    }
                }
            } }
            // ∂W[o][pair] from the tiles' [pair][block] rows, 16 × 16 at a time.
            parallelFor(outputs / 16, grain: 1) { range in
                for unit in range {
                    let (b, j0) = (unit * 16 / block, unit * 16 % block)
                    let src = dwt + b * groups * positions * block + j0, dst = dw + unit * 16 * pairs
                    var pair = 0
                    while pair + 16 <= pairs {
                        transpose16(src + pair * block, block, dst + pair, pairs)
                        pair += 16
                    }
                    for j in 0..<16 {
                        for p in pair..<pairs { dst[j * pairs + p] = src[p * block + j] }
                    }
                }
            }
        }
    }

    /// ∂W as weightGradient, for layers with few output positions, where summing lanes at the end of each tile would
    /// cost as much as the tile: vectors run over output channels instead, and each register tile (8 (channel, tap)
    /// pairs × 48 output channels) sums all valid outputs itself. g is ∂L/∂y in NCHW; it is transposed to
    /// [output][channel], and each group of 8 pairs of the source gathered to [output][8].
    static func weightGradientByChannels(_ plan: Correlation, source: UnsafePointer<Float>, g: UnsafePointer<Float>,
                                         outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let runs = plan.runs, width = plan.outputColumns, rows = plan.outputRows
        let valid = runs.count * width
        let taps = plan.offsets.count, pairs = plan.layout.channels * taps
        let (groups, panels) = ((pairs + tileRows - 1) / tileRows, (outputs + tileColumns - 1) / tileColumns)
        withBuffer(valid * outputs + tileColumns) { gt in
            parallelFor(runs.count, grain: Swift.max(1, 4096 / Swift.max(width * outputs, 1))) { range in
                for r in range {
                    let (n, y) = (runs[r].image, runs[r].row)
                    for x in 0..<width {
                        let dst = gt + (r * width + x) * outputs, src = g + (n * outputs * rows + y) * width + x
                        for o in 0..<outputs { dst[o] = src[o * rows * width] }
                    }
                }
            }
            parallelFor(groups, grain: 1, scratch: valid * tileRows + tileRows * tileColumns) { range, a in
                let out = a + valid * tileRows
                for group in range {
                    for i in 0..<tileRows {
                        let pair = Swift.min(group * tileRows + i, pairs - 1)
                        let base = source + (pair / taps) * plan.layout.channelStride + plan.offsets[pair % taps]
                        for (r, run) in runs.enumerated() {
                            for x in 0..<width { a[(r * width + x) * tileRows + i] = base[run.q + x] }
                        }
                    }
                    for panel in 0..<panels {
                        tile(channels: valid, taps: 1, a: a, b: gt + panel * tileColumns, bChannel: outputs,
                             bTap: noTaps, out: out, ldo: tileColumns, accumulate: false)
                        for i in 0..<Swift.min(tileRows, pairs - group * tileRows) {
                            for j in 0..<Swift.min(tileColumns, outputs - panel * tileColumns) {
                                dw[(panel * tileColumns + j) * pairs + group * tileRows + i] = out[i * tileColumns + j]
                            }
                        }
                    }
                }
            }
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
