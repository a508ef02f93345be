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

/// A JSON response.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

/// The web server of `diffuse serve`: AUTOMATIC1111's read-only endpoints so far (the samplers, the models under
/// --models). `running(port)` hears the port once it listens.
public func makeServer(_ options: ServerOptions, running: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
    let router = Router()
    router.get("sdapi/v1/samplers") { _, _ in
        try json(SamplerKind.allCases.map { SamplerEntry(name: $0.webUIName, aliases: [$0.rawValue], options: [:]) })
    }
    router.get("sdapi/v1/sd-models") { _, _ in
        try json(modelFolders(in: options.models).map { ModelEntry(title: $0, model_name: $0, filename: options.models + "/" + $0) })
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
