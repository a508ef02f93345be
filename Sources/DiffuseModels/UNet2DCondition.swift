import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// A config value given once for every level of the U-Net or as a list with one per level (diffusers accepts both
/// for attention_head_dim, layers_per_block, cross_attention_dim and transformer_layers_per_block).
public struct PerLevel: Codable, Equatable, Sendable {
    public var values: [Int]

    public init(_ values: [Int]) { self.values = values }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(Int.self) { values = [one] } else { values = try c.decode([Int].self) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if values.count == 1 { try c.encode(values[0]) } else { try c.encode(values) }
    }

    /// The value at `level`, checked by `UNet2DConditionModel` to have one or `levels` entries.
    func at(_ level: Int) -> Int { values.count == 1 ? values[0] : values[level] }
}

/// The configuration of Stable Diffusion's U-Net, with the keys and defaults of diffusers' `UNet2DConditionModel`
/// config.json. Its `attention_head_dim` is, for the cross-attention blocks, the number of heads (diffusers keeps
/// that historical misnomer; each head has channels / heads dimensions).
public struct UNet2DConditionConfig: Codable, Equatable, Sendable {
    /// The latent side the model was trained at (64 for SD 1.x at 512², 96 for SD 2.x at 768²).
    public var sampleSize: Int? = nil
    public var inChannels: Int = 4
    public var outChannels: Int = 4
    public var centerInputSample: Bool = false
    public var flipSinToCos: Bool = true
    public var freqShift: Double = 0
    public var downBlockTypes: [String] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    /// UNetMidBlock2DCrossAttn, or nil for none.
    public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    public var upBlockTypes: [String] = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    public var blockOutChannels: [Int] = [320, 640, 1280, 1280]
    public var layersPerBlock = PerLevel([2])
    public var downsamplePadding: Int = 1
    public var midBlockScaleFactor: Double = 1
    public var dropout: Double = 0
    public var actFn: String = "silu"
    public var normNumGroups: Int = 32
    public var normEps: Double = 1e-5
    /// The width of the text embeddings the cross-attention reads (768 for SD 1.x's CLIP ViT-L, 1024 for SD 2.x's
    /// OpenCLIP ViT-H).
    public var crossAttentionDim = PerLevel([1280])
    public var transformerLayersPerBlock = PerLevel([1])
    /// The number of heads of each level's transformers (see the type's note).
    public var attentionHeadDim = PerLevel([8])
    /// Proj_in and proj_out as linear layers (SD 2.x) instead of 1×1 convolutions.
    public var useLinearProjection: Bool = false
    /// Attention scores in fp32 when the model runs in fp16: Diffuse computes in fp32 always, so it holds already.
    public var upcastAttention: Bool = false
    public var resnetTimeScaleShift: String = "default"
    public var timeEmbeddingDim: Int? = nil
    public var convInKernel: Int = 3
    public var convOutKernel: Int = 3

    enum CodingKeys: String, CodingKey, CaseIterable {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case downsamplePadding = "downsample_padding", midBlockScaleFactor = "mid_block_scale_factor", dropout
        case actFn = "act_fn", normNumGroups = "norm_num_groups", normEps = "norm_eps"
        case crossAttentionDim = "cross_attention_dim", transformerLayersPerBlock = "transformer_layers_per_block"
        case attentionHeadDim = "attention_head_dim", useLinearProjection = "use_linear_projection"
        case upcastAttention = "upcast_attention", resnetTimeScaleShift = "resnet_time_scale_shift"
        case timeEmbeddingDim = "time_embedding_dim", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
    }

