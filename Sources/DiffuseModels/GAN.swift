import DiffuseEngine
import DiffuseNN

/// The sizes of a DCGAN (Radford et al. 2016) for square images whose side is divisible by 4.
public struct GANConfig: Codable, Equatable, Sendable {
    /// Dimension of the generator's input z ~ N(0, I).
    public var latentDimension = 64
    public var channels = 1
    public var imageSize = 28
    /// Width of the generator's last hidden stage and of the discriminator's first; the others are 2× and 4×.
    public var width = 64
    public var loss = GANLoss.nonSaturating
    /// Weight γ of the R1 penalty (γ/2)·E‖∇_x D(x)‖² on real data (0: none).
    public var r1Gamma = 0.0

    public init() {}

    public func validate() throws {
        guard imageSize % 4 == 0, imageSize >= 8 else { throw DiffuseError.config("a DCGAN needs an image side divisible by 4 (≥ 8), got \(imageSize)") }
        guard latentDimension > 0, width >= 2, channels > 0 else { throw DiffuseError.config("GAN sizes must be positive") }
        guard r1Gamma >= 0 else { throw DiffuseError.config("the R1 weight must not be negative, got \(r1Gamma)") }
    }
}

/// DCGAN's generator with upsampling convolutions: z → linear → [4w, S/4, S/4] → BatchNorm, ReLU → (nearest ×2,
/// 3×3 convolution, BatchNorm, ReLU) twice → 3×3 convolution to the image channels → tanh, images in [−1, 1].
public final class DCGANGenerator: Module {
    public let config: GANConfig
    let project: Linear
    let norms: [BatchNorm]
    let convs: [Conv2d]

    public init(_ config: GANConfig, generator: inout RandomGenerator) {
        self.config = config
        let (w, side) = (config.width, config.imageSize / 4)
        project = Linear(config.latentDimension, 4 * w * side * side, generator: &generator)
        norms = [BatchNorm(4 * w), BatchNorm(2 * w), BatchNorm(w)]
        convs = [Conv2d(4 * w, 2 * w, kernel: 3, padding: 1, generator: &generator),
                 Conv2d(2 * w, w, kernel: 3, padding: 1, generator: &generator),
                 Conv2d(w, config.channels, kernel: 3, padding: 1, generator: &generator)]
        super.init()
        register("project", project)
        register("norms", ModuleList(norms))
        register("convs", ModuleList(convs))
    }

    /// Images [N, C, S, S] from latents z [N, latent dimension].
    public func callAsFunction(_ z: Tensor) -> Tensor {
        let side = config.imageSize / 4
        var h = relu(norms[0](project(z).reshaped([z.shape[0], 4 * config.width, side, side])))
        for i in 0..<2 { h = relu(norms[i + 1](convs[i](upsampleNearest2x(h)))) }
        return tanh(convs[2](h))
    }
}

/// DCGAN's discriminator: 4×4 stride-2 convolutions halving the side twice (BatchNorm on the second), LeakyReLU(0.2),
/// then a linear layer to one logit per image; or, as the patch discriminator of an autoencoder, a 4×4 stride-1
/// convolution to one logit per patch (Isola et al. 2017).
public final class Discriminator: Module {
    public let patch: Bool
    let conv1, conv2: Conv2d
    let norm: BatchNorm
    let head: Module

    public init(channels: Int, imageSize: Int, width: Int, patch: Bool = false, generator: inout RandomGenerator) {
        self.patch = patch
        conv1 = Conv2d(channels, width, kernel: 4, stride: 2, padding: 1, generator: &generator)
        conv2 = Conv2d(width, 2 * width, kernel: 4, stride: 2, padding: 1, generator: &generator)
        norm = BatchNorm(2 * width)
        let side = imageSize / 4
        head = patch ? Conv2d(2 * width, 1, kernel: 4, stride: 1, padding: 1, generator: &generator)
                     : Linear(2 * width * side * side, 1, generator: &generator)
        super.init()
        register("conv1", conv1)
        register("conv2", conv2)
        register("norm", norm)
        register("head", head)
    }

    /// Logits: [N, 1] per image, or [N, 1, h, w] per patch.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = leakyRelu(norm(conv2(leakyRelu(conv1(x), slope: 0.2))), slope: 0.2)
        if let conv = head as? Conv2d { return conv(h) }
        return (head as! Linear)(h.flattened())
    }
}

/// The adversarial losses, given the discriminator's logits on real data r and on generated data f.
public enum GANLoss: String, Codable, CaseIterable, Sendable {
    /// Goodfellow et al.'s, with the generator's non-saturating form: L_D = softplus(−r) + softplus(f),
    /// L_G = softplus(−f) (binary cross-entropy of the logits against 1 for real, 0 for fake).
    case nonSaturating = "non-saturating"
    /// L_D = relu(1 − r) + relu(1 + f), L_G = −f (Lim & Ye 2017; Miyato et al. 2018).
    case hinge

    public func discriminator(real r: Tensor, fake f: Tensor) -> Tensor {
        switch self {
        case .nonSaturating:
            return binaryCrossEntropyWithLogits(r, Tensor(repeating: 1, shape: r.shape))
                + binaryCrossEntropyWithLogits(f, Tensor(zeros: f.shape))
        case .hinge: return mean(relu(-r + 1)) + mean(relu(f + 1))
        }
    }

    public func generator(fake f: Tensor) -> Tensor {
        switch self {
        case .nonSaturating: return binaryCrossEntropyWithLogits(f, Tensor(repeating: 1, shape: f.shape))
        case .hinge: return -mean(f)
        }
    }
}

/// The R1 penalty (γ/2)·E‖∇_x D(x)‖² on real images, by a first-order estimator: for δ ~ N(0, I) and small h,
/// E_δ[(D(x + h·δ) − D(x))²]/h² = ‖∇_x D(x)‖² + O(h²), so the mean over the batch of (D(x + hδ) − D(x))²/h² estimates
/// the penalty without differentiating a gradient (the engine's backward passes are first order). Both terms come
/// from one discriminator call on [x; x + hδ], so that batch statistics are shared. h = 0.01 of the data's scale.
public func r1Penalty(_ discriminator: (Tensor) -> Tensor, real x: Tensor, gamma: Double, generator: inout RandomGenerator,
                      share: BatchShare? = nil) -> Tensor {
    let h: Float = 0.01
    let n = x.shape[0]
    let logits = discriminator(concat([x, x + generator.normal(x.shape, share: share) * h], axis: 0)).flattened()
    let difference = logits.slice(axis: 0, n..<(2 * n)) - logits.slice(axis: 0, 0..<n)
    return sum(square(difference)) * Float(gamma / 2 / Double(n) / Double(h * h))
}
