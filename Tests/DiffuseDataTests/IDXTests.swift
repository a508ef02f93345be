import CZlib
import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class IDXTests: DataTestCase {
    /// Writes `bytes` gzip-compressed to `name` and returns its path.
    func writeGzipped(_ bytes: [UInt8], to name: String) throws -> String {
        let path = path(name)
        let file = try XCTUnwrap(gzopen(path, "wb"))
        XCTAssertEqual(bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }, Int32(bytes.count))
        XCTAssertEqual(gzclose(file), Z_OK)
        return path
    }

    /// The real MNIST test set: 10,000 images 1×28×28 in [−1, 1], its known class counts, classes "0"…"9", and its
    /// caption.
    func testRealMNIST() throws {
        let dir = try mnistDirectory()
        let data = try LabeledImages.idx(images: dir + "/t10k-images-idx3-ubyte.gz")
        XCTAssertEqual(data.images.shape, [10_000, 1, 28, 28])
        XCTAssertEqual([data.channels, data.height, data.width], [1, 28, 28])
        XCTAssertEqual(data.classes, (0...9).map(String.init))
        XCTAssertEqual((0...9).map { c in data.labels.filter { $0 == c }.count }, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
        let values = data.images.scalars
        XCTAssertEqual(values.min(), -1)
        XCTAssertEqual(values.max(), 1)
        // mnist(directory:) finds the same files when the folder has only the test split.
        let viaFolder = try LabeledImages.mnist(directory: dir)
        XCTAssertEqual(viaFolder.labels, data.labels)
        // Reports name it by what it is, never by its path.
        XCTAssertEqual(viaFolder.caption, "MNIST test split, 10,000 digits")
        XCTAssertEqual(viaFolder.resized(to: 32).subset(Array(0..<999)).caption, "MNIST test split, 999 digits")
        XCTAssertEqual(try LabeledImages.mnist(directory: dir, split: .test).labels, data.labels)
        assertDataError(try LabeledImages.mnist(directory: dir, split: .train), path: dir, "train-images-idx3-ubyte")
    }

    /// Gzipped and raw copies of the same files give the same data.
    func testGzippedAndRawAgree() throws {
        var g = RandomGenerator(seed: 1)
        let pixels = g.integers(5 * 4 * 3, below: 256).map(UInt8.init), labels = g.integers(5, below: 10).map(UInt8.init)
        let images = idxBytes(shape: [5, 4, 3], values: pixels), labelBytes = idxBytes(shape: [5], values: labels)
        try write(labelBytes, to: "raw/train-labels-idx1-ubyte")
        let raw = try LabeledImages.idx(images: write(images, to: "raw/train-images-idx3-ubyte"))
        let gzipped = try LabeledImages.idx(images: writeGzipped(images, to: "train-images-idx3-ubyte.gz"),
                                            labels: writeGzipped(labelBytes, to: "train-labels-idx1-ubyte.gz"))
        XCTAssertEqual(raw.images.shape, [5, 1, 4, 3])
        XCTAssertEqual(raw.images.scalars, pixels.map { Float($0) / 127.5 - 1 })
        XCTAssertEqual(raw.labels, labels.map(Int.init))
        XCTAssertEqual(gzipped.images.scalars, raw.images.scalars)
        XCTAssertEqual(gzipped.labels, raw.labels)
        XCTAssertEqual(raw.classes, (0...Int(labels.max()!)).map(String.init))
    }

    /// The real MNIST gunzipped reads the same as the .gz.
    func testRealMNISTGzippedAndRawAgree() throws {
        let dir = try mnistDirectory()
        for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            let file = try XCTUnwrap(gzopen(dir + "/\(name).gz", "rb"))
            var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 16)
            while case let n = chunk.withUnsafeMutableBytes({ gzread(file, $0.baseAddress, UInt32($0.count)) }), n > 0 {
                bytes += chunk[..<Int(n)]
            }
            gzclose(file)
            try write(bytes, to: name)
        }
        let raw = try LabeledImages.mnist(directory: directory.path)
        let gzipped = try LabeledImages.mnist(directory: dir)
        XCTAssertEqual(raw.labels, gzipped.labels)
        XCTAssertEqual(raw.images.scalars, gzipped.images.scalars)
    }

    /// The labels file is found beside the images by the MNIST naming, raw or .gz either way.
    func testLabelsFileBesideImages() throws {
        let images = try write(idxBytes(shape: [1, 2, 2], values: [0, 1, 2, 3]), to: "t10k-images-idx3-ubyte")
        let gzLabels = try writeGzipped(idxBytes(shape: [1], values: [7]), to: "t10k-labels-idx1-ubyte.gz")
        XCTAssertEqual(try IDXFile.labelsPath(forImages: images), gzLabels)
        XCTAssertEqual(try LabeledImages.idx(images: images).labels, [7])
        let dotted = try write(idxBytes(shape: [1, 1, 1], values: [0]), to: "fashion/train-images.idx3-ubyte.gz")
        let plainLabels = try write(idxBytes(shape: [1], values: [3]), to: "fashion/train-labels.idx1-ubyte")
        XCTAssertEqual(try IDXFile.labelsPath(forImages: dotted), plainLabels)
        let lonely = try write(idxBytes(shape: [1, 1, 1], values: [0]), to: "lonely/my-images-idx3-ubyte")
        assertDataError(try LabeledImages.idx(images: lonely), path: lonely, "no labels file beside it")
        let unnamed = try write(idxBytes(shape: [1, 1, 1], values: [0]), to: "digits.idx")
        assertDataError(try LabeledImages.idx(images: unnamed), path: unnamed, "has no \"images\" in its name")
    }

    /// Every kind of broken file is a DataError naming it.
    func testBrokenFiles() throws {
        let good = idxBytes(shape: [2, 3, 3], values: [UInt8](repeating: 9, count: 18))
        let labels = try write(idxBytes(shape: [2], values: [1, 2]), to: "labels")
        let truncated = try write(Array(good.dropLast(5)), to: "truncated")
        assertDataError(try LabeledImages.idx(images: truncated, labels: labels), path: truncated, "the file holds 13")
        let promising = try write(idxBytes(shape: [3, 3, 3], values: [UInt8](repeating: 9, count: 18)), to: "promising")
        assertDataError(try IDXFile(path: promising), path: promising, "header promises [3, 3, 3] = 27 values")
        let huge = try write(idxBytes(shape: [1 << 31, 1 << 31, 1 << 31], values: [1, 2]), to: "huge")
        assertDataError(try IDXFile(path: huge), path: huge, "too many values")
        let header = try write(Array(good.prefix(9)), to: "header")
        assertDataError(try IDXFile(path: header), path: header, "truncated inside its header")
        let miscounted = try write(idxBytes(shape: [3], values: [1, 2, 3]), to: "miscounted")
        let images = try write(good, to: "images")
        assertDataError(try LabeledImages.idx(images: images, labels: miscounted), path: miscounted, "has 3 labels for the 2 images")
        let text = try write(Array("P5 3 3 255\n".utf8), to: "not-idx.pgm")
        assertDataError(try IDXFile(path: text), path: text, "is not an IDX file")
        let floats = try write(idxBytes(shape: [1], values: [0, 0, 0, 0], type: 0x0D), to: "floats")
        assertDataError(try IDXFile(path: floats), path: floats, "IDX type 0xd")
        let flat = try write(idxBytes(shape: [4], values: [1, 2, 3, 4]), to: "flat")
        assertDataError(try LabeledImages.idx(images: flat, labels: labels), path: flat, "images need [N, height, width]")
        let empty = try write(idxBytes(shape: [0, 3, 3], values: []), to: "empty")
        assertDataError(try LabeledImages.idx(images: empty, labels: labels), path: empty, "holds no images")
        let wrongLabels = try write(idxBytes(shape: [2, 1], values: [1, 2]), to: "wrong-labels")
        assertDataError(try LabeledImages.idx(images: images, labels: wrongLabels), path: wrongLabels, "labels need [N]")
        assertDataError(try IDXFile(path: path("missing")), path: path("missing"), "no such file")
        assertDataError(try IDXFile(path: directory.path), path: directory.path, "is a folder")
        assertDataError(try LabeledImages.mnist(directory: path("nowhere")), path: path("nowhere"), "no such folder")
        assertDataError(try LabeledImages.mnist(directory: directory.path), path: directory.path,
                        "holds no MNIST images file (looked for train-images-idx3-ubyte, train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte, t10k-images-idx3-ubyte.gz)")
        // A gzip stream cut short, and one whose bytes are damaged.
        var g = RandomGenerator(seed: 2)
        let noise = idxBytes(shape: [100, 3, 3], values: g.integers(900, below: 256).map(UInt8.init))
        let gz = try Array(Data(contentsOf: URL(fileURLWithPath: writeGzipped(noise, to: "noise.gz"))))
        let cut = try write(Array(gz.prefix(gz.count / 2)), to: "cut.gz")
        assertDataError(try IDXFile(path: cut), path: cut, "corrupt or truncated")
        var damaged = gz
        damaged[gz.count - 6] ^= 0xFF  // inside the CRC-32 of the trailer
        let bad = try write(damaged, to: "damaged.gz")
        assertDataError(try IDXFile(path: bad), path: bad, "corrupt or truncated")
    }
}
