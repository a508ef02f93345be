/// Values kept in 16 bits, IEEE half precision (F16) or bfloat16 (BF16), as fp16 and bf16 checkpoints store them,
/// and widened to Float32 where they are used: a model loaded this way takes half the memory of Float32, at the
/// cost of one conversion per use (a fraction of a nanosecond per value with F16C or NEON).
public final class HalfTensor: @unchecked Sendable {
    public enum Format: String, Sendable {
        case float16 = "F16", bfloat16 = "BF16"

        /// The Float32 value of 16 bits of this format, exactly: both widen without rounding. An F16 subnormal,
        /// (−1)ˢ·m·2⁻²⁴, is made from its fields: a conversion may return 0 for it on a thread that flushes
        /// denormals (`flushDenormals()`, which the engine's kernels set; F16C's does not, software ones may),
        /// although each is a normal Float32.
        @inline(__always) func widen(_ bits: UInt16) -> Float {
            switch self {
            case .float16:
                let magnitude = bits & 0x7FFF
                let value = magnitude < 0x0400 ? Float(magnitude) * 0x1p-24 : Float(Float16(bitPattern: magnitude))
                return bits & 0x8000 != 0 ? -value : value
            case .bfloat16: return Float(bitPattern: UInt32(bits) << 16)
            }
        }
    }

    public let shape: [Int]
    public let format: Format
    public let count: Int
    /// The values: this tensor's own memory, or, read in place, a file mapping's (never written).
    let bits: UnsafeMutablePointer<UInt16>
    /// The mapping whose memory `bits` is, kept alive; nil when the memory is this tensor's.
    private let mapping: FileMapping?

    init(shape: [Int], format: Format) {
        (self.shape, self.format, mapping) = (shape, format, nil)
        count = shape.reduce(1, *)
        bits = UnsafeMutablePointer<UInt16>.allocate(capacity: Swift.max(count, 1))
    }

    /// The values in place in a mapped file (native byte order).
    init(viewing pointer: UnsafePointer<UInt16>, shape: [Int], format: Format, owner: FileMapping) {
        (self.shape, self.format, mapping) = (shape, format, owner)
        count = shape.reduce(1, *)
        bits = UnsafeMutablePointer(mutating: pointer)
    }

    deinit { if mapping == nil { bits.deallocate() } }

    /// For values read in place from a mapped file: drops their pages from this process' resident memory while the
    /// model does not need them (the kernel's page cache keeps them, and the next read maps them back). Values in
    /// the tensor's own memory stay.
    public func dropResident() {
        if mapping != nil { dropResidentPages(bits, count: 2 * count) }
    }

    /// From little-endian 16-bit words (a safetensors file's bytes), `shape.reduce(1, *)` of them.
    public convenience init(littleEndian raw: UnsafeRawBufferPointer, shape: [Int], format: Format) {
        self.init(shape: shape, format: format)
        precondition(raw.count == 2 * count, "\(raw.count) bytes for \(count) 16-bit values")
        for i in 0..<count { bits[i] = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    }

    /// Float32 values rounded to the nearest 16-bit value (ties to even), as PyTorch's `.half()` and
    /// `.bfloat16()` round.
    public convenience init(narrowing t: Tensor, format: Format) {
        self.init(shape: t.shape, format: format)
        let p = t.storage.pointer, q = bits
        parallelFor(count, grain: 1 << 16) { range in
            for i in range {
                switch format {
                case .float16: q[i] = Float16(p[i]).bitPattern
                case .bfloat16:
                    let b = p[i].bitPattern
                    // NaN stays NaN (a quiet one); others round to nearest, ties to even, on the dropped 16 bits.
                    q[i] = p[i].isNaN ? UInt16(b >> 16) | 0x40 : UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
                }
            }
        }
    }

    /// The values as a Float32 tensor (exactly: both formats widen without rounding).
    public func widened() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let p = out.storage.pointer, q = bits
        parallelFor(count, grain: 1 << 16) { range in
            // One loop per format, so that each vectorises.
            switch format {
            case .float16: for i in range { p[i] = Format.float16.widen(q[i]) }
            case .bfloat16: for i in range { p[i] = Format.bfloat16.widen(q[i]) }
            }
        }
        return out
    }

    /// The rows `indices` of the first dimension widened, [indices.count, rest of the shape]: an embedding's lookup
    /// without widening the whole table.
    public func widenedRows(_ indices: [Int]) -> Tensor {
        precondition(!shape.isEmpty && indices.allSatisfy { $0 >= 0 && $0 < shape[0] }, "rows \(indices) of \(shape)")
        let row = count / Swift.max(shape[0], 1)
        let out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        let p = out.storage.pointer
        for (i, r) in indices.enumerated() {
            for j in 0..<row { p[i * row + j] = format.widen(bits[r * row + j]) }
        }
        return out
    }

    /// The same values under another shape of as many elements.
    public func reshaped(_ newShape: [Int]) -> HalfTensor {
        precondition(newShape.reduce(1, *) == count, "reshaping \(shape) to \(newShape)")
        return rows(0..<(shape.first ?? 1), as: newShape)
    }

    /// The rows `range` of the first dimension.
    public func rows(_ range: Range<Int>) -> HalfTensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) of \(shape)")
        return rows(range, as: [range.count] + shape.dropFirst())
    }

    private func rows(_ range: Range<Int>, as newShape: [Int]) -> HalfTensor {
        let out = HalfTensor(shape: newShape, format: format)
        let row = shape.isEmpty ? 1 : count / Swift.max(shape[0], 1)
        out.bits.update(from: bits + range.lowerBound * row, count: out.count)
        return out
    }
}

/// A tensor as a model keeps it: Float32, or 16-bit values widened where they are used.
public enum StoredTensor {
    case float(Tensor)
    case half(HalfTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): t.shape
        case .half(let h): h.shape
        }
    }

    public func reshaped(_ shape: [Int]) -> StoredTensor {
        switch self {
        case .float(let t): .float(t.reshaped(shape))
        case .half(let h): .half(h.reshaped(shape))
        }
    }

    /// The rows `range` of the first dimension.
    public func rows(_ range: Range<Int>) -> StoredTensor {
        switch self {
        case .float(let t): .float(t.slice(axis: 0, range))
        case .half(let h): .half(h.rows(range))
        }
    }

    /// The values as Float32.
    public var widened: Tensor {
        switch self {
        case .float(let t): t
        case .half(let h): h.widened()
        }
    }
}
