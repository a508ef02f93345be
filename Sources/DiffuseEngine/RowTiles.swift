// Row tiles: 8 output channels × 48 positions of a correlation (Kernels.tile), the forward and input gradient of
// a convolution over the wide layout read in place (flat) or gathered into panels (packed).

extension Kernels {
    /// Tiles `tiles` of one correlation, 8 output channels × up to 48 outputs at a time, the valid outputs (runs of
    /// outputColumns positions) copied from the tile to the target. Read in place, a tile covers consecutive
    /// positions; packed, it covers consecutive valid outputs and its inputs are gathered into a panel (C·T rows of
    /// 48 floats) that all groups share.
    static func runRowTiles(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
                            firstImage: Int, tiling: Tiling, tiles: Range<Int>, scratch sp: UnsafeMutablePointer<Float>) {
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
}
