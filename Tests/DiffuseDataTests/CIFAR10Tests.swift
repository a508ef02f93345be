import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class CIFAR10Tests: DataTestCase {
    /// `labels.count` records of the CIFAR-10 binary format with random pixels, and those pixels.
    func batch(_ labels: [UInt8], seed: UInt64) -> (bytes: [UInt8], pixels: [[UInt8]]) {
        var g = RandomGenerator(seed: seed)
        let pixels = labels.map { _ in g.integers(3072, below: 256).map(UInt8.init) }
        return (zip(labels, pixels).flatMap { [$0] + $1 }, pixels)
    }

    /// Records become [3, 32, 32] images in [−1, 1] (red plane, then green, then blue), files in the order given.
    func testReadsRecordsInOrder() throws {
        let (first, a) = batch([3, 0, 9], seed: 1), (second, b) = batch([5], seed: 2)
        let data = try LabeledImages.cifar10(paths: [write(first, to: "data_batch_1.bin"), write(second, to: "data_batch_2.bin")])
        XCTAssertEqual(data.images.shape, [4, 3, 32, 32])
        XCTAssertEqual(data.labels, [3, 0, 9, 5])
        XCTAssertEqual(data.classes, LabeledImages.cifar10Classes)
        XCTAssertEqual(data.classes[3], "cat")
        XCTAssertEqual(data.images.scalars, (a + b).flatMap { $0 }.map { Float($0) / 127.5 - 1 })
        // Pixel (y, x) of channel c is byte 1 + c·1024 + y·32 + x of its record.
        let p = data.images.storage.pointer
        XCTAssertEqual(p[((3 * 3 + 2) * 32 + 5) * 32 + 7], Float(b[0][2 * 1024 + 5 * 32 + 7]) / 127.5 - 1)
    }

    /// A folder gives its training batches in name order, else its test batch; a split can be asked for.
    func testFolder() throws {
        try write(batch([1], seed: 1).bytes, to: "cifar/test_batch.bin")
        XCTAssertEqual(try LabeledImages.cifar10(directory: path("cifar")).labels, [1])
        assertDataError(try LabeledImages.cifar10(directory: path("cifar"), split: .train), path: path("cifar"), "data_batch_*.bin")
        try write(batch([2], seed: 1).bytes, to: "cifar/data_batch_2.bin")
        try write(batch([4, 6], seed: 1).bytes, to: "cifar/data_batch_1.bin")
        try write([1, 2, 3], to: "cifar/batches.meta.txt")
        let train = try LabeledImages.cifar10(directory: path("cifar"))
        XCTAssertEqual(train.labels, [4, 6, 2])
        XCTAssertEqual(train.caption, "CIFAR-10 training split, 3 images", "what the data is, not where it lies")
        let test = try LabeledImages.cifar10(directory: path("cifar"), split: .test)
        XCTAssertEqual(test.labels, [1])
        XCTAssertEqual(test.subset([0, 0]).caption, "CIFAR-10 test split, 2 images")
        try FileManager.default.createDirectory(atPath: path("empty"), withIntermediateDirectories: true)
        assertDataError(try LabeledImages.cifar10(directory: path("empty")), path: path("empty"), "holds no CIFAR-10 binary batches")
        assertDataError(try LabeledImages.cifar10(directory: path("missing")), path: path("missing"), "no such folder")
    }

    /// A size that is not whole records, a label above 9 and an empty file are DataErrors naming the file.
    func testBrokenFiles() throws {
        let good = try write(batch([1, 2], seed: 1).bytes, to: "good.bin")
        let cut = try write(Array(batch([1, 2], seed: 1).bytes.dropLast()), to: "cut.bin")
        assertDataError(try LabeledImages.cifar10(paths: [good, cut]), path: cut, "holds 6145 bytes, not a whole number of 3073-byte")
        let badLabel = try write(batch([1, 10, 2], seed: 1).bytes, to: "bad.bin")
        assertDataError(try LabeledImages.cifar10(paths: [badLabel]), path: badLabel, "record 1 has label 10")
        let empty = try write([], to: "empty.bin")
        assertDataError(try LabeledImages.cifar10(paths: [empty]), path: empty, "holds no images")
        assertDataError(try LabeledImages.cifar10(paths: [path("missing.bin")]), path: path("missing.bin"), "no such file")
    }
}
