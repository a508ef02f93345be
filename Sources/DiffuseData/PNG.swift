import CZlib
import DiffuseEngine
import Foundation

/// PNG files: written with zlib's deflate (8-bit grey or RGB, no interlace), read back by the same rules.
public enum PNG {
    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        var out = bigEndian(UInt32(data.count))
        let body = Array(type.utf8) + data
        out += body
        let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        return out + bigEndian(UInt32(crc))
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    /// The bytes of a PNG image of `width`×`height` pixels with `channels` (1 grey, 3 RGB) interleaved 8-bit values.
    public static func encode(pixels: [UInt8], width: Int, height: Int, channels: Int) -> Data {
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
            + chunk("IDAT", Array(compressed[..<Int(size)])) + chunk("IEND", [])
        return Data(bytes)
    }

    /// Writes an image tensor [C, H, W] (C = 1 or 3) whose values span `range` (clamped) as an 8-bit PNG, atomically.
    public static func write(_ image: Tensor, to path: String, range: ClosedRange<Float> = -1...1) throws {
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
        try writeAtomically(encode(pixels: pixels, width: w, height: h, channels: c), to: path)
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
