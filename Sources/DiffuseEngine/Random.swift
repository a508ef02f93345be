import Foundation

/// A counter-based generator (Philox-4×32-10, Salmon et al. 2011). The i-th block of four 32-bit words is a pure
/// function of (seed, stream, offset + i), so any split of the work over threads gives the same numbers, and the
/// whole state is three integers that a checkpoint can save.
public struct RandomGenerator: Sendable, Equatable, Codable {
    public let seed: UInt64
    public let stream: UInt64
    /// Blocks used so far.
    public var offset: UInt64

    public init(seed: UInt64, stream: UInt64 = 0, offset: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
        self.offset = offset
    }

    /// The 4 words of block `counter`.
    @inlinable
    public func block(_ counter: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: counter), c1 = UInt32(truncatingIfNeeded: counter >> 32)
        var c2 = UInt32(truncatingIfNeeded: stream), c3 = UInt32(truncatingIfNeeded: stream >> 32)
        var k0 = UInt32(truncatingIfNeeded: seed), k1 = UInt32(truncatingIfNeeded: seed >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0), p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let (hi0, lo0) = (UInt32(p0 >> 32), UInt32(truncatingIfNeeded: p0))
            let (hi1, lo1) = (UInt32(p1 >> 32), UInt32(truncatingIfNeeded: p1))
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// A stand-in for building a model whose every parameter is loaded next: its draws are left unfilled
    /// (uninitialised memory, never written), so that building a large model costs neither time nor resident memory.
    public static let unfilled = RandomGenerator(seed: 0, stream: .max)

    /// The generator of batch `k` of work cut into batches: this one advanced by k·2⁴⁰ blocks, so that a batch's
    /// draws (up to 2⁴² values) are the same whichever batches ran before it, or elsewhere; batch 0's are this one's.
    public func batch(_ k: Int) -> RandomGenerator {
        RandomGenerator(seed: seed, stream: stream, offset: offset &+ UInt64(k) << 40)
    }

    /// A generator for an independent purpose (data order, dropout, noise), derived from this one's seed.
    public func derived(stream: UInt64) -> RandomGenerator { RandomGenerator(seed: seed, stream: stream) }

    /// Runs `body(words, first)` for the blocks that cover values `values` of a draw of `count`, 4 per block
    /// (`first` = index of the block's first value, relative to `values.lowerBound`), in parallel, and advances
    /// past the whole draw.
    private mutating func forEachBlock(_ count: Int, values: Range<Int>? = nil,
                                       _ body: ((UInt32, UInt32, UInt32, UInt32), Int) -> Void) {
        let values = values ?? 0..<count, base = offset, gen = self
        let first = values.lowerBound / 4, end = (values.upperBound + 3) / 4
        parallelFor(end - first, grain: 1024) { r in
            for b in r { body(gen.block(base + UInt64(first + b)), 4 * (first + b) - values.lowerBound) }
        }
        offset += UInt64((count + 3) / 4)
    }

    /// The values of a draw of [share.total] + shape.dropFirst() that the rows of `share` take, for a tensor of
    /// `shape` (whose first dimension is the share's rows), and how many values the whole draw has.
    private static func values(_ shape: [Int], _ share: BatchShare?) -> (Range<Int>?, Int) {
        guard let share else { return (nil, shape.reduce(1, *)) }
        precondition(shape.first == share.rows.count, "a share of \(share.rows.count) rows drawn as \(shape)")
        let row = shape.dropFirst().reduce(1, *)
        return ((share.rows.lowerBound * row)..<(share.rows.upperBound * row), share.total * row)
    }

    /// A uniform value in (0, 1) from the top 23 bits of a word: (k + ½)·2⁻²³ for k < 2²³ is exact in Float32, the
    /// largest being 1 − 2⁻²⁴. (With 24 bits, (2²⁴ − 1 + ½)·2⁻²⁴ would round to exactly 1.)
    @inlinable static func unit(_ w: UInt32) -> Float { (Float(w >> 9) + 0.5) * 0x1p-23 }

    /// Uniform values in (low, high). With a share: its rows of the values that a draw for the whole batch gives.
    public mutating func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, share: BatchShare? = nil) -> Tensor {
        let out = Tensor(uninitialized: shape)
        if self == .unfilled { return out }
        let count = out.count, p = out.storage.pointer, width = high - low
        let (values, total) = Self.values(shape, share)
        forEachBlock(total, values: values) { w, i in
            let u = SIMD4(Self.unit(w.0), Self.unit(w.1), Self.unit(w.2), Self.unit(w.3))
            for k in Swift.max(0, -i)..<Swift.min(4, count - i) { p[i + k] = low + width * u[k] }
        }
        return out
    }

    /// Normal values (Box–Muller on the two pairs of each block). With a share: its rows of the values that a draw
    /// for the whole batch gives.
    public mutating func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, share: BatchShare? = nil) -> Tensor {
        let out = Tensor(uninitialized: shape)
        if self == .unfilled { return out }
        let count = out.count, p = out.storage.pointer
        let (values, total) = Self.values(shape, share)
        forEachBlock(total, values: values) { w, i in
            let r0 = (-2 * Foundation.log(Self.unit(w.0))).squareRoot(), t0 = 2 * Float.pi * Self.unit(w.1)
            let r1 = (-2 * Foundation.log(Self.unit(w.2))).squareRoot(), t1 = 2 * Float.pi * Self.unit(w.3)
            let z = SIMD4(r0 * Foundation.cos(t0), r0 * Foundation.sin(t0), r1 * Foundation.cos(t1), r1 * Foundation.sin(t1))
            for k in Swift.max(0, -i)..<Swift.min(4, count - i) { p[i + k] = mean + std * z[k] }
        }
        return out
    }

    /// `count` raw 32-bit words.
    private mutating func words(_ count: Int) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: count)
        for b in 0..<(count + 3) / 4 {
            let w = block(offset + UInt64(b))
            let quad = SIMD4(w.0, w.1, w.2, w.3)
            for k in 0..<Swift.min(4, count - 4 * b) { out[4 * b + k] = quad[k] }
        }
        offset += UInt64((count + 3) / 4)
        return out
    }

    /// Integers uniform in 0..<bound. With a share: its rows of a draw of `share.total` (`count` being its rows).
    public mutating func integers(_ count: Int, below bound: Int, share: BatchShare? = nil) -> [Int] {
        precondition(share.map { $0.rows.count == count } ?? true, "a share of \(share!.rows.count) rows drawn as \(count)")
        let all = words(share?.total ?? count).map { Int((UInt64($0) &* UInt64(bound)) >> 32) }
        return share.map { Array(all[$0.rows]) } ?? all
    }

    /// A uniformly random ordering of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var order = Array(0..<n)
        let w = words(n)
        for i in stride(from: n - 1, to: 0, by: -1) {
            order.swapAt(i, Int((UInt64(w[i]) &* UInt64(i + 1)) >> 32))
        }
        return order
    }
}
