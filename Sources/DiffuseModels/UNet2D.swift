import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

extension KeyedDecodingContainer {
    /// A config.json value: `value` keeps its default when the key is absent (or null).
    func read<T: Decodable>(_ key: Key, into value: inout T) throws {
        if let v = try decodeIfPresent(T.self, forKey: key) { value = v }
    }

    /// A value that may be null: absent keeps the default, null sets nil.
    func readOptional<T: Decodable>(_ key: Key, into value: inout T?) throws {
        if contains(key) { value = try decodeIfPresent(T.self, forKey: key) }
    }
}

/// The configuration of a U-Net, with the keys and defaults of diffusers' `UNet2DModel` config.json.
public struct UNet2DConfig: Codable, Equatable, Sendable {
    public var sampleSize: Int = 32
    public var inChannels: Int = 3
    public var outChannels: Int = 3
    public var centerInputSample: Bool = false
    /// positional (sinusoidal), fourier (Gaussian Fourier features of log σ; the output is divided by σ) or
    /// learned (a table of num_train_timesteps embeddings).
    public var timeEmbeddingType: String = "positional"
    /// Width of the time embedding (default 4 × block_out_channels[0]).
    public var timeEmbeddingDim: Int? = nil
    public var freqShift: Double = 0
    public var flipSinToCos: Bool = true
    public var downBlockTypes: [String] = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    /// UNetMidBlock2D, or nil for none.
    public var midBlockType: String? = "UNetMidBlock2D"
    public var upBlockTypes: [String] = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    public var blockOutChannels: [Int] = [224, 448, 672, 896]
    public var layersPerBlock: Int = 2
    public var midBlockScaleFactor: Double = 1
    public var downsamplePadding: Int = 1
    /// How attention blocks resample: conv (a strided 3×3 / nearest ×2 then 3×3) or resnet (a ResNet block that
    /// pools or upsamples). Plain blocks always use conv.
    public var downsampleType: String = "conv"
    public var upsampleType: String = "conv"
    public var dropout: Double = 0
    public var actFn: String = "silu"
    public var attentionHeadDim: Int? = 8
    public var normNumGroups: Int = 32
    /// Groups of the middle attention's norm (default: norm_num_groups; none with scale_shift).
    public var attnNormNumGroups: Int? = nil
    public var normEps: Double = 1e-5
    /// default (h + e) or scale_shift (h·(1 + scale) + shift) for the time embedding in ResNet blocks.
    public var resnetTimeScaleShift: String = "default"
    public var addAttention: Bool = true
    /// nil (a table of num_class_embeds when that is set) or timestep (labels embedded like timesteps).
    public var classEmbedType: String? = nil
    public var numClassEmbeds: Int? = nil
    /// Needed by the learned time embedding.
    public var numTrainTimesteps: Int? = nil

    enum CodingKeys: String, CodingKey, CaseIterable {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", timeEmbeddingType = "time_embedding_type"
        case timeEmbeddingDim = "time_embedding_dim", freqShift = "freq_shift", flipSinToCos = "flip_sin_to_cos"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case midBlockScaleFactor = "mid_block_scale_factor", downsamplePadding = "downsample_padding"
        case downsampleType = "downsample_type", upsampleType = "upsample_type", dropout
        case actFn = "act_fn", attentionHeadDim = "attention_head_dim", normNumGroups = "norm_num_groups"
        case attnNormNumGroups = "attn_norm_num_groups", normEps = "norm_eps"
        case resnetTimeScaleShift = "resnet_time_scale_shift", addAttention = "add_attention"
        case classEmbedType = "class_embed_type", numClassEmbeds = "num_class_embeds"
        case numTrainTimesteps = "num_train_timesteps"
    }

    public init() {}

