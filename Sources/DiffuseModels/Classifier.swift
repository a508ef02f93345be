import DiffuseEngine
import DiffuseNN

/// The sizes of a `Classifier`.
public struct ClassifierConfig: Codable, Equatable, Sendable {
    public var channels = 1
    public var imageSize = 28
    public var classes = 10
    public var width = 32
    public var features = 128
    public init() {}
}

/// A small convolutional image classifier: two stages of 3×3 convolution, ReLU and 2×2 average pooling, then a
/// hidden layer whose activations serve as features (for a data-set-specific FID) and the class logits.
public final class Classifier: Module {
    public let conv1, conv2: Conv2d
    public let hidden, output: Linear

    public init(channels: Int = 1, imageSize: Int = 28, classes: Int = 10, width: Int = 32, features: Int = 128,
                generator: inout RandomGenerator) {
        precondition(imageSize % 4 == 0, "the classifier needs an image size divisible by 4, got \(imageSize)")
        conv1 = Conv2d(channels, width, kernel: 3, padding: 1, generator: &generator)
        conv2 = Conv2d(width, 2 * width, kernel: 3, padding: 1, generator: &generator)
        hidden = Linear(2 * width * (imageSize / 4) * (imageSize / 4), features, generator: &generator)
        output = Linear(features, classes, generator: &generator)
        super.init()
        register("conv1", conv1)
        register("conv2", conv2)
        register("hidden", hidden)
        register("output", output)
    }

    /// The classifier a configuration describes; an image size not divisible by 4 is an error.
    public convenience init(_ c: ClassifierConfig, generator: inout RandomGenerator) throws {
        guard c.imageSize % 4 == 0, c.imageSize >= 4 else { throw DiffuseError.config("the classifier needs an image side divisible by 4, got \(c.imageSize)") }
        guard c.classes >= 2, c.width > 0, c.features > 0, c.channels > 0 else { throw DiffuseError.config("classifier sizes must be positive (and ≥ 2 classes)") }
        self.init(channels: c.channels, imageSize: c.imageSize, classes: c.classes, width: c.width, features: c.features,
                  generator: &generator)
    }

    /// The hidden-layer activations [N, features] of images [N, C, H, W].
    public func features(_ x: Tensor) -> Tensor {
        let h = avgPool2d(relu(conv2(avgPool2d(relu(conv1(x))))))
        return relu(hidden(h.flattened()))
    }

    /// Class logits [N, classes].
    public func callAsFunction(_ x: Tensor) -> Tensor { output(features(x)) }
}

/// A multilayer perceptron with SiLU between its layers, for 2D toy data.
public final class MLP: Module {
    public let layers: [Linear]

    public init(sizes: [Int], generator: inout RandomGenerator) {
        layers = zip(sizes, sizes.dropFirst()).map { Linear($0, $1, generator: &generator) }
        super.init()
        register("layers", ModuleList(layers))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        layers.last!(layers.dropLast().reduce(x) { silu($1($0)) })
    }
}
