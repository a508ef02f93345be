import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseTraining
import Foundation
import Hummingbird

/// Where `diffuse serve` listens and what it serves.
public struct ServerOptions: Sendable {
    /// 127.0.0.1 unless asked: the server runs models and writes files for whoever reaches it.
    public var host = "127.0.0.1"
    /// 0: any free port (the one taken is reported).
    public var port = 7860
    /// The folder of training runs, and of model folders (diffusers pipelines and UNet folders).
    public var runs = "runs"
    public var models = "models"
    /// Where generated images are written (the only folder the server writes, besides the runs it trains).
    public var outputs = "outputs"
    /// The folder of data sets a training run may name (mnist:NAME, cifar10:NAME, folder:NAME); nil: built-in data only.
    public var data: String?
    /// Diffuse's version, written in the images' parameters.
    public var version = ""

    public init() {}
}

/// A sampler as AUTOMATIC1111's API lists it (GET /sdapi/v1/samplers).
struct SamplerEntry: Codable {
    let name: String
    let aliases: [String]
    let options: [String: String]
}

/// A model as AUTOMATIC1111's API lists it (GET /sdapi/v1/sd-models): its folder under --models.
struct ModelEntry: Codable {
    let title: String
    let model_name: String
    let filename: String
}

/// A training run under --runs (GET /api/runs): its folder name, configuration and how far it got.
struct RunEntry: Codable {
    let name: String
    let kind: String
    let data: String
    let steps: Int
    let stepsDone: Int
    let config: RunConfig
}

/// A run's log (GET /api/runs/NAME/log): each column of log.csv, by name, as numbers (NaN where empty).
struct RunLog: Codable {
    let columns: [String: [Double?]]
}

/// A JSON error body naming what was wrong.
struct ErrorBody: Codable {
    let error: String
    let detail: String
}

/// The folders directly under `directory` that hold a diffusers model (model_index.json or config.json), by name.
func modelFolders(in directory: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.sorted().filter { name in
        ["model_index.json", "config.json"].contains { FileManager.default.fileExists(atPath: directory + "/" + name + "/" + $0) }
    }
}

/// The runs directly under `directory` (folders with a config.json that `diffuse train` wrote), by name; a link
/// that leads out of `directory` is not one.
func runFolders(in directory: String) -> [(name: String, config: RunConfig)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    let root = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path + "/"
    return names.sorted().compactMap { name in
        let path = directory + "/" + name
        guard URL(fileURLWithPath: path).resolvingSymlinksInPath().path.hasPrefix(root) else { return nil }
        return (try? RunFolder(path).readConfig()).map { (name, $0) }
    }
}

/// log.csv's columns by name; an empty or non-numeric cell is nil.
func logColumns(_ text: String) -> [String: [Double?]] {
    let lines = text.split(separator: "\n")
    guard let header = lines.first?.split(separator: ",", omittingEmptySubsequences: false).map(String.init) else { return [:] }
    var columns = [String: [Double?]](uniqueKeysWithValues: header.map { ($0, []) })
    for line in lines.dropFirst() {
        let cells = line.split(separator: ",", omittingEmptySubsequences: false)
        for (i, name) in header.enumerated() { columns[name]!.append(i < cells.count ? Double(cells[i]) : nil) }
    }
    return columns
}

/// A JSON response.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

