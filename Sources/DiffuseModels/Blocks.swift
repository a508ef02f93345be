import DiffuseEngine
import DiffuseNN

/// diffusers' `ResnetBlock2D` (time-scale-shift "default"):
/// h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(t))[:, :, 1, 1];  h = conv2(dropout(SiLU(norm2(h))));
/// y = (shortcut(x) + h) / outputScale, the shortcut a 1×1 convolution when the channel count changes.
public final class ResnetBlock2D: Module {
    public let norm1: GroupNorm
    public let conv1: Conv2d
    public let timeEmbeddingProjection: Linear?
    public let norm2: GroupNorm
    public let dropout: Dropout
    public let conv2: Conv2d
    public let shortcut: Conv2d?
    public let outputScale: Float

    public init(inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?, groups: Int, eps: Float = 1e-5,
                dropout p: Float = 0, outputScale: Float = 1, generator: inout RandomGenerator) {
        norm1 = GroupNorm(groups: groups, channels: inChannels, eps: eps)
        conv1 = Conv2d(inChannels, outChannels, kernel: 3, padding: 1, generator: &generator)
        timeEmbeddingProjection = timeEmbeddingChannels.map { Linear($0, outChannels, generator: &generator) }
        norm2 = GroupNorm(groups: groups, channels: outChannels, eps: eps)
        dropout = Dropout(p, generator: generator.derived(stream: 0xD0))
        conv2 = Conv2d(outChannels, outChannels, kernel: 3, padding: 1, generator: &generator)
        shortcut = inChannels == outChannels ? nil : Conv2d(inChannels, outChannels, kernel: 1, generator: &generator)
        self.outputScale = outputScale
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
        var h = conv1(norm1(x, silu: true))
        if let proj = timeEmbeddingProjection, let t {
            let e = proj(silu(t))
            h = h + e.reshaped([e.shape[0], e.shape[1], 1, 1])
        }
        h = conv2(dropout(norm2(h, silu: true)))
        let y = (shortcut.map { $0(x) } ?? x) + h
        return outputScale == 1 ? y : y / outputScale
    }
}

/// diffusers' `Attention` as used by UNet2DModel's attention blocks: multi-head self-attention over the positions
/// of a feature map, y = x + to_out(Attention(to_q(n), to_k(n), to_v(n))), n = group_norm(x) as a sequence.
public final class SpatialSelfAttention: Module {
    public let groupNorm: GroupNorm
    public let toQ, toK, toV, toOut: Linear
    public let heads: Int
    public let outputScale: Float

    public init(channels: Int, headDimension: Int?, groups: Int, eps: Float = 1e-5, outputScale: Float = 1,
                generator: inout RandomGenerator) {
        groupNorm = GroupNorm(groups: groups, channels: channels, eps: eps)
        toQ = Linear(channels, channels, generator: &generator)
        toK = Linear(channels, channels, generator: &generator)
        toV = Linear(channels, channels, generator: &generator)
        toOut = Linear(channels, channels, generator: &generator)
        heads = headDimension.map { channels / $0 } ?? 1
        self.outputScale = outputScale
        super.init()
        register("group_norm", groupNorm)
        register("to_q", toQ)
        register("to_k", toK)
        register("to_v", toV)
        register("to_out", ModuleList([toOut]))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let sequence = groupNorm(x).reshaped([b, c, h * w]).transposed(1, 2)            // [B, HW, C]
        func split(_ t: Tensor) -> Tensor { t.reshaped([b, h * w, heads, c / heads]).transposed(1, 2) }
        let attended = scaledDotProductAttention(split(toQ(sequence)), split(toK(sequence)), split(toV(sequence)))
        let merged = attended.transposed(1, 2).reshaped([b, h * w, c])
        let y = toOut(merged).transposed(1, 2).reshaped([b, c, h, w]) + x
        return outputScale == 1 ? y : y / outputScale
    }
}
