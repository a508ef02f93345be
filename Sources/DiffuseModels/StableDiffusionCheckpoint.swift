import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// A Stable Diffusion 1.x or 2.x checkpoint in one file, in the original layout of CompVis' and Stability's
/// releases: the U-Net under `model.diffusion_model.`, the autoencoder under `first_stage_model.`, the text encoder
/// under `cond_stage_model.transformer.` (CLIP ViT-L, SD 1.x) or `cond_stage_model.model.` (OpenCLIP ViT-H, SD 2.x).
/// It maps each diffusers parameter key to its original key, as diffusers' single-file converters do
/// (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint,
/// convert_open_clip_checkpoint), and infers the published configs' sizes from the tensors' shapes.
public struct OriginalCheckpoint {
    public enum Family: String { case sd1 = "Stable Diffusion 1.x", sd2 = "Stable Diffusion 2.x" }

    static let unetPrefix = "model.diffusion_model.", vaePrefix = "first_stage_model."
    static let clipPrefix = "cond_stage_model.transformer.", openCLIPPrefix = "cond_stage_model.model."

    public let file: SafeTensorsFile
    public let family: Family
    public var path: String { file.path }

    public init(path: String) throws {
        file = try SafeTensorsFile(path: path)
        let names = file.entries.keys
        if names.contains(where: { $0.hasPrefix(Self.openCLIPPrefix) }) {
            family = .sd2
        } else if names.contains(where: { $0.hasPrefix(Self.clipPrefix) }) {
            family = .sd1
        } else {
            throw DiffuseError.diffusers(path, "not a Stable Diffusion 1.x or 2.x checkpoint: no text encoder under "
                                 + "'\(Self.clipPrefix)' or '\(Self.openCLIPPrefix)' (SDXL and other models are not supported)")
        }
        for prefix in [Self.unetPrefix, Self.vaePrefix] where !names.contains(where: { $0.hasPrefix(prefix) }) {
            throw DiffuseError.diffusers(path, "no tensors under '\(prefix)': not a whole Stable Diffusion checkpoint")
        }
    }

    func shape(_ key: String) throws -> [Int] {
        guard let entry = file.entries[key] else { throw DiffuseError.diffusers(path, "no tensor '\(key)'") }
        return entry.shape
    }

    func has(_ key: String) -> Bool { file.entries[key] != nil }

    /// The numbers N of the keys `prefix`N.…, in order.
    func indices(under prefix: String) -> [Int] {
        Set(file.entries.keys.compactMap { key -> Int? in
            guard key.hasPrefix(prefix) else { return nil }
            return Int(key.dropFirst(prefix.count).prefix { $0 != "." })
        }).sorted()
    }

    /// A tensor as the file stores it (16-bit values stay 16-bit).
    func tensor(_ key: String) throws -> StoredTensor {
        guard has(key) else { throw DiffuseError.diffusers(path, "no tensor '\(key)'") }
        return try file.stored(key)
    }

    /// Fills `model` from the checkpoint, `source` giving the tensor of each of its keys; an error names the file and
    /// the original key.
    func load(_ model: Module, component: String, source: (String) throws -> StoredTensor) throws {
        var current = ""
        do {
            try model.load { key in
                current = key
                return try source(key)
            }
        } catch DiffuseError.diffusers(let path, let problem) { throw DiffuseError.diffusers(path, problem) }
        catch { throw DiffuseError.diffusers(path, "\(component) '\(current)': \(error)") }
    }

    // MARK: The U-Net

