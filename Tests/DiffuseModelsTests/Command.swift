import Foundation
import XCTest

/// The `diffuse` program built beside the tests (swift build --build-tests builds it); the test skips without it.
func diffuseProgram() throws -> String {
    let program = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("diffuse").path
    guard FileManager.default.isExecutableFile(atPath: program) else {
        throw XCTSkip("no diffuse program beside the tests at \(program): build it first (swift build --build-tests)")
    }
    return program
}

/// The repository's root folder (for its scripts).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs a program found on the PATH (`/usr/bin/env` finds it) with `environment` added to the tests'; its exit
/// status and its output and errors together.
func runProgram(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [name] + arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    (process.standardOutput, process.standardError) = (out, out)
    try process.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}

/// Runs the `diffuse` program built beside the tests, returning its exit status and what it printed.
func diffuse(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try diffuseProgram())
    process.arguments = arguments
    let (out, err) = (Pipe(), Pipe())
    (process.standardOutput, process.standardError) = (out, err)
    try process.run()
    let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output, errors)
}

/// `diffuse sample` writes how its images were made into their PNG, as `diffuse generate` does.
final class SampleCommandTests: XCTestCase {
    func testSampleWritesParameters() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pipelines/eps-linear")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sample-\(getpid()).png").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try diffuse(["sample", "--model", folder.path, "--steps", "5", "--count", "4", "--sampler", "dpm++2m", "--karras",
                               "--seed", "3", "--out", out])
        XCTAssertEqual(run.status, 0, run.errors)
        let info = try diffuse(["info", out])
        for line in ["Steps: 5", "Sampler: DPM++ 2M Karras", "Seed: 3", "Size: 8x8", "Model: eps-linear"] {
            XCTAssertTrue(info.output.contains(line + "\n"), "\(line) in \(info.output)")
        }
    }
}

/// A test case with a fresh temporary folder for each test, removed after it.
class FolderTestCase: XCTestCase {
    private(set) var base: URL!

    override func setUpWithError() throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(getpid())-\(name.filter(\.isLetter))")
        try? FileManager.default.removeItem(at: base)
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: base) }

    /// A path in the test's folder.
    func path(_ name: String) -> String { base.appendingPathComponent(name).path }
}
