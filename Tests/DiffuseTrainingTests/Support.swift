import DiffuseTraining
import Foundation
import XCTest

/// A test case whose temporary folders are removed after each test.
class TemporaryFolderTestCase: XCTestCase {
    private var folders: [String] = []

    /// A new folder path under the temporary directory (not created).
    func temporaryPath() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-test-\(UUID().uuidString)").path
        folders.append(path)
        return path
    }

    func tempFolder() -> RunFolder { RunFolder(temporaryPath()) }

    override func tearDown() {
        for f in folders { try? FileManager.default.removeItem(atPath: f) }
        folders = []
        super.tearDown()
    }
}
