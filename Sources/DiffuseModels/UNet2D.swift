import DiffuseEngine
import DiffuseNN
import Foundation

/// The configuration of a U-Net, with the keys and defaults of diffusers' `UNet2DModel` config.json.
public struct UNet2DConfig: Codable, Equatable, Sendable {
    public var sampleSize: Int = 32
    public var inChannels: Int = 3
    public var outChannels: Int = 3
    public var centerInputSample: Bool = false
    public var timeEmbeddingType: String = "positional"
    public var freqShift: Double = 0
    public var flipSinToCos: Bool = true
    public var downBlockTypes: [String] = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    public var upBlockTypes: [String] = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    public var blockOutChannels: [Int] = [224, 448, 672, 896]
    public var layersPerBlock: Int = 2
    public var midBlockScaleFactor: Double = 1
    public var downsamplePadding: Int = 1
    public var dropout: Double = 0
    public var actFn: String = "silu"
    public var attentionHeadDim: Int? = 8
    public var normNumGroups: Int = 32
    public var normEps: Double = 1e-5
    public var resnetTimeScaleShift: String = "default"
    public var addAttention: Bool = true
    public var numClassEmbeds: Int? = nil

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", timeEmbeddingType = "time_embedding_type"
        case freqShift = "freq_shift", flipSinToCos = "flip_sin_to_cos", downBlockTypes = "down_block_types"
        case upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case midBlockScaleFactor = "mid_block_scale_factor", downsamplePadding = "downsample_padding", dropout
        case actFn = "act_fn", attentionHeadDim = "attention_head_dim", normNumGroups = "norm_num_groups"
        case normEps = "norm_eps", resnetTimeScaleShift = "resnet_time_scale_shift", addAttention = "add_attention"
        case numClassEmbeds = "num_class_embeds"
    }

    public init() {}

    /// Reads a config.json: absent keys take diffusers' defaults, unknown keys are ignored.
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        var c = UNet2DConfig()
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let v = try k.decodeIfPresent(T.self, forKey: key) { value = v }
        }
        try read(.sampleSize, &c.sampleSize)
        try read(.inChannels, &c.inChannels)
        try read(.outChannels, &c.outChannels)
        try read(.centerInputSample, &c.centerInputSample)
        try read(.timeEmbeddingType, &c.timeEmbeddingType)
        try read(.freqShift, &c.freqShift)
        try read(.flipSinToCos, &c.flipSinToCos)
        try read(.downBlockTypes, &c.downBlockTypes)
        try read(.upBlockTypes, &c.upBlockTypes)
        try read(.blockOutChannels, &c.blockOutChannels)
        try read(.layersPerBlock, &c.layersPerBlock)
        try read(.midBlockScaleFactor, &c.midBlockScaleFactor)
        try read(.downsamplePadding, &c.downsamplePadding)
        try read(.dropout, &c.dropout)
        try read(.actFn, &c.actFn)
        if k.contains(.attentionHeadDim) { c.attentionHeadDim = try k.decodeIfPresent(Int.self, forKey: .attentionHeadDim) }
        try read(.normNumGroups, &c.normNumGroups)
        try read(.normEps, &c.normEps)
        try read(.resnetTimeScaleShift, &c.resnetTimeScaleShift)
        try read(.addAttention, &c.addAttention)
        c.numClassEmbeds = try k.decodeIfPresent(Int.self, forKey: .numClassEmbeds)
        self = c
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
}

