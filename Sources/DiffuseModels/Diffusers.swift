import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// What went wrong reading or writing a diffusers folder, with the path.
public struct DiffusersError: Error, CustomStringConvertible, LocalizedError {
    public let path: String
    public let problem: String
    public init(_ path: String, _ problem: String) { (self.path, self.problem) = (path, problem) }
    public var description: String { "\(path): \(problem)" }
    public var errorDescription: String? { description }
}

/// A model folder in Hugging Face diffusers' layout: a pipeline (model_index.json, unet/, scheduler/) or a bare
/// UNet2DModel folder (config.json and diffusion_pytorch_model.safetensors, possibly sharded).
public struct DiffusersFolder {
    public let unet: UNet2DModel
    /// The scheduler's config (scheduler/scheduler_config.json), when the folder is a pipeline that has one.
    public let scheduler: SchedulerConfig?
    /// Config keys that change nothing here, to show the user.
    public let warnings: [String]

    /// The weights file diffusers writes, and the index of its shards.
    static let weightsName = "diffusion_pytorch_model.safetensors"

    /// Reads a pipeline folder or a UNet2DModel folder.
    public init(path: String) throws {
        let root = URL(fileURLWithPath: path)
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DiffusersError(path, "not a folder (expected a diffusers pipeline or UNet2DModel folder)")
        }
        var warnings: [String] = []
        let unetFolder: URL
        var scheduler: SchedulerConfig?
        let index = root.appendingPathComponent("model_index.json")
        if files.fileExists(atPath: index.path) {
            let components = try JSONValue.object(at: index.path)
            guard case .array(let unet)? = components["unet"], unet.count == 2, unet[1] == .string("UNet2DModel") else {
                throw DiffusersError(index.path, "the pipeline has no 'unet' of class UNet2DModel (only UNet2DModel pipelines are read)")
            }
            unetFolder = root.appendingPathComponent("unet")
            if components["scheduler"] != nil {
                let file = root.appendingPathComponent("scheduler/scheduler_config.json")
                let (config, unknown) = try SchedulerConfig.read(JSONValue.object(at: file.path), path: file.path)
                scheduler = config
                warnings += unknown.map { "\(file.path): ignoring key '\($0)'" }
            }
        } else {
            unetFolder = root
        }
        let configFile = unetFolder.appendingPathComponent("config.json")
        let object = try JSONValue.object(at: configFile.path)
        if case .string(let name)? = object["_class_name"], name != "UNet2DModel" {
            throw DiffusersError(configFile.path, "_class_name is \(name); only UNet2DModel is read")
        }
        let config: UNet2DConfig
        do { config = try JSONDecoder().decode(UNet2DConfig.self, from: Data(contentsOf: configFile)) }
        catch { throw DiffusersError(configFile.path, "\(error)") }
        warnings += UNet2DConfig.unknownKeys(in: object).map { "\(configFile.path): ignoring key '\($0)'" }
        var generator = RandomGenerator(seed: 0)
        let model: UNet2DModel
        do { model = try UNet2DModel(config, generator: &generator) }
        catch { throw DiffusersError(configFile.path, "\(error)") }
        var weights = try Self.weights(in: unetFolder)
        Self.renameDeprecatedAttention(&weights)
        do { try model.load(weights) }
        catch { throw DiffusersError(unetFolder.path, "\(error)") }
        unet = model
        self.scheduler = scheduler
        self.warnings = warnings
    }

    /// The diffusers version whose layout the written folders follow.
    public static let diffusersVersion = "0.42.1"

    /// Writes a DDPMPipeline folder that diffusers' `DDPMPipeline.from_pretrained` (and `UNet2DModel.from_pretrained`
    /// on its unet/) loads: model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors (the
    /// weights under their own names, which are diffusers' keys) and scheduler/scheduler_config.json (a
    /// DDPMScheduler). Each file is written atomically.
    public static func write(unet: UNet2DModel, weights: [String: Tensor], scheduler: [String: JSONValue],
                             to path: String) throws {
        let root = URL(fileURLWithPath: path)
        for folder in ["unet", "scheduler"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        func object(_ value: some Encodable, _ extra: [String: JSONValue]) throws -> Data {
            guard case .object(var o) = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value)) else {
                throw DiffusersError(path, "could not encode a config")
            }
            o.merge(extra) { _, new in new }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return try encoder.encode(JSONValue.object(o))
        }
        let version = JSONValue.string(diffusersVersion)
        try writeAtomically(object(JSONValue.object([:]), [
            "_class_name": .string("DDPMPipeline"), "_diffusers_version": version,
            "unet": .array([.string("diffusers"), .string("UNet2DModel")]),
            "scheduler": .array([.string("diffusers"), .string("DDPMScheduler")]),
        ]), to: root.appendingPathComponent("model_index.json").path)
        try writeAtomically(object(unet.config, ["_class_name": .string("UNet2DModel"), "_diffusers_version": version]),
                            to: root.appendingPathComponent("unet/config.json").path)
        let expected = Set(unet.namedParameters().map(\.0))
        guard Set(weights.keys) == expected else {
            throw DiffusersError(path, "the weights do not fit the U-Net (\(Set(weights.keys).symmetricDifference(expected).sorted().prefix(3)))")
        }
        try SafeTensorsFile.write(weights, metadata: ["format": "pt"],
                                  to: root.appendingPathComponent("unet/\(weightsName)").path)
        try writeAtomically(object(JSONValue.object([:]), scheduler.merging([
            "_class_name": .string("DDPMScheduler"), "_diffusers_version": version,
        ]) { _, new in new }), to: root.appendingPathComponent("scheduler/scheduler_config.json").path)
    }

    /// The tensors of diffusion_pytorch_model.safetensors, or of the shards its .index.json lists.
    static func weights(in folder: URL) throws -> [String: Tensor] {
        let single = folder.appendingPathComponent(weightsName)
        let index = folder.appendingPathComponent(weightsName + ".index.json")
        var files: [String]
        if FileManager.default.fileExists(atPath: single.path) {
            files = [single.path]
        } else if FileManager.default.fileExists(atPath: index.path) {
            guard case .object(let map)? = try JSONValue.object(at: index.path)["weight_map"] else {
                throw DiffusersError(index.path, "no 'weight_map' object")
            }
            let names = map.values.compactMap { if case .string(let s) = $0 { s } else { nil } }
            files = Set(names).sorted().map { folder.appendingPathComponent($0).path }
        } else {
            let pickle = folder.appendingPathComponent("diffusion_pytorch_model.bin")
            throw DiffusersError(folder.path, FileManager.default.fileExists(atPath: pickle.path)
                ? "only PyTorch pickle weights (.bin) here; Diffuse reads safetensors: re-save the model with "
                  + "`save_pretrained(folder, safe_serialization=True)`"
                : "no \(weightsName) (nor its .index.json)")
        }
        var tensors: [String: Tensor] = [:]
        for file in files {
            let f = try SafeTensorsFile(path: file)
            for name in f.names {
                guard tensors[name] == nil else { throw DiffusersError(file, "tensor '\(name)' appears in two shards") }
                tensors[name] = try f.tensor(name)
            }
        }
        return tensors
    }

    /// Checkpoints saved before diffusers 0.14 name the attention projections query, key, value and proj_attn.
    static func renameDeprecatedAttention(_ weights: inout [String: Tensor]) {
        let names = [".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."]
        for key in Array(weights.keys) where key.contains(".attentions.") {
            for (old, new) in names where key.contains(old) {
                weights[key.replacingOccurrences(of: old, with: new)] = weights.removeValue(forKey: key)
            }
        }
    }
}
