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

/// diffusers' `Attention` of a transformer block: heads·headDimension channels through to_q, to_k, to_v (without
/// bias) and to_out.0, the keys and values from `context` (cross-attention, its own width) or from x itself.
public final class TransformerAttention: Module {
    public let toQ, toK, toV, toOut: Linear
    public let heads: Int

    public init(queryDimension: Int, contextDimension: Int?, heads: Int, headDimension: Int, generator: inout RandomGenerator) {
        let inner = heads * headDimension, context = contextDimension ?? queryDimension
        toQ = Linear(queryDimension, inner, bias: false, generator: &generator)
        toK = Linear(context, inner, bias: false, generator: &generator)
        toV = Linear(context, inner, bias: false, generator: &generator)
        toOut = Linear(inner, queryDimension, generator: &generator)
        self.heads = heads
        super.init()
        register("to_q", toQ)
        register("to_k", toK)
        register("to_v", toV)
        register("to_out", ModuleList([toOut]))
    }

    /// x [B, L, query] attending to context [B, S, context] (x itself when nil).
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let source = context ?? x
        func split(_ t: Tensor) -> Tensor { t.reshaped([t.shape[0], t.shape[1], heads, t.shape[2] / heads]).transposed(1, 2) }
        let attended = scaledDotProductAttention(split(toQ(x)), split(toK(source)), split(toV(source)))
        return toOut(attended.transposed(1, 2).reshaped([x.shape[0], x.shape[1], attended.shape[1] * attended.shape[3]]))
    }
}

/// diffusers' BasicTransformerBlock (layer norms, GEGLU feed-forward): h = x + attn1(norm1(x)),
/// h = h + attn2(norm2(h), context), y = h + ff(norm3(h)) with ff(u) = net.2(a ⊙ GELU(b)), [a, b] = net.0.proj(u).
public final class BasicTransformerBlock: Module {
    public let norm1, norm2, norm3: LayerNorm
    public let attn1, attn2: TransformerAttention
    public let geglu, ffOut: Linear

    public init(dimension: Int, heads: Int, headDimension: Int, contextDimension: Int, generator: inout RandomGenerator) {
        (norm1, norm2, norm3) = (LayerNorm(dimension), LayerNorm(dimension), LayerNorm(dimension))
        attn1 = TransformerAttention(queryDimension: dimension, contextDimension: nil, heads: heads, headDimension: headDimension,
                                     generator: &generator)
        attn2 = TransformerAttention(queryDimension: dimension, contextDimension: contextDimension, heads: heads,
                                     headDimension: headDimension, generator: &generator)
        geglu = Linear(dimension, 8 * dimension, generator: &generator)
        ffOut = Linear(4 * dimension, dimension, generator: &generator)
        super.init()
        register("norm1", norm1)
        register("attn1", attn1)
        register("norm2", norm2)
        register("attn2", attn2)
        register("norm3", norm3)
        let gate = Module(), net = Module()
        gate.register("proj", geglu)
        net.register("0", gate)
        net.register("2", ffOut)
        let ff = Module()
        ff.register("net", net)
        register("ff", ff)
    }

    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = x + attn1(norm1(x))
        h = h + attn2(norm2(h), context: context)
        let projected = geglu(norm3(h)), half = projected.shape[2] / 2
        return h + ffOut(projected.slice(axis: 2, 0..<half) * gelu(projected.slice(axis: 2, half..<(2 * half))))
    }
}

/// diffusers' Transformer2DModel on a feature map (Stable Diffusion's spatial transformer): x + proj_out(blocks(
/// proj_in(group_norm(x)))) over the positions as a sequence, proj_in and proj_out 1×1 convolutions or, with
/// `linearProjection` (SD 2.x), linear layers on the sequence.
public final class Transformer2DModel: Module {
    public let norm: GroupNorm
    /// proj_in and proj_out.
    enum Projections {
        case convolutions(Conv2d, Conv2d)
        case linears(Linear, Linear)
    }
    let projections: Projections
    public let blocks: [BasicTransformerBlock]

    public init(channels: Int, heads: Int, headDimension: Int, contextDimension: Int, layers: Int = 1, groups: Int = 32,
                linearProjection: Bool, generator: inout RandomGenerator) {
        let inner = heads * headDimension
        norm = GroupNorm(groups: groups, channels: channels, eps: 1e-6)
        projections = linearProjection
            ? .linears(Linear(channels, inner, generator: &generator), Linear(inner, channels, generator: &generator))
            : .convolutions(Conv2d(channels, inner, kernel: 1, generator: &generator),
                            Conv2d(inner, channels, kernel: 1, generator: &generator))
        blocks = (0..<layers).map { _ in
            BasicTransformerBlock(dimension: inner, heads: heads, headDimension: headDimension, contextDimension: contextDimension,
                                  generator: &generator)
        }
        super.init()
        let (projIn, projOut): (Module, Module) = switch projections {
        case let .convolutions(i, o): (i, o)
        case let .linears(i, o): (i, o)
        }
        register("norm", norm)
        register("proj_in", projIn)
        register("transformer_blocks", ModuleList(blocks))
        register("proj_out", projOut)
    }

    /// x [B, C, H, W] with context [B, S, contextDimension].
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        func sequence(_ t: Tensor) -> Tensor { t.reshaped([b, t.shape[1], h * w]).transposed(1, 2) }  // [B, HW, C]
        func map(_ t: Tensor) -> Tensor { t.transposed(1, 2).reshaped([b, t.shape[2], h, w]) }
        func transform(_ s: Tensor) -> Tensor { blocks.reduce(s) { $1($0, context: context) } }
        switch projections {
        case let .convolutions(projIn, projOut): return projOut(map(transform(sequence(projIn(norm(x)))))) + x
        case let .linears(projIn, projOut): return map(projOut(transform(projIn(sequence(norm(x)))))) + x
        }
    }
}
