import DiffuseEngine

/// PyTorch's default initialisation of a layer with `fanIn` inputs: U(−1/√fanIn, 1/√fanIn) for weight and bias.
func uniformInit(_ shape: [Int], fanIn: Int, _ generator: inout RandomGenerator) -> Parameter {
    let bound = 1 / Float(max(fanIn, 1)).squareRoot()
    return Parameter(generator.uniform(shape, low: -bound, high: bound))
}

/// y = x·Wᵀ + b
public final class Linear: Module {
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: inout RandomGenerator) {
        weight = uniformInit([outFeatures, inFeatures], fanIn: inFeatures, &generator)
        self.bias = bias ? uniformInit([outFeatures], fanIn: inFeatures, &generator) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    /// x·Wᵀ + b; a 16-bit weight is read as it is (no widened copy).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let half = weight.half { return linear(x, weight: half, bias: bias?.tensor) }
        return linear(x, weight: weight.tensor, bias: bias?.tensor)
    }
}

/// A 2D convolution over NCHW input.
public final class Conv2d: Module {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int
    /// Zero rows above and below, zero columns left and right.
    public let padding: (rows: Int, columns: Int)

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernel: (kernel, kernel), stride: stride, padding: (padding, padding), bias: bias,
                  generator: &generator)
    }

    /// A convolution with a rectangular kernel (rows, columns) and padding.
    public init(_ inChannels: Int, _ outChannels: Int, kernel: (rows: Int, columns: Int), stride: Int = 1,
                padding: (rows: Int, columns: Int), bias: Bool = true, generator: inout RandomGenerator) {
        let fanIn = inChannels * kernel.rows * kernel.columns
        weight = uniformInit([outChannels, inChannels, kernel.rows, kernel.columns], fanIn: fanIn, &generator)
        self.bias = bias ? uniformInit([outChannels], fanIn: fanIn, &generator) : nil
        self.stride = stride
        self.padding = padding
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    /// The convolution; a 16-bit kernel is read as it is (no widened copy).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        if let half = weight.half {
            return conv2d(x, weight: half, bias: bias?.tensor, stride: stride, padding: padding)
        }
        return conv2d(x, weight: weight.tensor, bias: bias?.tensor, stride: stride, padding: padding)
    }
}

/// The nonlinearities diffusers' configs name (`act_fn`): silu (also called swish), mish, gelu, relu.
public enum Activation: String, Codable, CaseIterable, Sendable {
    case silu, swish, mish, gelu, relu

    public var isSiLU: Bool { self == .silu || self == .swish }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .silu, .swish: return DiffuseEngine.silu(x)
        case .mish: return DiffuseEngine.mish(x)
        case .gelu: return DiffuseEngine.gelu(x)
        case .relu: return DiffuseEngine.relu(x)
        }
    }
}

/// GroupNorm with a learned per-channel scale (1) and shift (0).
public final class GroupNorm: Module {
    public let groups: Int
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(groups: Int, channels: Int, eps: Float = 1e-5) {
        self.groups = groups
        self.eps = eps
        weight = Parameter(Tensor(repeating: 1, shape: [channels]))
        bias = Parameter(Tensor(zeros: [channels]))
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    /// The normalized x, followed by SiLU when `silu` (one fused pass).
    public func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        groupNorm(x, groups: groups, weight: weight.tensor, bias: bias.tensor, eps: eps, silu: silu)
    }

    /// The normalized x followed by `activation` (fused when it is SiLU).
    public func callAsFunction(_ x: Tensor, then activation: Activation) -> Tensor {
        activation.isSiLU ? self(x, silu: true) : activation(self(x))
    }
}

/// LayerNorm over the last dimension, with a learned scale (1) and shift (0).
public final class LayerNorm: Module {
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(_ features: Int, eps: Float = 1e-5) {
        self.eps = eps
        weight = Parameter(Tensor(repeating: 1, shape: [features]))
        bias = Parameter(Tensor(zeros: [features]))
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight.tensor, bias: bias.tensor, eps: eps) }
}

/// BatchNorm over the channels of [N, C, ...]: batch statistics in training, which also update the running
/// averages (r ← (1 − momentum)·r + momentum·batch, with the unbiased batch variance); running ones in evaluation.
public final class BatchNorm: Module {
    public let eps: Float
    public let momentum: Float
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Parameter
    public let runningVariance: Parameter

    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1) {
        self.eps = eps
        self.momentum = momentum
        weight = Parameter(Tensor(repeating: 1, shape: [channels]))
        bias = Parameter(Tensor(zeros: [channels]))
        runningMean = Parameter(Tensor(zeros: [channels]))
        runningVariance = Parameter(Tensor(repeating: 1, shape: [channels]))
        super.init()
        register("weight", weight)
        register("bias", bias)
        registerBuffer("running_mean", runningMean)
        registerBuffer("running_var", runningVariance)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard isTraining else {
            return batchNorm(x, runningMean: runningMean.value, runningVariance: runningVariance.value,
                             weight: weight.tensor, bias: bias.tensor, eps: eps)
        }
        // Over a batch shared between processes, the statistics of the whole batch.
        let (y, mean, variance) = BatchShare.current.map { batchNorm(x, weight: weight.tensor, bias: bias.tensor, eps: eps, group: $0.group) }
            ?? batchNorm(x, weight: weight.tensor, bias: bias.tensor, eps: eps)
        let m = momentum
        let rm = runningMean.value.storage.pointer, rv = runningVariance.value.storage.pointer
        for c in mean.indices {
            rm[c] = (1 - m) * rm[c] + m * mean[c]
            rv[c] = (1 - m) * rv[c] + m * variance[c]
        }
        return y
    }
}

/// A lookup table of `count` vectors of `dimension` values, initialised N(0, 1) as in PyTorch.
public final class Embedding: Module {
    public let weight: Parameter

    public init(_ count: Int, _ dimension: Int, generator: inout RandomGenerator) {
        weight = Parameter(generator.normal([count, dimension]))
        super.init()
        register("weight", weight)
    }

    /// The vectors of `indices`; from a 16-bit table, only those rows are widened (a constant of the graph: such a
    /// table is not trained).
    public func callAsFunction(_ indices: [Int]) -> Tensor {
        if let half = weight.half { return half.widenedRows(indices) }
        return embedding(weight.tensor, indices: indices)
    }
}

/// Inverted dropout while training, the identity in evaluation. It draws from its own generator, whose state a
/// checkpoint can save.
public final class Dropout: Module {
    public let p: Float
    public var generator: RandomGenerator

    public init(_ p: Float, generator: RandomGenerator) {
        self.p = p
        self.generator = generator
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        isTraining && p > 0 ? dropout(x, p: p, generator: &generator, share: BatchShare.current) : x
    }
}
