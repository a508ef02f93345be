import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// A `diffuse serve` started from the built program on a free loopback port, stopped with SIGINT.
private final class Server {
    let process = Process()
    let port: Int

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: try diffuseProgram())
        process.arguments = ["serve", "--port", "0"] + arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // The port, from "listening on http://127.0.0.1:PORT".
        var printed = ""
        while !printed.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            printed += String(decoding: chunk, as: UTF8.self)
        }
        port = try XCTUnwrap(Int(printed.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""), printed)
    }

    deinit { stop() }

    func stop() {
        if process.isRunning {
            process.interrupt()
            process.waitUntilExit()
        }
    }

    /// The status and body of a request (a JSON `body` is sent as such).
    func request(_ method: String = "GET", _ path: String, body: Any? = nil, raw: String? = nil) throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!, timeoutInterval: 120)
        request.httpMethod = method
        if let body { request.httpBody = try JSONSerialization.data(withJSONObject: body) }
        if let raw { request.httpBody = Data(raw.utf8) }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: (Int, Data)?
        URLSession.shared.dataTask(with: request) { data, response, _ in
            result = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data())
            done.signal()
        }.resume()
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success, path)
        return try XCTUnwrap(result)
    }

    /// The JSON object of a request's answer, and its status.
    func object(_ method: String = "GET", _ path: String, body: Any? = nil, raw: String? = nil) throws -> (Int, [String: Any]) {
        let (status, data) = try request(method, path, body: body, raw: raw)
        return (status, try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any], String(decoding: data, as: UTF8.self)))
    }

    /// Polls a job until it has finished; its last status.
    func finished(_ id: Int, within seconds: Double = 120) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let (_, job) = try object("GET", "/jobs/\(id)")
            if ["done", "failed", "cancelled"].contains(job["state"] as? String) { return job }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("job \(id) did not finish in \(seconds) s")
        return [:]
    }
}

/// `diffuse serve` over HTTP on loopback: a real server started from the built program, on tiny runs.
final class ServeTests: FolderTestCase {
    /// A tiny DDPM run on 16×16 shapes under runs/NAME.
    private func tinyRun(_ name: String, steps: Int = 20, examples: Int = 200, extra: [String] = []) throws {
        let trained = try diffuse(["train", "--data", "shapes", "--preset", "tiny", "--image-size", "16", "--examples", "\(examples)",
                                   "--steps", "\(steps)", "--sample-every", "10", "--out", path("runs/" + name)] + extra)
        XCTAssertEqual(trained.status, 0, trained.errors)
    }

    func testReadOnlyEndpoints() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pipelines/eps-linear")
        try FileManager.default.createDirectory(atPath: path("models"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path("models/eps-linear"))
        // A run under --runs, and a link to a run outside it (not served).
        for path in [path("runs/roll"), path("outside")] {
            let trained = try diffuse(["train", "--data", "swiss-roll", "--examples", "200", "--steps", "3", "--sample-every", "0",
                                       "--out", path])
            XCTAssertEqual(trained.status, 0, trained.errors)
        }
        try FileManager.default.createSymbolicLink(atPath: path("runs/link"), withDestinationPath: path("outside"))
        let server = try Server(["--models", path("models"), "--runs", path("runs"), "--outputs", path("outputs")])

        let (status, body) = try server.request("GET", "/sdapi/v1/sd-models")
        XCTAssertEqual(status, 200)
        let listed = try XCTUnwrap(JSONSerialization.jsonObject(with: body) as? [[String: String]])
        // 2D runs generate points, not images: only the model folder is listed.
        XCTAssertEqual(listed.map { $0["model_name"] }, ["models/eps-linear"])
        let (_, samplers) = try server.request("GET", "/sdapi/v1/samplers")
        let names = try XCTUnwrap(JSONSerialization.jsonObject(with: samplers) as? [[String: Any]]).compactMap { $0["name"] as? String }
        XCTAssertTrue(names.contains("DPM++ 2M") && names.contains("Euler a"), "\(names)")
        let (missing, error) = try server.object("GET", "/sdapi/v1/nothing")
        XCTAssertEqual(missing, 404)
        XCTAssertEqual(error["detail"] as? String, "no endpoint GET /sdapi/v1/nothing")

        let (_, listedRuns) = try server.request("GET", "/api/runs")
        let runList = try XCTUnwrap(JSONSerialization.jsonObject(with: listedRuns) as? [[String: Any]])
        XCTAssertEqual(runList.compactMap { $0["name"] as? String }, ["roll"])
        XCTAssertEqual(runList.first?["stepsDone"] as? Int, 3)
        let (logStatus, log) = try server.object("GET", "/api/runs/roll/log")
        XCTAssertEqual(logStatus, 200)
        XCTAssertEqual((log["columns"] as? [String: [Any]])?["loss"]?.count, 3)
        for refused in ["/api/runs/link/log", "/api/runs/..%2Foutside/log", "/api/runs/nope/log", "/api/runs/roll/samples/..%2Fconfig.json",
                        "/outputs/..%2Fruns%2Froll%2Fconfig.json", "/page/..%2F..%2Fdiffuse"] {
            let (status, body) = try server.object("GET", refused)
            XCTAssertEqual(status, 404, refused)
            XCTAssertNotNil(body["detail"], refused)
        }
        let (page, html) = try server.request("GET", "/")
        XCTAssertEqual(page, 200)
        XCTAssertTrue(String(decoding: html, as: UTF8.self).contains("/page/app.js"))
        server.stop()
        XCTAssertFalse(server.process.isRunning)
    }

