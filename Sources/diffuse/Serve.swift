import ArgumentParser
import DiffuseServer
import Foundation

/// `diffuse serve`: the web server, in progress (issue 19, part 2): AUTOMATIC1111's read-only endpoints so far.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve Diffuse over HTTP (AUTOMATIC1111's API; in progress).",
        discussion: """
        Listens on --host (127.0.0.1 unless given) and --port and answers GET /sdapi/v1/samplers (the samplers) and \
        GET /sdapi/v1/sd-models (the diffusers folders under --models), in the JSON shapes of AUTOMATIC1111's web UI. \
        Generation, the job queue and the page are not there yet. Ctrl-C stops it.
        """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free one, printed).") var port = 7860
    @Option(help: "The folder of training runs.") var runs = "runs"
    @Option(help: "The folder of model folders (diffusers pipelines and UNet folders).") var models = "models"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
    }

    func run() throws {
        var options = ServerOptions()
        (options.host, options.port, options.runs, options.models) = (host, port, runs, models)
        let address = options.host
        let app = makeServer(options) { port in print("listening on http://\(address):\(port)") }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        Task {
            do { try await app.runService() } catch { failure = error }
            done.signal()
        }
        done.wait()
        if let failure { throw failure }
    }
}