    /// Reads a config.json: absent keys take diffusers' defaults; a key that may be null (mid_block_type,
    /// attention_head_dim, ...) keeps null. Keys it does not know are left for `unknownKeys`.
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        var c = UNet2DConfig()
        if k.contains(.sampleSize), !(try k.decodeNil(forKey: .sampleSize)) {
            // An int, or [height, width] (a square only: the U-Net is convolutional, the size only sets sampling's).
            if let size = try? k.decode(Int.self, forKey: .sampleSize) {
                c.sampleSize = size
            } else {
                let sizes = try k.decode([Int].self, forKey: .sampleSize)
                guard let first = sizes.first, sizes.allSatisfy({ $0 == first }) else {
                    throw DiffuseError.config("sample_size \(sizes) is not supported (square images only)")
                }
                c.sampleSize = first
            }
        }
        try k.read(.inChannels, into: &c.inChannels)
        try k.read(.outChannels, into: &c.outChannels)
        try k.read(.centerInputSample, into: &c.centerInputSample)
        try k.read(.timeEmbeddingType, into: &c.timeEmbeddingType)
        try k.readOptional(.timeEmbeddingDim, into: &c.timeEmbeddingDim)
        try k.read(.freqShift, into: &c.freqShift)
        try k.read(.flipSinToCos, into: &c.flipSinToCos)
        try k.read(.downBlockTypes, into: &c.downBlockTypes)
        try k.readOptional(.midBlockType, into: &c.midBlockType)
        try k.read(.upBlockTypes, into: &c.upBlockTypes)
        try k.read(.blockOutChannels, into: &c.blockOutChannels)
        try k.read(.layersPerBlock, into: &c.layersPerBlock)
        try k.read(.midBlockScaleFactor, into: &c.midBlockScaleFactor)
        try k.read(.downsamplePadding, into: &c.downsamplePadding)
        try k.read(.downsampleType, into: &c.downsampleType)
        try k.read(.upsampleType, into: &c.upsampleType)
        try k.read(.dropout, into: &c.dropout)
        try k.read(.actFn, into: &c.actFn)
        try k.readOptional(.attentionHeadDim, into: &c.attentionHeadDim)
        try k.read(.normNumGroups, into: &c.normNumGroups)
        try k.readOptional(.attnNormNumGroups, into: &c.attnNormNumGroups)
        try k.read(.normEps, into: &c.normEps)
        try k.read(.resnetTimeScaleShift, into: &c.resnetTimeScaleShift)
        try k.read(.addAttention, into: &c.addAttention)
        try k.readOptional(.classEmbedType, into: &c.classEmbedType)
        try k.readOptional(.numClassEmbeds, into: &c.numClassEmbeds)
        try k.readOptional(.numTrainTimesteps, into: &c.numTrainTimesteps)
        self = c
    }

    /// Writes every key, nil ones as null (an absent key means diffusers' default, which is not always nil).
    public func encode(to encoder: Encoder) throws {
        var k = encoder.container(keyedBy: CodingKeys.self)
        func write<T: Encodable>(_ value: T?, _ key: CodingKeys) throws {
            if let value { try k.encode(value, forKey: key) } else { try k.encodeNil(forKey: key) }
        }
        try write(sampleSize, .sampleSize)
        try write(inChannels, .inChannels)
        try write(outChannels, .outChannels)
        try write(centerInputSample, .centerInputSample)
        try write(timeEmbeddingType, .timeEmbeddingType)
        try write(timeEmbeddingDim, .timeEmbeddingDim)
        try write(freqShift, .freqShift)
        try write(flipSinToCos, .flipSinToCos)
        try write(downBlockTypes, .downBlockTypes)
        try write(midBlockType, .midBlockType)
        try write(upBlockTypes, .upBlockTypes)
        try write(blockOutChannels, .blockOutChannels)
        try write(layersPerBlock, .layersPerBlock)
        try write(midBlockScaleFactor, .midBlockScaleFactor)
        try write(downsamplePadding, .downsamplePadding)
        try write(downsampleType, .downsampleType)
        try write(upsampleType, .upsampleType)
        try write(dropout, .dropout)
        try write(actFn, .actFn)
        try write(attentionHeadDim, .attentionHeadDim)
        try write(normNumGroups, .normNumGroups)
        try write(attnNormNumGroups, .attnNormNumGroups)
        try write(normEps, .normEps)
        try write(resnetTimeScaleShift, .resnetTimeScaleShift)
        try write(addAttention, .addAttention)
        try write(classEmbedType, .classEmbedType)
        try write(numClassEmbeds, .numClassEmbeds)
        try write(numTrainTimesteps, .numTrainTimesteps)
    }

    /// The keys of a config.json object that this reader does not know, except diffusers' own bookkeeping
    /// (`_class_name`, `_diffusers_version`, ...): they change nothing here, and a loader warns about them.
    public static func unknownKeys(in json: [String: JSONValue]) -> [String] {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        return json.keys.filter { !$0.hasPrefix("_") && !known.contains($0) }.sorted()
    }

    /// The small MNIST network of the design notes: 28×28×1, channels (32, 64, 128), attention at the lowest
    /// resolution; 2.7 M parameters.
    public static var mnistSmall: UNet2DConfig {
        var c = UNet2DConfig()
        c.sampleSize = 28
        c.inChannels = 1
        c.outChannels = 1
        c.layersPerBlock = 1
        c.blockOutChannels = [32, 64, 128]
        c.normNumGroups = 8
        c.downBlockTypes = ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
        c.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
        return c
    }

    /// The DDPM paper's CIFAR-10 network (google/ddpm-cifar10-32): 32×32×3, channels (128, 256, 256, 256), attention
    /// at 16×16; 35.7 M parameters.
    public static var cifarDDPM: UNet2DConfig {
        var c = UNet2DConfig()
        c.sampleSize = 32
        c.blockOutChannels = [128, 256, 256, 256]
        c.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]
        c.upBlockTypes = ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        c.dropout = 0.1
        return c
    }

    /// The names `preset(_:side:)` knows.
    public static let presets = ["tiny", "small", "mnist-small", "cifar-ddpm", "latent"]

    /// A U-Net by preset name, every preset of Diffuse in one place: `mnist-small` (also `small`), `cifar-ddpm`,
    /// `tiny` (mnist-small at 16, 32 and 64 channels, 0.69 M parameters) and `latent`, for latents of `side`: one
    /// level with attention, or two when the side halves. The caller sets the size and channels of its data.
    public static func preset(_ name: String, side: Int) throws -> UNet2DConfig {
        switch name {
        case "mnist-small", "small": return .mnistSmall
        case "cifar-ddpm": return .cifarDDPM
        case "tiny":
            var u = UNet2DConfig.mnistSmall
            u.blockOutChannels = [16, 32, 64]
            u.normNumGroups = 8
            return u
        case "latent":
            var u = UNet2DConfig()
            u.layersPerBlock = 2
            u.attentionHeadDim = 32
            u.normNumGroups = 32
            if side % 2 == 0 {
                (u.blockOutChannels, u.downBlockTypes, u.upBlockTypes) = ([128, 256], ["DownBlock2D", "AttnDownBlock2D"], ["AttnUpBlock2D", "UpBlock2D"])
            } else {
                (u.blockOutChannels, u.downBlockTypes, u.upBlockTypes) = ([128], ["AttnDownBlock2D"], ["AttnUpBlock2D"])
            }
            return u
        default: throw DiffuseError.config("unknown U-Net preset \(name): use \(presets.joined(separator: ", "))")
        }
    }
}