/// diffusers' `Timesteps` projection: e = [cos(t·f), sin(t·f)] (or [sin, cos]) with frequencies
/// f_i = exp(−ln(10000)·i/(d/2 − shift)), i < d/2.
public func sinusoidalEmbedding(_ timesteps: [Int], dimension d: Int, flipSinToCos: Bool, freqShift: Double) -> Tensor {
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

/// diffusers' `TimestepEmbedding`: linear_2(SiLU(linear_1(e))).
public final class TimestepEmbedding: Module {
    public let linear1, linear2: Linear

    public init(_ inFeatures: Int, _ outFeatures: Int, generator: inout RandomGenerator) {
        linear1 = Linear(inFeatures, outFeatures, generator: &generator)
        linear2 = Linear(outFeatures, outFeatures, generator: &generator)
        super.init()
        register("linear_1", linear1)
        register("linear_2", linear2)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear2(silu(linear1(x))) }
}

/// A stage of the U-Net: ResNet blocks, each optionally followed by attention, then optionally a resampling
/// convolution (stride-2 for the way down, nearest ×2 then 3×3 for the way up). Its parameters are named like
/// diffusers' DownBlock2D / AttnDownBlock2D / UpBlock2D / AttnUpBlock2D.
public final class UNetStage: Module {
    public let resnets: [ResnetBlock2D]
    public let attentions: [SpatialSelfAttention]
    public let resample: Conv2d?
    public let isUp: Bool

    init(resnets: [ResnetBlock2D], attentions: [SpatialSelfAttention], resample: Conv2d?, isUp: Bool) {
        self.resnets = resnets
        self.attentions = attentions
        self.resample = resample
        self.isUp = isUp
        super.init()
        register("resnets", ModuleList(resnets))
        if !attentions.isEmpty { register("attentions", ModuleList(attentions)) }
        if let resample {
            let holder = Module()
            holder.register("conv", resample)
            register(isUp ? "upsamplers" : "downsamplers", ModuleList([holder]))
        }
    }

    /// The way down: returns the output and the feature maps kept for the skip connections.
    func down(_ x: Tensor, _ t: Tensor) -> (Tensor, [Tensor]) {
        var h = x
        var kept: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, timeEmbedding: t)
            if i < attentions.count { h = attentions[i](h) }
            kept.append(h)
        }
        if let resample {
            h = resample(h)
            kept.append(h)
        }
        return (h, kept)
    }

    /// The way up: each ResNet block takes the concatenation of the running map and one skip map (last first).
    func up(_ x: Tensor, skips: inout [Tensor], _ t: Tensor) -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = resnet(concat([h, skips.removeLast()], axis: 1), timeEmbedding: t)
            if i < attentions.count { h = attentions[i](h) }
        }
        if let resample { h = resample(upsampleNearest2x(h)) }
        return h
    }
}

/// A configuration that Diffuse cannot build, with the key and the reason.
public struct ConfigError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The DDPM U-Net laid out exactly like diffusers' `UNet2DModel`: sinusoidal time embedding → MLP, an optional class
/// embedding added to it, conv_in, down stages, a middle (ResNet, attention, ResNet), up stages with skip
/// connections, GroupNorm, SiLU, conv_out. Parameter paths are diffusers' checkpoint keys.
public final class UNet2DModel: Module {
    public let config: UNet2DConfig
    public let timeEmbedding: TimestepEmbedding
    public let classEmbedding: Embedding?
    public let convIn: Conv2d
    public let downBlocks: [UNetStage]
    public let midResnets: [ResnetBlock2D]
    public let midAttention: SpatialSelfAttention?
    public let upBlocks: [UNetStage]
    public let convNormOut: GroupNorm
    public let convOut: Conv2d

