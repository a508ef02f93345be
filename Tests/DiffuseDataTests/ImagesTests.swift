import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class ImagesTests: XCTestCase {
    /// Area averaging of an axis, computed another way: each source pixel of the window repeated `size` times,
    /// then each output pixel the mean of its `length` consecutive copies.
    func areaAverage(_ values: [Double], start: Int, length: Int, size: Int) -> [Double] {
        let copies = values[start..<start + length].flatMap { [Double](repeating: $0, count: size) }
        return (0..<size).map { j in copies[j * length..<(j + 1) * length].reduce(0, +) / Double(length) }
    }

    /// Shrinking averages each output pixel's footprint over the centred square, fractional pixels weighted by
    /// their share, for integer and fractional factors, tall and wide images, every channel.
    func testShrinkingAveragesAreas() {
        var g = RandomGenerator(seed: 1)
        for (h, w, size) in [(6, 6, 3), (7, 7, 3), (5, 9, 4), (9, 5, 2), (10, 4, 4), (7, 8, 7), (13, 11, 5)] {
            let data = LabeledImages(images: g.uniform([2, 3, h, w], low: -1, high: 1), labels: [0, 1], classes: ["a", "b"])
            let resized = data.resized(to: size)
            XCTAssertEqual(resized.images.shape, [2, 3, size, size])
            XCTAssertEqual(resized.labels, [0, 1])
            XCTAssertEqual(resized.classes, ["a", "b"])
            let side = min(h, w), (oy, ox) = ((h - side) / 2, (w - side) / 2)
            let src = data.images.scalars.map(Double.init), out = resized.images.scalars
            for plane in 0..<6 {
                let rows = (0..<h).map { y in areaAverage(Array(src[(plane * h + y) * w..<(plane * h + y + 1) * w]), start: ox, length: side, size: size) }
                for x in 0..<size {
                    let column = areaAverage(rows.map { $0[x] }, start: oy, length: side, size: size)
                    for y in 0..<size {
                        XCTAssertEqual(Double(out[(plane * size + y) * size + x]), column[y], accuracy: 1e-5, "\(h)×\(w) → \(size), plane \(plane) (\(y), \(x))")
                    }
                }
            }
        }
    }

    struct BilinearCase: Decodable {
        let height, width, size: Int
        let image, expected: [Float]
    }

    /// Enlarging is bilinear between source pixel centres, reading beyond the square where the image goes on and
    /// repeating the edge where it ends: Pillow's BILINEAR resize of the same window.
    func testEnlargingMatchesPillowBilinear() throws {
        let cases = try JSONDecoder().decode([BilinearCase].self, from: Data(contentsOf: URL(fileURLWithPath: fixture("bilinear.json"))))
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let data = LabeledImages(images: Tensor(c.image, shape: [1, 1, c.height, c.width]), labels: [0])
            let out = data.resized(to: c.size).images
            XCTAssertEqual(out.shape, [1, 1, c.size, c.size])
            for (i, (got, want)) in zip(out.scalars, c.expected).enumerated() {
                XCTAssertEqual(got, want, accuracy: 1e-5, "\(c.height)×\(c.width) → \(c.size), value \(i)")
            }
        }
    }

    /// Images at the size already are returned as they are.
    func testResizingToOwnSizeKeepsImages() {
        var g = RandomGenerator(seed: 2)
        let data = LabeledImages(images: g.normal([2, 1, 5, 5]), labels: [0, 0])
        XCTAssertTrue(data.resized(to: 5).images.storage === data.images.storage)
    }

    /// Each image is mirrored, or not, as the generator's words say (one per image); the input stays as it was.
    func testRandomHorizontalFlip() {
        var g = RandomGenerator(seed: 3)
        let batch = g.normal([16, 2, 3, 5]), before = batch.scalars
        var flipGenerator = RandomGenerator(seed: 9), copy = flipGenerator
        let flipped = randomHorizontalFlip(batch, generator: &flipGenerator)
        let expected = copy.integers(16, below: 2)
        XCTAssertEqual(flipGenerator, copy)
        XCTAssertTrue(expected.contains(0) && expected.contains(1))
        XCTAssertEqual(batch.scalars, before)
        XCTAssertEqual(flipped.shape, batch.shape)
        let out = flipped.scalars
        for i in 0..<16 {
            for row in 0..<6 {
                let start = (i * 6 + row) * 5
                let original = Array(before[start..<start + 5])
                XCTAssertEqual(Array(out[start..<start + 5]), expected[i] == 1 ? original.reversed() : original)
            }
        }
    }
}