/// diffusers' `Timesteps` projection: e = [cos(t·f), sin(t·f)] (or [sin, cos]) with frequencies
/// f_i = exp(−ln(10000)·i/(d/2 − shift)), i < d/2, in Float32 as diffusers computes them. Timesteps may be
/// fractional (the sigma-based samplers visit them).
public func sinusoidalEmbedding(_ timesteps: [Double], dimension d: Int, flipSinToCos: Bool, freqShift: Double) -> Tensor {
    let half = d / 2
    let frequencies = (0..<half).map { Foundation.exp(-Float(Foundation.log(10000.0)) * Float($0) / Float(Double(half) - freqShift)) }
    var values = [Float](repeating: 0, count: timesteps.count * d)
    for (n, t) in timesteps.enumerated() {
        for i in 0..<half {
            let angle = Float(t) * frequencies[i]
            let (first, second) = flipSinToCos ? (Foundation.cos(angle), Foundation.sin(angle)) : (Foundation.sin(angle), Foundation.cos(angle))
            values[n * d + i] = first
            values[n * d + half + i] = second
        }
    }
    return Tensor(values, shape: [timesteps.count, d])
}

/// diffusers' `GaussianFourierProjection` (log=True, sin first): e = [sin(2π·ln σ·w), cos(2π·ln σ·w)] with fixed
/// random frequencies w (the parameter `weight`, drawn N(0, 16²) and never trained).
public final class GaussianFourierProjection: Module {
    public let weight: Parameter

