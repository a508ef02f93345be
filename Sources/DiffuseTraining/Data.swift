import DiffuseData
import DiffuseEngine

/// The data a run's `data` setting names (see `DataSource.forms`), generated or loaded the same way every time from
/// the run's seed: built-in sets draw `examples` examples (default 10,000); file data keep their first `examples`.
public func loadTrainingData(_ config: RunConfig) throws -> DataSet {
    let examples = config.examples
    var g = RandomGenerator(seed: config.seed, stream: 0x0DA7A)
    let data = try DataSource(parsing: config.data).load(imageSize: config.imageSize, count: examples ?? 10_000, generator: &g)
    if let examples, case let .images(images) = data, examples < images.count {
        return .images(images.subset(Array(0..<examples)))
    }
    return data
}
