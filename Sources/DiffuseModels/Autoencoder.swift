import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// The configuration of a variational autoencoder, with the keys and defaults of diffusers' `AutoencoderKL`
/// config.json.
public struct AutoencoderKLConfig: Codable, Equatable, Sendable {
    public var inChannels = 3
    public var outChannels = 3
    public var downBlockTypes = ["DownEncoderBlock2D"]
    public var upBlockTypes = ["UpDecoderBlock2D"]
    public var blockOutChannels = [64]
    public var layersPerBlock = 1
    public var actFn = "silu"
    public var latentChannels = 4
    public var normNumGroups = 32
    public var sampleSize = 32
    /// Latents for diffusion are (z − shift_factor)·scaling_factor, so that they have about unit variance.
    public var scalingFactor = 0.18215
    public var shiftFactor: Double? = nil
    public var useQuantConv = true
    public var usePostQuantConv = true
    public var midBlockAddAttention = true
    /// Per-channel latent statistics some pipelines use instead of the two factors: not supported (must be null).
    public var latentsMean: [Double]? = nil
    public var latentsStd: [Double]? = nil
    /// Whether diffusers runs the model in float32 under half precision: changes nothing here.
    public var forceUpcast = true

    enum CodingKeys: String, CodingKey, CaseIterable {
        case inChannels = "in_channels", outChannels = "out_channels", downBlockTypes = "down_block_types"
        case upBlockTypes = "up_block_types", blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case actFn = "act_fn", latentChannels = "latent_channels", normNumGroups = "norm_num_groups"
        case sampleSize = "sample_size", scalingFactor = "scaling_factor", shiftFactor = "shift_factor"
        case useQuantConv = "use_quant_conv", usePostQuantConv = "use_post_quant_conv"
        case midBlockAddAttention = "mid_block_add_attention", latentsMean = "latents_mean", latentsStd = "latents_std"
        case forceUpcast = "force_upcast"
    }

    public init() {}

    /// Reads a config.json: absent keys take diffusers' defaults. Keys it does not know are left for `unknownKeys`.
    public init(from decoder: Decoder) throws {
        let k = try decoder.container(keyedBy: CodingKeys.self)
        var c = AutoencoderKLConfig()
        if k.contains(.sampleSize), let sizes = try? k.decode([Int].self, forKey: .sampleSize) {
            guard let first = sizes.first, sizes.allSatisfy({ $0 == first }) else {
                throw DiffuseError.config("sample_size \(sizes) is not supported (square images only)")
            }
            c.sampleSize = first
        } else {
            try k.read(.sampleSize, into: &c.sampleSize)
        }
        try k.read(.inChannels, into: &c.inChannels)
        try k.read(.outChannels, into: &c.outChannels)
        try k.read(.downBlockTypes, into: &c.downBlockTypes)
        try k.read(.upBlockTypes, into: &c.upBlockTypes)
        try k.read(.blockOutChannels, into: &c.blockOutChannels)
        try k.read(.layersPerBlock, into: &c.layersPerBlock)
        try k.read(.actFn, into: &c.actFn)
        try k.read(.latentChannels, into: &c.latentChannels)
        try k.read(.normNumGroups, into: &c.normNumGroups)
        try k.read(.scalingFactor, into: &c.scalingFactor)
        try k.readOptional(.shiftFactor, into: &c.shiftFactor)
        try k.read(.useQuantConv, into: &c.useQuantConv)
        try k.read(.usePostQuantConv, into: &c.usePostQuantConv)
        try k.read(.midBlockAddAttention, into: &c.midBlockAddAttention)
        try k.readOptional(.latentsMean, into: &c.latentsMean)
        try k.readOptional(.latentsStd, into: &c.latentsStd)
        try k.read(.forceUpcast, into: &c.forceUpcast)
        self = c
    }

    /// Writes every key, nil ones as null.
    public func encode(to encoder: Encoder) throws {
        var k = encoder.container(keyedBy: CodingKeys.self)
        try k.encode(inChannels, forKey: .inChannels)
        try k.encode(outChannels, forKey: .outChannels)
        try k.encode(downBlockTypes, forKey: .downBlockTypes)
        try k.encode(upBlockTypes, forKey: .upBlockTypes)
        try k.encode(blockOutChannels, forKey: .blockOutChannels)
        try k.encode(layersPerBlock, forKey: .layersPerBlock)
        try k.encode(actFn, forKey: .actFn)
        try k.encode(latentChannels, forKey: .latentChannels)
        try k.encode(normNumGroups, forKey: .normNumGroups)
        try k.encode(sampleSize, forKey: .sampleSize)
        try k.encode(scalingFactor, forKey: .scalingFactor)
        try k.encode(shiftFactor, forKey: .shiftFactor)
        try k.encode(useQuantConv, forKey: .useQuantConv)
        try k.encode(usePostQuantConv, forKey: .usePostQuantConv)
        try k.encode(midBlockAddAttention, forKey: .midBlockAddAttention)
        try k.encode(latentsMean, forKey: .latentsMean)
        try k.encode(latentsStd, forKey: .latentsStd)
        try k.encode(forceUpcast, forKey: .forceUpcast)
    }