    public init(size: Int, scale: Float = 16, generator: inout RandomGenerator) {
        weight = Parameter(generator.normal([size]) * scale)
        super.init()
        register("weight", weight)
    }

    public func callAsFunction(_ sigmas: [Double]) -> Tensor {
        let w = weight.value.scalars, d = w.count
        var values = [Float](repeating: 0, count: sigmas.count * 2 * d)
        for (n, sigma) in sigmas.enumerated() {
            let logSigma = Foundation.log(Float(sigma))
            for i in 0..<d {
                let angle = logSigma * w[i] * 2 * Float.pi
                values[n * 2 * d + i] = Foundation.sin(angle)
                values[n * 2 * d + d + i] = Foundation.cos(angle)
            }
        }
        return Tensor(values, shape: [sigmas.count, 2 * d])
    }
}

/// diffusers' `TimestepEmbedding`: linear_2(act(linear_1(e))), act SiLU unless the config's act_fn says otherwise.
public final class TimestepEmbedding: Module {
    public let linear1, linear2: Linear
    public let activation: Activation

    public init(_ inFeatures: Int, _ outFeatures: Int, activation: Activation = .silu, generator: inout RandomGenerator) {
        linear1 = Linear(inFeatures, outFeatures, generator: &generator)
        linear2 = Linear(outFeatures, outFeatures, generator: &generator)
        self.activation = activation
        super.init()
        register("linear_1", linear1)
        register("linear_2", linear2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear2(activation(linear1(x))) }
}

/// What changes the resolution between two stages: a convolution (stride 2 on the way down; nearest ×2 then 3×3
/// on the way up; diffusers pads right and bottom by one when downsample_padding is 0) or a resampling ResNet
/// block. Registered as diffusers' `downsamplers.0` / `upsamplers.0`.
enum Resampler {
    case convolution(Conv2d, padRightBottom: Bool)
    case resnet(ResnetBlock2D)

    func callAsFunction(_ x: Tensor, _ t: Tensor?, up: Bool) -> Tensor {
        switch self {
        case .convolution(let conv, let pad):
            if up { return conv(upsampleNearest2x(x)) }
            return conv(pad ? x.padded([(0, 0), (0, 0), (0, 1), (0, 1)]) : x)
        case .resnet(let block): return block(x, timeEmbedding: t)
        }
    }

    /// A strided 3×3 convolution (`padding` 0 pads right and bottom by one, as diffusers does).
    static func downsample(_ channels: Int, padding: Int, generator: inout RandomGenerator) -> Resampler {
        .convolution(Conv2d(channels, channels, kernel: 3, stride: 2, padding: padding, generator: &generator),
                     padRightBottom: padding == 0)
    }

    /// Nearest ×2, then a 3×3 convolution.
    static func upsample(_ channels: Int, generator: inout RandomGenerator) -> Resampler {
        .convolution(Conv2d(channels, channels, kernel: 3, padding: 1, generator: &generator), padRightBottom: false)
    }

    var module: Module {
        switch self {
        case .convolution(let conv, _):
            let holder = Module()
            holder.register("conv", conv)
            return holder
        case .resnet(let block): return block
        }
    }
}

/// The attention after a ResNet block: diffusers' self-attention over positions (UNet2DModel, the autoencoder) or a
/// spatial transformer that also attends to a context (UNet2DConditionModel's cross-attention blocks).
enum StageAttention {
    case spatial(SpatialSelfAttention)
    case transformer(Transformer2DModel)