    /// The keys of diffusers' config for features Diffuse does not build, with the value under which they change
    /// nothing (absent or null counts as that value too). Any other value is refused by name.
    static let inertValues: [String: JSONValue] = [
        "only_cross_attention": .bool(false), "dual_cross_attention": .bool(false), "num_attention_heads": .null,
        "class_embed_type": .null, "num_class_embeds": .null, "addition_embed_type": .null,
        "projection_class_embeddings_input_dim": .null, "class_embeddings_concat": .bool(false),
        "encoder_hid_dim": .null, "encoder_hid_dim_type": .null, "time_embedding_type": .string("positional"),
        "time_embedding_act_fn": .null, "timestep_post_act": .null, "time_cond_proj_dim": .null,
        "resnet_skip_time_act": .bool(false), "resnet_out_scale_factor": .number(1), "attention_type": .string("default"),
        "mid_block_only_cross_attention": .bool(false), "cross_attention_norm": .null,
        "reverse_transformer_layers_per_block": .null,
    ]

    /// Keys that only matter together with a feature refused above.
    static let dependentKeys: Set<String> = ["addition_time_embed_dim", "addition_embed_type_num_heads"]

    public init() {}

    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        var c = UNet2DConditionConfig()
        if k.contains(.sampleSize), !(try k.decodeNil(forKey: .sampleSize)) {
            if let size = try? k.decode(Int.self, forKey: .sampleSize) {
                c.sampleSize = size
            } else {
                let sizes = try k.decode([Int].self, forKey: .sampleSize)
                guard let first = sizes.first, sizes.allSatisfy({ $0 == first }) else {
                    throw DiffuseError.config("sample_size \(sizes) is not supported (square latents only)")
                }
                c.sampleSize = first
            }
        }
        try k.read(.inChannels, into: &c.inChannels)
        try k.read(.outChannels, into: &c.outChannels)
        try k.read(.centerInputSample, into: &c.centerInputSample)
        try k.read(.flipSinToCos, into: &c.flipSinToCos)
        try k.read(.freqShift, into: &c.freqShift)
        try k.read(.downBlockTypes, into: &c.downBlockTypes)
        try k.readOptional(.midBlockType, into: &c.midBlockType)
        try k.read(.upBlockTypes, into: &c.upBlockTypes)
        try k.read(.blockOutChannels, into: &c.blockOutChannels)
        try k.read(.layersPerBlock, into: &c.layersPerBlock)
        try k.read(.downsamplePadding, into: &c.downsamplePadding)
        try k.read(.midBlockScaleFactor, into: &c.midBlockScaleFactor)
        try k.read(.dropout, into: &c.dropout)
        try k.read(.actFn, into: &c.actFn)
        try k.read(.normNumGroups, into: &c.normNumGroups)
        try k.read(.normEps, into: &c.normEps)
        try k.read(.crossAttentionDim, into: &c.crossAttentionDim)
        try k.read(.transformerLayersPerBlock, into: &c.transformerLayersPerBlock)
        try k.read(.attentionHeadDim, into: &c.attentionHeadDim)
        try k.read(.useLinearProjection, into: &c.useLinearProjection)
        try k.read(.upcastAttention, into: &c.upcastAttention)
        try k.read(.resnetTimeScaleShift, into: &c.resnetTimeScaleShift)
        try k.readOptional(.timeEmbeddingDim, into: &c.timeEmbeddingDim)
        try k.read(.convInKernel, into: &c.convInKernel)
        try k.read(.convOutKernel, into: &c.convOutKernel)
        self = c
    }

    /// The keys of a config.json that change nothing here (unknown to this reader, except diffusers' `_` bookkeeping),
    /// to warn about; throws for a feature that Diffuse does not build.
    public static func unknownKeys(in json: [String: JSONValue]) throws -> [String] {
        for (key, inert) in inertValues.sorted(by: { $0.key < $1.key }) {
            if let value = json[key], value != .null, value != inert {
                throw DiffuseError.config("\(key) = \(value) is not supported (Diffuse builds the U-Nets of Stable Diffusion 1.x "
                                  + "and 2.x; this key must be \(inert) or absent)")
            }
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue)).union(inertValues.keys).union(dependentKeys)
        return json.keys.filter { !$0.hasPrefix("_") && !known.contains($0) }.sorted()
    }

    /// Stable Diffusion 1.5's U-Net (runwayml/stable-diffusion-v1-5 unet/config.json): 860 M parameters.
    public static var sd15: UNet2DConditionConfig {
        var c = UNet2DConditionConfig()
        c.sampleSize = 64
        c.crossAttentionDim = PerLevel([768])
        return c
    }
}