    /// The sizes of the U-Net, read from its tensors; the rest as SD 1.x's and 2.x's published configs have it (8
    /// heads at every level for 1.x, heads of 64 channels for 2.x).
    public func unetConfig() throws -> UNet2DConditionConfig {
        let u = Self.unetPrefix
        var c = UNet2DConditionConfig()
        c.inChannels = try shape(u + "input_blocks.0.0.weight")[1]
        c.outChannels = try shape(u + "out.2.weight")[0]
        var channels: [Int] = [], layers: [Int] = [], attends: [Bool] = []
        var count = 0, attention = false, width = 0
        func endLevel() {
            channels.append(width)
            layers.append(count)
            attends.append(attention)
            (count, attention) = (0, false)
        }
        for n in indices(under: u + "input_blocks.") where n > 0 {
            let block = "\(u)input_blocks.\(n)."
            if has(block + "0.op.weight") {
                endLevel()
            } else {
                count += 1
                width = try shape(block + "0.out_layers.3.weight")[0]
                attention = attention || has(block + "1.proj_in.weight")
            }
        }
        endLevel()
        c.blockOutChannels = channels
        c.layersPerBlock = PerLevel(Set(layers).count == 1 ? [layers[0]] : layers)
        c.downBlockTypes = attends.map { $0 ? "CrossAttnDownBlock2D" : "DownBlock2D" }
        var start = 0
        c.upBlockTypes = layers.reversed().map { l in
            defer { start += l + 1 }
            return has("\(u)output_blocks.\(start).1.proj_in.weight") ? "CrossAttnUpBlock2D" : "UpBlock2D"
        }
        c.midBlockType = has(u + "middle_block.1.proj_in.weight") ? "UNetMidBlock2DCrossAttn" : nil
        guard let crossKey = file.entries.keys.sorted().first(where: { $0.hasPrefix(u) && $0.hasSuffix(".attn2.to_k.weight") }) else {
            throw DiffuseError.diffusers(path, "no cross-attention (…attn2.to_k.weight) under '\(u)': not a text-to-image U-Net")
        }
        c.crossAttentionDim = PerLevel([try shape(crossKey)[1]])
        let transformer = crossKey.components(separatedBy: "transformer_blocks.")[0]
        c.useLinearProjection = try shape(transformer + "proj_in.weight").count == 2
        c.transformerLayersPerBlock = PerLevel([indices(under: transformer + "transformer_blocks.").count])
        switch family {
        case .sd1:
            c.attentionHeadDim = PerLevel([8])
            c.sampleSize = 64
        case .sd2:
            c.attentionHeadDim = PerLevel(channels.map { $0 / 64 })
            c.sampleSize = 96
            c.upcastAttention = true
        }
        return c
    }

