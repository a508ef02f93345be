import Foundation
import XCTest

/// Runs the `diffuse` program built beside the tests (swift build --build-tests builds it), returning its exit status
/// and what it printed.
func diffuse(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    let program = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("diffuse")
    guard FileManager.default.isExecutableFile(atPath: program.path) else {
        throw XCTSkip("no diffuse program beside the tests at \(program.path): build it first (swift build --build-tests)")
    }
    let process = Process()
    process.executableURL = program
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
