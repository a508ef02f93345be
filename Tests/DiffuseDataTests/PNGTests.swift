import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class PNGTests: DataTestCase {
    /// An image [C, H, W] of random 8-bit levels as values in [−1, 1].
    func levels(_ shape: [Int], seed: UInt64) -> Tensor {
        var g = RandomGenerator(seed: seed)
        return Tensor(g.integers(shape.reduce(1, *), below: 256).map { Float($0) / 127.5 - 1 }, shape: shape)
    }

    /// What `PNG.write` writes, `PNG.read` reads back bit for bit when the values are 8-bit levels, and within
    /// half a level otherwise; greyscale files read as 1 channel, RGB ones as 3.
    func testRoundTrip() throws {
        for (shape, seed) in [([1, 5, 7], UInt64(1)), ([3, 6, 4], 2), ([3, 1, 1], 3)] {
            let image = levels(shape, seed: seed), file = path("round-\(seed).png")
            try PNG.write(image, to: file)
            let back = try PNG.read(file)
            XCTAssertEqual(back.shape, shape)
            XCTAssertEqual(back.scalars, image.scalars)
        }
        var g = RandomGenerator(seed: 4)
        let smooth = g.uniform([3, 8, 9], low: -1, high: 1)
        try PNG.write(smooth, to: path("smooth.png"))
        let back = try PNG.read(path("smooth.png"))
        XCTAssertLessThanOrEqual(zip(back.scalars, smooth.scalars).map { Swift.abs($0 - $1) }.max()!, 1 / 255 + 1e-6)
    }

    /// Asked for a channel count, the reader converts: grey to RGB repeats the grey, RGB to grey keeps grey
    /// pixels as they are.
    func testChannelConversion() throws {
        let grey = levels([1, 3, 4], seed: 5)
        try PNG.write(grey, to: path("grey.png"))
        let asRGB = try PNG.read(path("grey.png"), channels: 3)
        XCTAssertEqual(asRGB.shape, [3, 3, 4])
        XCTAssertEqual(asRGB.scalars, grey.scalars + grey.scalars + grey.scalars)
        let rgb = Tensor(grey.scalars + grey.scalars + grey.scalars, shape: [3, 3, 4])
        try PNG.write(rgb, to: path("rgb.png"))
        XCTAssertEqual(try PNG.read(path("rgb.png")).shape, [3, 3, 4])
        let asGrey = try PNG.read(path("rgb.png"), channels: 1)
        XCTAssertEqual(asGrey.shape, [1, 3, 4])
        XCTAssertEqual(asGrey.scalars, grey.scalars)
    }

    struct Expected: Decodable {
        let channels: Int
        let pixels: [[Either]]
        /// A grey value or an RGB triple.
        enum Either: Decodable {
            case grey(Int), rgb([Int])
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let v = try? c.decode(Int.self) { self = .grey(v) } else { self = .rgb(try c.decode([Int].self)) }
            }
            var values: [Int] {
                switch self {
                case let .grey(v): [v]
                case let .rgb(v): v
                }
            }
        }
    }

    /// PNG kinds Diffuse never writes, made by Pillow: palette, RGBA (transparent pixels onto black), 16-bit grey
    /// without gamma information (taken as sRGB: v·257 reads as v), grey + alpha.
    func testOtherKindsFromPillow() throws {
        let expected = try JSONDecoder().decode([String: Expected].self, from: Data(contentsOf: URL(fileURLWithPath: fixture("pngs.json"))))
        XCTAssertEqual(expected.count, 4)
        for (name, e) in expected.sorted(by: { $0.key < $1.key }) {
            let image = try PNG.read(fixture(name))
            let (h, w) = (e.pixels.count, e.pixels[0].count)
            XCTAssertEqual(image.shape, [e.channels, h, w], name)
            let p = image.storage.pointer
            for y in 0..<h {
                for x in 0..<w {
                    let got = (0..<e.channels).map { Int(((p[($0 * h + y) * w + x] + 1) * 127.5).rounded()) }
                    XCTAssertEqual(got, e.pixels[y][x].values, "\(name) pixel (\(y), \(x))")
                }
            }
        }
    }

    /// A file that is missing, not a PNG, cut short or damaged is a DataError naming it, with libpng's reason.
    func testBrokenFiles() throws {
        assertDataError(try PNG.read(path("missing.png")), path: path("missing.png"), "no such file")
        let text = try write(Array("not a picture".utf8), to: "text.png")
        assertDataError(try PNG.read(text), path: text, "is not a PNG file")
        // Found by fuzzing: an empty file (read through `fileContents`, where Foundation's reader leaked a page).
        let empty = try write([], to: "empty.png")
        assertDataError(try PNG.read(empty), path: empty, "is not a PNG file")
        let png = [UInt8](PNG.encode(pixels: levels([1, 16, 16], seed: 6).scalars.map { UInt8(($0 + 1) * 127.5) },
                                     width: 16, height: 16, channels: 1))
        let cut = try write(Array(png.prefix(png.count - 40)), to: "cut.png")
        assertDataError(try PNG.read(cut), path: cut, "is a corrupt PNG file: chunk 'IDAT' is cut short")
        var damaged = png
        damaged[50] ^= 0x55  // inside IDAT's data: its CRC no longer matches
        let bad = try write(damaged, to: "damaged.png")
        assertDataError(try PNG.read(bad), path: bad, "is a corrupt PNG file (libpng: ")
        let headerOnly = try write(Array(png.prefix(20)), to: "header-only.png")
        assertDataError(try PNG.read(headerOnly), path: headerOnly, "is a corrupt PNG file: chunk 'IHDR' is cut short")
        // Found by fuzzing: a chunk whose length claims 1.16 GB made libpng allocate and clear that much (4 s) before
        // finding the file short; it is refused before libpng sees it.
        let claims: [UInt8] = Array(png[..<33]) + [0x45, 0x58, 0x74, 0x53] + Array("ofTw".utf8) + Array(png[33...])
        let huge = try write(claims, to: "huge-chunk.png")
        let start = Date()
        assertDataError(try PNG.read(huge), path: huge, "chunk 'ofTw' is cut short (it claims 1163424851 bytes")
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.1)
    }
}
