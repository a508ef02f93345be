import DiffuseEngine
import Foundation

/// A data set as named on the command line (`diffuse train --data NAME`), parsed by `init(parsing:)`, loaded by
/// `load`.
public enum DataSource: Equatable, Sendable, CustomStringConvertible {
    /// `shapes`: coloured shapes generated on the fly (`SyntheticShapes`), the default.
    case shapes
    /// `swiss-roll`, `two-moons`, `8-gaussians`, `checkerboard`: 2D points (`Toy2D`).
    case toy2D(Toy2D)
    /// `mnist:DIR`: MNIST-format files in a folder, the training split if there, else the test split
    /// (`LabeledImages.mnist(directory:)`).
    case mnist(directory: String)
    /// The path of an IDX images file, its labels file found beside it (`LabeledImages.idx(images:)`).
    case idxImages(path: String)
    /// `cifar10:DIR` or `cifar10:FILE`: CIFAR-10 binary batches in a folder, the training split if there, else the
    /// test split (`LabeledImages.cifar10(directory:)`), or one batch file.
    case cifar10(path: String)
    /// `folder:DIR`: a folder of PNG images, flat or in class subfolders (`LabeledImages.imageFolder`).
    case folder(directory: String)

    /// The forms `init(parsing:)` accepts, for help texts and errors.
    public static let forms = """
        shapes (built-in coloured shapes, the default); swiss-roll, two-moons, 8-gaussians, checkerboard (2D points); \
        mnist:DIR or the path of an IDX images file (its labels file beside it); cifar10:DIR or cifar10:FILE; \
        folder:DIR (PNG images, flat or in class subfolders)
        """

    /// Parses a data set's name. A text that is none of the names or prefixed forms, but contains a "/" or names
    /// an existing file, is the path of an IDX images file; anything else is an error listing the valid forms.
    public init(parsing text: String) throws {
        if text == "shapes" {
            self = .shapes
            return
        }
        if let toy = Toy2D(rawValue: text) {
            self = .toy2D(toy)
            return
        }
        let prefixed: [(String, (String) -> DataSource)] = [("mnist:", { .mnist(directory: $0) }), ("cifar10:", { .cifar10(path: $0) }),
                                                           ("folder:", { .folder(directory: $0) })]
        for (prefix, make) in prefixed where text.hasPrefix(prefix) {
            let path = String(text.dropFirst(prefix.count))
            guard !path.isEmpty else { throw DiffuseError.data(path: text, problem: "needs a path after \"\(prefix)\"") }
            self = make(path)
            return
        }
        guard text.contains("/") || FileManager.default.fileExists(atPath: text) else {
            throw DiffuseError.data(path: text, problem: "is not a data set; use one of: \(Self.forms)")
        }
        self = .idxImages(path: text)
    }

    /// The name `init(parsing:)` reads back.
    public var description: String {
        switch self {
        case .shapes: "shapes"
        case let .toy2D(toy): toy.rawValue
        case let .mnist(directory): "mnist:\(directory)"
        case let .idxImages(path): path
        case let .cifar10(path): "cifar10:\(path)"
        case let .folder(directory): "folder:\(directory)"
        }
    }

    /// Reads the data set, or generates it for the built-in ones.
    /// - Parameters:
    ///   - imageSize: the side of the square images wanted: the size `shapes` are generated at (32 when nil), that
    ///     a folder's images are scaled and cropped to (required), and that images read from files are resized to
    ///     when it is not theirs (`LabeledImages.resized(to:)`); nil keeps theirs. 2D points ignore it.
    ///   - count: how many examples the built-in sets generate (files are read whole; `subset` takes part).
    ///   - generator: draws the built-in sets.
    public func load(imageSize: Int? = nil, count: Int = 10_000, generator: inout RandomGenerator) throws -> DataSet {
        if let imageSize, imageSize <= 0 { throw DiffuseError.data(path: description, problem: "image size \(imageSize) is not positive") }
        let images: LabeledImages
        switch self {
        case .shapes: return .images(SyntheticShapes.generate(count: count, size: imageSize ?? 32, generator: &generator))
        case let .toy2D(toy): return .points(toy.sample(count, generator: &generator))
        case let .mnist(directory): images = try .mnist(directory: directory)
        case let .idxImages(path):
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                throw DiffuseError.data(path: path, problem: "is a folder; name a folder as mnist:DIR, cifar10:DIR or folder:DIR")
            }
            images = try .idx(images: path)
        case let .cifar10(path):
            var isFolder: ObjCBool = false
            let folder = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
            images = try folder ? .cifar10(directory: path) : .cifar10(paths: [path])
        case let .folder(directory):
            guard let imageSize else {
                throw DiffuseError.data(path: description, problem: "needs an image size (--image-size) to scale its images to")
            }
            images = try .imageFolder(directory, size: imageSize)
        }
        return .images(imageSize.map { images.resized(to: $0) } ?? images)
    }
}

/// What a `DataSource` holds: images with their labels and class names, or 2D points.
public enum DataSet {
    /// Images [N, C, H, W] in [−1, 1].
    case images(LabeledImages)
    /// Points [N, 2].
    case points(Tensor)

    /// The number of examples.
    public var count: Int {
        switch self {
        case let .images(data): data.count
        case let .points(points): points.shape[0]
        }
    }

    /// The shape of one example: [C, H, W] or [D].
    public var exampleShape: [Int] {
        switch self {
        case let .images(data): Array(data.images.shape.dropFirst())
        case let .points(points): Array(points.shape.dropFirst())
        }
    }

    /// The examples at `indices`, with their labels (empty for points).
    public func batch(_ indices: [Int]) -> (x: Tensor, labels: [Int]) {
        switch self {
        case let .images(data): (data.images.selecting(indices), indices.map { data.labels[$0] })
        case let .points(points): (points.selecting(indices), [])
        }
    }
}
