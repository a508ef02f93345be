import DiffuseEngine
import Foundation
import XCTest

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// An 8-byte little-endian header length, the header, then `data`.
    func file(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> Data {
        let json = Data(header.utf8)
        var out = Data()
        withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
        return out + json + Data(data)
    }

    /// Opening `data` must throw a safetensors error whose message contains `problem`.
    func assertRejected(_ data: Data, _ problem: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(data: data, path: "bad.safetensors"), file: file, line: line) { error in
            guard let e = error as? DiffuseError, case .safetensors = e else {
                return XCTFail("threw \(error), not a safetensors error", file: file, line: line)
            }
            XCTAssertEqual(e.path, "bad.safetensors", file: file, line: line)
            XCTAssertTrue(e.problem.contains(problem), "'\(e.problem)' does not mention '\(problem)'", file: file, line: line)
            XCTAssertTrue(e.description.contains("bad.safetensors") && e.description.contains(e.problem), file: file, line: line)
        }
    }

    // MARK: - Writing and reading back

    func testRoundTripWithMetadata() throws {
        var g = RandomGenerator(seed: 1)
        let tensors: [String: Tensor] = [
            "weight": g.normal([3, 4]),
            "layer.bias": Tensor([1, -2, 3.5]),
            "scalar": Tensor(scalar: 0.25),
            "empty": Tensor(zeros: [0, 3]),
            "special": Tensor([.infinity, -.infinity, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]),
        ]
        let metadata = ["format": "pt", "step": "1200", "note": "ünïcode, \"quotes\" and {braces}"]
        let path = directory.appendingPathComponent("round.safetensors").path
        try SafeTensorsFile.write(tensors, metadata: metadata, to: path)
        let read = try SafeTensorsFile(path: path)
        XCTAssertEqual(read.metadata, metadata)
        XCTAssertEqual(read.names, tensors.keys.sorted())
        for (name, t) in tensors {
            let back = try read.tensor(name)
            XCTAssertEqual(read.entries[name]?.dtype, .f32)
            XCTAssertEqual(back.shape, t.shape, name)
            XCTAssertEqual(back.scalars.map(\.bitPattern), t.scalars.map(\.bitPattern), name)
            XCTAssertEqual(try read.doubles(name), t.scalars.map(Double.init), name)
        }
        // The header is padded to a multiple of 8 bytes, so the data starts aligned.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
        // Writing again replaces the file; no temporary file is left beside it.
        try SafeTensorsFile.write(["x": Tensor([7])], to: path)
        XCTAssertEqual(try SafeTensorsFile(path: path).names, ["x"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["round.safetensors"])
    }

    /// The file reader every parser uses: a file's bytes, empty for an empty file (Foundation's reader leaked a page
    /// on one: found by fuzzing), nil for what is missing or not a regular file.
    func testFileContents() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("contents-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let bytes = Data((0..<70_000).map { UInt8($0 % 251) })
        try bytes.write(to: folder.appendingPathComponent("a"))
        try Data().write(to: folder.appendingPathComponent("empty"))
        XCTAssertEqual(fileContents(folder.appendingPathComponent("a").path), bytes)
        XCTAssertEqual(fileContents(folder.appendingPathComponent("empty").path), Data())
        XCTAssertNil(fileContents(folder.appendingPathComponent("missing").path))
        XCTAssertNil(fileContents(folder.path))
    }

    func testNoMetadataAndNoTensors() throws {
        let data = try SafeTensorsFile.encode([:])
        let read = try SafeTensorsFile(data: data)
        XCTAssertEqual(read.names, [])
        XCTAssertEqual(read.metadata, [:])
    }

    func testReadsTheFileWrittenByPython() throws {
        let read = try SafeTensorsFile(path: Fixtures.path("dtypes.safetensors"))
        XCTAssertEqual(read.metadata, ["format": "pt"])
        XCTAssertEqual(read.names, ["bf16", "f16", "f32", "f64", "i64"])
        XCTAssertEqual(read.entries["f16"]?.dtype, .f16)
        XCTAssertEqual(read.entries["bf16"]?.dtype, .bf16)
        XCTAssertEqual(read.entries["f64"]?.dtype, .f64)
        XCTAssertEqual(read.entries["i64"]?.dtype, .i64)

        let f16 = try read.tensor("f16")
        XCTAssertEqual(f16.shape, [2, 3])
        XCTAssertEqual(f16.scalars, [0.5, -1.25, 3, 65504, -0, 0x1p-24])  // the largest half, a subnormal
        XCTAssertEqual(f16.scalars[4].sign, .minus, "-0 keeps its sign")

        let bf16 = try read.tensor("bf16")
        XCTAssertEqual(bf16.shape, [2, 3])
        XCTAssertEqual(bf16.scalars, [1, -2.5, 0.15625, 0x1p100, -0x1p-20, 7])

        XCTAssertEqual(try read.tensor("f32").scalars, [1.5, -2])

        // F64: exact through doubles(), rounded to Float32 through tensor().
        let f64: [Double] = [0.1, -1.0 / 3.0, 1e300, 2.0.squareRoot()]
        XCTAssertEqual(try read.doubles("f64"), f64)
        XCTAssertEqual(try read.tensor("f64").scalars, f64.map { Float($0) })
        XCTAssertEqual(try read.tensor("f64").scalars[2], .infinity)

        // I64: exact through integers(), rounded to Float32 through tensor().
        let i64: [Int64] = [-3, 0, 7, 1 << 40, (1 << 53) + 1]
        XCTAssertEqual(try read.integers("i64"), i64)
        XCTAssertEqual(try read.tensor("i64").scalars, i64.map { Float($0) })
    }

    func testEveryHalfIsReadExactlyEvenWhenDenormalsAreFlushed() throws {
        // The engine's kernels set flush-to-zero on their threads; subnormal halves are normal Float32 values and
        // must survive it. Set it here so the result does not depend on which tests ran before.
        flushDenormals()
        var bytes: [UInt8] = []
        for bits in 0...UInt16.max { bytes += [UInt8(bits & 0xFF), UInt8(bits >> 8)] }
        let header = #"{"all": {"dtype": "F16", "shape": [65536], "data_offsets": [0, 131072]}}"#
        let values = try SafeTensorsFile(data: file(header: header, data: bytes)).tensor("all").scalars
        for bits in 0...UInt16.max {
            let v = values[Int(bits)], half = Float16(bitPattern: bits)
            if half.isNaN { XCTAssertTrue(v.isNaN); continue }
            let expected = half.isSubnormal ? (bits & 0x8000 != 0 ? -1 : 1) * Float(bits & 0x3FF) * 0x1p-24 : Float(half)
            if v != expected || v.sign != expected.sign {
                XCTFail("half \(String(bits, radix: 16)): read \(v), expected \(expected)")
                break
            }
        }
    }

    /// F16 and BF16 tensors read as 16-bit values that widen exactly (every half, with denormals flushed), and
    /// Float32 values narrow to the nearest 16-bit value, ties to even, as PyTorch's .half() and .bfloat16() do.
    func testSixteenBitTensorsStaySixteenBit() throws {
        flushDenormals()
        var bytes: [UInt8] = []
        for bits in 0...UInt16.max { bytes += [UInt8(bits & 0xFF), UInt8(bits >> 8)] }
        let header = #"{"all": {"dtype": "F16", "shape": [256, 256], "data_offsets": [0, 131072]}}"#
        let read = try SafeTensorsFile(data: file(header: header, data: bytes))
        guard case .half(let half) = try read.stored("all") else { return XCTFail("F16 read as Float32") }
        XCTAssertEqual(half.shape, [256, 256])
        let widened = half.widened().scalars, reference = try read.tensor("all").scalars
        XCTAssertTrue(zip(widened, reference).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        let back = HalfTensor(narrowing: Tensor(widened, shape: [65536]), format: .float16).widened().scalars
        XCTAssertTrue(zip(back, widened).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        // Ties to even: 1 + 2⁻¹¹ lies halfway between 1 and 1 + 2⁻¹⁰ (even: 1); 1 + 3·2⁻¹¹ rounds up to 1 + 2⁻⁹.
        let ties = Tensor([1 + 0x1p-11, 1 + 3 * 0x1p-11, 1 / 3, 70000, -0x1p-30], shape: [5])
        XCTAssertEqual(HalfTensor(narrowing: ties, format: .float16).widened().scalars,
                       [1, 1 + 0x1p-9, Float(Float16(Float(1) / 3)), .infinity, -0])
        // bfloat16 keeps 8 significant bits: 1 + 2⁻⁸ is a tie (to 1), 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶.
        let bfloat = HalfTensor(narrowing: Tensor([1 + 0x1p-8, 1 + 3 * 0x1p-8, .nan, 3e38, 0x1p-130], shape: [5]), format: .bfloat16)
        let b = bfloat.widened().scalars
        XCTAssertEqual([b[0], b[1], b[3], b[4]], [1, 1 + 0x1p-6, Float(bitPattern: 0x7F62_0000), 0x1p-130])
        XCTAssertTrue(b[2].isNaN)
        // Rows and reshapes copy the right values.
        XCTAssertEqual(half.rows(2..<3).widened().scalars, Array(reference[512..<768]))
        XCTAssertEqual(half.reshaped([65536]).shape, [65536])
    }

    /// From a file on disk, 16-bit tensors are read in place from the mapping; dropping their pages from resident
    /// memory loses nothing: the next read maps them back from the page cache.
    func testSixteenBitTensorsAreReadInPlace() throws {
        let count = 300_000  // several pages
        var bytes: [UInt8] = []
        for i in 0..<count { bytes += [UInt8(i & 0xFF), UInt8((i >> 8) & 0x3B)] }
        var header = #"{"h": {"dtype": "BF16", "shape": [300, 1000], "data_offsets": [0, 600000]}}"#
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)  // aligned data, as writers pad it
        let path = directory.appendingPathComponent("half.safetensors")
        try file(header: header, data: bytes).write(to: path)
        let read = try SafeTensorsFile(path: path.path)
        guard case .half(let half) = try read.stored("h") else { return XCTFail("BF16 read as Float32") }
        let before = half.widened().scalars
        XCTAssertEqual(before, try read.tensor("h").scalars)
        half.dropResident()
        XCTAssertEqual(half.widened().scalars, before)
        XCTAssertEqual(half.rows(299..<300).widened().scalars, Array(before[299_000...]))
    }

    func testMissingTensorAndWrongTypeAreErrors() throws {
        let read = try SafeTensorsFile(path: Fixtures.path("dtypes.safetensors"))
        XCTAssertThrowsError(try read.tensor("nope")) { error in
            XCTAssertTrue((error as? DiffuseError)?.problem.contains("no tensor 'nope'") == true, "\(error)")
        }
        XCTAssertThrowsError(try read.integers("f32")) { error in
            XCTAssertTrue((error as? DiffuseError)?.problem.contains("not I64") == true, "\(error)")
        }
    }

    // MARK: - Malformed files

    func testMissingFile() {
        let path = directory.appendingPathComponent("absent.safetensors").path
        XCTAssertThrowsError(try SafeTensorsFile(path: path)) { error in
            guard let e = error as? DiffuseError, case .safetensors = e else { return XCTFail("threw \(error)") }
            XCTAssertEqual(e.path, path)
            XCTAssertTrue(e.problem.contains("cannot be read"), e.problem)
        }
    }

    func testFileShorterThanTheHeaderLength() {
        assertRejected(Data(), "too short")
        assertRejected(Data([1, 0, 0, 0, 0, 0, 0]), "too short")
    }

    func testHeaderLengthPastTheEnd() {
        assertRejected(file(header: "{}", headerLength: 3), "runs past the end")
        assertRejected(file(header: "{}", headerLength: 1000), "runs past the end")
        assertRejected(file(header: "{}", headerLength: .max), "runs past the end")
    }

    func testTruncatedFile() throws {
        let whole = try SafeTensorsFile.encode(["a": Tensor([1, 2, 3]), "b": Tensor([4, 5])])
        XCTAssertNoThrow(try SafeTensorsFile(data: whole))
        for cut in [1, 4, 8, 19] { assertRejected(whole.prefix(whole.count - cut), "outside the") }
        assertRejected(whole.prefix(30), "runs past the end")  // cut inside the header
        assertRejected(whole.prefix(5), "too short")
    }

    func testHeaderThatIsNotJSONOrNotAnObject() {
        assertRejected(file(header: "{not json"), "not valid JSON")
        assertRejected(file(header: "{\"a\": {\"dtype\": \"F32\", "), "not valid JSON")
        assertRejected(file(header: "[1, 2]"), "not a JSON object")
        assertRejected(file(header: "\"text\""), "JSON")
    }

    func testBadEntries() {
        assertRejected(file(header: #"{"a": 5}"#), "'a' is not described by an object")
        assertRejected(file(header: #"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]), "'a' has no dtype")
        assertRejected(file(header: #"{"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]),
                       "dtype Q7")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]),
                       "'a' has no valid shape")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [1]}}"#, data: [0, 0, 0, 0]), "no valid data_offsets")
        assertRejected(file(header: #"{"__metadata__": {"n": 3}}"#), "__metadata__")
    }

    func testOffsetsOutOfRange() {
        let data = [UInt8](repeating: 0, count: 8)
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#, data: data),
                       "outside the 8 data bytes")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}"#, data: data),
                       "outside")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}"#, data: data),
                       "outside")
    }

    func testByteCountNotMatchingShapeAndDType() {
        // 8 bytes hold two F32 but only one F64 / four F16.
        let data = [UInt8](repeating: 0, count: 8)
        assertRejected(file(header: #"{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}"#, data: data),
                       "needs 16 bytes, its data_offsets give 8")
        assertRejected(file(header: #"{"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 8]}}"#, data: data),
                       "needs 4 bytes")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#, data: data),
                       "needs 12 bytes")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}"#,
                            data: data), "too large")
    }

    func testOverlappingTensors() {
        let data = [UInt8](repeating: 0, count: 12)
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},"#
                            + #""b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, data: data),
                       "overlap at data byte 4")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},"#
                            + #""b": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}"#, data: data),
                       "overlap")
    }

    func testGapsInTheData() {
        let data = [UInt8](repeating: 0, count: 12)
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},"#
                            + #""b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#, data: data),
                       "data bytes 4..<8 belong to no tensor")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#, data: data),
                       "data bytes 0..<4 belong to no tensor")
        assertRejected(file(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: data),
                       "data bytes 8..<12 belong to no tensor")  // trailing bytes
    }
}

/// The buffer pool serves a request from the smallest cached buffer that holds it, up to twice its size.
final class BufferPoolTests: XCTestCase {
    func testBestFitReuse() {
        BufferPool.shared.trim()
        let pool = BufferPool.shared
        _ = Tensor(uninitialized: [1 << 20])  // allocated, then cached when released
        let start = pool.freshAllocations
        _ = Tensor(uninitialized: [600_000])  // fits the cached 1 Mi floats: no allocation
        XCTAssertEqual(pool.freshAllocations, start)
        _ = Tensor(uninitialized: [400_000])  // under half of it: a buffer of its own
        XCTAssertEqual(pool.freshAllocations, start + 1)
        XCTAssertGreaterThan(pool.bytesCached, 4 << 20)
        pool.trim()
        XCTAssertEqual(pool.bytesCached, 0)
    }
}
