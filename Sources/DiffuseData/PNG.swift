import CPNG
import CZlib
import DiffuseEngine
import Foundation

/// PNG files: written with zlib's deflate (8-bit grey or RGB, no interlace); read, of any kind, with libpng.
public enum PNG {
    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        var out = bigEndian(UInt32(data.count))
        let body = Array(type.utf8) + data
        out += body
        let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        return out + bigEndian(UInt32(crc))
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    /// The bytes of a PNG image of `width`×`height` pixels with `channels` (1 grey, 3 RGB) interleaved 8-bit values,
    /// with `text` as textual chunks (keyword, text) before the image data.
    public static func encode(pixels: [UInt8], width: Int, height: Int, channels: Int, text: [(String, String)] = []) -> Data {
        precondition(channels == 1 || channels == 3, "PNG of \(channels) channels")
        precondition(pixels.count == width * height * channels, "\(pixels.count) values for \(width)×\(height)×\(channels)")
        var raw = [UInt8]()
        raw.reserveCapacity(height * (width * channels + 1))
        for y in 0..<height {
            raw.append(0)  // filter: none
            raw += pixels[(y * width * channels)..<((y + 1) * width * channels)]
        }
        var size = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(size))
        _ = compress2(&compressed, &size, raw, uLong(raw.count), 6)
        let header = bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, channels == 1 ? 0 : 2, 0, 0, 0]
        let bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header)
            + text.flatMap(textChunk) + chunk("IDAT", Array(compressed[..<Int(size)])) + chunk("IEND", [])
        return Data(bytes)
    }

    /// A tEXt chunk when the text is Latin-1 (as the PNG standard asks of it), an uncompressed iTXt chunk (UTF-8)
    /// otherwise: what Pillow's PngInfo.add_text writes, and the web UIs with it. The keyword is 1–79 Latin-1
    /// characters.
    private static func textChunk(_ keyword: String, _ text: String) -> [UInt8] {
        precondition((1...79).contains(keyword.count) && keyword.unicodeScalars.allSatisfy { $0.value < 256 && $0.value > 31 },
                     "PNG text keyword '\(keyword)'")
        let key = keyword.unicodeScalars.map { UInt8($0.value) }
        if text.unicodeScalars.allSatisfy({ $0.value < 256 }) {
            return chunk("tEXt", key + [0] + text.unicodeScalars.map { UInt8($0.value) })
        }
        // keyword, 0, compression flag 0 and method 0, empty language tag and translated keyword, UTF-8 text.
        return chunk("iTXt", key + [0, 0, 0, 0, 0] + Array(text.utf8))
    }

    /// The textual chunks of a PNG file (tEXt, zTXt and iTXt, compressed or not), keyword and text, in file order.
    /// A file that is not a PNG, or a chunk that is cut short or does not decompress, is an error naming the file.
    public static func text(_ path: String) throws -> [(keyword: String, text: String)] {
        let bytes = try contents(path)
        var out: [(String, String)] = []
        for (type, range) in try chunks(bytes, path: path) {
            let body = Array(bytes[range])
            guard ["tEXt", "zTXt", "iTXt"].contains(type) else { continue }
            guard let nul = body.firstIndex(of: 0) else { throw DiffuseError.data(path: path, problem: "\(type) chunk without a keyword") }
            let keyword = latin1(body[..<nul])
            var rest = Array(body[(nul + 1)...])
            switch type {
            case "tEXt": out.append((keyword, latin1(rest)))
            case "zTXt":
                guard let text = rest.isEmpty ? nil : inflate(Array(rest.dropFirst())) else {
                    throw DiffuseError.data(path: path, problem: "zTXt chunk '\(keyword)' does not decompress")
                }
                out.append((keyword, latin1(text)))
            default:  // iTXt: compression flag and method, language tag, translated keyword, text
                guard rest.count >= 2 else { throw DiffuseError.data(path: path, problem: "iTXt chunk '\(keyword)' is cut short") }
                let compressed = rest[0] == 1
                rest.removeFirst(2)
                for _ in 0..<2 {
                    guard let end = rest.firstIndex(of: 0) else { throw DiffuseError.data(path: path, problem: "iTXt chunk '\(keyword)' is cut short") }
                    rest.removeFirst(end + 1)
                }
                guard let text = compressed ? inflate(rest) : rest else {
                    throw DiffuseError.data(path: path, problem: "iTXt chunk '\(keyword)' does not decompress")
                }
                out.append((keyword, String(decoding: text, as: UTF8.self)))
            }
        }
        return out
    }

    private static func latin1<C: Collection<UInt8>>(_ b: C) -> String { String(String.UnicodeScalarView(b.map { Unicode.Scalar($0) })) }

    /// A PNG file's bytes: an error unless it starts with the PNG signature.
    private static func contents(_ path: String) throws -> [UInt8] {
        guard let data = fileContents(path) else { throw DiffuseError.data(path: path, problem: "no such file") }
        guard data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else {
            throw DiffuseError.data(path: path, problem: "is not a PNG file")
        }
        return [UInt8](data)
    }

    /// The chunks of a PNG file's bytes up to IEND, type and body, each checked to fit in the file: libpng would
    /// allocate what a chunk's length field claims (up to 2 GiB) before finding the file short.
    private static func chunks(_ bytes: [UInt8], path: String) throws -> [(type: String, body: Range<Int>)] {
        var out: [(String, Range<Int>)] = []
        var at = 8
        while at + 8 <= bytes.count {
            let length = bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) }
            let type = latin1(bytes[(at + 4)..<(at + 8)])
            guard at + 12 + length <= bytes.count else {
                throw DiffuseError.data(path: path, problem: "is a corrupt PNG file: chunk '\(type)' is cut short (it claims \(length) bytes, the file holds \(bytes.count - at - 12))")
            }
            out.append((type, (at + 8)..<(at + 8 + length)))
            at += 12 + length
            if type == "IEND" { break }
        }
        return out
    }

    /// zlib-compressed bytes decompressed, or nil where they are not a whole zlib stream (at most 64 MiB).
    private static func inflate(_ compressed: [UInt8]) -> [UInt8]? {
        var capacity = max(1024, compressed.count * 4)
        while capacity <= 1 << 26 {
            var out = [UInt8](repeating: 0, count: capacity)
            var size = uLong(capacity)
            let status = uncompress(&out, &size, compressed, uLong(compressed.count))
            if status == Z_OK { return Array(out[..<Int(size)]) }
            guard status == Z_BUF_ERROR else { return nil }
            capacity *= 4
        }
        return nil
    }

    /// Writes an image tensor [C, H, W] (C = 1 or 3) whose values span `range` (clamped) as an 8-bit PNG, atomically,
    /// with `text` chunks (keyword, text): `parameters` for how it was generated (see `GenerationParameters`).
    public static func write(_ image: Tensor, to path: String, range: ClosedRange<Float> = -1...1,
                             text: [(String, String)] = []) throws {
        try writeAtomically(data(image, range: range, text: text), to: path)
    }

    /// The bytes of the PNG file `write` writes.
    public static func data(_ image: Tensor, range: ClosedRange<Float> = -1...1, text: [(String, String)] = []) -> Data {
        precondition(image.rank == 3 && (image.shape[0] == 1 || image.shape[0] == 3), "PNG of an image of shape \(image.shape)")
        let (c, h, w) = (image.shape[0], image.shape[1], image.shape[2])
        let p = image.storage.pointer, span = range.upperBound - range.lowerBound
        var pixels = [UInt8](repeating: 0, count: c * h * w)
        for y in 0..<h {
            for x in 0..<w {
                for k in 0..<c {
                    let v = (p[(k * h + y) * w + x] - range.lowerBound) / span
                    pixels[(y * w + x) * c + k] = UInt8((min(max(v, 0), 1) * 255).rounded())
                }
            }
        }
        return encode(pixels: pixels, width: w, height: h, channels: c, text: text)
    }

    /// The largest image `decode` reads (it needs the whole image in memory, and a corrupt header can claim
    /// anything up to 2³¹ × 2³¹ pixels).
    static let maxPixels = 1 << 28

    /// Runs `body` on a `png_image` whose header libpng's simplified API has read from `path`, then frees what
    /// libpng allocated. The `png_image` lives at one address throughout: libpng keeps a pointer to it for its
    /// error handler.
    private static func withHeader<T>(_ path: String, _ body: (UnsafeMutablePointer<png_image>) throws -> T) throws -> T {
        let bytes = try contents(path)
        _ = try chunks(bytes, path: path)
        let image = UnsafeMutablePointer<png_image>.allocate(capacity: 1)
        image.initialize(to: png_image())
        image.pointee.version = png_uint_32(PNG_IMAGE_VERSION)
        defer {
            png_image_free(image)
            image.deallocate()
        }
        // libpng reads the bytes as it decodes: they stay in place until `body` returns.
        return try bytes.withUnsafeBytes { memory in
            guard png_image_begin_read_from_memory(image, memory.baseAddress, memory.count) != 0 else {
                throw DiffuseError.data(path: path, problem: "is not a readable PNG file (libpng: \(message(image.pointee)))")
            }
            return try body(image)
        }
    }

    /// Whether the header libpng read says colour (RGB or palette) rather than greyscale.
    private static func isColour(_ image: UnsafeMutablePointer<png_image>) -> Bool {
        image.pointee.format & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0
    }

    /// Whether a PNG file holds colour, from its header alone.
    static func isColour(_ path: String) throws -> Bool { try withHeader(path, isColour) }

    /// A PNG file's pixels, 8-bit and interleaved, `channels` per pixel (1 grey, 3 RGB) or, when nil, 1 for a
    /// greyscale file and 3 otherwise, converted by libpng as `read` says.
    static func decode(_ path: String, channels: Int? = nil) throws -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
        precondition(channels == nil || channels == 1 || channels == 3, "PNG read as \(channels!) channels")
        return try withHeader(path) { image in
            let c = channels ?? (isColour(image) ? 3 : 1)
            let (w, h) = (Int(image.pointee.width), Int(image.pointee.height))
            guard w * h <= maxPixels else {
                throw DiffuseError.data(path: path, problem: "is \(w)×\(h) pixels, more than the \(maxPixels) this reader takes")
            }
            image.pointee.format = c == 1 ? png_uint_32(PNG_FORMAT_GRAY) : png_uint_32(PNG_FORMAT_RGB)
            image.pointee.flags |= png_uint_32(PNG_IMAGE_FLAG_16BIT_sRGB)
            var pixels = [UInt8](repeating: 0, count: w * h * c)
            var black = png_color(red: 0, green: 0, blue: 0)
            let ok = pixels.withUnsafeMutableBytes { png_image_finish_read(image, &black, $0.baseAddress, png_int_32(w * c), nil) }
            guard ok != 0 else { throw DiffuseError.data(path: path, problem: "is a corrupt PNG file (libpng: \(message(image.pointee)))") }
            return (pixels, w, h, c)
        }
    }

    /// The error text libpng left in `image`.
    private static func message(_ image: png_image) -> String {
        withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Reads a PNG file as an image [C, H, W] with values in [−1, 1]: C = `channels` (1 grey, 3 RGB) or, when nil,
    /// 1 for a greyscale file and 3 otherwise. libpng's simplified API reads every PNG kind (bit depths 1–16,
    /// palette, grey, alpha, interlaced) and converts it: transparent pixels are composited onto black, and
    /// 16-bit files without gamma information are taken as sRGB like 8-bit ones (libpng would take them as
    /// linear). What `write` wrote reads back exactly, up to its 8-bit rounding. A missing, non-PNG or corrupt
    /// file is a `DataError` with libpng's reason.
    public static func read(_ path: String, channels: Int? = nil) throws -> Tensor {
        let (pixels, w, h, c) = try decode(path, channels: channels)
        let image = Tensor(uninitialized: [c, h, w])
        toPlanes(pixels, width: w, height: h, channels: c, into: image.storage.pointer)
        return image
    }

    /// Interleaved 8-bit pixels as planes [C, H, W] of values in [−1, 1].
    static func toPlanes(_ pixels: [UInt8], width w: Int, height h: Int, channels c: Int, into p: UnsafeMutablePointer<Float>) {
        pixels.withUnsafeBufferPointer { px in
            for i in 0..<w * h {
                for k in 0..<c { p[k * w * h + i] = Float(px[i * c + k]) / 127.5 - 1 }
            }
        }
    }
}

/// Images [N, C, H, W] tiled into one image [C, rows·(H + pad) + pad, columns·(W + pad) + pad] on a background of
/// `background` (in the images' value range).
public func imageGrid(_ images: Tensor, columns: Int, padding pad: Int = 2, background: Float = 1) -> Tensor {
    let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
    let rows = (n + columns - 1) / columns
    let (gh, gw) = (rows * (h + pad) + pad, columns * (w + pad) + pad)
    let grid = Tensor(repeating: background, shape: [c, gh, gw])
    let src = images.storage.pointer, dst = grid.storage.pointer
    for i in 0..<n {
        let (oy, ox) = (pad + (i / columns) * (h + pad), pad + (i % columns) * (w + pad))
        for k in 0..<c {
            for y in 0..<h {
                (dst + (k * gh + oy + y) * gw + ox).update(from: src + ((i * c + k) * h + y) * w, count: w)
            }
        }
    }
    return grid
}