    /// `context` is needed by a transformer, and only a conditional U-Net, which always passes one, builds those.
    func callAsFunction(_ x: Tensor, context: Tensor?) -> Tensor {
        switch self {
        case .spatial(let attention): return attention(x)
        case .transformer(let transformer): return transformer(x, context: context!)
        }
    }

    var module: Module {
        switch self {
        case .spatial(let attention): attention
        case .transformer(let transformer): transformer
        }
    }
}

/// A stage of the U-Net: ResNet blocks, each optionally followed by attention, then optionally a resampler. Its
/// parameters are named like diffusers' DownBlock2D / AttnDownBlock2D / CrossAttnDownBlock2D and their up blocks.
public final class UNetStage: Module {
    public let resnets: [ResnetBlock2D]
    let attentions: [StageAttention]
    let resampler: Resampler?
    public let isUp: Bool

    init(resnets: [ResnetBlock2D], attentions: [StageAttention], resampler: Resampler?, isUp: Bool) {
        self.resnets = resnets
        self.attentions = attentions
        self.resampler = resampler
        self.isUp = isUp
        super.init()
        register("resnets", ModuleList(resnets))
        if !attentions.isEmpty { register("attentions", ModuleList(attentions.map(\.module))) }
        if let resampler { register(isUp ? "upsamplers" : "downsamplers", ModuleList([resampler.module])) }
    }

    /// The way down: returns the output and the feature maps kept for the skip connections.
    func down(_ x: Tensor, _ t: Tensor?, context: Tensor? = nil) -> (Tensor, [Tensor]) {
        var h = x
        var kept: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, timeEmbedding: t)
            if i < attentions.count { h = attentions[i](h, context: context) }
            kept.append(h)
        }
        if let resampler {
            h = resampler(h, t, up: false)
            kept.append(h)
        }
        return (h, kept)
    }

    /// The way up: each ResNet block takes the concatenation of the running map and one skip map (last first).
    func up(_ x: Tensor, skips: inout [Tensor], _ t: Tensor, context: Tensor?) -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = resnet(concat([h, skips.removeLast()], axis: 1), timeEmbedding: t)
            if i < attentions.count { h = attentions[i](h, context: context) }
        }
        if let resampler { h = resampler(h, t, up: true) }
        return h
    }

    /// Straight through, without skip connections (an autoencoder's decoder stage): ResNet blocks, then the resampler.
    func up(_ x: Tensor) -> Tensor {
        let h = resnets.reduce(x) { h, resnet in resnet(h, timeEmbedding: nil) }
        return resampler.map { $0(h, nil, up: true) } ?? h
    }
}

/// diffusers' `UNetMidBlock2D` and `UNetMidBlock2DCrossAttn`: a ResNet block, optionally attention, a ResNet block,
/// at the lowest resolution.
public final class UNetMidBlock2D: Module {
    public let resnets: [ResnetBlock2D]
    let attention: StageAttention?

    init(resnets: [ResnetBlock2D], attention: StageAttention?) {
        self.resnets = resnets
        self.attention = attention
        super.init()
        register("resnets", ModuleList(resnets))
        if let attention { register("attentions", ModuleList([attention.module])) }
    }

    public func callAsFunction(_ x: Tensor, timeEmbedding t: Tensor?, context: Tensor? = nil) -> Tensor {
        var h = resnets[0](x, timeEmbedding: t)
        if let attention { h = attention(h, context: context) }
        return resnets[1](h, timeEmbedding: t)
    }
}

/// The blocks of a diffusers U-Net between conv_in and conv_norm_out, which UNet2DModel and UNet2DConditionModel
/// build alike: at level i of `channels`, `layers[i]` ResNet blocks on the way down and `layers[i] + 1` on the way up
/// (each of those taking a skip map), each followed by attention where the block type says so, a resampler between
/// levels, and the middle block.
struct UNetStages {
    let down: [UNetStage]
    let mid: UNetMidBlock2D?
    let up: [UNetStage]

