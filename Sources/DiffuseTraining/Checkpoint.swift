import DiffuseData
import DiffuseEngine
import DiffuseNN
import Foundation

/// Where a run stands besides its tensors: saved in the checkpoint's metadata so that a resumed run continues with
/// the same random numbers, the same batches and the same dropout masks as an uninterrupted one.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimizer steps done.
    public var step = 0
    /// The generator of timesteps and noise.
    public var generator: RandomGenerator
    /// Where the data order stands.
    public var batches: BatchSampler.Position?
    /// The offsets of the dropout layers' generators, in module order.
    public var dropoutOffsets: [UInt64] = []
    public var emaUpdates = 0
}

/// One safetensors file with the model weights (`model.*`), their moving average (`ema.*`), the optimizer's state
/// (`optimizer.*`), the `TrainingState` as JSON metadata and a checksum of the values. Written atomically: an
/// interrupted write leaves the previous checkpoint intact; read back, damaged bytes are an error.
public struct Checkpoint {
    public static let format = "diffuse-checkpoint-1"
    public var model: [String: Tensor]
    public var ema: [String: Tensor]
    public var optimizer: [String: Tensor]
    public var state: TrainingState

    public init(model: [String: Tensor], ema: [String: Tensor], optimizer: [String: Tensor], state: TrainingState) {
        self.model = model
        self.ema = ema
        self.optimizer = optimizer
        self.state = state
    }

    /// Every tensor by its name in the file: `model.*`, `ema.*`, `optimizer.*`.
    var tensors: [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (prefix, group) in [("model", model), ("ema", ema), ("optimizer", optimizer)] {
            for (k, v) in group { tensors["\(prefix).\(k)"] = v }
        }
        return tensors
    }

    public func write(to path: String) throws {
        let tensors = self.tensors
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        try SafeTensorsFile.write(tensors, metadata: ["format": Self.format, "state": json, "crc32": String(checksum(tensors))], to: path)
    }

    public init(path: String) throws {
        try self.init(try SafeTensorsFile(path: path), path: path)
    }

    /// From the bytes of a checkpoint file (one that another process read), `path` naming it in errors.
    public init(data: Data, path: String) throws {
        try self.init(try SafeTensorsFile(data: data, path: path), path: path)
    }

    private init(_ file: SafeTensorsFile, path: String) throws {
        guard file.metadata["format"] == Self.format, let json = file.metadata["state"] else {
            throw DiffuseError.checkpoint(path: path, problem: "is a safetensors file but not a Diffuse checkpoint (no training state)")
        }
        do { state = try JSONDecoder().decode(TrainingState.self, from: Data(json.utf8)) }
        catch { throw DiffuseError.checkpoint(path: path, problem: "its training state is unreadable (\(error))") }
        var groups: [String: [String: Tensor]] = ["model": [:], "ema": [:], "optimizer": [:]]
        for name in file.names {
            guard let dot = name.firstIndex(of: "."), groups[String(name[..<dot])] != nil else {
                throw DiffuseError.checkpoint(path: path, problem: "tensor '\(name)' belongs to no part of a checkpoint")
            }
            groups[String(name[..<dot])]![String(name[name.index(after: dot)...])] = try file.tensor(name)
        }
        model = groups["model"]!
        ema = groups["ema"]!
        optimizer = groups["optimizer"]!
        // Checkpoints written before the checksum have none.
        if let recorded = file.metadata["crc32"] {
            guard UInt32(recorded) == checksum(tensors) else {
                throw DiffuseError.checkpoint(path: path, problem: "is damaged: its values do not match the checksum written with them")
            }
        }
    }

    /// Loads `weights` into `module`, naming the file in any mismatch.
    public static func load(_ weights: [String: Tensor], into module: Module, from path: String) throws {
        do { try module.load(weights) }
        catch { throw DiffuseError.checkpoint(path: path, problem: "\(error)") }
    }
}
