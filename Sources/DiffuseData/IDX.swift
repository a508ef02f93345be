import CZlib
import DiffuseEngine
import Foundation

/// A data file that cannot be used, with the file and the reason.
public struct DataError: Error, CustomStringConvertible, LocalizedError {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }
    public var description: String { "\(path): \(problem)" }
    public var errorDescription: String? { description }
}

/// Reads a whole file, gunzipping it when it is gzip-compressed (zlib reads plain files unchanged).
func readMaybeGzipped(_ path: String) throws -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else { throw DataError(path: path, problem: "no such file") }
    guard let file = gzopen(path, "rb") else { throw DataError(path: path, problem: "cannot be opened") }
    defer { gzclose(file) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
        if n < 0 { throw DataError(path: path, problem: "is corrupt or truncated (gzip error)") }
        if n == 0 { break }
        out.append(contentsOf: chunk[..<Int(n)])
    }
    return out
}

/// An IDX file (the MNIST format): two zero bytes, a type byte (0x08 = unsigned bytes), the number of dimensions,
/// each dimension as a big-endian 32-bit integer, then the values. Raw or gzip-compressed.
public struct IDXFile {
    public let shape: [Int]
    public let values: [UInt8]

    public init(path: String) throws {
        let bytes = try readMaybeGzipped(path)
        guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else {
            throw DataError(path: path, problem: "is not an IDX file (it does not start with two zero bytes)")
        }
        guard bytes[2] == 0x08 else {
            throw DataError(path: path, problem: "holds IDX type 0x\(String(bytes[2], radix: 16)); only unsigned bytes (0x08) are read")
        }
        let rank = Int(bytes[3])
        guard bytes.count >= 4 + 4 * rank else { throw DataError(path: path, problem: "is truncated inside its header") }
        let shape = (0..<rank).map { d in (0..<4).reduce(0) { $0 << 8 | Int(bytes[4 + 4 * d + $1]) } }
        let count = shape.reduce(1, *)
        guard bytes.count - 4 - 4 * rank == count else {
            throw DataError(path: path, problem: "header promises \(shape) = \(count) values, the file holds \(bytes.count - 4 - 4 * rank)")
        }
        self.shape = shape
        values = Array(bytes[(4 + 4 * rank)...])
    }
}

/// Images [N, C, H, W] with values in [−1, 1] (the range diffusion models work in) and a class label each.
public struct LabeledImages {
    public let images: Tensor
    public let labels: [Int]
    public var count: Int { labels.count }

    public init(images: Tensor, labels: [Int]) {
        precondition(images.shape[0] == labels.count, "\(images.shape[0]) images for \(labels.count) labels")
        self.images = images
        self.labels = labels
    }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledImages {
        LabeledImages(images: images.selecting(indices), labels: indices.map { labels[$0] })
    }

    /// MNIST-format images and labels: an IDX file of [N, H, W] bytes and one of N labels.
    public static func idx(images imagesPath: String, labels labelsPath: String) throws -> LabeledImages {
        let images = try IDXFile(path: imagesPath), labels = try IDXFile(path: labelsPath)
        guard images.shape.count == 3 else {
            throw DataError(path: imagesPath, problem: "holds shape \(images.shape), images need [N, height, width]")
        }
        guard labels.shape.count == 1 else { throw DataError(path: labelsPath, problem: "holds shape \(labels.shape), labels need [N]") }
        guard labels.shape[0] == images.shape[0] else {
            throw DataError(path: labelsPath, problem: "has \(labels.shape[0]) labels for the \(images.shape[0]) images of \(imagesPath)")
        }
        let t = Tensor(uninitialized: [images.shape[0], 1, images.shape[1], images.shape[2]])
        let p = t.storage.pointer
        for (i, v) in images.values.enumerated() { p[i] = Float(v) / 127.5 - 1 }
        return LabeledImages(images: t, labels: labels.values.map(Int.init))
    }
}
