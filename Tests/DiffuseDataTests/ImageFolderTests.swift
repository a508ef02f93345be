import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class ImageFolderTests: DataTestCase {
    /// Writes a PNG of random levels, `channels`×`height`×`width`, to `name` and returns the image.
    @discardableResult
    func writePNG(_ name: String, channels: Int, height: Int, width: Int, seed: UInt64) throws -> Tensor {
        var g = RandomGenerator(seed: seed)
        let image = Tensor(g.integers(channels * height * width, below: 256).map { Float($0) / 127.5 - 1 }, shape: [channels, height, width])
        try FileManager.default.createDirectory(at: directory.appendingPathComponent(name).deletingLastPathComponent(),
                                                withIntermediateDirectories: true)
        try PNG.write(image, to: path(name))
        return image
    }

    /// Image i of `data`, as a flat array.
    func image(_ data: LabeledImages, _ i: Int) -> [Float] {
        let n = data.channels * data.height * data.width
        return Array(data.images.scalars[i * n..<(i + 1) * n])
    }

    /// What the folder loader gives for one file: the file read at `channels`, then resized.
    func expected(_ file: String, channels: Int, size: Int) throws -> [Float] {
        let read = try PNG.read(path(file), channels: channels)
        return LabeledImages(images: read.reshaped([1] + read.shape), labels: [0]).resized(to: size).images.scalars
    }

    /// A flat folder: every .png (any case) in sorted order, label 0, no classes; other and hidden files passed
    /// over; greyscale files become RGB when any file is colour.
    func testFlatFolder() throws {
        try writePNG("flat/b.png", channels: 3, height: 4, width: 6, seed: 1)
        let grey = try writePNG("flat/a.PNG", channels: 1, height: 4, width: 4, seed: 2)
        try writePNG("flat/c.png", channels: 3, height: 9, width: 7, seed: 3)
        try write(Array("notes".utf8), to: "flat/notes.txt")
        try write(Array("not a png".utf8), to: "flat/.hidden.png")
        let data = try LabeledImages.imageFolder(path("flat"), size: 4)
        XCTAssertEqual(data.images.shape, [3, 3, 4, 4])
        XCTAssertEqual(data.labels, [0, 0, 0])
        XCTAssertEqual(data.classes, [])
        XCTAssertEqual(image(data, 0), grey.scalars + grey.scalars + grey.scalars)
        // 4×6 → 4: the middle four columns, unchanged.
        let b = try PNG.read(path("flat/b.png")).scalars
        XCTAssertEqual(image(data, 1), (0..<3).flatMap { c in (0..<4).flatMap { y in (1..<5).map { x in b[(c * 4 + y) * 6 + x] } } })
        XCTAssertEqual(image(data, 2), try expected("flat/c.png", channels: 3, size: 4))
        // Enlarged, and read as grey when asked.
        let big = try LabeledImages.imageFolder(path("flat"), size: 7, channels: 1)
        XCTAssertEqual(big.images.shape, [3, 1, 7, 7])
        for (i, file) in ["flat/a.PNG", "flat/b.png", "flat/c.png"].enumerated() {
            XCTAssertEqual(image(big, i), try expected(file, channels: 1, size: 7), file)
        }
    }

    /// Greyscale files alone give one channel unless three are asked for.
    func testGreyscaleFolder() throws {
        try writePNG("grey/x.png", channels: 1, height: 3, width: 3, seed: 4)
        try writePNG("grey/y.png", channels: 1, height: 5, width: 3, seed: 5)
        XCTAssertEqual(try LabeledImages.imageFolder(path("grey"), size: 3).images.shape, [2, 1, 3, 3])
        XCTAssertEqual(try LabeledImages.imageFolder(path("grey"), size: 3, channels: 3).images.shape, [2, 3, 3, 3])
    }

    /// Class subfolders: the classes are their sorted names, each holding its PNG files at any depth.
    func testClassSubfolders() throws {
        try writePNG("set/dog/x.png", channels: 3, height: 5, width: 5, seed: 6)
        try writePNG("set/cat/z.png", channels: 3, height: 6, width: 8, seed: 7)
        try writePNG("set/cat/nested/deep/y.png", channels: 3, height: 2, width: 2, seed: 8)
        try writePNG("set/bird/w.png", channels: 1, height: 4, width: 4, seed: 9)
        try write(Array("junk".utf8), to: "set/.cache/junk.png")
        try write(Array("junk".utf8), to: "set/cat/.hidden/junk.png")
        let data = try LabeledImages.imageFolder(path("set"), size: 4)
        XCTAssertEqual(data.classes, ["bird", "cat", "dog"])
        XCTAssertEqual(data.labels, [0, 1, 1, 2])
        XCTAssertEqual(data.images.shape, [4, 3, 4, 4])
        for (i, file) in ["set/bird/w.png", "set/cat/nested/deep/y.png", "set/cat/z.png", "set/dog/x.png"].enumerated() {
            XCTAssertEqual(image(data, i), try expected(file, channels: 3, size: 4), file)
        }
    }

    /// A bad file stops the load naming it; so do folders with nothing to read or an unclear layout.
    func testErrors() throws {
        try writePNG("bad/a.png", channels: 3, height: 4, width: 4, seed: 1)
        let corrupt = try write(Array("GIF89a".utf8), to: "bad/b.png")
        assertDataError(try LabeledImages.imageFolder(path("bad"), size: 4), path: corrupt, "is not a PNG file")
        assertDataError(try LabeledImages.imageFolder(path("bad"), size: 4, channels: 3), path: corrupt, "is not a PNG file")

        try FileManager.default.createDirectory(atPath: path("empty"), withIntermediateDirectories: true)
        assertDataError(try LabeledImages.imageFolder(path("empty"), size: 4), path: path("empty"), "holds no .png files (it is empty)")
        try write([0xFF, 0xD8], to: "jpegs/a.jpg")
        try write([0xFF, 0xD8], to: "jpegs/b.jpg")
        assertDataError(try LabeledImages.imageFolder(path("jpegs"), size: 4), path: path("jpegs"),
                        "holds no .png files (it holds 2 other files, e.g. a.jpg; only PNG images are read)")

        try writePNG("mixed/top.png", channels: 3, height: 4, width: 4, seed: 1)
        try writePNG("mixed/cls/in.png", channels: 3, height: 4, width: 4, seed: 1)
        assertDataError(try LabeledImages.imageFolder(path("mixed"), size: 4), path: path("mixed"), "beside class subfolders (cls)")

        try writePNG("classes/full/in.png", channels: 3, height: 4, width: 4, seed: 1)
        try write(Array("x".utf8), to: "classes/hollow/readme.txt")
        assertDataError(try LabeledImages.imageFolder(path("classes"), size: 4), path: path("classes/hollow"),
                        "is a class subfolder with no .png files")

        assertDataError(try LabeledImages.imageFolder(path("missing"), size: 4), path: path("missing"), "no such folder")
        assertDataError(try LabeledImages.imageFolder(corrupt, size: 4), path: corrupt, "is a file, not a folder")
    }
}