    /// `attention(channels, level)` builds the attention of a block at a level of `channels` (the up blocks run
    /// through the levels in reverse); `resampler(channels, attends, up)` the resampler after a stage. The blocks
    /// are built in diffusers' order (down, middle, up), which is the order of their random initialization.
    init(channels: [Int], layers: [Int], downAttends: [Bool], upAttends: [Bool],
         mid: () throws -> UNetMidBlock2D?, resnet: (_ input: Int, _ output: Int) -> ResnetBlock2D,
         attention: (_ channels: Int, _ level: Int) throws -> StageAttention,
         resampler: (_ channels: Int, _ attends: Bool, _ up: Bool) -> Resampler) throws {
        let last = channels.count - 1
        var down: [UNetStage] = []
        var output = channels[0]
        for i in channels.indices {
            let input = output
            output = channels[i]
            let resnets = (0..<layers[i]).map { resnet($0 == 0 ? input : output, output) }
            let attentions = downAttends[i] ? try (0..<layers[i]).map { _ in try attention(output, i) } : []
            down.append(UNetStage(resnets: resnets, attentions: attentions,
                                  resampler: i < last ? resampler(output, downAttends[i], false) : nil, isUp: false))
        }
        let mid = try mid()
        var up: [UNetStage] = []
        output = channels[last]
        for i in channels.indices {
            let level = last - i
            let previous = output
            output = channels[level]
            let input = channels[max(level - 1, 0)]
            let count = layers[level] + 1
            let resnets = (0..<count).map { j in
                resnet((j == 0 ? previous : output) + (j == count - 1 ? input : output), output)
            }
            let attentions = upAttends[i] ? try (0..<count).map { _ in try attention(output, level) } : []
            up.append(UNetStage(resnets: resnets, attentions: attentions,
                                resampler: i < last ? resampler(output, upAttends[i], true) : nil, isUp: true))
        }
        (self.down, self.mid, self.up) = (down, mid, up)
    }

    /// Registers the blocks under diffusers' names.
    func register(in module: Module) {
        module.register("down_blocks", ModuleList(down))
        if let mid { module.register("mid_block", mid) }
        module.register("up_blocks", ModuleList(up))
    }

    /// conv_in's output h through the blocks, with the time embedding t and the context of cross-attention.
    func callAsFunction(_ x: Tensor, _ t: Tensor, context: Tensor?) -> Tensor {
        var h = x
        var skips = [h]
        for block in down {
            let (out, kept) = block.down(h, t, context: context)
            h = out
            skips += kept
        }
        if let mid { h = mid(h, timeEmbedding: t, context: context) }
        for block in up { h = block.up(h, skips: &skips, t, context: context) }
        return h
    }
}

/// The DDPM U-Net laid out exactly like diffusers' `UNet2DModel`: a time embedding (sinusoidal, Gaussian Fourier
/// or learned) → MLP, an optional class embedding added to it, conv_in, down stages, an optional middle (ResNet,
/// attention, ResNet), up stages with skip connections, GroupNorm, SiLU, conv_out. Parameter paths are diffusers'
/// checkpoint keys; every config key that changes the network is honoured or refused by name.
public final class UNet2DModel: Module {
    public let config: UNet2DConfig
    public let fourierProjection: GaussianFourierProjection?
    public let learnedProjection: Embedding?
    public let timeEmbedding: TimestepEmbedding
    public let classEmbedding: Embedding?
    public let classTimestepEmbedding: TimestepEmbedding?
    public let convIn: Conv2d
    let stages: UNetStages
    public let convNormOut: GroupNorm
    public let convOut: Conv2d

