import DiffuseData
import DiffuseDiffusion
import DiffuseModels
import DiffuseTraining
import Foundation

/// A request that cannot be served: which field (as the JSON names it; "body" for the whole) and what is wrong.
struct BadRequest: Error, CustomStringConvertible {
    let field: String
    let problem: String

    var description: String { "\(field): \(problem)" }
}

/// A JSON body as `T`, or a `BadRequest` naming the field that is missing or of the wrong type. Unknown fields are
/// ignored, as AUTOMATIC1111's API does (its clients send many).
func decodeBody<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let DecodingError.typeMismatch(expected, context) {
        throw BadRequest(field: fieldName(context.codingPath), problem: "must be \(jsonTypeName(expected))")
    } catch let DecodingError.valueNotFound(expected, context) {
        throw BadRequest(field: fieldName(context.codingPath), problem: "must be \(jsonTypeName(expected)), not null")
    } catch let DecodingError.keyNotFound(key, context) {
        throw BadRequest(field: fieldName(context.codingPath + [key]), problem: "is required")
    } catch let DecodingError.dataCorrupted(context) {
        let field = context.codingPath.isEmpty ? "body" : fieldName(context.codingPath)
        throw BadRequest(field: field, problem: context.codingPath.isEmpty ? "is not a JSON object" : context.debugDescription)
    }
}

private func fieldName(_ path: [any CodingKey]) -> String {
    path.isEmpty ? "body" : path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
}

private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is Int64.Type, is UInt64.Type: "an integer"
    case is Double.Type, is Float.Type: "a number"
    case is Bool.Type: "true or false"
    case is String.Type: "a string"
    default: "a JSON object"
    }
}

/// Checks a field: `problem` unless `condition`.
func require(_ condition: Bool, _ field: String, _ problem: @autoclosure () -> String) throws {
    if !condition { throw BadRequest(field: field, problem: problem()) }
}

/// A generation, in the fields of AUTOMATIC1111's `POST /sdapi/v1/txt2img` (the subset that applies) and a few of
/// Diffuse's: `model` (a run "runs/NAME" or a model folder "models/NAME") and `class` (for class-conditional runs).
struct GenerateRequest: Codable, Sendable {
    struct OverrideSettings: Codable, Sendable {
        var sd_model_checkpoint: String?
    }

    var model: String?
    var prompt: String?
    var negative_prompt: String?
    /// A sampler by the web UI's name ("Euler a", "DPM++ 2M Karras") or Diffuse's ("euler-ancestral").
    var sampler_name: String?
    var steps: Int?
    var cfg_scale: Double?
    /// −1 (or absent): a random one.
    var seed: Int64?
    var width: Int?
    var height: Int?
    /// Images per batch and batches: images = batch_size × n_iter.
    var batch_size: Int?
    var n_iter: Int?
    var `class`: Int?
    var override_settings: OverrideSettings?

    /// The model asked for: `model`, or A1111's override of the checkpoint (a model's name).
    var modelName: String? { model ?? override_settings?.sd_model_checkpoint }

    var count: Int { (batch_size ?? 1) * (n_iter ?? 1) }

    /// The sampler and its σ spacing, or an error naming the field.
    func sampler() throws -> (SamplerKind, SigmaSpacing?)? {
        guard let name = sampler_name, !name.isEmpty else { return nil }
        var base = name, sigmas: SigmaSpacing?
        for spacing in [SigmaSpacing.karras, .exponential] where name.lowercased().hasSuffix(" " + spacing.rawValue) {
            (base, sigmas) = (String(name.dropLast(spacing.rawValue.count + 1)), spacing)
        }
        guard let kind = SamplerKind(rawValue: base) ?? SamplerKind.allCases.first(where: { $0.webUIName.lowercased() == base.lowercased() })
        else {
            throw BadRequest(field: "sampler_name", problem: "unknown sampler '\(name)': use one of "
                             + SamplerKind.allCases.map(\.webUIName).joined(separator: ", ") + " (GET /sdapi/v1/samplers)")
        }
        return (kind, sigmas)
    }

