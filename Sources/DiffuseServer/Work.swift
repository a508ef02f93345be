import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// A model the server generates from, as its API names it: "runs/NAME" (a training run) or "models/NAME" (a diffusers
/// folder: a Stable Diffusion pipeline, or a UNet2DModel folder).
struct ModelInfo: Codable, Sendable {
    let name: String
    /// ddpm, latent-diffusion, vae, gan (runs); stable-diffusion or diffusers (model folders).
    let kind: String
    /// Whether it reads a prompt (Stable Diffusion).
    let prompt: Bool
    /// The number of classes of a class-conditional run.
    let classes: Int?
    /// Whether classifier-free guidance applies (a prompt, or a run trained with label dropout).
    let guidable: Bool
    /// Whether it runs a sampler (diffusion), so that the sampler and steps apply.
    let diffusion: Bool
    /// Image width × height.
    let size: String?
}

/// The models under the server's folders, found anew at each request (runs appear as they are trained).
struct Catalog: Sendable {
    let runs: String
    let models: String

    /// Every model, runs first, each list by name.
    func list() -> [ModelInfo] {
        let runModels = runFolders(in: runs).compactMap { run -> ModelInfo? in
            let c = run.config
            guard c.kind != .classifier, c.exampleShape.count == 3 || c.exampleShape.isEmpty else { return nil }
            let side = c.exampleShape.count == 3 ? ImageSize(width: c.exampleShape[2], height: c.exampleShape[1]).description : nil
            return ModelInfo(name: "runs/" + run.name, kind: c.kind.rawValue, prompt: false, classes: c.classes,
                             guidable: (c.labelDropout ?? 0) > 0 && c.classes != nil,
                             diffusion: c.kind == .ddpm || c.kind == .latentDiffusion, size: side)
        }
        let folderModels = modelFolders(in: models).map { name -> ModelInfo in
            let sd = StableDiffusion.isPipeline(models + "/" + name)
            return ModelInfo(name: "models/" + name, kind: sd ? "stable-diffusion" : "diffusers", prompt: sd, classes: nil,
                             guidable: sd, diffusion: true, size: nil)
        }
        return runModels + folderModels
    }

    /// The model of that name, or a `BadRequest` on `field`; with no name, the first Stable Diffusion pipeline, else
    /// the first model.
    func find(_ name: String?, field: String = "model") throws -> ModelInfo {
        let all = list()
        guard let name, !name.isEmpty else {
            guard let first = all.first(where: \.prompt) ?? all.first else {
                throw BadRequest(field: field, problem: "there is no model to generate with: train a run, or put a model folder under the models folder")
            }
            return first
        }
        // A1111 clients name a checkpoint by its bare name.
        guard let model = all.first(where: { $0.name == name }) ?? all.first(where: { $0.name.hasSuffix("/" + name) }) else {
            throw BadRequest(field: field, problem: "'\(name)' is not one of the models (GET /api/models): "
                             + all.map(\.name).joined(separator: ", "))
        }
        return model
    }

    /// The folder of a listed model.
    func path(_ model: ModelInfo) -> String {
        model.name.hasPrefix("runs/") ? runs + "/" + model.name.dropFirst(5) : models + "/" + model.name.dropFirst(7)
    }
}

/// A model loaded for generation.
enum LoadedModel {
    case sampled(SampleModel)
    case stableDiffusion(StableDiffusion)
}

/// What the jobs do: generations written under the output folder, and training runs under the runs folder. Runs on
/// the queue's worker thread only, so the one model it keeps loaded (the last used, reloaded when its files change)
/// needs no lock.
final class Worker: @unchecked Sendable {
    let catalog: Catalog
    let outputs: String
    /// Diffuse's version, for the images' parameters.
    let version: String
    /// Where `mnist:NAME`, `cifar10:NAME` and `folder:NAME` data are looked up (nil: built-in data only).
    let data: String?
    private var loaded: (key: String, model: LoadedModel)?
    private var written: Int

    init(catalog: Catalog, outputs: String, data: String?, version: String) throws {
        (self.catalog, self.outputs, self.data, self.version) = (catalog, outputs, data, version)
        try FileManager.default.createDirectory(atPath: outputs, withIntermediateDirectories: true)
        written = galleryFiles(in: outputs).compactMap { Int($0.prefix(5)) }.max() ?? 0
    }

