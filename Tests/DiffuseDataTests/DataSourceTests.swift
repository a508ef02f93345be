import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class DataSourceTests: DataTestCase {
    /// Every form parses to its case, and the description parses back to it.
    func testParsing() throws {
        let idx = try write(idxBytes(shape: [1, 1, 1], values: [0]), to: "t10k-images-idx3-ubyte")
        let cases: [(String, DataSource)] = [
            ("shapes", .shapes), ("swiss-roll", .toy2D(.swissRoll)), ("two-moons", .toy2D(.twoMoons)),
            ("8-gaussians", .toy2D(.eightGaussians)), ("checkerboard", .toy2D(.checkerboard)),
            ("mnist:data/mnist", .mnist(directory: "data/mnist")), ("cifar10:/data/cifar-10-batches-bin", .cifar10(path: "/data/cifar-10-batches-bin")),
            ("folder:faces", .folder(directory: "faces")), ("data/train-images-idx3-ubyte.gz", .idxImages(path: "data/train-images-idx3-ubyte.gz")),
            (idx, .idxImages(path: idx)),
        ]
        for (text, source) in cases {
            XCTAssertEqual(try DataSource(parsing: text), source, text)
            XCTAssertEqual(source.description, text)
        }
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(directory.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        XCTAssertEqual(try DataSource(parsing: "t10k-images-idx3-ubyte"), .idxImages(path: "t10k-images-idx3-ubyte"))
    }

    /// A name that is none of the forms is an error that lists them; a prefix needs its path.
    func testUnknownNames() {
        for name in ["mnist", "Shapes", "swissroll", "cifar-10", ""] {
            assertDataError(try DataSource(parsing: name), path: name, "is not a data set; use one of: \(DataSource.forms)")
        }
        for form in ["shapes", "swiss-roll", "two-moons", "8-gaussians", "checkerboard", "mnist:DIR", "IDX images file", "cifar10:DIR", "folder:DIR"] {
            XCTAssertTrue(DataSource.forms.contains(form), form)
        }
        assertDataError(try DataSource(parsing: "folder:"), path: "folder:", "needs a path after \"folder:\"")
    }

    /// The built-in sets are generated at the count and size asked for, from the generator.
    func testBuiltInSets() throws {
        var g = RandomGenerator(seed: 1)
        guard case let .images(shapes) = try DataSource.shapes.load(imageSize: 16, count: 10, generator: &g) else {
            return XCTFail("shapes are not images")
        }
        XCTAssertEqual(shapes.images.shape, [10, 3, 16, 16])
        XCTAssertEqual(shapes.classes, ["disc", "square", "triangle"])
        var again = RandomGenerator(seed: 1)
        guard case let .images(same) = try DataSource.shapes.load(imageSize: 16, count: 10, generator: &again) else { return XCTFail() }
        XCTAssertEqual(same.images.scalars, shapes.images.scalars)
        guard case let .images(defaultSize) = try DataSource.shapes.load(count: 2, generator: &g) else { return XCTFail() }
        XCTAssertEqual(defaultSize.images.shape, [2, 3, 32, 32])
        let points = try DataSource.toy2D(.twoMoons).load(imageSize: 16, count: 100, generator: &g)
        guard case let .points(p) = points else { return XCTFail("two-moons are not points") }
        XCTAssertEqual(p.shape, [100, 2])
        XCTAssertEqual(points.count, 100)
        assertDataError(try DataSource.shapes.load(imageSize: 0, generator: &g), path: "shapes", "image size 0 is not positive")
    }

    /// The file forms read their files, resized when an image size is asked for.
    func testFileForms() throws {
        var g = RandomGenerator(seed: 1)
        let mnist = try write(idxBytes(shape: [2, 4, 4], values: [UInt8](repeating: 255, count: 32)), to: "mnist/train-images-idx3-ubyte")
        try write(idxBytes(shape: [2], values: [1, 0]), to: "mnist/train-labels-idx1-ubyte")
        for text in ["mnist:\(path("mnist"))", mnist] {
            guard case let .images(d) = try DataSource(parsing: text).load(generator: &g) else { return XCTFail(text) }
            XCTAssertEqual(d.images.shape, [2, 1, 4, 4], text)
            XCTAssertEqual(d.labels, [1, 0], text)
            guard case let .images(big) = try DataSource(parsing: text).load(imageSize: 6, generator: &g) else { return XCTFail(text) }
            XCTAssertEqual(big.images.shape, [2, 1, 6, 6], text)
            XCTAssertEqual(big.images.scalars, [Float](repeating: 1, count: 72), text)
        }
        let record = [UInt8(7)] + [UInt8](repeating: 0, count: 3072)
        let cifar = try write(record + record, to: "cifar/data_batch_1.bin")
        for text in ["cifar10:\(path("cifar"))", "cifar10:\(cifar)"] {
            guard case let .images(d) = try DataSource(parsing: text).load(generator: &g) else { return XCTFail(text) }
            XCTAssertEqual(d.images.shape, [2, 3, 32, 32], text)
            XCTAssertEqual(d.classes[d.labels[0]], "horse", text)
        }
        try FileManager.default.createDirectory(atPath: path("pngs"), withIntermediateDirectories: true)
        try PNG.write(Tensor(repeating: 0, shape: [3, 5, 4]), to: path("pngs/a.png"))
        guard case let .images(d) = try DataSource(parsing: "folder:\(path("pngs"))").load(imageSize: 3, generator: &g) else { return XCTFail() }
        XCTAssertEqual(d.images.shape, [1, 3, 3, 3])
        assertDataError(try DataSource.folder(directory: path("pngs")).load(generator: &g), path: "folder:\(path("pngs"))", "needs an image size (--image-size)")
        assertDataError(try DataSource.idxImages(path: path("pngs")).load(generator: &g), path: path("pngs"), "is a folder; name a folder as mnist:DIR")
    }

    /// `mnist:DIR` on the real MNIST folder, which holds the test split only.
    func testRealMNISTFolder() throws {
        let dir = try mnistDirectory()
        var g = RandomGenerator(seed: 1)
        guard case let .images(d) = try DataSource(parsing: "mnist:\(dir)").load(generator: &g) else { return XCTFail() }
        XCTAssertEqual(d.images.shape, [10_000, 1, 28, 28])
        XCTAssertEqual(d.classes.count, 10)
    }
}