    /// txt2img, the job queue (order, positions, cancelling), interrupting a running generation, the gallery, and
    /// bad requests: a 4xx naming the field, the server still up after each.
    func testGenerationQueueAndErrors() throws {
        try tinyRun("tiny")
        let server = try Server(["--runs", path("runs"), "--models", path("models"), "--outputs", path("outputs")])

        // A1111's txt2img: base64 PNGs carrying their parameters.
        let (status, made) = try server.object("POST", "/sdapi/v1/txt2img",
                                               body: ["model": "runs/tiny", "steps": 5, "seed": 3, "batch_size": 4, "sampler_name": "DDIM"])
        XCTAssertEqual(status, 200, "\(made)")
        let images = try XCTUnwrap(made["images"] as? [String])
        XCTAssertEqual(images.count, 1)
        let png = try XCTUnwrap(Data(base64Encoded: images[0]))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(made["info"] as? String).utf8)) as? [String: Any])
        XCTAssertEqual((info["infotexts"] as? [String])?.first?.hasPrefix("Steps: 5, Sampler: DDIM, Seed: 3, Size: 16x16, Model: tiny"), true)
        // The same request again: the same image (the seed fixes it).
        let (_, again) = try server.object("POST", "/sdapi/v1/txt2img",
                                           body: ["model": "tiny", "steps": 5, "seed": 3, "batch_size": 4, "sampler_name": "DDIM"])
        XCTAssertEqual(again["images"] as? [String], images)

        // The queue: a long job runs, three wait in order; one cancelled while waiting, the running one interrupted.
        let long: [String: Any] = ["type": "generate", "model": "runs/tiny", "steps": 1000, "sampler_name": "DDPM", "batch_size": 16]
        var ids: [Int] = []
        for request in [long, long, ["type": "generate", "model": "runs/tiny", "steps": 3, "seed": 1], long] {
            let (status, job) = try server.object("POST", "/jobs", body: request)
            XCTAssertEqual(status, 202, "\(job)")
            ids.append(try XCTUnwrap(job["id"] as? Int))
        }
        var running = try server.object("GET", "/jobs/\(ids[0])").1
        while running["state"] as? String == "queued" { running = try server.object("GET", "/jobs/\(ids[0])").1 }
        XCTAssertEqual(running["position"] as? Int, 0)
        XCTAssertEqual(try ids.dropFirst().map { try server.object("GET", "/jobs/\($0)").1["position"] as? Int }, [1, 2, 3])
        let (cancelled, _) = try server.object("DELETE", "/jobs/\(ids[1])")
        XCTAssertEqual(cancelled, 200)
        XCTAssertEqual(try server.object("GET", "/jobs/\(ids[1])").1["state"] as? String, "cancelled")
        XCTAssertEqual(try server.object("GET", "/jobs/\(ids[2])").1["position"] as? Int, 1)
        // Progress in A1111's shape, then a preview of x̂₀ once some steps are done.
        var progress = try server.object("GET", "/sdapi/v1/progress").1
        let deadline = Date().addingTimeInterval(60)
        while (progress["current_image"] as? String) == nil && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            progress = try server.object("GET", "/sdapi/v1/progress").1
        }
        let preview = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(progress["current_image"] as? String, "\(progress)")))
        XCTAssertEqual(Array(preview.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        XCTAssertEqual((progress["state"] as? [String: Any])?["job_count"] as? Int, 3)
        XCTAssertGreaterThan(progress["progress"] as? Double ?? 0, 0)
        let (previewStatus, previewPNG) = try server.request("GET", "/jobs/\(ids[0])/preview")
        XCTAssertEqual(previewStatus, 200)
        XCTAssertEqual(Array(previewPNG.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        let interruptedAt = Date()
        XCTAssertEqual(try server.object("POST", "/sdapi/v1/interrupt").0, 200)
        let first = try server.finished(ids[0])
        XCTAssertEqual(first["state"] as? String, "cancelled")
        XCTAssertLessThan(Date().timeIntervalSince(interruptedAt), 10, "a stopped sampler runs out its steps without the network")
        XCTAssertEqual(first["images"] as? [String], [])
        let third = try server.finished(ids[2])
        XCTAssertEqual(third["state"] as? String, "done")
        XCTAssertEqual((third["images"] as? [String])?.count, 1)
        XCTAssertEqual(try server.object("DELETE", "/jobs/\(ids[3])").0, 200)
        XCTAssertEqual(try server.finished(ids[3])["state"] as? String, "cancelled")
        XCTAssertEqual(try server.object("DELETE", "/jobs/\(ids[3])").0, 409)

        // The gallery: the three images made, newest first, each with its parameters; nothing else was written.
        let (_, galleryData) = try server.request("GET", "/api/gallery")
        let gallery = try XCTUnwrap(JSONSerialization.jsonObject(with: galleryData) as? [[String: Any]])
        XCTAssertEqual(gallery.count, 3)
        XCTAssertEqual((gallery.last?["settings"] as? [String: String])?["Seed"], "3")
        XCTAssertEqual((gallery.first?["settings"] as? [String: String])?["Steps"], "3")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("outputs")).count, 3)
        let (imageStatus, image) = try server.request("GET", try XCTUnwrap(gallery.first?["url"] as? String))
        XCTAssertEqual(imageStatus, 200)
        XCTAssertEqual(Array(image.prefix(4)), [0x89, 0x50, 0x4E, 0x47])

        // Bad requests: 400 naming the field (or 404 for what is not there).
        let bad: [(String, String, String?, Any?, Int, String)] = [
            ("POST", "/sdapi/v1/txt2img", "not json", nil, 400, "body"),
            ("POST", "/sdapi/v1/txt2img", nil, ["steps": "many"], 400, "steps"),
            ("POST", "/sdapi/v1/txt2img", nil, ["steps": 0], 400, "steps"),
            ("POST", "/sdapi/v1/txt2img", nil, ["cfg_scale": -1], 400, "cfg_scale"),
            ("POST", "/sdapi/v1/txt2img", nil, ["sampler_name": "Magic"], 400, "sampler_name"),
            ("POST", "/sdapi/v1/txt2img", nil, ["model": "../runs/tiny"], 400, "model"),
            ("POST", "/sdapi/v1/txt2img", nil, ["model": "runs/tiny", "prompt": "a cat"], 400, "prompt"),
            ("POST", "/sdapi/v1/txt2img", nil, ["model": "runs/tiny", "class": 2], 400, "class"),
            ("POST", "/sdapi/v1/txt2img", nil, ["model": "runs/tiny", "width": 64], 400, "width"),
            ("POST", "/sdapi/v1/txt2img", nil, ["batch_size": 64, "n_iter": 2], 400, "n_iter"),
            ("POST", "/sdapi/v1/txt2img", nil, [1, 2], 400, "body"),
            ("POST", "/jobs", nil, ["type": "paint"], 400, "type"),
            ("POST", "/jobs", nil, ["model": "runs/tiny"], 400, "type"),
            ("POST", "/jobs", nil, ["type": "train", "name": "../escape"], 400, "name"),
            ("POST", "/jobs", nil, ["type": "train", "name": "x", "data": "mnist:/etc"], 400, "data"),
            ("POST", "/jobs", nil, ["type": "train", "name": "x", "data": "/etc/passwd"], 400, "data"),
            ("POST", "/jobs", nil, ["type": "train", "name": "x", "steps": -5], 400, "steps"),
            ("POST", "/jobs", nil, ["type": "train", "name": "x", "model": "diffusion"], 400, "model"),
            ("POST", "/jobs", nil, ["type": "train", "name": "x", "model": "latent-diffusion", "autoencoder": "tiny"], 400, "autoencoder"),
            ("GET", "/jobs/12345", nil, nil, 404, ""),
            ("DELETE", "/jobs/abc", nil, nil, 404, ""),
        ]
        for (method, path, raw, body, expected, field) in bad {
            let (status, answer) = try server.object(method, path, body: body, raw: raw)
            XCTAssertEqual(status, expected, "\(path) \(String(describing: body ?? raw as Any)): \(answer)")
            if !field.isEmpty { XCTAssertEqual(answer["error"] as? String, "bad request: \(field)", "\(answer)") }
        }
        XCTAssertEqual(try server.object("GET", "/jobs/\(ids[2])").0, 200, "the server is still up")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("runs/x")))
    }

    /// A Stable Diffusion pipeline (the tiny SD 1.x fixture) gives the image `diffuse generate` gives, byte for byte;
    /// a GAN run generates in one evaluation (and refuses sampler settings); a client that goes away mid-request
    /// leaves the server and the job going.
    func testStableDiffusionAndOneStepModels() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sd/sd1")
        try FileManager.default.createDirectory(atPath: path("models"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path("models/sd1"))
        let gan = try diffuse(["train", "--model", "gan", "--data", "shapes", "--image-size", "16", "--examples", "64", "--batch-size", "8",
                               "--steps", "2", "--sample-every", "0", "--out", path("runs/gan")])
        XCTAssertEqual(gan.status, 0, gan.errors)
        let server = try Server(["--runs", path("runs"), "--models", path("models"), "--outputs", path("outputs")])
        let (_, modelsData) = try server.request("GET", "/api/models")
        let models = try XCTUnwrap(JSONSerialization.jsonObject(with: modelsData) as? [[String: Any]])
        XCTAssertEqual(models.map { $0["name"] as? String }, ["runs/gan", "models/sd1"])
        XCTAssertEqual(models.map { $0["kind"] as? String }, ["gan", "stable-diffusion"])

        // No model named: the Stable Diffusion pipeline.
        let (status, made) = try server.object("POST", "/sdapi/v1/txt2img",
                                               body: ["prompt": "a red square", "negative_prompt": "blue", "steps": 4, "seed": 5,
                                                      "sampler_name": "Euler a"])
        XCTAssertEqual(status, 200, "\(made)")
        let png = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap((made["images"] as? [String])?.first)))
        let cli = path("cli.png")
        let generated = try diffuse(["generate", "--model", path("models/sd1"), "--prompt", "a red square", "--negative-prompt", "blue",
                                     "--steps", "4", "--seed", "5", "--sampler", "euler-ancestral", "--out", cli])
        XCTAssertEqual(generated.status, 0, generated.errors)
        XCTAssertEqual(png, try Data(contentsOf: URL(fileURLWithPath: cli)), "the server's image is diffuse generate's")
        XCTAssertEqual(try server.object("POST", "/sdapi/v1/txt2img", body: ["model": "sd1", "class": 1]).1["error"] as? String,
                       "bad request: class")

        let (ganStatus, ganMade) = try server.object("POST", "/sdapi/v1/txt2img", body: ["model": "runs/gan", "batch_size": 4, "seed": 1])
        XCTAssertEqual(ganStatus, 200, "\(ganMade)")
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(ganMade["info"] as? String).utf8)) as? [String: Any])
        XCTAssertEqual((info["infotexts"] as? [String])?.first?.hasPrefix("Steps: 1, Sampler: one network evaluation, Seed: 1"), true)
        for (field, value) in [("steps", 10 as Any), ("sampler_name", "DDIM")] {
            XCTAssertEqual(try server.object("POST", "/sdapi/v1/txt2img", body: ["model": "runs/gan", field: value]).1["error"] as? String,
                           "bad request: \(field)")
        }

        // A client that hangs up while its generation runs: the job still ends, the server still answers.
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(server.port)/sdapi/v1/txt2img")!)
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: ["prompt": "a cat", "steps": 20, "seed": 9])
        let task = URLSession.shared.dataTask(with: request) { _, _, _ in }
        task.resume()
        var running: Int?
        let deadline = Date().addingTimeInterval(30)
        while running == nil && Date() < deadline {
            let jobs = try XCTUnwrap(JSONSerialization.jsonObject(with: try server.request("GET", "/jobs").1) as? [[String: Any]])
            running = jobs.first { $0["state"] as? String == "running" }?["id"] as? Int
        }
        task.cancel()
        XCTAssertEqual(try server.finished(try XCTUnwrap(running))["state"] as? String, "done")
        XCTAssertEqual(try server.object("GET", "/sdapi/v1/progress").0, 200)
    }

    /// Training from the API: a run started, its progress, stopped while running (a checkpoint first), resumed to
    /// its end; its log and sample grids served.
    func testTrainingJobs() throws {
        let server = try Server(["--runs", path("runs"), "--outputs", path("outputs")])
        let request: [String: Any] = ["type": "train", "name": "shapes", "preset": "tiny", "image_size": 16, "examples": 100,
                                      "steps": 2000, "sample_every": 0, "checkpoint_every": 0]
        let (status, job) = try server.object("POST", "/jobs", body: request)
        XCTAssertEqual(status, 202, "\(job)")
        let id = try XCTUnwrap(job["id"] as? Int)
        XCTAssertEqual(try server.object("POST", "/jobs", body: request).1["error"] as? String, "bad request: name", "one job per run")
        var running = try server.object("GET", "/jobs/\(id)").1
        while (running["step"] as? Int ?? 0) < 5 {
            Thread.sleep(forTimeInterval: 0.05)
            running = try server.object("GET", "/jobs/\(id)").1
        }
        XCTAssertEqual(running["steps"] as? Int, 2000)
        XCTAssertNotNil(running["eta"] as? Double)
        XCTAssertEqual(try server.object("DELETE", "/jobs/\(id)").0, 200)
        let stopped = try server.finished(id)
        XCTAssertEqual(stopped["state"] as? String, "cancelled")
        let stepsDone = try XCTUnwrap(stopped["step"] as? Int)
        XCTAssertLessThan(stepsDone, 2000)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("runs/shapes/checkpoint.safetensors")), "stopping writes a checkpoint")

        // Resumed up to a few more steps than were done, with a sample grid at the end.
        var resume = request
        resume["steps"] = stepsDone + 3
        let again = try XCTUnwrap(try server.object("POST", "/jobs", body: resume).1["id"] as? Int)
        let done = try server.finished(again)
        XCTAssertEqual(done["state"] as? String, "done", "\(done)")
        XCTAssertEqual(done["step"] as? Int, stepsDone + 3)
        let (_, log) = try server.object("GET", "/api/runs/shapes/log")
        XCTAssertEqual((log["columns"] as? [String: [Any]])?["step"]?.count, stepsDone + 3)
        let (_, gridsData) = try server.request("GET", "/api/runs/shapes/samples")
        let grids = try XCTUnwrap(JSONSerialization.jsonObject(with: gridsData) as? [String])
        XCTAssertEqual(grids.last, String(format: "step-%06d.png", stepsDone + 3))
        XCTAssertEqual(try server.request("GET", "/api/runs/shapes/samples/" + grids.last!).0, 200)
        let (_, models) = try server.request("GET", "/api/models")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: models) as? [[String: Any]])?.first?["name"] as? String, "runs/shapes")
    }

    /// scripts/serve_load.py, shortened: status requests at 100 a second beside a generation for 3 s, 1,000
    /// malformed requests, 50 jobs with every other one cancelled; no answer lost, every malformed one a 4xx, the
    /// queue's order kept, the server up.
    func testUnderLoad() throws {
        let (status, text) = try runProgram("python3", [repositoryRoot.appendingPathComponent("scripts/serve_load.py").path,
                                                        "--diffuse", try diffuseProgram(), "--seconds", "3"])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("queue: 50 jobs, 25 done, 25 cancelled, 0 failed, 0 unfinished; done in the order queued: True"), text)
    }

    /// The page in a real browser (Debian's chromium, headless, driven by Playwright: Tests/Page/page_test.py):
    /// generate from a run, see the image join the gallery, restore its settings; the Training tab shows the run.
    /// Screenshots go to DIFFUSE_SCREENSHOTS if set (the README's come from there, with DIFFUSE_PAGE_STEPS=3000).
    func testPageInBrowser() throws {
        let packages = repositoryRoot.appendingPathComponent(".build/page-test").path
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard FileManager.default.fileExists(atPath: packages + "/playwright"), let chromium else {
            throw XCTSkip("the page test needs Debian's chromium and Playwright in .build/page-test (scripts/test.sh installs both)")
        }
        // DIFFUSE_PAGE_STEPS trains longer, for pictures worth showing (the README's: 3000).
        let steps = ProcessInfo.processInfo.environment["DIFFUSE_PAGE_STEPS"].flatMap(Int.init) ?? 300
        try tinyRun("shapes", steps: steps, examples: 2000, extra: ["--sample-every", "\(steps / 4)", "--prediction", "sample"])
        let server = try Server(["--runs", path("runs"), "--outputs", path("outputs")])
        let shots = ProcessInfo.processInfo.environment["DIFFUSE_SCREENSHOTS"] ?? path("screenshots")
        let (status, printed) = try runProgram("python3", [repositoryRoot.appendingPathComponent("Tests/Page/page_test.py").path, "--url",
                                                           "http://127.0.0.1:\(server.port)", "--model", "runs/shapes",
                                                           "--chromium", chromium, "--screenshots", shots],
                                               environment: ["PYTHONPATH": packages])
        XCTAssertEqual(status, 0, printed)
        XCTAssertTrue(FileManager.default.fileExists(atPath: shots + "/generate.png"))
    }
}