    /// Does a job's work, reporting through `queue`.
    func run(_ job: Job, queue: JobQueue) throws {
        switch job.work {
        case .generate(let request): try generate(request, job: job, queue: queue)
        case .train(let request): try train(request, job: job, queue: queue)
        }
    }

    // MARK: Generation

    private func load(_ model: ModelInfo) throws -> LoadedModel {
        let path = catalog.path(model)
        let stamp = ["checkpoint.safetensors", "config.json", "model_index.json", "unet/config.json"].compactMap {
            (try? FileManager.default.attributesOfItem(atPath: path + "/" + $0)[.modificationDate] as? Date)?.timeIntervalSince1970
        }
        let key = model.name + "@" + stamp.map { String($0) }.joined(separator: ",")
        if let loaded, loaded.key == key { return loaded.model }
        loaded = nil
        let made: LoadedModel
        switch model.kind {
        case "stable-diffusion": made = .stableDiffusion(try StableDiffusion(path: path))
        case "diffusers": made = .sampled(try SampleModel(diffusers: path))
        default: made = .sampled(try SampleModel(run: path))
        }
        loaded = (key, made)
        return made
    }

    private func generate(_ r: GenerateRequest, job: Job, queue: JobQueue) throws {
        let info = try catalog.find(r.modelName)
        queue.with { job.info = "loading \(info.name)" }
        let model = try load(info)
        let seed = r.seed.flatMap { $0 >= 0 ? UInt64($0) : nil } ?? UInt64.random(in: 0..<(1 << 32))
        let sampler = try r.sampler()
        let watch = EstimateWatch()
        // x̂₀ of the first image (of the batch, or of the one in progress), `previews` times in all (decoding is not
        // free: four times an image for Stable Diffusion).
        var previews = 10, shown = 0
        let report: (Int, Int, () -> Data?) -> Void = { done, total, preview in
            let due = done < total && done * previews / total > shown
            if due { shown = done * previews / total }
            let image = due ? preview() : nil
            queue.with {
                (job.step, job.steps, job.info) = (done, total, "step \(done) of \(total)")
                if let image { job.preview = image }
            }
        }
        try EstimateWatch.$current.withValue(watch) {
            switch model {
            case .stableDiffusion(let sd):
                var o = TextToImageOptions()
                (o.prompt, o.negativePrompt, o.seed, o.count) = (r.prompt ?? "", r.negative_prompt ?? "", seed, r.count)
                (o.steps, o.guidance) = (r.steps ?? 25, r.cfg_scale ?? 7.5)
                (o.sampler, o.sigmas) = (sampler?.0, sampler?.1)
                if r.width != nil || r.height != nil {
                    o.size = ImageSize(width: r.width ?? sd.defaultSide, height: r.height ?? sd.defaultSide)
                }
                previews = 4 * o.count
                try DiffuseTraining.generate(sd, o, progress: { done, total in
                    report(done, total) {
                        guard let x0 = watch.latest?.x0 else { return nil }
                        let first = sd.decode(x0.slice(axis: 0, 0..<1))
                        return PNG.data(first.reshaped(Array(first.shape.dropFirst())), range: 0...1)
                    }
                }, warn: { message in queue.with { job.info = message } }) { _, made in
                    guard !StopRequest.isRequested else { return }
                    var parameters = made.parameters
                    parameters.settings.append(.init("Version", "Diffuse \(version)"))
                    try keep(made.image.reshaped(Array(made.image.shape.dropFirst())), range: 0...1, parameters: parameters,
                             seed: parameters["Seed"] ?? "\(seed)", job: job, queue: queue)
                }
            case .sampled(let model):
                var o = SampleOptions()
                (o.sampler, o.sigmas, o.steps, o.seed, o.label) = (sampler?.0, sampler?.1, r.steps, seed, r.class)
                if let g = r.cfg_scale, info.guidable { o.guidance = g }
                // Class-conditional without a class: a row per class.
                o.count = r.count
                o.batchSize = r.count * (info.classes != nil && r.class == nil ? info.classes! : 1)
                let made = try sample(model, o) { done, total in
                    report(done, total) {
                        guard let diffusion = model.objective as? DiffusionObjective, let x0 = watch.latest?.x0 else { return nil }
                        let first = diffusion.images(fromState: x0.slice(axis: 0, 0..<1))
                        return PNG.data(first.reshaped(Array(first.shape.dropFirst())))
                    }
                }
                guard !StopRequest.isRequested else { return }
                let n = made.values.shape[0]
                let columns = info.classes != nil && r.class == nil ? n / info.classes! : Int(Double(n).squareRoot().rounded(.up))
                var parameters = made.parameters
                parameters.settings.append(.init("Version", "Diffuse \(version)"))
                try keep(imageGrid(made.values, columns: columns), range: -1...1, parameters: parameters, seed: "\(seed)",
                         job: job, queue: queue)
            }
        }
    }

