import DiffuseData
import DiffuseEngine
import DiffuseMetrics

/// The manifold in pixels of a built-in image data set (one that can be drawn afresh), over `references` of its
/// images: what tells how many generated images look like the data. The share of images on it is the precision of
/// Kynkäänniemi et al. (2019) with k = 3; a fresh draw of the data scores what a perfect model would with as many
/// images, and Gaussian noise what a model that learned nothing would.
public struct DataManifold {
    public let references: Int
    let manifold: FeatureManifold
    let config: RunConfig

    /// The manifold of the data of `config` (its seed and image size), or nil when that data is read from files
    /// (no fresh draw) or holds no images.
    public init?(config: RunConfig, references: Int = 5000) throws {
        guard case .shapes = try DataSource(parsing: config.data) else { return nil }
        var c = config
        c.examples = references
        guard case let .images(data) = try loadTrainingData(c) else { return nil }
        manifold = try FeatureManifold(data.images.flattened())
        self.references = references
        self.config = config
    }

    /// The share of `images` [N, C, H, W] (of the data's shape) that lie on the manifold.
    public func share(of images: Tensor) throws -> Double { try manifold.coverage(of: images.flattened()) }

    /// The shares of a fresh draw of `count` images of the data and of as many images of Gaussian noise clipped to
    /// [−1, 1], the figures to read a model's share beside.
    public func baselines(count: Int) throws -> (freshData: Double, noise: Double) {
        var c = config
        c.examples = count
        c.seed &+= 1
        guard case let .images(fresh) = try loadTrainingData(c) else { return (.nan, .nan) }
        var g = RandomGenerator(seed: config.seed, stream: 0xF17)
        return (try share(of: fresh.images), try share(of: clamp(g.normal(fresh.images.shape), min: -1, max: 1)))
    }
}