    /// The checks that need no model.
    func validate() throws {
        if let steps { try require((1...1000).contains(steps), "steps", "must be in 1...1000, got \(steps)") }
        if let g = cfg_scale { try require(g.isFinite && g >= 0 && g <= 100, "cfg_scale", "must be a number in [0, 100], got \(g)") }
        if let seed { try require(seed >= -1, "seed", "must be −1 (random) or a seed ≥ 0, got \(seed)") }
        for (field, side) in [("width", width), ("height", height)] {
            if let side { try require((8...2048).contains(side) && side % 8 == 0, field, "must be a multiple of 8 in 8...2048, got \(side)") }
        }
        if let n = batch_size { try require((1...64).contains(n), "batch_size", "must be in 1...64, got \(n)") }
        if let n = n_iter { try require((1...16).contains(n), "n_iter", "must be in 1...16, got \(n)") }
        try require(count <= 64, "n_iter", "batch_size × n_iter must be at most 64, got \(count)")
        if let c = `class` { try require(c >= 0, "class", "must not be negative, got \(c)") }
        _ = try sampler()
    }

    /// The checks that need the model's description (not the model itself), so that a request is refused before
    /// it is queued. A cfg_scale for a run that cannot be guided is ignored: A1111's clients always send one.
    func validate(for model: ModelInfo) throws {
        if model.prompt {
            try require(`class` == nil, "class", "\(model.name) takes a prompt, not a class")
            return
        }
        try require(prompt?.isEmpty ?? true, "prompt", "\(model.name) is a \(model.kind) model: it takes no prompt")
        try require(negative_prompt?.isEmpty ?? true, "negative_prompt", "\(model.name) is a \(model.kind) model: it takes no prompt")
        let own = model.size.flatMap(ImageSize.init)
        for (field, side, ownSide) in [("width", width, own?.width), ("height", height, own?.height)] {
            if let side { try require(side == ownSide, field, "\(model.name) makes images of \(model.size ?? "its own size") only") }
        }
        if let c = `class` {
            try require(model.classes.map { c < $0 } ?? false, "class",
                        model.classes.map { "must be in 0..<\($0)" } ?? "\(model.name) is not class-conditional")
        } else if let classes = model.classes {
            try require(count * classes <= 256, "batch_size", "without a class, \(model.name) makes batch_size × n_iter images of each of its "
                        + "\(classes) classes: at most 256 in all")
        }
        if !model.diffusion {
            try require(sampler_name?.isEmpty ?? true, "sampler_name", "\(model.name) is a \(model.kind): it generates in one network evaluation")
            try require(steps == nil, "steps", "\(model.name) is a \(model.kind): it generates in one network evaluation")
        }
    }
}

/// A training run to start (or, if the run exists, to resume up to `steps`): the train options a page offers.
struct TrainRequest: Codable, Sendable {
    /// The run's folder name under --runs.
    var name: String
    var model: String?
    /// A built-in data set (shapes, swiss-roll, ...) or mnist:NAME, cifar10:NAME, folder:NAME for a folder under
    /// --data.
    var data: String?
    var preset: String?
    var steps: Int?
    var batch_size: Int?
    var learning_rate: Float?
    var seed: UInt64?
    var conditional: Bool?
    var image_size: Int?
    var examples: Int?
    var sample_every: Int?
    var checkpoint_every: Int?
    /// Latent diffusion: the VAE run (a name under --runs).
    var autoencoder: String?

    /// A run's name: letters, digits, '.', '_' and '-', not starting with '.'.
    static func isRunName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 100 && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "._-".unicodeScalars.contains($0) }
    }

    func validate() throws {
        try require(Self.isRunName(name), "name", "must be a folder name of letters, digits, '.', '_' and '-', got '\(name)'")
        if let model { try require(ModelKind(rawValue: model) != nil, "model", "must be one of \(ModelKind.allCases.map(\.rawValue).joined(separator: ", "))") }
        if let preset { try require(UNet2DConfig.presets.contains(preset), "preset", "must be one of \(UNet2DConfig.presets.joined(separator: ", "))") }
        if let steps { try require((1...10_000_000).contains(steps), "steps", "must be in 1...10000000, got \(steps)") }
        if let b = batch_size { try require((1...4096).contains(b), "batch_size", "must be in 1...4096, got \(b)") }
        if let lr = learning_rate { try require(lr.isFinite && lr > 0 && lr < 1, "learning_rate", "must be in (0, 1), got \(lr)") }
        if let s = image_size { try require((4...1024).contains(s), "image_size", "must be in 4...1024, got \(s)") }
        if let n = examples { try require(n > 0, "examples", "must be positive, got \(n)") }
        for (field, every) in [("sample_every", sample_every), ("checkpoint_every", checkpoint_every)] {
            if let every { try require(every >= 0, field, "must not be negative (0: never), got \(every)") }
        }
    }
}