    /// The keys of a config.json object that this reader does not know (diffusers' `_` bookkeeping aside).
    public static func unknownKeys(in json: [String: JSONValue]) -> [String] {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        return json.keys.filter { !$0.hasPrefix("_") && !known.contains($0) }.sorted()
    }

    /// The MNIST autoencoder: 28×28×1 → 4×7×7 latents (two halvings), widths (32, 64, 64).
    public static var mnist: AutoencoderKLConfig {
        var c = AutoencoderKLConfig()
        c.inChannels = 1
        c.outChannels = 1
        c.sampleSize = 28
        c.blockOutChannels = [32, 64, 64]
        c.downBlockTypes = Array(repeating: "DownEncoderBlock2D", count: 3)
        c.upBlockTypes = Array(repeating: "UpDecoderBlock2D", count: 3)
        c.normNumGroups = 16
        c.scalingFactor = 1
        return c
    }

    /// How many times the encoder halves the image side.
    public var downsamplingFactor: Int { 1 << (blockOutChannels.count - 1) }
}

/// A diagonal Gaussian over latents, N(mean, exp(logVariance)), as the encoder outputs it.
public struct DiagonalGaussian {
    public let mean: Tensor
    /// log σ², clamped to [−30, 20] as diffusers does.
    public let logVariance: Tensor

    public init(mean: Tensor, logVariance: Tensor) {
        self.mean = mean
        self.logVariance = logVariance
    }

    /// z = mean + σ·ε (the reparametrisation trick: differentiable in mean and log σ²).
    public func sample(noise eps: Tensor) -> Tensor { mean + exp(logVariance * 0.5) * eps }

    /// KL(N(μ, σ²) ‖ N(0, I)) = ½·Σ (μ² + σ² − 1 − log σ²) over each sample's latents: [N].
    public func kl() -> Tensor {
        sum(square(mean) + exp(logVariance) - 1 - logVariance, axes: [1, 2, 3]) * 0.5
    }
}

/// The variational autoencoder laid out exactly like diffusers' `AutoencoderKL`: an encoder (conv_in, down stages of
/// ResNet blocks with strided downsampling, a mid block with attention, GroupNorm, activation, conv_out to 2 × latent
/// channels), quant_conv, then the posterior N(mean, σ²); post_quant_conv, and a decoder (conv_in, mid block, up
/// stages of layers_per_block + 1 ResNet blocks with nearest ×2 upsampling, GroupNorm, activation, conv_out).
/// GroupNorm eps is 1e-6 throughout, as in diffusers.
public final class AutoencoderKL: Module {
    public let config: AutoencoderKLConfig
    let encoderIn: Conv2d
    let encoderStages: [UNetStage]
    let encoderMid: UNetMidBlock2D
    let encoderNormOut: GroupNorm
    let encoderOut: Conv2d
    let quantConv: Conv2d?
    let postQuantConv: Conv2d?
    let decoderIn: Conv2d
    let decoderMid: UNetMidBlock2D
    let decoderStages: [UNetStage]
    let decoderNormOut: GroupNorm
    let decoderOut: Conv2d
    let activation: Activation

