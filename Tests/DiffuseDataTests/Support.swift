import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

/// A test case with a fresh temporary folder for the files it builds.
class DataTestCase: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-data-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// The path of `name` in the temporary folder.
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Writes `bytes` to `name` in the temporary folder (creating subfolders) and returns its path.
    @discardableResult
    func write(_ bytes: [UInt8], to name: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// The real MNIST test set's folder, or a skip when it is absent.
    func mnistDirectory() throws -> String {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../shared/data/mnist").standardized.path
        guard FileManager.default.fileExists(atPath: dir + "/t10k-images-idx3-ubyte.gz") else {
            throw XCTSkip("MNIST not found at \(dir): skipping the test on real MNIST")
        }
        return dir
    }
}

/// The path of a file in Fixtures/ (made by scripts/make_data_fixtures.py).
func fixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
}

/// `body` must throw a data error about `path` whose problem contains `problem`.
func assertDataError<T>(_ body: @autoclosure () throws -> T, path: String, _ problem: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        guard let e = error as? DiffuseError, case .data = e else {
            return XCTFail("threw \(type(of: error)): \(error), not a data error", file: file, line: line)
        }
        XCTAssertEqual(e.path, path, "in: \(e)", file: file, line: line)
        XCTAssertTrue(e.problem.contains(problem), "'\(e.problem)' does not mention '\(problem)'", file: file, line: line)
        XCTAssertEqual(e.description, "\(e.path ?? ""): \(e.problem)", file: file, line: line)
    }
}

/// The bytes of an IDX file of unsigned bytes: the header for `shape`, then `values`.
func idxBytes(shape: [Int], values: [UInt8], type: UInt8 = 0x08) -> [UInt8] {
    [0, 0, type, UInt8(shape.count)] + shape.flatMap { d in (0..<4).map { UInt8(truncatingIfNeeded: d >> (24 - 8 * $0)) } } + values
}