    public init(_ config: UNet2DConfig, generator: inout RandomGenerator) throws {
        let c = config
        let channels = c.blockOutChannels
        guard !channels.isEmpty, c.downBlockTypes.count == channels.count, c.upBlockTypes.count == channels.count else {
            throw ConfigError("block_out_channels, down_block_types and up_block_types must have the same length")
        }
        guard c.timeEmbeddingType == "positional" else {
            throw ConfigError("time_embedding_type '\(c.timeEmbeddingType)' is not supported (positional)")
        }
        guard c.actFn == "silu" || c.actFn == "swish" else { throw ConfigError("act_fn '\(c.actFn)' is not supported (silu)") }
        guard c.resnetTimeScaleShift == "default" else {
            throw ConfigError("resnet_time_scale_shift '\(c.resnetTimeScaleShift)' is not supported (default)")
        }
        guard channels.allSatisfy({ $0 % c.normNumGroups == 0 }) else {
            throw ConfigError("norm_num_groups \(c.normNumGroups) does not divide block_out_channels \(channels)")
        }
        self.config = c
        let eps = Float(c.normEps), groups = c.normNumGroups, dropout = Float(c.dropout)
        let timeDim = channels[0] * 4
        timeEmbedding = TimestepEmbedding(channels[0], timeDim, generator: &generator)
        classEmbedding = c.numClassEmbeds.map { Embedding($0, timeDim, generator: &generator) }
        convIn = Conv2d(c.inChannels, channels[0], kernel: 3, padding: 1, generator: &generator)

        func resnet(_ i: Int, _ o: Int, scale: Float = 1) -> ResnetBlock2D {
            ResnetBlock2D(inChannels: i, outChannels: o, timeEmbeddingChannels: timeDim, groups: groups, eps: eps,
                          dropout: dropout, outputScale: scale, generator: &generator)
        }
        func attention(_ ch: Int, scale: Float = 1) -> SpatialSelfAttention {
            SpatialSelfAttention(channels: ch, headDimension: c.attentionHeadDim ?? ch, groups: groups, eps: eps,
                                 outputScale: scale, generator: &generator)
        }
        var down: [UNetStage] = []
        var output = channels[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            guard type == "DownBlock2D" || type == "AttnDownBlock2D" else {
                throw ConfigError("down block type '\(type)' is not supported (DownBlock2D, AttnDownBlock2D)")
            }
            let input = output
            output = channels[i]
            let resnets = (0..<c.layersPerBlock).map { resnet($0 == 0 ? input : output, output) }
            let attentions = type == "AttnDownBlock2D" ? (0..<c.layersPerBlock).map { _ in attention(output) } : []
            let last = i == channels.count - 1
            let resample = last ? nil : Conv2d(output, output, kernel: 3, stride: 2, padding: c.downsamplePadding,
                                               generator: &generator)
            down.append(UNetStage(resnets: resnets, attentions: attentions, resample: resample, isUp: false))
        }
        downBlocks = down
        let scale = Float(c.midBlockScaleFactor)
        let first = resnet(channels.last!, channels.last!, scale: scale)
        midAttention = c.addAttention ? attention(channels.last!, scale: scale) : nil
        midResnets = [first, resnet(channels.last!, channels.last!, scale: scale)]

        var up: [UNetStage] = []
        let reversed = Array(channels.reversed())
        output = reversed[0]
        for (i, type) in c.upBlockTypes.enumerated() {
            guard type == "UpBlock2D" || type == "AttnUpBlock2D" else {
                throw ConfigError("up block type '\(type)' is not supported (UpBlock2D, AttnUpBlock2D)")
            }
            let previous = output
            output = reversed[i]
            let input = reversed[min(i + 1, channels.count - 1)]
            let layers = c.layersPerBlock + 1
            let resnets = (0..<layers).map { j in
                resnet((j == 0 ? previous : output) + (j == layers - 1 ? input : output), output)
            }
            let attentions = type == "AttnUpBlock2D" ? (0..<layers).map { _ in attention(output) } : []
            let last = i == channels.count - 1
            let resample = last ? nil : Conv2d(output, output, kernel: 3, padding: 1, generator: &generator)
            up.append(UNetStage(resnets: resnets, attentions: attentions, resample: resample, isUp: true))
        }
        upBlocks = up
        convNormOut = GroupNorm(groups: groups, channels: channels[0], eps: eps)
        convOut = Conv2d(channels[0], c.outChannels, kernel: 3, padding: 1, generator: &generator)
        super.init()
        register("time_embedding", timeEmbedding)
        if let e = classEmbedding { register("class_embedding", e) }
        register("conv_in", convIn)
        register("down_blocks", ModuleList(downBlocks))
        let mid = Module()
        mid.register("resnets", ModuleList(midResnets))
        if let a = midAttention { mid.register("attentions", ModuleList([a])) }
        register("mid_block", mid)
        register("up_blocks", ModuleList(upBlocks))
        register("conv_norm_out", convNormOut)
        register("conv_out", convOut)
    }

    /// The network output for images x [N, C, H, W] at timesteps t (one per image), with class labels when the
    /// model has a class embedding.
    public func callAsFunction(_ x: Tensor, timesteps t: [Int], classLabels: [Int]? = nil) -> Tensor {
        let c = config
        let input = c.centerInputSample ? x * 2 - 1 : x
        var emb = timeEmbedding(sinusoidalEmbedding(t, dimension: c.blockOutChannels[0], flipSinToCos: c.flipSinToCos,
                                                   freqShift: c.freqShift))
        if let classEmbedding, let labels = classLabels { emb = emb + classEmbedding(labels) }
        var h = convIn(input)
        var skips = [h]
        for block in downBlocks {
            let (out, kept) = block.down(h, emb)
            h = out
            skips += kept
        }
        h = midResnets[0](h, timeEmbedding: emb)
        if let midAttention { h = midAttention(h) }
        h = midResnets[1](h, timeEmbedding: emb)
        for block in upBlocks { h = block.up(h, skips: &skips, emb) }
        return convOut(convNormOut(h, silu: true))
    }
}