    public init(_ config: AutoencoderKLConfig, generator: inout RandomGenerator) throws {
        let c = config
        let channels = c.blockOutChannels
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws { if !ok { throw DiffuseError.config(message()) } }
        try require(!channels.isEmpty && channels.allSatisfy { $0 > 0 }, "block_out_channels must be positive widths, got \(channels)")
        try require(c.downBlockTypes.count == channels.count && c.upBlockTypes.count == channels.count,
                    "block_out_channels, down_block_types and up_block_types must have the same length")
        for type in c.downBlockTypes {
            try require(type == "DownEncoderBlock2D", "down_block_types: '\(type)' is not supported (DownEncoderBlock2D)")
        }
        for type in c.upBlockTypes {
            try require(type == "UpDecoderBlock2D", "up_block_types: '\(type)' is not supported (UpDecoderBlock2D)")
        }
        guard let activation = Activation(rawValue: c.actFn) else {
            throw DiffuseError.config("act_fn '\(c.actFn)' is not supported (\(Activation.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        try require(c.normNumGroups > 0 && channels.allSatisfy({ $0 % c.normNumGroups == 0 }),
                    "norm_num_groups \(c.normNumGroups) does not divide block_out_channels \(channels)")
        try require(c.layersPerBlock >= 1, "layers_per_block must be at least 1, got \(c.layersPerBlock)")
        try require(c.latentChannels >= 1, "latent_channels must be positive, got \(c.latentChannels)")
        try require(c.latentsMean == nil && c.latentsStd == nil,
                    "latents_mean / latents_std are not supported (use scaling_factor and shift_factor)")
        try require(c.scalingFactor > 0 && c.scalingFactor.isFinite, "scaling_factor must be positive, got \(c.scalingFactor)")
        self.config = c
        self.activation = activation
        let (groups, eps, latent) = (c.normNumGroups, Float(1e-6), c.latentChannels)
        func resnet(_ i: Int, _ o: Int) -> ResnetBlock2D {
            ResnetBlock2D(inChannels: i, outChannels: o, timeEmbeddingChannels: nil, groups: groups, eps: eps,
                          activation: activation, generator: &generator)
        }
        func mid(_ ch: Int) -> UNetMidBlock2D {
            let first = resnet(ch, ch)
            let attention = c.midBlockAddAttention
                ? SpatialSelfAttention(channels: ch, headDimension: ch, groups: groups, eps: eps, generator: &generator) : nil
            return UNetMidBlock2D(resnets: [first, resnet(ch, ch)], attention: attention.map(StageAttention.spatial))
        }

        encoderIn = Conv2d(c.inChannels, channels[0], kernel: 3, padding: 1, generator: &generator)
        var stages: [UNetStage] = []
        var output = channels[0]
        for i in channels.indices {
            let input = output
            output = channels[i]
            let resnets = (0..<c.layersPerBlock).map { resnet($0 == 0 ? input : output, output) }
            let down = i < channels.count - 1 ? Resampler.downsample(output, padding: 0, generator: &generator) : nil
            stages.append(UNetStage(resnets: resnets, attentions: [], resampler: down, isUp: false))
        }
        encoderStages = stages
        encoderMid = mid(channels.last!)
        encoderNormOut = GroupNorm(groups: groups, channels: channels.last!, eps: eps)
        encoderOut = Conv2d(channels.last!, 2 * latent, kernel: 3, padding: 1, generator: &generator)
        quantConv = c.useQuantConv ? Conv2d(2 * latent, 2 * latent, kernel: 1, generator: &generator) : nil
        postQuantConv = c.usePostQuantConv ? Conv2d(latent, latent, kernel: 1, generator: &generator) : nil

        let reversed = Array(channels.reversed())
        decoderIn = Conv2d(latent, reversed[0], kernel: 3, padding: 1, generator: &generator)
        decoderMid = mid(reversed[0])
        stages = []
        output = reversed[0]
        for i in reversed.indices {
            let input = output
            output = reversed[i]
            let resnets = (0...c.layersPerBlock).map { resnet($0 == 0 ? input : output, output) }
            let up = i < channels.count - 1 ? Resampler.upsample(output, generator: &generator) : nil
            stages.append(UNetStage(resnets: resnets, attentions: [], resampler: up, isUp: true))
        }
        decoderStages = stages
        decoderNormOut = GroupNorm(groups: groups, channels: channels[0], eps: eps)
        decoderOut = Conv2d(channels[0], c.outChannels, kernel: 3, padding: 1, generator: &generator)
        super.init()

        let encoder = Module()
        encoder.register("conv_in", encoderIn)
        encoder.register("down_blocks", ModuleList(encoderStages))
        encoder.register("mid_block", encoderMid)
        encoder.register("conv_norm_out", encoderNormOut)
        encoder.register("conv_out", encoderOut)
        register("encoder", encoder)
        if let quantConv { register("quant_conv", quantConv) }
        if let postQuantConv { register("post_quant_conv", postQuantConv) }
        let decoder = Module()
        decoder.register("conv_in", decoderIn)
        decoder.register("mid_block", decoderMid)
        decoder.register("up_blocks", ModuleList(decoderStages))
        decoder.register("conv_norm_out", decoderNormOut)
        decoder.register("conv_out", decoderOut)
        register("decoder", decoder)
    }

    /// The shape of the latents of one image of side `size`: [latent channels, size/f, size/f].
    public func latentShape(imageSize size: Int) -> [Int] {
        var side = size
        for _ in 1..<config.blockOutChannels.count { side = (side + 1 - 3) / 2 + 1 }  // stride 2 after padding (0, 1)
        return [config.latentChannels, side, side]
    }

    /// The posterior q(z | x) of images x [N, C, H, W].
    public func encode(_ x: Tensor) -> DiagonalGaussian {
        var h = encoderIn(x)
        for stage in encoderStages { h = stage.down(h, nil).0 }
        h = encoderOut(encoderNormOut(encoderMid(h, timeEmbedding: nil), then: activation))
        if let quantConv { h = quantConv(h) }
        let latent = config.latentChannels
        return DiagonalGaussian(mean: h.slice(axis: 1, 0..<latent),
                                logVariance: clamp(h.slice(axis: 1, latent..<(2 * latent)), min: -30, max: 20))
    }

    /// Images from latents z [N, latent channels, h, w].
    public func decode(_ z: Tensor) -> Tensor {
        var h = decoderIn(postQuantConv.map { $0(z) } ?? z)
        h = decoderMid(h, timeEmbedding: nil)
        for stage in decoderStages { h = stage.up(h) }
        return decoderOut(decoderNormOut(h, then: activation))
    }

    /// The side of the latent tiles of `decodeInTiles`: sample_size over the autoencoder's factor (64 for SD's VAE).
    public var tileLatentSize: Int { config.sampleSize / (1 << (config.blockOutChannels.count - 1)) }

    /// Images from latents larger than the model's sample size, in bounded memory, as diffusers'
    /// `AutoencoderKL.tiled_decode` does it: latent tiles of side T = `tileLatentSize` every ¾T, each decoded alone;
    /// in raster order, each decoded tile is blended into the tile above and the tile to the left (already blended)
    /// over E = ¼·sample_size pixels, b[y] = a[end − E + y]·(1 − y/E) + b[y]·y/E (columns likewise), and keeps its first
    /// sample_size − E rows and columns.
    public func decodeInTiles(_ z: Tensor) -> Tensor {
        let (t, side) = (tileLatentSize, config.sampleSize)
        let step = Int(Double(t) * 0.75), extent = side / 4, keep = side - extent
        let (height, width) = (z.shape[2], z.shape[3])
        var rows: [[Tensor]] = []
        for i in stride(from: 0, to: height, by: step) {
            var row: [Tensor] = []
            for j in stride(from: 0, to: width, by: step) {
                let tile = z.slice([0..<z.shape[0], 0..<z.shape[1], i..<Swift.min(i + t, height), j..<Swift.min(j + t, width)])
                let decoded = decode(tile)
                if let above = rows.last?[row.count] { Self.blend(above, into: decoded, extent: extent, vertical: true) }
                if let left = row.last { Self.blend(left, into: decoded, extent: extent, vertical: false) }
                row.append(decoded)
            }
            rows.append(row)
        }
        let cropped = rows.map { row in
            concat(row.map { $0.slice([0..<$0.shape[0], 0..<$0.shape[1], 0..<Swift.min(keep, $0.shape[2]), 0..<Swift.min(keep, $0.shape[3])]) },
                   axis: 3)
        }
        return concat(cropped, axis: 2)
    }

    /// b's first E rows (columns when not `vertical`), E = min(extent, both sides), blended in place with a's last E:
    /// b[y] = a[end − E + y]·(1 − y/E) + b[y]·y/E.
    private static func blend(_ a: Tensor, into b: Tensor, extent: Int, vertical: Bool) {
        let (n, c, ha, wa, hb, wb) = (b.shape[0], b.shape[1], a.shape[2], a.shape[3], b.shape[2], b.shape[3])
        let e = Swift.min(extent, vertical ? Swift.min(ha, hb) : Swift.min(wa, wb))
        let pa = a.storage.pointer, pb = b.storage.pointer
        for plane in 0..<(n * c) {
            for y in 0..<e {
                let w = Double(y) / Double(e), (keepA, keepB) = (Float(1 - w), Float(w))
                if vertical {
                    let ra = pa + (plane * ha + ha - e + y) * wa, rb = pb + (plane * hb + y) * wb
                    for x in 0..<Swift.min(wa, wb) { rb[x] = ra[x] * keepA + rb[x] * keepB }
                } else {
                    for r in 0..<Swift.min(ha, hb) {
                        let ra = pa + (plane * ha + r) * wa, rb = pb + (plane * hb + r) * wb
                        rb[y] = ra[wa - e + y] * keepA + rb[y] * keepB
                    }
                }
            }
        }
    }

    /// Latents as diffusion sees them: (z − shift)·scale.
    public func scaled(_ z: Tensor) -> Tensor { (z - Float(config.shiftFactor ?? 0)) * Float(config.scalingFactor) }

    /// The inverse of `scaled`: z = latents/scale + shift.
    public func unscaled(_ latents: Tensor) -> Tensor { latents / Float(config.scalingFactor) + Float(config.shiftFactor ?? 0) }
}
