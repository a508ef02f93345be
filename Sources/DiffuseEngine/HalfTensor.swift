/// Values kept in 16 bits, IEEE half precision (F16) or bfloat16 (BF16), as fp16 and bf16 checkpoints store them,
/// and widened to Float32 where they are used: a model loaded this way takes half the memory of Float32, at the
/// cost of one conversion per use (a fraction of a nanosecond per value with F16C or NEON).
public final class HalfTensor: @unchecked Sendable {
    public enum Format: String, Sendable {
        case float16 = "F16", bfloat16 = "BF16"

        /// The Float32 value of 16 bits of this format, exactly: both widen without rounding.
        @inline(__always) func widen(_ bits: UInt16) -> Float {
            switch self {
            case .float16: Float16Format.widen(bits)
            case .bfloat16: BFloat16Format.widen(bits)
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
            case .float16: Float16Format.widen(q + range.lowerBound, count: range.count, into: p + range.lowerBound)
            case .bfloat16: BFloat16Format.widen(q + range.lowerBound, count: range.count, into: p + range.lowerBound)
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

/// Where a kernel's packing reads a weight's values: Float32 in place, or 16-bit values widened as they are read
/// (exactly, as `HalfTensor.widened()` widens), so that 16-bit weights are packed for the register tiles without a
/// widened copy of the whole tensor first (that copy is written once and read again for every use: about 8 bytes of
/// memory traffic per weight).
protocol WeightSource {
    /// The value at offset i.
    subscript(at i: Int) -> Float { get }
    /// dst[j] = the value at offset i + j, for j < count.
    func copy(_ i: Int, count: Int, into dst: UnsafeMutablePointer<Float>)
    /// The values as a Float32 pointer, when that is what they are.
    var floats: UnsafePointer<Float>? { get }
    var values: WeightValues { get }
}

extension WeightSource {
    /// `body` with `rows` rows of `count` values, row r from offset start + r·stride, as Float32 rows `ls` apart (the
    /// second argument): in place, or widened into a block on the stack (for the small blocks a transposition takes:
    /// a pooled buffer costs a lock and a search per block, which two threads packing side by side wait on), with
    /// 16 floats of slack that a kernel may read past the last row's end.
    @inline(__always) func withRows<R>(_ rows: Int, from start: Int, stride: Int, count: Int,
                                       _ body: (UnsafePointer<Float>, Int) -> R) -> R {
        if let floats { return body(floats + start, stride) }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * count + 16) { block in
            for r in 0..<rows { copy(start + r * stride, count: count, into: block.baseAddress! + r * count) }
            return body(UnsafePointer(block.baseAddress!), count)
        }
    }

    /// `body` with the first `count` values as Float32: in place, or widened into a pooled buffer.
    func withFloats<R>(count: Int, _ body: (UnsafePointer<Float>) -> R) -> R {
        if let floats { return body(floats) }
        return withBuffer(count) { buffer in
            parallelFor(count, grain: 1 << 16) { range in
                copy(range.lowerBound, count: range.count, into: buffer + range.lowerBound)
            }
            return body(buffer)
        }
    }
}

extension UnsafePointer: WeightSource where Pointee == Float {
    @inline(__always) subscript(at i: Int) -> Float { self[i] }
    @inline(__always) func copy(_ i: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        dst.update(from: self + i, count: count)
    }
    var floats: UnsafePointer<Float>? { self }
    var values: WeightValues { .float(self) }
}

/// A 16-bit format's widening as a type, so that a kernel that reads 16-bit weights is compiled for one format.
protocol HalfFormat {
    static func widen(_ bits: UInt16) -> Float
    static func values(_ v: HalfValues<Self>) -> WeightValues
}

extension HalfFormat {
    /// q[j] = the value of p[j] for j < count: a plain loop, which the compiler vectorises (where SIMD types' own
    /// conversions and selects compile to calls and scalar loops).
    @inline(__always) static func widen(_ p: UnsafePointer<UInt16>, count: Int, into q: UnsafeMutablePointer<Float>) {
        for j in 0..<count { q[j] = widen(p[j]) }
    }
}

/// IEEE half precision: (−1)ˢ·2^(e−15)·1.m, or (−1)ˢ·m·2⁻²⁴ for a subnormal, made from its fields: a conversion may
/// return 0 for a subnormal on a thread that flushes denormals (`flushDenormals()`, which the engine's kernels set;
/// F16C's does not, software ones may), although each is a normal Float32.
enum Float16Format: HalfFormat {
    @inline(__always) static func widen(_ bits: UInt16) -> Float {
        let magnitude = bits & 0x7FFF
        let value = magnitude < 0x0400 ? Float(magnitude) * 0x1p-24 : Float(Float16(bitPattern: magnitude))
        return bits & 0x8000 != 0 ? -value : value
    }

    static func values(_ v: HalfValues<Self>) -> WeightValues { .float16(v) }
}

/// bfloat16: the high 16 bits of a Float32.
enum BFloat16Format: HalfFormat {
    @inline(__always) static func widen(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    static func values(_ v: HalfValues<Self>) -> WeightValues { .bfloat16(v) }
}

/// A HalfTensor's values as a kernel reads them (the tensor must outlive the reads).
struct HalfValues<Format: HalfFormat>: WeightSource {
    let bits: UnsafePointer<UInt16>

    /// The tensor's values, read as `Format` (which must be the tensor's).
    init(_ tensor: HalfTensor) { bits = UnsafePointer(tensor.bits) }

    @inline(__always) subscript(at i: Int) -> Float { Format.widen(bits[i]) }
    @inline(__always) func copy(_ i: Int, count: Int, into dst: UnsafeMutablePointer<Float>) {
        Format.widen(bits + i, count: count, into: dst)
    }
    var floats: UnsafePointer<Float>? { nil }
    var values: WeightValues { Format.values(self) }
}

/// A weight's values, of any source: what a correlation's TapWeights keeps.
enum WeightValues {
    case float(UnsafePointer<Float>)
    case float16(HalfValues<Float16Format>)
    case bfloat16(HalfValues<BFloat16Format>)
}