    /// The original key of a diffusers U-Net key.
    static func unetKey(_ key: String, config c: UNet2DConditionConfig) -> String {
        var parts = key.split(separator: ".").map(String.init)
        func rest(_ n: Int) -> String { parts.dropFirst(n).joined(separator: ".") }
        // ResnetBlock2D's layers in the original's Sequential children.
        func resnet(_ n: Int) -> String {
            let names = ["norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                         "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"]
            parts[n] = names[parts[n]] ?? parts[n]
            return rest(n)
        }
        let levels = c.blockOutChannels.count
        let down = (0..<levels).map(c.layersPerBlock.at), up = down.reversed().map { $0 + 1 }
        let original: String
        switch parts[0] {
        case "time_embedding": original = "time_embed.\(parts[1] == "linear_1" ? 0 : 2).\(rest(2))"
        case "conv_in": original = "input_blocks.0.0.\(rest(1))"
        case "conv_norm_out": original = "out.0.\(rest(1))"
        case "conv_out": original = "out.2.\(rest(1))"
        case "down_blocks":
            let level = Int(parts[1])!, j = Int(parts[3])!
            let first = 1 + down[..<level].reduce(0) { $0 + $1 + 1 }
            switch parts[2] {
            case "resnets": original = "input_blocks.\(first + j).0.\(resnet(4))"
            case "attentions": original = "input_blocks.\(first + j).1.\(rest(4))"
            default: original = "input_blocks.\(first + down[level]).0.op.\(rest(5))"  // downsamplers.0.conv
            }
        case "mid_block":
            let j = Int(parts[2])!
            original = parts[1] == "resnets" ? "middle_block.\(2 * j).\(resnet(3))" : "middle_block.1.\(rest(3))"
        case "up_blocks":
            let level = Int(parts[1])!, j = Int(parts[3])!
            let first = up[..<level].reduce(0, +)
            switch parts[2] {
            case "resnets": original = "output_blocks.\(first + j).0.\(resnet(4))"
            case "attentions": original = "output_blocks.\(first + j).1.\(rest(4))"
            default:  // upsamplers.0.conv, after the level's last ResNet block and its attention if any
                let attends = c.upBlockTypes[level] == "CrossAttnUpBlock2D"
                original = "output_blocks.\(first + up[level] - 1).\(attends ? 2 : 1).conv.\(rest(5))"
            }
        default: original = key
        }
        return unetPrefix + original
    }

    // MARK: The autoencoder

    public func vaeConfig() throws -> AutoencoderKLConfig {
        let v = Self.vaePrefix
        var c = AutoencoderKLConfig()
        let levels = indices(under: v + "encoder.down.")
        c.blockOutChannels = try levels.map { try shape("\(v)encoder.down.\($0).block.0.conv2.weight")[0] }
        c.layersPerBlock = indices(under: v + "encoder.down.0.block.").count
        c.downBlockTypes = Array(repeating: "DownEncoderBlock2D", count: levels.count)
        c.upBlockTypes = Array(repeating: "UpDecoderBlock2D", count: levels.count)
        c.inChannels = try shape(v + "encoder.conv_in.weight")[1]
        c.outChannels = try shape(v + "decoder.conv_out.weight")[0]
        c.latentChannels = try shape(v + "post_quant_conv.weight")[0]
        c.sampleSize = family == .sd1 ? 512 : 768
        return c
    }

    /// The original key of a diffusers AutoencoderKL key, for an autoencoder of `levels` levels.
    static func vaeKey(_ key: String, levels: Int) -> String {
        var parts = key.split(separator: ".").map(String.init)
        func rest(_ n: Int) -> String {
            let names = ["conv_shortcut": "nin_shortcut", "group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v"]
            return parts.dropFirst(n).map { names[$0] ?? $0 }.joined(separator: ".").replacingOccurrences(of: "to_out.0", with: "proj_out")
        }
        guard parts.count > 2, parts[0] == "encoder" || parts[0] == "decoder" else { return vaePrefix + key }
        let original: String
        switch parts[1] {
        case "conv_norm_out": original = "norm_out.\(rest(2))"
        case "mid_block":
            original = parts[2] == "attentions" ? "mid.attn_1.\(rest(4))" : "mid.block_\(Int(parts[3])! + 1).\(rest(4))"
        case "down_blocks":
            original = parts[3] == "resnets" ? "down.\(parts[2]).block.\(parts[4]).\(rest(5))" : "down.\(parts[2]).downsample.\(rest(5))"
        case "up_blocks":
            parts[2] = String(levels - 1 - Int(parts[2])!)
            original = parts[3] == "resnets" ? "up.\(parts[2]).block.\(parts[4]).\(rest(5))" : "up.\(parts[2]).upsample.\(rest(5))"
        default: original = rest(1)
        }
        return "\(vaePrefix)\(parts[0]).\(original)"
    }

    /// A VAE tensor: the original's attention projections are 1×1 convolutions [C, C, 1, 1], diffusers' are linear.
    func vaeTensor(_ key: String, levels: Int) throws -> StoredTensor {
        let t = try tensor(Self.vaeKey(key, levels: levels))
        return key.contains(".attentions.") && t.shape.count == 4 ? t.reshaped([t.shape[0], t.shape[1]]) : t
    }

    // MARK: The text encoder

    /// CLIP ViT-L/14's text tower (SD 1.x) or OpenCLIP ViT-H/14's (SD 2.x) with its sizes from the tensors. SD 2.x
    /// conditions on the penultimate block of OpenCLIP, so diffusers' text encoder for it has one layer fewer than
    /// the checkpoint (whose last block is never used).
    public func textConfig() throws -> CLIPTextConfig {
        var c = CLIPTextConfig()
        switch family {
        case .sd1:
            let t = Self.clipPrefix + "text_model."
            (c.vocabSize, c.hiddenSize) = try pair(shape(t + "embeddings.token_embedding.weight"))
            c.maxPositions = try shape(t + "embeddings.position_embedding.weight")[0]
            c.intermediateSize = try shape(t + "encoder.layers.0.mlp.fc1.weight")[0]
            c.layers = indices(under: t + "encoder.layers.").count
            c.activation = "quick_gelu"
        case .sd2:
            let m = Self.openCLIPPrefix
            (c.vocabSize, c.hiddenSize) = try pair(shape(m + "token_embedding.weight"))
            c.maxPositions = try shape(m + "positional_embedding")[0]
            c.intermediateSize = try shape(m + "transformer.resblocks.0.mlp.c_fc.weight")[0]
            c.layers = indices(under: m + "transformer.resblocks.").count - 1
            c.activation = "gelu"
        }
        c.heads = c.hiddenSize / 64
        guard c.layers >= 1 else { throw DiffuseError.diffusers(path, "the text encoder has no layers") }
        return c
    }

    private func pair(_ shape: [Int]) throws -> (Int, Int) {
        guard shape.count == 2 else { throw DiffuseError.diffusers(path, "the token embedding has shape \(shape), not [vocabulary, width]") }
        return (shape[0], shape[1])
    }

    /// A text encoder tensor under transformers' key (text_model.…).
    func textTensor(_ key: String) throws -> StoredTensor {
        switch family {
        case .sd1:
            // Checkpoints saved with transformers before 4.x have no `text_model.` level.
            let full = Self.clipPrefix + key
            return try tensor(has(full) ? full : Self.clipPrefix + key.dropFirst("text_model.".count))
        case .sd2:
            let m = Self.openCLIPPrefix
            let names = ["text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                         "text_model.embeddings.position_embedding.weight": "positional_embedding",
                         "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias"]
            if let name = names[key] { return try tensor(m + name) }
            let parts = key.split(separator: ".").map(String.init)  // text_model.encoder.layers.N.<module>.<...>
            let block = "\(m)transformer.resblocks.\(parts[3])."
            let tail = parts.dropFirst(4).joined(separator: ".")
            // q, k and v are the three thirds of the packed input projection.
            for (i, p) in ["q", "k", "v"].enumerated() where tail.hasPrefix("self_attn.\(p)_proj.") {
                let packed = try tensor(block + "attn.in_proj_" + parts.last!)
                let third = packed.shape[0] / 3
                return packed.rows((i * third)..<((i + 1) * third))
            }
            let modules = ["self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                           "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"]
            let module = tail.components(separatedBy: ".").dropLast().joined(separator: ".")
            return try tensor(block + (modules[module] ?? module) + "." + parts.last!)
        }
    }

    // MARK: The scheduler

    /// The scheduler config published with the models: SD 1.x's PNDM (ε), SD 2.x's DDIM with v-prediction (2.0 and
    /// 2.1 at 768²; the 512² base models predict ε and need `--prediction epsilon`).
    public var schedulerConfig: SchedulerConfig {
        var c = SchedulerConfig()
        c.className = family == .sd1 ? "PNDMScheduler" : "DDIMScheduler"
        (c.numTrainTimesteps, c.betaStart, c.betaEnd, c.betaSchedule) = (1000, 0.00085, 0.012, "scaled_linear")
        (c.stepsOffset, c.setAlphaToOne, c.clipSample, c.skipPRKSteps) = (1, false, false, true)
        c.predictionType = family == .sd1 ? "epsilon" : "v_prediction"
        return c
    }
}
