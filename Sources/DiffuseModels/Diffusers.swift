import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// A model folder in Hugging Face diffusers' layout: a pipeline (model_index.json, unet/, scheduler/, and vae/ for
/// latent diffusion) or a bare UNet2DModel or AutoencoderKL folder (config.json and
/// diffusion_pytorch_model.safetensors, possibly sharded).
public struct DiffusersFolder {
    /// The denoising network (none in a bare AutoencoderKL folder).
    public let unet: UNet2DModel?
    /// The autoencoder: latent diffusion's first stage in a pipeline, or the model of a bare AutoencoderKL folder.
    public let vae: AutoencoderKL?
    /// The scheduler's config (scheduler/scheduler_config.json), when the folder is a pipeline that has one.
    public let scheduler: SchedulerConfig?
    /// Config keys that change nothing here, to show the user.
    public let warnings: [String]

    /// The weights file diffusers writes, and the index of its shards.
    static let weightsName = "diffusion_pytorch_model.safetensors"

    /// Reads a pipeline folder, or a UNet2DModel or AutoencoderKL folder.
    public init(path: String) throws {
        let root = URL(fileURLWithPath: path)
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DiffuseError.diffusers(path, "not a folder (expected a diffusers pipeline, UNet2DModel or AutoencoderKL folder)")
        }
        var warnings: [String] = []
        var scheduler: SchedulerConfig?
        let index = root.appendingPathComponent("model_index.json")
        if files.fileExists(atPath: index.path) {
            let components = try JSONValue.object(at: index.path)
            guard case .array(let unet)? = components["unet"], unet.count == 2, unet[1] == .string("UNet2DModel") else {
                throw DiffuseError.diffusers(index.path, "the pipeline has no 'unet' of class UNet2DModel (only UNet2DModel pipelines are read)")
            }
            self.unet = try Self.unet(in: root.appendingPathComponent("unet"), warnings: &warnings)
            if let vae = components["vae"] {
                guard case .array(let v) = vae, v.count == 2, v[1] == .string("AutoencoderKL") else {
                    throw DiffuseError.diffusers(index.path, "the pipeline's 'vae' is not an AutoencoderKL (the only autoencoder read)")
                }
                self.vae = try Self.autoencoder(in: root.appendingPathComponent("vae"), warnings: &warnings)
            } else {
                self.vae = nil
            }
            if components["scheduler"] != nil {
                let file = root.appendingPathComponent("scheduler/scheduler_config.json")
                let (config, unknown) = try SchedulerConfig.read(JSONValue.object(at: file.path), path: file.path)
                scheduler = config
                warnings += unknown.map { "\(file.path): ignoring key '\($0)'" }
            }
        } else {
            let configFile = root.appendingPathComponent("config.json")
            let object = try JSONValue.object(at: configFile.path)
            switch object["_class_name"] {
            case .string("AutoencoderKL")?:
                (self.unet, self.vae) = (nil, try Self.autoencoder(in: root, warnings: &warnings))
            case nil, .string("UNet2DModel")?:
                (self.unet, self.vae) = (try Self.unet(in: root, warnings: &warnings), nil)
            case .string(let name)?:
                throw DiffuseError.diffusers(configFile.path, "_class_name is \(name); UNet2DModel and AutoencoderKL are read")
            default:
                throw DiffuseError.diffusers(configFile.path, "_class_name is not a string")
            }
        }
        self.scheduler = scheduler
        self.warnings = warnings
    }

    /// A component folder's model: its config.json decoded (unknown keys become warnings), the module built
    /// unfilled, and the weights loaded, every error naming the file.
    static func component<Config: Decodable, Model: Module>(in folder: URL, unknownKeys: ([String: JSONValue]) throws -> [String],
                                                            warnings: inout [String], keep16: Bool = false,
                                                            build: (Config, inout RandomGenerator) throws -> Model) throws -> Model {
        let config: Config = try Self.config(in: folder, unknownKeys: unknownKeys, warnings: &warnings)
        let model: Model
        do { model = try unfilled(build, config) }
        catch { throw DiffuseError.diffusers(folder.appendingPathComponent("config.json").path, "\(error)") }
        try load(model, from: folder, keep16: keep16, key: currentAttentionName)
        return model
    }

    /// A model of `config` whose parameters are left unfilled (`RandomGenerator.unfilled`): every one is loaded next.
    static func unfilled<Config, Model>(_ make: (Config, inout RandomGenerator) throws -> Model, _ config: Config) throws -> Model {
        var generator = RandomGenerator.unfilled
        return try make(config, &generator)
    }

    /// A component folder's config.json decoded; its unknown keys become warnings, and an error names the file.
    static func config<Config: Decodable>(in folder: URL, unknownKeys: ([String: JSONValue]) throws -> [String],
                                          warnings: inout [String]) throws -> Config {
        let configFile = folder.appendingPathComponent("config.json")
        let object = try JSONValue.object(at: configFile.path)
        do {
            warnings += try unknownKeys(object).map { "\(configFile.path): ignoring key '\($0)'" }
            return try JSONDecoder().decode(Config.self, from: fileContents(configFile.path) ?? Data())
        } catch { throw DiffuseError.diffusers(configFile.path, "\(error)") }
    }

    static func unet(in folder: URL, warnings: inout [String]) throws -> UNet2DModel {
        try component(in: folder, unknownKeys: UNet2DConfig.unknownKeys, warnings: &warnings, build: UNet2DModel.init)
    }

    static func autoencoder(in folder: URL, warnings: inout [String], keep16: Bool = false) throws -> AutoencoderKL {
        try component(in: folder, unknownKeys: AutoencoderKLConfig.unknownKeys, warnings: &warnings, keep16: keep16,
                      build: AutoencoderKL.init)
    }

    /// The diffusers version whose layout the written folders follow.
    public static let diffusersVersion = "0.42.1"

    /// Writes a pipeline folder: model_index.json, unet/ (config.json and diffusion_pytorch_model.safetensors, the
    /// weights under their own names, which are diffusers' keys), scheduler/scheduler_config.json (a DDPMScheduler)
    /// and, for latent diffusion, vae/. Without a VAE it is a DDPMPipeline that `DDPMPipeline.from_pretrained`
    /// loads; with one, each component loads with its class's `from_pretrained` (diffusers has no unconditional
    /// AutoencoderKL pipeline). Each file is written atomically.
    public static func write(unet: UNet2DModel, weights: [String: Tensor], scheduler: [String: JSONValue],
                             vae: (model: AutoencoderKL, weights: [String: Tensor])? = nil, to path: String) throws {
        let root = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("scheduler"), withIntermediateDirectories: true)
        var components: [String: JSONValue] = [
            "_class_name": .string(vae == nil ? "DDPMPipeline" : "LatentDiffusionPipeline"), "_diffusers_version": .string(diffusersVersion),
            "unet": .array([.string("diffusers"), .string("UNet2DModel")]),
            "scheduler": .array([.string("diffusers"), .string("DDPMScheduler")]),
        ]
        if vae != nil { components["vae"] = .array([.string("diffusers"), .string("AutoencoderKL")]) }
        try writeAtomically(json(components), to: root.appendingPathComponent("model_index.json").path)
        try writeComponent(unet, config: unet.config, className: "UNet2DModel", weights: weights, to: root.appendingPathComponent("unet"))
        if let vae {
            try writeComponent(vae.model, config: vae.model.config, className: "AutoencoderKL", weights: vae.weights,
                               to: root.appendingPathComponent("vae"))
        }
        try writeAtomically(json(scheduler.merging([
            "_class_name": .string("DDPMScheduler"), "_diffusers_version": .string(diffusersVersion),
        ]) { _, new in new }), to: root.appendingPathComponent("scheduler/scheduler_config.json").path)
    }

    /// Writes a model folder (config.json with its class name, and the weights, which must be exactly the model's)
    /// that `Class.from_pretrained` loads.
    public static func writeComponent(_ model: Module, config: some Encodable, className: String, weights: [String: Tensor],
                                      to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        guard case .object(var o) = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(config)) else {
            throw DiffuseError.diffusers(folder.path, "could not encode the config")
        }
        o["_class_name"] = .string(className)
        o["_diffusers_version"] = .string(diffusersVersion)
        try writeAtomically(json(o), to: folder.appendingPathComponent("config.json").path)
        let expected = Set(model.stateDict().keys)
        guard Set(weights.keys) == expected else {
            throw DiffuseError.diffusers(folder.path, "the weights do not fit the \(className) (\(Set(weights.keys).symmetricDifference(expected).sorted().prefix(3)))")
        }
        try SafeTensorsFile.write(weights, metadata: ["format": "pt"], to: folder.appendingPathComponent(weightsName).path)
    }

    static func json(_ object: [String: JSONValue]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(JSONValue.object(object))
    }

    /// A component folder's weight files (see `WeightFiles`), loaded into `model` one tensor at a time: 16-bit
    /// tensors stay 16-bit when `keep16`, else they are widened. A key missing, left over or of the wrong shape
    /// is an error naming the folder.
    static func load(_ model: Module, from folder: URL, name: String = weightsName, keep16: Bool = false,
                     key: (String) -> String? = { $0 }) throws {
        let files = try WeightFiles(in: folder, name: name, key: key)
        let own = Set((model.namedParameters() + model.namedBuffers()).map(\.0))
        do {
            if let extra = files.keys.sorted().first(where: { !own.contains($0) }) { throw DiffuseError.unexpectedTensor(key: extra) }
            try model.load { key in
                let t = try files.stored(key)
                return keep16 ? t : .float(t.widened)
            }
        } catch DiffuseError.diffusers(let path, let problem) { throw DiffuseError.diffusers(path, problem) }
        catch { throw DiffuseError.diffusers(folder.path, "\(error)") }
    }

    /// Checkpoints saved before diffusers 0.14 name the attention projections query, key, value and proj_attn:
    /// a file key under its current name.
    static func currentAttentionName(_ key: String) -> String? {
        guard key.contains(".attentions.") else { return key }
        let names = [".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."]
        return names.reduce(key) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
    }
}

