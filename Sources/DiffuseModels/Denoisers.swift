import DiffuseEngine
import DiffuseNN

/// A network that maps a noisy batch x_t and its timesteps (and class labels, when it is conditional) to the
/// diffusion model's prediction (ε̂, x̂_0 or v̂): what training fits and samplers call. Timesteps may be fractional
/// (the sigma-based samplers visit them).
public protocol DenoisingNetwork: Module {
    func predict(_ xt: Tensor, timesteps: [Double], labels: [Int]?) -> Tensor
}

extension DenoisingNetwork {
    /// The prediction at integer timesteps (training's).
    public func predict(_ xt: Tensor, timesteps: [Int], labels: [Int]?) -> Tensor {
        predict(xt, timesteps: timesteps.map(Double.init), labels: labels)
    }
}

extension UNet2DModel: DenoisingNetwork {
    public func predict(_ xt: Tensor, timesteps: [Double], labels: [Int]?) -> Tensor {
        self(xt, timesteps: timesteps, classLabels: labels)
    }
}

/// The denoiser for 2D data: an MLP over [x_t, sinusoidal embedding of t], SiLU between layers.
public final class MLPDenoiser: Module, DenoisingNetwork {
    public let timeDimension: Int
    public let network: MLP

    public init(dimension: Int = 2, hidden: [Int] = [128, 128, 128], timeDimension: Int = 32, generator: inout RandomGenerator) {
        self.timeDimension = timeDimension
        network = MLP(sizes: [dimension + timeDimension] + hidden + [dimension], generator: &generator)
        super.init()
        register("mlp", network)
    }

    public func predict(_ xt: Tensor, timesteps: [Double], labels: [Int]? = nil) -> Tensor {
        let t = sinusoidalEmbedding(timesteps, dimension: timeDimension, flipSinToCos: true, freqShift: 0)
        return network(concat([xt, t], axis: 1))
    }
}
