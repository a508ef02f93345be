import Foundation

/// The element types of the safetensors format that Diffuse reads.
/// The others of the format (integers, booleans, 8-bit floats) are accepted in a file, for the counters and flags
/// that checkpoints carry beside their weights, and refused by name when read as a tensor.
public enum SafeTensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64"
    case i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    public var size: Int {
        switch self {
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: 1
        case .f16, .bf16, .i16: 2
        case .f32, .i32: 4
        case .f64, .i64: 8
        }
    }
}

/// A safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes
/// of JSON mapping each tensor name to {dtype, shape, data_offsets: [begin, end]} (plus an optional
/// "__metadata__" of string pairs), then the data, the tensors' byte ranges relative to its start, which cover it
/// exactly. Everything is checked when the file is opened; a file that breaks a rule is refused with the rule.
public struct SafeTensorsFile {
    public struct Entry: Sendable {
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        public let range: Range<Int>
    }

    public let path: String
    public let metadata: [String: String]
    public let entries: [String: Entry]
    private let data: Data
    private let dataStart: Int
    /// The read-only mapping of the file that `data` is, if it is one (16-bit tensors are read in place from it).
    private var mapping: FileMapping?

    public var names: [String] { entries.keys.sorted() }

    /// Opens a file, mapped into memory (read-only, private): its tensors are read from the mapping when asked for.
    public init(path: String) throws {
        func fail(_ problem: String) -> DiffuseError { DiffuseError.safetensors(path: path, problem: problem) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw fail("cannot be read (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw fail("is not a regular file") }
        let size = Int(info.st_size)
        guard size > 0 else {
            try self.init(data: Data(), path: path)  // refused there, as too short
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw fail("cannot be mapped into memory (\(String(cString: strerror(errno))))")
        }
        let data = Data(bytesNoCopy: base, count: size, deallocator: .custom { pointer, count in munmap(pointer, count) })
        try self.init(data: data, path: path)
        mapping = FileMapping(base: UnsafeRawPointer(base), data: data)
    }

    public init(data: Data, path: String = "<memory>") throws {
        func fail(_ problem: String) -> DiffuseError { DiffuseError.safetensors(path: path, problem: problem) }
        guard data.count >= 8 else { throw fail("file of \(data.count) bytes is too short for the 8-byte header length") }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(data.count - 8) else {
            throw fail("header length \(n) runs past the end of the file (\(data.count) bytes)")
        }
        let headerEnd = 8 + Int(n)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) }
        catch { throw fail("header is not valid JSON") }
        guard let header = json as? [String: Any] else { throw fail("header is not a JSON object") }
        let dataSize = data.count - headerEnd
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any], let strings = m as? [String: String], strings.count == m.count else {
                    throw fail("__metadata__ must map strings to strings")
                }
                metadata = strings
                continue
            }
            guard let info = value as? [String: Any] else { throw fail("tensor '\(name)' is not described by an object") }
            guard let dt = info["dtype"] as? String else { throw fail("tensor '\(name)' has no dtype") }
            guard let dtype = SafeTensorsDType(rawValue: dt) else {
                throw fail("tensor '\(name)' has dtype \(dt), which is not a safetensors dtype")
            }
            guard let shapeAny = info["shape"] as? [Any], let shape = shapeAny as? [Int], shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(name)' has no valid shape")
            }
            guard let offs = info["data_offsets"] as? [Any], let o = offs as? [Int], o.count == 2 else {
                throw fail("tensor '\(name)' has no valid data_offsets")
            }
            guard o[0] >= 0, o[0] <= o[1], o[1] <= dataSize else {
                throw fail("tensor '\(name)' has data_offsets [\(o[0]), \(o[1])] outside the \(dataSize) data bytes")
            }
            var elements = dtype.size
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail("tensor '\(name)' has shape \(shape), too large to address") }
                elements = product
            }
            guard o[1] - o[0] == elements else {
                throw fail("tensor '\(name)' of shape \(shape) and dtype \(dt) needs \(elements) bytes, "
                    + "its data_offsets give \(o[1] - o[0])")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: o[0]..<o[1])
        }
        var end = 0
        for e in entries.values.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
            guard e.range.lowerBound == end else {
                throw fail(e.range.lowerBound < end ? "tensors overlap at data byte \(e.range.lowerBound)"
                           : "data bytes \(end)..<\(e.range.lowerBound) belong to no tensor")
            }
            end = e.range.upperBound
        }
        guard end == dataSize else { throw fail("data bytes \(end)..<\(dataSize) belong to no tensor") }
        self.path = path
        self.data = data
        self.dataStart = headerEnd
        self.entries = entries
        self.metadata = metadata
    }

    private func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw DiffuseError.safetensors(path: path, problem: "has no tensor '\(name)'") }
        return e
    }

    /// Calls `body` with the raw little-endian bytes of a tensor. The file is mapped into memory: afterwards the
    /// whole pages of those bytes are dropped from this process' resident memory (the kernel's page cache keeps
    /// them), so that reading a model's weights one by one does not hold the file and the model at once.
    private func bytes<T>(_ e: Entry, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        data.withUnsafeBytes { raw in
            let range = (dataStart + e.range.lowerBound)..<(dataStart + e.range.upperBound)
            let result = body(UnsafeRawBufferPointer(rebasing: raw[range]))
            if mapping != nil, let base = raw.baseAddress, range.count >= 1 << 20 {
                dropResidentPages(base + range.lowerBound, count: range.count)
            }
            return result
        }
    }

    /// A floating-point tensor as Float32 (F32, F16, BF16 and F64 are converted).
    public func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        guard [.f32, .f16, .bf16, .f64, .i64].contains(e.dtype) else {
            throw DiffuseError.safetensors(path: path, problem: "tensor '\(name)' is \(e.dtype.rawValue); Diffuse reads F32, F16, BF16, F64 and I64")
        }
        let out = Tensor(uninitialized: e.shape)
        let p = out.storage.pointer, n = out.count
        bytes(e) { raw in
            switch e.dtype {
            case .f32: for i in 0..<n { p[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f16, .bf16:
                let format = HalfTensor.Format(rawValue: e.dtype.rawValue)!
                for i in 0..<n { p[i] = format.widen(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .f64: for i in 0..<n { p[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .i64: for i in 0..<n { p[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            default: break  // refused above
            }
        }
        return out
    }

    /// A tensor as a model keeps it: F16 and BF16 as their 16-bit values, the others as Float32 (see `tensor`). The
    /// 16-bit values of a mapped file (on a little-endian machine, 2-byte aligned) are read in place: no copy is
    /// made, and the model may drop them from resident memory while it does not use them (`HalfTensor.dropResident`).
    public func stored(_ name: String) throws -> StoredTensor {
        let e = try entry(name)
        guard let format = HalfTensor.Format(rawValue: e.dtype.rawValue) else { return .float(try tensor(name)) }
        if let mapping, UInt16(littleEndian: 1) == 1 {
            let start = mapping.base + dataStart + e.range.lowerBound
            if Int(bitPattern: start) % 2 == 0 {
                return .half(HalfTensor(viewing: start.assumingMemoryBound(to: UInt16.self), shape: e.shape, format: format,
                                        owner: mapping))
            }
        }
        return .half(bytes(e) { HalfTensor(littleEndian: $0, shape: e.shape, format: format) })
    }

    /// An F64 tensor's values (or F32's, widened), for callers that need double precision.
    public func doubles(_ name: String) throws -> [Double] {
        let e = try entry(name)
        switch e.dtype {
        case .f64:
            return bytes(e) { raw in (0..<(raw.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))) } }
        default:
            return try tensor(name).scalars.map(Double.init)
        }
    }

    /// An I64 tensor's values.
    public func integers(_ name: String) throws -> [Int64] {
        let e = try entry(name)
        guard e.dtype == .i64 else { throw DiffuseError.safetensors(path: path, problem: "tensor '\(name)' is \(e.dtype.rawValue), not I64") }
        return bytes(e) { raw in (0..<(raw.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
    }

    /// The bytes of a file holding `tensors` as F32, names in sorted order, header padded with spaces to 8 bytes.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]] as [String: Any]
            offset += 4 * t.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            let t = tensors[name]!
            out.append(UnsafeBufferPointer(start: t.storage.pointer, count: t.count))
        }
        return out
    }

    /// Writes `tensors` as F32 to `path` atomically (see `writeAtomically`).
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        try writeAtomically(encode(tensors, metadata: metadata), to: path)
    }
}

/// A file mapped read-only into memory, unmapped when the last of its `Data` and of the tensors read in place
/// from it is gone.
final class FileMapping: @unchecked Sendable {
    let base: UnsafeRawPointer
    let data: Data

    init(base: UnsafeRawPointer, data: Data) { (self.base, self.data) = (base, data) }
}

/// Drops the whole pages of `count` bytes at `start`, part of a read-only file mapping, from this process' resident
/// memory: the kernel's page cache keeps them, and a later read maps them back.
func dropResidentPages(_ start: UnsafeRawPointer, count: Int) {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let first = (Int(bitPattern: start) + page - 1) / page * page, end = (Int(bitPattern: start) + count) / page * page
    if end > first { _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED) }
}

/// Writes `data` to a temporary file beside `path`, flushes it, then renames it over `path`: a reader sees the old
/// file or the new one, never a part. A write that fails (a full disk) leaves the old file and no temporary one, and
/// says why in the system's words.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let temp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp").path
    func failure(_ doing: String) -> DiffuseError {
        DiffuseError.write(path: path, problem: "\(doing) (\(String(cString: strerror(errno)))); what was there is kept")
    }
    let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure("cannot create \((temp as NSString).lastPathComponent) beside it") }
    var problem = writeAll(data, to: fd).map { failure("writing failed after \($0) of \(data.count) bytes") }
    if problem == nil && fsync(fd) != 0 { problem = failure("flushing to disk failed") }
    if close(fd) != 0 && problem == nil { problem = failure("closing failed") }
    if problem == nil && rename(temp, path) != 0 { problem = failure("cannot rename the written file over it") }
    if let problem {
        unlink(temp)
        throw problem
    }
}

/// Appends `data` to the file at `path` (a log), or says why not in the system's words.
public func append(_ data: Data, to path: String) throws {
    let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    guard fd >= 0 else { throw DiffuseError.write(path: path, problem: "cannot open it (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    if let done = writeAll(data, to: fd) {
        throw DiffuseError.write(path: path, problem: "appending failed after \(done) of \(data.count) bytes (\(String(cString: strerror(errno))))")
    }
}

/// Writes all of `data` to `fd`; nil, or the bytes written when a write failed (errno says why).
private func writeAll(_ data: Data, to fd: Int32) -> Int? {
    data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Int? in
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return done }
            done += n
        }
        return nil
    }
}

/// The bytes of the file at `path`, or nil where it cannot be opened: every parser of outside files reads through
/// this. (Foundation's `FileManager.contents(atPath:)` leaks a page-sized buffer on an empty file, found by fuzzing.)
public func fileContents(_ path: String) -> Data? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
    var data = Data(count: Int(info.st_size))
    var done = 0
    let complete = data.withUnsafeMutableBytes { (buffer: UnsafeMutableRawBufferPointer) -> Bool in
        while done < buffer.count {
            let n = read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n == 0 }
            done += n
        }
        return true
    }
    guard complete else { return nil }
    // A file that shrank while it was read: what was there.
    return done < data.count ? data.prefix(done) : data
}