/// Stable Diffusion's denoiser laid out exactly like diffusers' `UNet2DConditionModel`: the sinusoidal time
/// embedding → MLP, conv_in, down blocks (DownBlock2D, CrossAttnDownBlock2D: ResNet blocks each followed by a
/// spatial transformer attending to the text embeddings), UNetMidBlock2DCrossAttn, up blocks with skip connections,
/// GroupNorm, activation, conv_out. Parameter paths are diffusers' checkpoint keys.
public final class UNet2DConditionModel: Module {
    public let config: UNet2DConditionConfig
    public let timeEmbedding: TimestepEmbedding
    public let convIn: Conv2d
    let stages: UNetStages
    public let convNormOut: GroupNorm
    public let convOut: Conv2d
    public let activation: Activation

    public init(_ config: UNet2DConditionConfig, generator: inout RandomGenerator) throws {
        let c = config
        let channels = c.blockOutChannels, levels = c.blockOutChannels.count
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws { if !ok { throw DiffuseError.config(message()) } }
        try require(!channels.isEmpty && channels.allSatisfy { $0 > 0 }, "block_out_channels must be positive widths, got \(channels)")
        try require(c.downBlockTypes.count == levels && c.upBlockTypes.count == levels,
                    "block_out_channels, down_block_types and up_block_types must have the same length")
        for (name, list) in [("layers_per_block", c.layersPerBlock), ("cross_attention_dim", c.crossAttentionDim),
                             ("transformer_layers_per_block", c.transformerLayersPerBlock), ("attention_head_dim", c.attentionHeadDim)] {
            try require(list.values.count == 1 || list.values.count == levels,
                        "\(name) must be one number or one per block (\(levels)), got \(list.values)")
            try require(list.values.allSatisfy { $0 > 0 }, "\(name) must be positive, got \(list.values)")
        }
        for type in c.downBlockTypes {
            try require(type == "DownBlock2D" || type == "CrossAttnDownBlock2D",
                        "down_block_types: '\(type)' is not supported (DownBlock2D, CrossAttnDownBlock2D)")
        }
        for type in c.upBlockTypes {
            try require(type == "UpBlock2D" || type == "CrossAttnUpBlock2D",
                        "up_block_types: '\(type)' is not supported (UpBlock2D, CrossAttnUpBlock2D)")
        }
        try require(c.midBlockType == nil || c.midBlockType == "UNetMidBlock2DCrossAttn",
                    "mid_block_type '\(c.midBlockType ?? "")' is not supported (UNetMidBlock2DCrossAttn or null)")
        guard let activation = Activation(rawValue: c.actFn) else {
            throw DiffuseError.config("act_fn '\(c.actFn)' is not supported (\(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        try require(["default", "scale_shift"].contains(c.resnetTimeScaleShift),
                    "resnet_time_scale_shift '\(c.resnetTimeScaleShift)' is not supported (default, scale_shift)")
        try require(c.normNumGroups > 0 && channels.allSatisfy({ $0 % c.normNumGroups == 0 }),
                    "norm_num_groups \(c.normNumGroups) does not divide block_out_channels \(channels)")
        try require(c.downsamplePadding >= 0, "downsample_padding must not be negative")
        for (name, kernel) in [("conv_in_kernel", c.convInKernel), ("conv_out_kernel", c.convOutKernel)] {
            try require(kernel > 0 && kernel % 2 == 1, "\(name) must be odd and positive, got \(kernel)")
        }
        for level in 0..<levels where c.downBlockTypes[level] != "DownBlock2D" || c.upBlockTypes[levels - 1 - level] != "UpBlock2D" {
            let heads = c.attentionHeadDim.at(level)
            try require(channels[level] % heads == 0, "attention_head_dim: \(heads) heads do not divide \(channels[level]) channels")
        }
        self.config = c
        self.activation = activation
        let eps = Float(c.normEps), groups = c.normNumGroups, dropout = Float(c.dropout)
        let scaleShift = c.resnetTimeScaleShift == "scale_shift"
        let timeDim = c.timeEmbeddingDim ?? channels[0] * 4
        convIn = Conv2d(c.inChannels, channels[0], kernel: c.convInKernel, padding: c.convInKernel / 2, generator: &generator)
        timeEmbedding = TimestepEmbedding(channels[0], timeDim, activation: activation, generator: &generator)

        func resnet(_ i: Int, _ o: Int, scale: Float = 1) -> ResnetBlock2D {
            ResnetBlock2D(inChannels: i, outChannels: o, timeEmbeddingChannels: timeDim, groups: groups, eps: eps,
                          dropout: dropout, outputScale: scale, activation: activation, scaleShift: scaleShift, generator: &generator)
        }
        func transformer(_ ch: Int, _ level: Int) -> Transformer2DModel {
            let heads = c.attentionHeadDim.at(level)
            return Transformer2DModel(channels: ch, heads: heads, headDimension: ch / heads, contextDimension: c.crossAttentionDim.at(level),
                                      layers: c.transformerLayersPerBlock.at(level), groups: groups,
                                      linearProjection: c.useLinearProjection, generator: &generator)
        }
        stages = try UNetStages(
            channels: channels, layers: (0..<levels).map(c.layersPerBlock.at),
            downAttends: c.downBlockTypes.map { $0 == "CrossAttnDownBlock2D" }, upAttends: c.upBlockTypes.map { $0 == "CrossAttnUpBlock2D" },
            mid: {
                guard c.midBlockType != nil else { return nil }
                let scale = Float(c.midBlockScaleFactor), last = channels[levels - 1]
                let first = resnet(last, last, scale: scale)
                let attention = transformer(last, levels - 1)
                return UNetMidBlock2D(resnets: [first, resnet(last, last, scale: scale)], attention: .transformer(attention))
            },
            resnet: { resnet($0, $1) },
            attention: { ch, level in .transformer(transformer(ch, level)) },
            resampler: { ch, _, up in
                up ? .upsample(ch, generator: &generator) : .downsample(ch, padding: c.downsamplePadding, generator: &generator)
            })
        convNormOut = GroupNorm(groups: groups, channels: channels[0], eps: eps)
        convOut = Conv2d(channels[0], c.outChannels, kernel: c.convOutKernel, padding: c.convOutKernel / 2, generator: &generator)
        super.init()
        register("conv_in", convIn)
        register("time_embedding", timeEmbedding)
        stages.register(in: self)
        register("conv_norm_out", convNormOut)
        register("conv_out", convOut)
    }

    /// The width of the text embeddings the first cross-attention reads.
    public var contextDimension: Int { config.crossAttentionDim.at(0) }

    /// The network output for latents x [N, C, H, W] at timesteps t (one per latent, fractional ones allowed),
    /// attending to the text embeddings `context` [N, S, cross_attention_dim].
    public func callAsFunction(_ x: Tensor, timesteps t: [Double], context: Tensor) -> Tensor {
        let c = config
        let input = c.centerInputSample ? x * 2 - 1 : x
        let projected = sinusoidalEmbedding(t, dimension: c.blockOutChannels[0], flipSinToCos: c.flipSinToCos, freqShift: c.freqShift)
        let h = stages(convIn(input), timeEmbedding(projected), context: context)
        return convOut(convNormOut(h, then: activation))
    }
}
