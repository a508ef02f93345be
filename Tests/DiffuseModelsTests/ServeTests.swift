import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// `diffuse serve` over HTTP on loopback: a real server started from the built program (on a free port) and stopped
/// with SIGINT.
final class ServeTests: XCTestCase {
    /// GET `path`: the status and the body.
    private func get(_ port: Int, _ path: String) throws -> (Int, Data) {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: (Int, Data)?
        URLSession.shared.dataTask(with: URL(string: "http://127.0.0.1:\(port)\(path)")!) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data())
            done.signal()
        }.resume()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, path)
        return try XCTUnwrap(result)
    }

    func testReadOnlyEndpoints() throws {
        let program = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("diffuse")
        guard FileManager.default.isExecutableFile(atPath: program.path) else { throw XCTSkip("no diffuse program beside the tests") }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(getpid())")
        defer { try? FileManager.default.removeItem(at: base) }
        let models = base.appendingPathComponent("models")
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pipelines/eps-linear")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixture, to: models.appendingPathComponent("eps-linear"))

        // A run under --runs, and a link to a run outside it (not served).
        let runs = base.appendingPathComponent("runs"), outside = base.appendingPathComponent("outside")
        for folder in [runs.appendingPathComponent("roll").path, outside.path] {
            let trained = try diffuse(["train", "--data", "swiss-roll", "--examples", "200", "--steps", "3", "--sample-every", "0",
                                       "--out", folder])
            XCTAssertEqual(trained.status, 0, trained.errors)
        }
        try FileManager.default.createSymbolicLink(at: runs.appendingPathComponent("link"), withDestinationURL: outside)

        let server = Process()
        server.executableURL = program
        server.arguments = ["serve", "--port", "0", "--models", models.path, "--runs", runs.path]
        let out = Pipe()
        server.standardOutput = out
        try server.run()
        defer { if server.isRunning { server.interrupt(); server.waitUntilExit() } }
        // The port, from "listening on http://127.0.0.1:PORT".
        var printed = ""
        while !printed.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            printed += String(decoding: chunk, as: UTF8.self)
        }
        let port = try XCTUnwrap(Int(printed.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""), printed)

        let (status, body) = try get(port, "/sdapi/v1/sd-models")
        XCTAssertEqual(status, 200)
        let listed = try XCTUnwrap(JSONSerialization.jsonObject(with: body) as? [[String: String]])
        XCTAssertEqual(listed.map { $0["model_name"] }, ["eps-linear"])
        let (_, samplers) = try get(port, "/sdapi/v1/samplers")
        let names = try XCTUnwrap(JSONSerialization.jsonObject(with: samplers) as? [[String: Any]]).compactMap { $0["name"] as? String }
        XCTAssertTrue(names.contains("DPM++ 2M") && names.contains("Euler a"), "\(names)")
        let (missing, error) = try get(port, "/sdapi/v1/nothing")
        XCTAssertEqual(missing, 404)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: error) as? [String: String])?["detail"], "no endpoint /sdapi/v1/nothing")

        let (_, listedRuns) = try get(port, "/api/runs")
        let runList = try XCTUnwrap(JSONSerialization.jsonObject(with: listedRuns) as? [[String: Any]])
        XCTAssertEqual(runList.compactMap { $0["name"] as? String }, ["roll"])
        XCTAssertEqual(runList.first?["stepsDone"] as? Int, 3)
        let (logStatus, log) = try get(port, "/api/runs/roll/log")
        XCTAssertEqual(logStatus, 200)
        let columns = try XCTUnwrap((try JSONSerialization.jsonObject(with: log) as? [String: Any])?["columns"] as? [String: [Any]])
        XCTAssertEqual(columns["loss"]?.count, 3)
        for refused in ["/api/runs/link/log", "/api/runs/..%2Foutside/log", "/api/runs/nope/log"] {
            let (status, body) = try get(port, refused)
            XCTAssertEqual(status, 404, refused)
            XCTAssertNotNil((try? JSONSerialization.jsonObject(with: body) as? [String: String])?["detail"], refused)
        }

        server.interrupt()
        server.waitUntilExit()
        XCTAssertFalse(server.isRunning)
    }
}
