import DiffuseData
import DiffuseEngine
import Foundation

/// The data a `--data` argument names: `shapes` (built-in images), a built-in 2D set (`swiss-roll`, `two-moons`,
/// `8-gaussians`, `checkerboard`), or `mnist:DIR` (IDX files t10k-/train- images and labels, raw or .gz).
public func loadTrainingSet(_ spec: String, count: Int? = nil, seed: UInt64) throws -> TrainingSet {
    var g = RandomGenerator(seed: seed, stream: 0x0DA7A)
    if spec == "shapes" { return .images(SyntheticShapes.generate(count: count ?? 4096, generator: &g)) }
    if let toy = Toy2D(rawValue: spec) { return .points(toy.sample(count ?? 8192, generator: &g)) }
    if spec.hasPrefix("mnist:") {
        let dir = String(spec.dropFirst(6))
        let names = ["train", "t10k"].flatMap { p in ["", ".gz"].map { (p, $0) } }
        guard let (prefix, ext) = names.first(where: { FileManager.default.fileExists(atPath: "\(dir)/\($0.0)-images-idx3-ubyte\($0.1)") }) else {
            throw DataError(path: dir, problem: "holds no MNIST images file (train-images-idx3-ubyte or t10k-images-idx3-ubyte, raw or .gz)")
        }
        var data = try LabeledImages.idx(images: "\(dir)/\(prefix)-images-idx3-ubyte\(ext)", labels: "\(dir)/\(prefix)-labels-idx1-ubyte\(ext)")
        if let count, count < data.count { data = data.subset(Array(0..<count)) }
        return .images(data)
    }
    throw DataError(path: spec, problem: "is not a data set: use shapes, swiss-roll, two-moons, 8-gaussians, checkerboard or mnist:DIR")
}
