import ArgumentParser
import DiffuseServer
import Foundation

/// `diffuse serve`: the web page and the HTTP API.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a web page to generate images and watch training, and AUTOMATIC1111's API.",
        discussion: """
        Open http://127.0.0.1:7860 in a browser. The page generates from the training runs under --runs (DDPM, latent \
        diffusion, VAE and GAN runs on images) and the model folders under --models (Stable Diffusion pipelines, \
        diffusers UNet folders), with live progress and a preview of x̂₀; every image joins a gallery (the PNGs under \
        --outputs, each with its `parameters` chunk; a click restores its settings). It shows the runs with their loss \
        curves and sample grids, and starts and stops training runs.

        One job runs at a time (it uses every core); the others wait in line. The JSON API: \
        POST /sdapi/v1/txt2img, GET /sdapi/v1/progress, POST /sdapi/v1/interrupt, GET /sdapi/v1/samplers, \
        GET /sdapi/v1/sd-models (AUTOMATIC1111's shapes); POST /jobs ({"type": "generate", ...} or {"type": "train", \
        "name": ...}), GET /jobs, GET /jobs/ID, GET /jobs/ID/preview, DELETE /jobs/ID; GET /api/models, /api/gallery, \
        /api/runs, /api/runs/NAME/log, /api/runs/NAME/samples. A bad request gets a 4xx with a JSON error naming the \
        field.

        It listens on 127.0.0.1 unless --host says otherwise: whoever reaches it can run models and write files \
        under --outputs and --runs. Ctrl-C stops it.

        Examples:
          diffuse serve --runs runs --models models
          curl -s 127.0.0.1:7860/sdapi/v1/txt2img -d '{"model": "runs/mnist", "steps": 20, "seed": 1}'
        """)

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free one, printed).") var port = 7860
    @Option(help: "The folder of training runs (listed, sampled, and where new runs are trained).") var runs = "runs"
    @Option(help: "The folder of model folders (Stable Diffusion pipelines and diffusers UNet folders).") var models = "models"
    @Option(help: "Where generated images are written.") var outputs = "outputs"
    @Option(help: "A folder of data sets that training runs may use as mnist:NAME, cifar10:NAME or folder:NAME (default: built-in data only).")
    var data: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
    }

    func run() throws {
        var options = ServerOptions()
        (options.host, options.port, options.runs, options.models) = (host, port, runs, models)
        (options.outputs, options.data, options.version) = (outputs, data, Diffuse.version)
        let address = options.host
        let app = try makeServer(options) { port in print("listening on http://\(address):\(port)") }
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
