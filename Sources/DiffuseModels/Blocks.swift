import DiffuseEngine
import DiffuseNN

/// diffusers' `ResnetBlock2D`: h = act(norm1(x)), resampled (with x) when the block resamples; h = conv1(h);
/// the time embedding e = time_emb_proj(act(t)) enters as h = norm2(h + e) ("default") or as
/// h = norm2(h)·(1 + scale) + shift with [scale, shift] = e ("scale_shift"); h = conv2(dropout(act(h)));
/// y = (shortcut(x) + h) / outputScale, the shortcut a 1×1 convolution when the channel count changes.
public final class ResnetBlock2D: Module {
    /// How the block changes the resolution (diffusers' down=True / up=True, without FIR kernels): 2×2 average
    /// pooling or nearest ×2, of both x and h, after the first normalization.
    public enum Resample: Sendable { case none, down, up }

    public let norm1: GroupNorm
    public let conv1: Conv2d
    public let timeEmbeddingProjection: Linear?
    public let norm2: GroupNorm
    public let dropout: Dropout
    public let conv2: Conv2d
    public let shortcut: Conv2d?
    public let outputScale: Float
    public let activation: Activation
    public let scaleShift: Bool
    public let resample: Resample

    public init(inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?, groups: Int, eps: Float = 1e-5,
                dropout p: Float = 0, outputScale: Float = 1, activation: Activation = .silu, scaleShift: Bool = false,
                resample: Resample = .none, generator: inout RandomGenerator) {
        norm1 = GroupNorm(groups: groups, channels: inChannels, eps: eps)
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, padding: 1, generator: &generator)
        timeEmbeddingProjection = timeEmbeddingChannels.map {
            Linear($0, scaleShift ? 2 * outChannels : outChannels, generator: &generator)
        }
        norm2 = GroupNorm(groups: groups, channels: outChannels, eps: eps)
        dropout = Dropout(p, generator: generator.derived(stream: 0xD0))
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, padding: 1, generator: &generator)
        shortcut = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernel: 1, generator: &generator)
        self.outputScale = outputScale
        self.activation = activation
        self.scaleShift = scaleShift
        self.resample = resample
        super.init()
        register("norm1", norm1)
        register("conv1", conv1)
        if let t = timeEmbeddingProjection { register("time_emb_proj", t) }
        register("norm2", norm2)
        register("dropout", dropout)
        register("conv2", conv2)
        if let s = shortcut { register("conv_shortcut", s) }
    }

    public func callAsFunction(_ x: Tensor, timeEmbedding t: Tensor?) -> Tensor {
        var input = x
        var h = norm1(x, then: activation)
        switch resample {
        case .none: break
        case .down: (input, h) = (avgPool2d(input), avgPool2d(h))
        case .up: (input, h) = (upsampleNearest2x(input), upsampleNearest2x(h))
        }
        h = conv1(h)
        var e: Tensor?
        if let proj = timeEmbeddingProjection, let t {
            let projected = proj(activation(t))
            e = projected.reshaped([projected.shape[0], projected.shape[1], 1, 1])
        }
        if scaleShift {
            h = norm2(h)
            if let e {
                let c = h.shape[1]
                h = h * (e.slice(axis: 1, 0..<c) + 1) + e.slice(axis: 1, c..<(2 * c))
            }
            h = activation(h)
        } else {
            h = norm2(e.map { h + $0 } ?? h, then: activation)
        }
        h = conv2(dropout(h))
        let y = (shortcut.map { $0(input) } ?? input) + h
        return outputScale == 1 ? y : y / outputScale
    }
}

/// diffusers' `Attention` as used by UNet2DModel's attention blocks: multi-head self-attention over the positions
/// of a feature map, y = x + to_out(Attention(to_q(n), to_k(n), to_v(n))), n = group_norm(x) as a sequence (x
/// itself where the block has no group norm).
public final class SpatialSelfAttention: Module {
    public let groupNorm: GroupNorm?
    public let toQ, toK, toV, toOut: Linear
    public let heads: Int
    public let outputScale: Float

    public init(channels: Int, headDimension: Int?, groups: Int?, eps: Float = 1e-5, outputScale: Float = 1,
                generator: inout RandomGenerator) {
        groupNorm = groups.map { GroupNorm(groups: $0, channels: channels, eps: eps) }
        toQ = Linear(channels, channels, generator: &generator)
        toK = Linear(channels, channels, generator: &generator)
        toV = Linear(channels, channels, generator: &generator)
        toOut = Linear(channels, channels, generator: &generator)
        heads = headDimension.map { channels / $0 } ?? 1
        self.outputScale = outputScale
        super.init()
        if let groupNorm { register("group_norm", groupNorm) }
        register("to_q", toQ)
        register("to_k", toK)
        register("to_v", toV)
        register("to_out", ModuleList([toOut]))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let normalized = groupNorm.map { $0(x) } ?? x
        let sequence = normalized.reshaped([b, c, h * w]).transposed(1, 2)                  // [B, HW, C]
        func split(_ t: Tensor) -> Tensor { t.reshaped([b, h * w, heads, c / heads]).transposed(1, 2) }
        let attended = scaledDotProductAttention(split(toQ(sequence)), split(toK(sequence)), split(toV(sequence)))
        let merged = attended.transposed(1, 2).reshaped([b, h * w, c])
        let y = toOut(merged).transposed(1, 2).reshaped([b, c, h, w]) + x
        return outputScale == 1 ? y : y / outputScale
    }
}
