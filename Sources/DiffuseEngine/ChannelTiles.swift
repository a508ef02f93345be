// Channel tiles: 6 outputs × 64 output channels of a correlation (Kernels.channelTile), each input broadcast, for
// the forward and input gradient of a convolution, and its weight gradient with the (channel, tap) pairs broadcast.

extension Kernels {
    /// Channel tiles run in groups of 32 that take the steps a chunk at a time (Caches.channelTileChunk), so that
    /// those steps' weights serve the whole group from L1.
    static let channelTileGroup = 32

    /// The output channels per vector block of a weight gradient on channel tiles (channelWeightGradient, and
    /// Winograd's): 64 (channelTile) or 32 (pairedChannelTile); nil for other counts.
    static func weightGradientBlock(outputs: Int) -> Int? {
        outputs % channelTileOutputs == 0 ? channelTileOutputs : outputs % 32 == 0 ? 32 : nil
    }

    /// Tiles `tiles` of a correlation on channel tiles: valid outputs 6t..<6t + 6 (counted image by image, row by row)
    /// × 64 output channels of `blocks`, the blocks of 64 in the outer loop so that a block's packed weights stay in
    /// L2 across the tiles. A last tile of fewer than 6 outputs repeats its last one and drops the copies.
    static func runChannelTiles(_ plan: Correlation, _ target: CorrelationTarget, source: UnsafePointer<Float>,
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
            case .packed: chunk = Engine.caches.channelTileChunk
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

    /// Packs steps `steps` of output channels 64b..<64b + 64: chunk[(s − first)·64 + i] = weight (64b + i, c, t) for
    /// step s = (c, t). By 16 × 16 transpositions where each output's steps form a row, or where each pair's taps do
    /// (then `steps` holds whole source channels, and the 16 rows of a transposition overlap: row i starts at pair
    /// i's taps); one by one otherwise.
    static func packChunk(_ weights: TapWeights, block b: Int, steps: Range<Int>, into chunk: UnsafeMutablePointer<Float>) {
        switch weights.values {
        case .float(let w): packChunk(weights, from: w, block: b, steps: steps, into: chunk)
        case .float16(let w): packChunk(weights, from: w, block: b, steps: steps, into: chunk)
        case .bfloat16(let w): packChunk(weights, from: w, block: b, steps: steps, into: chunk)
        }
    }

    static func packChunk<S: WeightSource>(_ weights: TapWeights, from w: S, block b: Int, steps: Range<Int>,
                                           into chunk: UnsafeMutablePointer<Float>) {
        let (group, first, taps) = (channelTileOutputs, steps.lowerBound, weights.taps)
        let (outputStride, inputStride) = (weights.outputStride, weights.inputStride)
        let o0 = b * group
        if outputStride == 1 {  // each step's 64 weights lie side by side: copies
            for s in steps {
                let src = o0 + s / taps * inputStride + weights.tapOffsets[s % taps], dst = chunk + (s - first) * group
                w.copy(src, count: group, into: dst)
            }
            return
        }
        if weights.rowsContiguous && steps.count % 16 == 0 {
            for s0 in Swift.stride(from: 0, to: steps.count, by: 16) {
                for i0 in Swift.stride(from: 0, to: group, by: 16) {
                    let start = (o0 + i0) * outputStride + first + s0
                    w.withRows(16, from: start, stride: outputStride, count: 16) { rows, ls in
                        transpose16(rows, ls, chunk + s0 * group + i0, group)
                    }
                }
            }
            return
        }
        let (c0, c1) = (first / taps, (steps.upperBound + taps - 1) / taps)
        if weights.tapsContiguous && first % taps == 0 && steps.count % taps == 0
            && (c1 - 1) * inputStride + (o0 + group - 1) * outputStride + 16 <= weights.count {
            for c in c0..<c1 {
                for i0 in Swift.stride(from: 0, to: group, by: 16) {
                    let start = c * inputStride + (o0 + i0) * outputStride
                    w.withRows(16, from: start, stride: outputStride, count: taps) { rows, ls in
                        transpose16(rows, ls, chunk + (c * taps - first) * group + i0, group, rows: taps)
                    }
                }
            }
            return
        }
        for s in steps {
            let src = o0 * outputStride + s / taps * inputStride + weights.tapOffsets[s % taps]
            let dst = chunk + (s - first) * group
            for i in 0..<group { dst[i] = w[at: src + i * outputStride] }
        }
    }

    /// ∂W on channel tiles, for output channels in whole blocks of 64, or else 32 (weightGradientBlock): ∂W[o, (c, t)] = Σ_p g[p][o] ·
    /// source[c][q_p + offsets[t]] over the valid outputs p (at flat positions q_p), the block's output channels in
    /// vectors and 6 (channel, tap) pairs broadcast, the outputs as the steps. g is transposed to [block][p][block]
    /// first (blocks of 32 get a zero row past an odd count, as pairedChannelTile takes steps two by two). The
    /// outputs run in chunks (Caches.gradientChunk), whose rows of g serve every pair from L2; each pair's sums accumulate
    /// over the chunks in order, so that the result does not depend on the threads.
    static func channelWeightGradient(_ plan: Correlation, source: UnsafePointer<Float>, g: UnsafePointer<Float>,
                                      outputs: Int, into dw: UnsafeMutablePointer<Float>) {
        let block = weightGradientBlock(outputs: outputs)!
        let (positions, chunk) = (channelTilePositions, Engine.caches.gradientChunk)
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
}
