import DiffuseReport
import Foundation
import XCTest

final class ResultsTests: XCTestCase {
    /// Run folders are recorded relative to the results file's folder and found again from there, whatever the
    /// working directory; results written before (paths relative to where compare ran) still resolve as given.
    func testRunFoldersAreRecordedRelativeToTheResults() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("results-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for folder in ["runs/ddpm", "runs/compare", "elsewhere/gan"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
            XCTAssertTrue(FileManager.default.createFile(atPath: root + "/" + folder + "/config.json", contents: Data("{}".utf8)))
        }
        let out = root + "/runs/compare"
        XCTAssertEqual(ComparisonResults.recorded(run: root + "/runs/ddpm", resultsFolder: out), "../ddpm")
        XCTAssertEqual(ComparisonResults.recorded(run: root + "/elsewhere/gan/", resultsFolder: out), "../../elsewhere/gan")
        XCTAssertEqual(ComparisonResults.recorded(run: out + "/vae", resultsFolder: out), "vae")
        XCTAssertEqual(ComparisonResults.recorded(run: out, resultsFolder: out), ".")
        XCTAssertEqual(ComparisonResults.located(run: "../ddpm", resultsFolder: out), root + "/runs/ddpm")
        XCTAssertEqual(ComparisonResults.located(run: "../../elsewhere/gan", resultsFolder: out), root + "/elsewhere/gan")
        // Relative to the working directory, as results.json recorded runs before: kept as given.
        XCTAssertEqual(ComparisonResults.located(run: "runs/ddpm", resultsFolder: out), "runs/ddpm")
        XCTAssertEqual(ComparisonResults.located(run: "/abs/run", resultsFolder: out), "/abs/run")
    }
}