/// A file's bytes as a response of that media type.
func bytes(_ data: Data, type: String) -> Response {
    Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// An error answer: its status and a JSON body saying what (`error`) and in detail.
func failure(_ status: HTTPResponse.Status, _ error: String, _ detail: String) -> Response {
    (try? json(ErrorBody(error: error, detail: detail), status: status)) ?? Response(status: status)
}

func notFound(_ what: String) -> Response { failure(.notFound, "not found", what) }

/// The handler's response, or its error as a JSON body: a bad request (400, naming the field), Diffuse's own
/// errors (422: the request was understood but cannot be done), HTTP errors with their status, anything else 500.
func answering(_ handler: () async throws -> Response) async -> Response {
    do {
        return try await handler()
    } catch let error as BadRequest {
        return failure(.badRequest, "bad request: \(error.field)", error.description)
    } catch let error as DiffuseError {
        return failure(.unprocessableContent, "cannot do that", error.description)
    } catch let error as HTTPResponseError {
        return failure(error.status, error.status.reasonPhrase, "\(error)")
    } catch {
        return failure(.internalServerError, "internal error", "\(error)")
    }
}

/// The body of a request (at most 1 MiB).
func body(_ request: Request) async throws -> Data {
    var request = request
    let buffer = try await request.collectBody(upTo: 1 << 20)
    return Data(buffer.readableBytesView)
}

/// A job as `GET /jobs/ID` reports it.
struct JobStatus: Codable {
    let id: Int
    let type: String
    let state: JobState
    /// 0: running; k: k-th in line; nil: finished.
    let position: Int?
    let progress: Double
    let step: Int
    let steps: Int
    let eta: Double?
    let info: String
    /// The generated images, as URLs under /outputs/.
    let images: [String]
    let error: String?

    /// Read with the queue locked.
    init(_ job: Job, queue: JobQueue) {
        (id, type, state, position) = (job.id, job.work.type, job.state, queue.position(job))
        (progress, step, steps, eta, info) = (job.progress, job.step, job.steps, job.eta, job.info)
        (images, error) = (job.images.map { "/outputs/" + $0 }, job.error)
    }
}

/// An image of the gallery: its file, URL and parameters (the chunk's text, and parsed).
struct GalleryEntry: Codable {
    let file: String
    let url: String
    let parameters: String
    let prompt: String
    let negative_prompt: String
    let settings: [String: String]
}

/// AUTOMATIC1111's `GET /sdapi/v1/progress`.
struct ProgressBody: Codable {
    struct State: Codable {
        let interrupted: Bool
        let job: String
        let job_count: Int
        let sampling_step: Int
        let sampling_steps: Int
    }

    let progress: Double
    let eta_relative: Double
    let state: State
    /// The latest x̂₀ preview, base64 PNG.
    let current_image: String?
    let textinfo: String?
}

/// AUTOMATIC1111's `POST /sdapi/v1/txt2img` answer: the images as base64 PNGs, the request, and `info` (a JSON text).
struct Txt2ImgBody: Codable {
    let images: [String]
    let parameters: GenerateRequest
    let info: String
}

struct Txt2ImgInfo: Codable {
    let job: Int
    let infotexts: [String]
    let interrupted: Bool
}

/// The queued job's answer to `POST /jobs`.
struct Submitted: Codable {
    let id: Int
    let state: JobState
    let position: Int?
}

/// A request to `POST /jobs`: its type picks the rest of its fields.
struct JobType: Codable {
    let type: String
}

/// The page's files (index.html, app.js, style.css), beside the program in the package's resource bundle; nil
/// where the program was copied without them.
func pageFolder() -> String? {
    let folder = Bundle.main.bundleURL.appendingPathComponent("Diffuse_DiffuseServer.resources/Page").path
    return FileManager.default.fileExists(atPath: folder + "/index.html") ? folder : nil
}

/// The web server of `diffuse serve`: the page, AUTOMATIC1111's API subset, the job queue, the gallery of generated
/// images, and the training runs under --runs with their logs and sample grids. `running(port)` hears the port once
/// it listens.
public func makeServer(_ options: ServerOptions, running: @escaping @Sendable (Int) -> Void) throws -> some ApplicationProtocol {
    guard let page = pageFolder() else {
        throw DiffuseError.config("the page's files are not beside the program (Diffuse_DiffuseServer.resources in "
                                  + "\(Bundle.main.bundleURL.path)): run the diffuse that `swift build` made, or copy that folder beside it")
    }
    let catalog = Catalog(runs: options.runs, models: options.models)
    let worker = try Worker(catalog: catalog, outputs: options.outputs, data: options.data, version: options.version)
    let queue = JobQueue { job, queue in try worker.run(job, queue: queue) }
    /// A generation request, checked as far as it can be before its model is loaded.
    let generation: @Sendable (Data) throws -> GenerateRequest = { data in
        let r = try decodeBody(GenerateRequest.self, from: data)
        try r.validate()
        try r.validate(for: try catalog.find(r.modelName))
        return r
    }
    let router = Router()

    // The page.
    let pageFiles = ["index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"]
    router.get("/") { _, _ in
        await answering { bytes(try Data(contentsOf: URL(fileURLWithPath: page + "/index.html")), type: pageFiles["index.html"]!) }
    }
    router.get("page/:file") { _, context in
        await answering {
            let file = context.parameters.get("file") ?? ""
            guard let type = pageFiles[file] else { return notFound("no page file \(file)") }
            return bytes(try Data(contentsOf: URL(fileURLWithPath: page + "/" + file)), type: type)
        }
    }

    // AUTOMATIC1111's API.
    router.get("sdapi/v1/samplers") { _, _ in
        try json(SamplerKind.allCases.map { SamplerEntry(name: $0.webUIName, aliases: [$0.rawValue], options: [:]) })
    }
    router.get("sdapi/v1/sd-models") { _, _ in
        try json(catalog.list().map { ModelEntry(title: $0.name, model_name: $0.name, filename: catalog.path($0)) })
    }
    router.post("sdapi/v1/txt2img") { request, _ in
        await answering {
            let r = try generation(try await body(request))
            let job = queue.submit(.generate(r))
            // The job goes on if the client goes away (this wait is cancelled, not the job).
            while !queue.with({ job.isFinished }) { try await Task.sleep(nanoseconds: 50_000_000) }
            let (state, error, names, infotexts) = queue.with { (job.state, job.error, job.images, job.infotexts) }
            if state == .failed { throw DiffuseError.config(error ?? "the generation failed") }
            let images = try names.map { try Data(contentsOf: URL(fileURLWithPath: options.outputs + "/" + $0)).base64EncodedString() }
            let info = Txt2ImgInfo(job: job.id, infotexts: infotexts, interrupted: state == .cancelled)
            return try json(Txt2ImgBody(images: images, parameters: r, info: String(decoding: try JSONEncoder().encode(info), as: UTF8.self)))
        }
    }
    router.get("sdapi/v1/progress") { _, _ in
        await answering {
            try queue.with {
                let waiting = queue.waiting
                guard let job = queue.running else {
                    return try json(ProgressBody(progress: 0, eta_relative: 0,
                                                 state: .init(interrupted: false, job: "", job_count: waiting, sampling_step: 0, sampling_steps: 0),
                                                 current_image: nil, textinfo: nil))
                }
                return try json(ProgressBody(progress: job.progress, eta_relative: job.eta ?? 0,
                                             state: .init(interrupted: job.cancelling, job: "job \(job.id)", job_count: waiting + 1,
                                                          sampling_step: job.step, sampling_steps: job.steps),
                                             current_image: job.preview?.base64EncodedString(), textinfo: job.info))
            }
        }
    }
    router.post("sdapi/v1/interrupt") { _, _ in
        await answering {
            if let job = queue.with({ queue.running }) { _ = queue.cancel(job) }
            return try json([String: String]())
        }
    }

    // The job queue.
    router.post("jobs") { request, _ in
        await answering {
            let data = try await body(request)
            let work: JobWork
            switch try decodeBody(JobType.self, from: data).type {
            case "generate":
                work = .generate(try generation(data))
            case "train":
                let r = try decodeBody(TrainRequest.self, from: data)
                _ = try worker.trainingOptions(r)
                let busy = queue.with { queue.all.contains { !$0.isFinished && $0.work.trainedRun == r.name } }
                try require(!busy, "name", "run \(r.name) is already queued or training")
                work = .train(r)
            case let other: throw BadRequest(field: "type", problem: "must be generate or train, got '\(other)'")
            }
            let job = queue.submit(work)
            return try queue.with { try json(Submitted(id: job.id, state: job.state, position: queue.position(job)), status: .accepted) }
        }
    }
    router.get("jobs") { _, _ in
        await answering { try queue.with { try json(queue.all.map { JobStatus($0, queue: queue) }) } }
    }
    /// The job of the path's id, or a 404 answer.
    @Sendable func withJob(_ context: BasicRequestContext, _ body: (Job) throws -> Response) async -> Response {
        await answering {
            guard let id = context.parameters.get("id").flatMap(Int.init), let job = queue.job(id) else {
                return notFound("no job \(context.parameters.get("id") ?? "")")
            }
            return try body(job)
        }
    }
    router.get("jobs/:id") { _, context in
        await withJob(context) { job in try queue.with { try json(JobStatus(job, queue: queue)) } }
    }
    router.get("jobs/:id/preview") { _, context in
        await withJob(context) { job in
            guard let preview = queue.with({ job.preview }) else { return notFound("job \(job.id) has no preview now") }
            return bytes(preview, type: "image/png")
        }
    }
    router.delete("jobs/:id") { _, context in
        await withJob(context) { job in
            guard queue.cancel(job) else {
                return failure(.conflict, "already finished", "job \(job.id) has finished")
            }
            return try queue.with { try json(JobStatus(job, queue: queue)) }
        }
    }

    // The models, the gallery of generated images.
    router.get("api/models") { _, _ in try json(catalog.list()) }
    router.get("api/gallery") { _, _ in
        await answering {
            try json(galleryFiles(in: options.outputs).reversed().prefix(500).map { file in
                let text = (try? PNG.text(options.outputs + "/" + file).first { $0.keyword == "parameters" }?.text) ?? nil
                let parameters = GenerationParameters(parsing: text ?? "")
                return GalleryEntry(file: file, url: "/outputs/" + file, parameters: text ?? "", prompt: parameters.prompt,
                                    negative_prompt: parameters.negativePrompt,
                                    settings: Dictionary(parameters.settings.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))
            })
        }
    }
    router.get("outputs/:file") { _, context in
        await answering {
            let file = context.parameters.get("file") ?? ""
            guard galleryFiles(in: options.outputs).contains(file) else { return notFound("no image \(file)") }
            return bytes(try Data(contentsOf: URL(fileURLWithPath: options.outputs + "/" + file)), type: "image/png")
        }
    }

    // The training runs.
    router.get("api/runs") { _, _ in
        try json(runFolders(in: options.runs).map { run in
            let log = (try? String(contentsOfFile: options.runs + "/" + run.name + "/log.csv", encoding: .utf8)) ?? ""
            return RunEntry(name: run.name, kind: run.config.kind.rawValue, data: run.config.data, steps: run.config.steps,
                            stepsDone: max(0, log.split(separator: "\n").count - 1), config: run.config)
        })
    }
    /// A run by the name the list gives: other names (.., paths, links out) are not runs and are refused.
    @Sendable func withRun(_ context: BasicRequestContext, _ body: (RunFolder) throws -> Response) async -> Response {
        await answering {
            let name = context.parameters.get("name") ?? ""
            guard runFolders(in: options.runs).contains(where: { $0.name == name }) else {
                return failure(.notFound, "no such run", "name: '\(name)' is not a run under the runs folder")
            }
            return try body(RunFolder(options.runs + "/" + name))
        }
    }
    router.get("api/runs/:name/log") { _, context in
        await withRun(context) { run in
            try json(RunLog(columns: logColumns((try? String(contentsOfFile: run.log, encoding: .utf8)) ?? "")))
        }
    }
    router.get("api/runs/:name/samples") { _, context in
        await withRun(context) { run in try json(sampleGrids(in: run)) }
    }
    router.get("api/runs/:name/samples/:file") { _, context in
        await withRun(context) { run in
            let file = context.parameters.get("file") ?? ""
            guard sampleGrids(in: run).contains(file) else { return notFound("no sample grid \(file)") }
            return bytes(try Data(contentsOf: URL(fileURLWithPath: run.samples + "/" + file)), type: "image/png")
        }
    }

    // Anything else: a JSON 404 naming the path (the router matches the longest known prefix first).
    for unknown in ["**", "sdapi/**", "sdapi/v1/**", "api/**", "jobs/**"] {
        for method in [HTTPRequest.Method.get, .post, .delete] {
            router.on(RouterPath(unknown), method: method) { request, _ in
                notFound("no endpoint \(request.method) \(request.uri.path)")
            }
        }
    }
    return Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port)),
                       onServerRunning: { channel in running(channel.localAddress?.port ?? options.port) })
}

/// A run's sample grids (samples/step-N.png), in step order.
func sampleGrids(in run: RunFolder) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: run.samples)) ?? []
    return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".png") && TrainRequest.isRunName($0) }
        .sorted { (Int($0.dropFirst(5).dropLast(4)) ?? 0) < (Int($1.dropFirst(5).dropLast(4)) ?? 0) }
}