    public init(_ config: UNet2DConfig, generator: inout RandomGenerator) throws {
        let c = config
        let channels = c.blockOutChannels
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws { if !ok { throw DiffuseError.config(message()) } }
        try require(!channels.isEmpty && channels.allSatisfy { $0 > 0 }, "block_out_channels must be positive widths, got \(channels)")
        try require(c.downBlockTypes.count == channels.count && c.upBlockTypes.count == channels.count,
                    "block_out_channels, down_block_types and up_block_types must have the same length")
        try require(["positional", "fourier", "learned"].contains(c.timeEmbeddingType),
                    "time_embedding_type '\(c.timeEmbeddingType)' is not supported (positional, fourier, learned)")
        try require(c.timeEmbeddingType != "learned" || (c.numTrainTimesteps ?? 0) > 0,
                    "time_embedding_type 'learned' needs num_train_timesteps")
        guard let activation = Activation(rawValue: c.actFn) else {
            throw DiffuseError.config("act_fn '\(c.actFn)' is not supported (\(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        try require(["default", "scale_shift"].contains(c.resnetTimeScaleShift),
                    "resnet_time_scale_shift '\(c.resnetTimeScaleShift)' is not supported (default, scale_shift)")
        try require(["conv", "resnet"].contains(c.downsampleType), "downsample_type '\(c.downsampleType)' is not supported (conv, resnet)")
        try require(["conv", "resnet"].contains(c.upsampleType), "upsample_type '\(c.upsampleType)' is not supported (conv, resnet)")
        try require(c.midBlockType == nil || c.midBlockType == "UNetMidBlock2D",
                    "mid_block_type '\(c.midBlockType ?? "")' is not supported (UNetMidBlock2D or null)")
        try require(c.classEmbedType == nil || c.classEmbedType == "timestep",
                    "class_embed_type '\(c.classEmbedType ?? "")' is not supported (null, timestep)")
        try require(c.classEmbedType != nil || (c.numClassEmbeds ?? 1) > 0, "num_class_embeds must be positive")
        try require(c.normNumGroups > 0 && channels.allSatisfy({ $0 % c.normNumGroups == 0 }),
                    "norm_num_groups \(c.normNumGroups) does not divide block_out_channels \(channels)")
        try require(c.layersPerBlock >= 1, "layers_per_block must be at least 1, got \(c.layersPerBlock)")
        try require(c.downsamplePadding >= 0, "downsample_padding must not be negative")
        try require(c.attentionHeadDim.map { $0 > 0 } ?? true, "attention_head_dim must be positive")
        self.config = c
        let eps = Float(c.normEps), groups = c.normNumGroups, dropout = Float(c.dropout)
        let scaleShift = c.resnetTimeScaleShift == "scale_shift"
        let timeDim = c.timeEmbeddingDim ?? channels[0] * 4
        let projectionDim = c.timeEmbeddingType == "fourier" ? 2 * channels[0] : channels[0]
        fourierProjection = c.timeEmbeddingType == "fourier" ? GaussianFourierProjection(size: channels[0], generator: &generator) : nil
        learnedProjection = c.timeEmbeddingType == "learned" ? Embedding(c.numTrainTimesteps!, channels[0], generator: &generator) : nil
        timeEmbedding = TimestepEmbedding(projectionDim, timeDim, generator: &generator)
        classEmbedding = c.classEmbedType == nil ? c.numClassEmbeds.map { Embedding($0, timeDim, generator: &generator) } : nil
        classTimestepEmbedding = c.classEmbedType == "timestep" ? TimestepEmbedding(projectionDim, timeDim, generator: &generator) : nil
        convIn = Conv2d(c.inChannels, channels[0], kernel: 3, padding: 1, generator: &generator)

        func resnet(_ i: Int, _ o: Int, scale: Float = 1, resample: ResnetBlock2D.Resample = .none) -> ResnetBlock2D {
            ResnetBlock2D(inChannels: i, outChannels: o, timeEmbeddingChannels: timeDim, groups: groups, eps: eps,
                          dropout: dropout, outputScale: scale, activation: activation, scaleShift: scaleShift,
                          resample: resample, generator: &generator)
        }
        func attention(_ ch: Int, groups: Int?, scale: Float = 1) throws -> SpatialSelfAttention {
            let head = c.attentionHeadDim ?? ch
            try require(ch % head == 0, "attention_head_dim \(head) does not divide \(ch) channels")
            if let groups { try require(ch % groups == 0, "\(groups) groups do not divide \(ch) channels") }
            return SpatialSelfAttention(channels: ch, headDimension: head, groups: groups, eps: eps, outputScale: scale,
                                        generator: &generator)
        }
        for type in c.downBlockTypes {
            try require(type == "DownBlock2D" || type == "AttnDownBlock2D",
                        "down_block_types: '\(type)' is not supported (DownBlock2D, AttnDownBlock2D)")
        }
        for type in c.upBlockTypes {
            try require(type == "UpBlock2D" || type == "AttnUpBlock2D",
                        "up_block_types: '\(type)' is not supported (UpBlock2D, AttnUpBlock2D)")
        }
        stages = try UNetStages(
            channels: channels, layers: Array(repeating: c.layersPerBlock, count: channels.count),
            downAttends: c.downBlockTypes.map { $0 == "AttnDownBlock2D" }, upAttends: c.upBlockTypes.map { $0 == "AttnUpBlock2D" },
            mid: {
                guard c.midBlockType != nil else { return nil }
                let scale = Float(c.midBlockScaleFactor), last = channels.last!
                let first = resnet(last, last, scale: scale)
                let attention = c.addAttention
                    ? try attention(last, groups: c.attnNormNumGroups ?? (scaleShift ? nil : groups), scale: scale) : nil
                return UNetMidBlock2D(resnets: [first, resnet(last, last, scale: scale)], attention: attention.map(StageAttention.spatial))
            },
            resnet: { resnet($0, $1) },
            attention: { ch, _ in .spatial(try attention(ch, groups: groups)) },
            resampler: { ch, attends, up in
                switch (up, attends) {
                case (false, true) where c.downsampleType == "resnet": .resnet(resnet(ch, ch, resample: .down))
                case (false, _): .downsample(ch, padding: c.downsamplePadding, generator: &generator)
                case (true, true) where c.upsampleType == "resnet": .resnet(resnet(ch, ch, resample: .up))
                case (true, _): .upsample(ch, generator: &generator)
                }
            })
        convNormOut = GroupNorm(groups: groups, channels: channels[0], eps: eps)
        convOut = Conv2d(channels[0], c.outChannels, kernel: 3, padding: 1, generator: &generator)
        super.init()
        if let p = fourierProjection { register("time_proj", p) }
        if let p = learnedProjection { register("time_proj", p) }
        register("time_embedding", timeEmbedding)
        if let e = classEmbedding { register("class_embedding", e) }
        if let e = classTimestepEmbedding { register("class_embedding", e) }
        register("conv_in", convIn)
        stages.register(in: self)
        register("conv_norm_out", convNormOut)
        register("conv_out", convOut)
    }

    /// Whether the network needs class labels.
    public var isConditional: Bool { classEmbedding != nil || classTimestepEmbedding != nil }

    /// The time projection of diffusers' `time_proj`: sinusoidal, Gaussian Fourier (of t = σ) or a learned table.
    private func project(_ t: [Double]) -> Tensor {
        if let fourierProjection { return fourierProjection(t) }
        if let learnedProjection { return learnedProjection(t.map { Int($0.rounded()) }) }
        return sinusoidalEmbedding(t, dimension: config.blockOutChannels[0], flipSinToCos: config.flipSinToCos,
                                   freqShift: config.freqShift)
    }

    /// The network output for images x [N, C, H, W] at timesteps t (one per image; σ for a Fourier embedding),
    /// with class labels when the model has a class embedding.
    public func callAsFunction(_ x: Tensor, timesteps t: [Double], classLabels: [Int]? = nil) -> Tensor {
        let c = config
        let input = c.centerInputSample ? x * 2 - 1 : x
        var emb = timeEmbedding(project(t))
        if let classEmbedding, let labels = classLabels { emb = emb + classEmbedding(labels) }
        if let classTimestepEmbedding, let labels = classLabels {
            emb = emb + classTimestepEmbedding(project(labels.map(Double.init)))
        }
        let out = convOut(convNormOut(stages(convIn(input), emb, context: nil), silu: true))
        // A Fourier (score) model predicts the noise scaled by 1/σ.
        return fourierProjection == nil ? out : out / perSample(t, rank: out.rank)
    }
}