/// The weights of a component folder: the file `name` (diffusion_pytorch_model.safetensors for diffusers' models,
/// model.safetensors for transformers'), the shards its .index.json lists, or its fp16 variant
/// (name.fp16.safetensors, what `save_pretrained(variant="fp16")` writes) when only that is there. Each tensor is
/// read when asked for.
struct WeightFiles {
    let folder: URL
    private let files: [SafeTensorsFile]
    /// Each model key's file and its name there (`key` maps a file's names to the model's; nil drops one).
    private var index: [String: (file: Int, name: String)] = [:]

    var keys: Dictionary<String, (file: Int, name: String)>.Keys { index.keys }

    init(in folder: URL, name: String, key: (String) -> String?) throws {
        self.folder = folder
        let stem = String(name.dropLast(".safetensors".count))
        let manager = FileManager.default
        var list: [String] = []
        for candidate in [name, stem + ".fp16.safetensors"] {
            let single = folder.appendingPathComponent(candidate)
            let shards = folder.appendingPathComponent(candidate + ".index.json")
            if manager.fileExists(atPath: single.path) {
                list = [single.path]
            } else if manager.fileExists(atPath: shards.path) {
                guard case .object(let map)? = try JSONValue.object(at: shards.path)["weight_map"] else {
                    throw DiffuseError.diffusers(shards.path, "no 'weight_map' object")
                }
                let names = map.values.compactMap { if case .string(let s) = $0 { s } else { nil } }
                list = Set(names).sorted().map { folder.appendingPathComponent($0).path }
            }
            if !list.isEmpty { break }
        }
        if list.isEmpty {
            let pickle = folder.appendingPathComponent(stem == "model" ? "pytorch_model.bin" : stem + ".bin")
            throw DiffuseError.diffusers(folder.path, manager.fileExists(atPath: pickle.path)
                ? "only PyTorch pickle weights (.bin) here; Diffuse reads safetensors: re-save the model with "
                  + "`save_pretrained(folder, safe_serialization=True)`"
                : "no \(name) (nor its .index.json or fp16 variant)")
        }
        files = try list.map(SafeTensorsFile.init(path:))
        for (i, file) in files.enumerated() {
            for fileName in file.names {
                guard let modelKey = key(fileName) else { continue }
                guard index[modelKey] == nil else { throw DiffuseError.diffusers(file.path, "tensor '\(modelKey)' appears twice") }
                index[modelKey] = (i, fileName)
            }
        }
    }

    func stored(_ key: String) throws -> StoredTensor {
        guard let (file, name) = index[key] else { throw DiffuseError.diffusers(folder.path, "no tensor '\(key)' in its weights") }
        return try files[file].stored(name)
    }
}
