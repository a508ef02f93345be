import DiffuseEngine
import DiffuseNN

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