    /// Writes a generated image under the output folder (NNNNN-SEED.png, with its parameters) and adds it to the job.
    private func keep(_ image: Tensor, range: ClosedRange<Float>, parameters: GenerationParameters, seed: String, job: Job,
                      queue: JobQueue) throws {
        written += 1
        let name = String(format: "%05d-%@.png", written, seed.filter { $0.isNumber })
        let bytes = PNG.data(image, range: range, text: [("parameters", parameters.text)])
        try writeAtomically(bytes, to: outputs + "/" + name)
        queue.with {
            job.images.append(name)
            job.infotexts.append(parameters.text)
        }
    }

    // MARK: Training

    private func train(_ r: TrainRequest, job: Job, queue: JobQueue) throws {
        let folder = RunFolder(catalog.runs + "/" + r.name)
        queue.with { job.info = "preparing \(r.name)" }
        let trainer = try trainingOptions(r).map { try Trainer.start($0, in: folder) } ?? Trainer.resume(folder, steps: r.steps)
        let first = trainer.state.step
        queue.with { (job.step, job.steps, job.info) = (first, trainer.config.steps, trainer.summary) }
        _ = try trainer.train { step, figures in
            queue.with { (job.step, job.info) = (step, figures) }
        }
    }

    /// The options of a new run of the request, or nil where the run exists (it is resumed); a `BadRequest` naming
    /// the field whose value cannot work. Reads only the folders: also called to check a request before queueing it.
    func trainingOptions(_ r: TrainRequest) throws -> TrainingOptions? {
        try r.validate()
        guard !FileManager.default.fileExists(atPath: RunFolder(catalog.runs + "/" + r.name).checkpoint) else { return nil }
        var o = TrainingOptions()
        if let model = r.model { o.model = ModelKind(rawValue: model)! }
        o.data = try dataSpec(r.data ?? "shapes")
        if let name = r.autoencoder {
            try require(runFolders(in: catalog.runs).contains { $0.name == name && $0.config.kind == .vae }, "autoencoder",
                        "'\(name)' is not a VAE run under the runs folder")
            o.autoencoder = catalog.runs + "/" + name
        }
        (o.preset, o.imageSize, o.examples, o.conditional) = (r.preset, r.image_size, r.examples, r.conditional ?? false)
        o.steps = r.steps ?? o.steps
        o.batchSize = r.batch_size ?? o.batchSize
        o.learningRate = r.learning_rate
        o.seed = r.seed ?? o.seed
        o.sampleEvery = r.sample_every ?? o.sampleEvery
        o.checkpointEvery = r.checkpoint_every ?? o.checkpointEvery
        return o
    }

    /// A data set of the train request: built in, or a folder directly under --data.
    private func dataSpec(_ text: String) throws -> String {
        guard let colon = text.firstIndex(of: ":") else {
            try require((try? DataSource(parsing: text)).map { $0 == .shapes || ($0.description == text && !text.contains("/")) } ?? false,
                        "data", "'\(text)' is not a built-in data set (shapes, swiss-roll, two-moons, 8-gaussians, checkerboard)")
            return text
        }
        let (form, name) = (String(text[...colon]), String(text[text.index(after: colon)...]))
        try require(["mnist:", "cifar10:", "folder:"].contains(form), "data", "must be built in, or mnist:NAME, cifar10:NAME or folder:NAME")
        guard let data else { throw BadRequest(field: "data", problem: "this server has no data folder (diffuse serve --data DIR)") }
        try require(TrainRequest.isRunName(name) && FileManager.default.fileExists(atPath: data + "/" + name), "data",
                    "'\(name)' is not a folder under the data folder")
        return form + data + "/" + name
    }
}

/// The generated images under `folder` (NNNNN-….png), oldest first.
func galleryFiles(in folder: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.filter { name in
        name.hasSuffix(".png") && name.count > 6 && name.prefix(5).allSatisfy(\.isNumber) && TrainRequest.isRunName(name)
    }.sorted()
}
