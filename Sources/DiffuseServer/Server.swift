import DiffuseDiffusion
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

/// The web server of `diffuse serve`: AUTOMATIC1111's read-only endpoints so far (the samplers, the models under
/// --models), and the training runs under --runs with their logs. `running(port)` hears the port once it listens.
public func makeServer(_ options: ServerOptions, running: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
    let router = Router()
    router.get("sdapi/v1/samplers") { _, _ in
        try json(SamplerKind.allCases.map { SamplerEntry(name: $0.webUIName, aliases: [$0.rawValue], options: [:]) })
    }
    router.get("sdapi/v1/sd-models") { _, _ in
        try json(modelFolders(in: options.models).map { ModelEntry(title: $0, model_name: $0, filename: options.models + "/" + $0) })
    }
    router.get("api/runs") { _, _ in
        try json(runFolders(in: options.runs).map { run in
            let log = (try? String(contentsOfFile: options.runs + "/" + run.name + "/log.csv", encoding: .utf8)) ?? ""
            return RunEntry(name: run.name, kind: run.config.kind.rawValue, data: run.config.data, steps: run.config.steps,
                            stepsDone: max(0, log.split(separator: "\n").count - 1), config: run.config)
        })
    }
    // A run by the name the list gives: other names (.., paths, links out) are not runs and are refused.
    router.get("api/runs/:name/log") { _, context in
        let name = context.parameters.get("name") ?? ""
        guard runFolders(in: options.runs).contains(where: { $0.name == name }) else {
            return try json(ErrorBody(error: "no such run", detail: "name: '\(name)' is not a run under the runs folder"),
                            status: .notFound)
        }
        let text = (try? String(contentsOfFile: options.runs + "/" + name + "/log.csv", encoding: .utf8)) ?? ""
        return try json(RunLog(columns: logColumns(text)))
    }
    // Anything else: a JSON 404 naming the path (the router matches the longest known prefix first).
    for unknown in ["**", "sdapi/**", "sdapi/v1/**"] {
        router.get(RouterPath(unknown)) { request, _ in
            try json(ErrorBody(error: "not found", detail: "no endpoint \(request.uri.path)"), status: .notFound)
        }
    }
    return Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port)),
                       onServerRunning: { channel in running(channel.localAddress?.port ?? options.port) })
}
