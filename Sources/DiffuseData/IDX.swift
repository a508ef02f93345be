import CZlib
import DiffuseEngine
import Foundation

/// Reads a whole file, gunzipping it when it is gzip-compressed (zlib reads plain files unchanged).
func readMaybeGzipped(_ path: String) throws -> [UInt8] {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw DiffuseError.data(path: path, problem: "no such file") }
    guard !isFolder.boolValue else { throw DiffuseError.data(path: path, problem: "is a folder, not a file") }
    guard let file = gzopen(path, "rb") else { throw DiffuseError.data(path: path, problem: "cannot be opened") }
    defer { gzclose(file) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
        if n <= 0 { break }
        out.append(contentsOf: chunk[..<Int(n)])
    }
    // A stream cut short ends like a whole one (gzread returns 0); only the error state tells them apart.
    var status: Int32 = Z_OK
    let message = String(cString: gzerror(file, &status))
    guard status == Z_OK else { throw DiffuseError.data(path: path, problem: "is corrupt or truncated (gzip: \(message))") }
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
            throw DiffuseError.data(path: path, problem: "is not an IDX file (it does not start with two zero bytes)")
        }
        guard bytes[2] == 0x08 else {
            throw DiffuseError.data(path: path, problem: "holds IDX type 0x\(String(bytes[2], radix: 16)); only unsigned bytes (0x08) are read")
        }
        let rank = Int(bytes[3])
        guard bytes.count >= 4 + 4 * rank else { throw DiffuseError.data(path: path, problem: "is truncated inside its header") }
        let shape = (0..<rank).map { d in (0..<4).reduce(0) { $0 << 8 | Int(bytes[4 + 4 * d + $1]) } }
        let held = bytes.count - 4 - 4 * rank
        // A product that overflows is far more than any file holds.
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        guard held == count else {
            throw DiffuseError.data(path: path, problem: "header promises \(shape) = \(count == Int.max ? "too many" : "\(count)") values, the file holds \(held)")
        }
        self.shape = shape
        values = Array(bytes[(4 + 4 * rank)...])
    }

    /// The labels file of an images file by the MNIST naming: "images" → "labels" and "idx3" → "idx1" in the file
    /// name (t10k-images-idx3-ubyte.gz → t10k-labels-idx1-ubyte.gz), compressed or not, whichever exists.
    public static func labelsPath(forImages imagesPath: String) throws -> String {
        let url = URL(fileURLWithPath: imagesPath)
        let name = url.lastPathComponent
        guard name.contains("images") else {
            throw DiffuseError.data(path: imagesPath, problem: "has no \"images\" in its name, so its labels file (the same name with \"labels\") cannot be found")
        }
        let base = name.replacingOccurrences(of: "images", with: "labels").replacingOccurrences(of: "idx3", with: "idx1")
        let plain = base.hasSuffix(".gz") ? String(base.dropLast(3)) : base
        let candidates = [base, base == plain ? plain + ".gz" : plain].map { url.deletingLastPathComponent().appendingPathComponent($0).path }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw DiffuseError.data(path: imagesPath, problem: "has no labels file beside it (looked for \(candidates.joined(separator: " and ")))")
        }
        return found
    }
}

/// Which part of a data set that comes split in two.
public enum DataSplit: Sendable {
    case train, test
}

extension LabeledImages {
    /// MNIST-format images and labels: an IDX file of [N, H, W] bytes and one of N labels. The class names are
    /// the label values 0…max as text.
    public static func idx(images imagesPath: String, labels labelsPath: String) throws -> LabeledImages {
        let images = try IDXFile(path: imagesPath), labels = try IDXFile(path: labelsPath)
        guard images.shape.count == 3 else {
            throw DiffuseError.data(path: imagesPath, problem: "holds shape \(images.shape), images need [N, height, width]")
        }
        guard images.shape[0] > 0 else { throw DiffuseError.data(path: imagesPath, problem: "holds no images") }
        guard labels.shape.count == 1 else { throw DiffuseError.data(path: labelsPath, problem: "holds shape \(labels.shape), labels need [N]") }
        guard labels.shape[0] == images.shape[0] else {
            throw DiffuseError.data(path: labelsPath, problem: "has \(labels.shape[0]) labels for the \(images.shape[0]) images of \(imagesPath)")
        }
        let t = Tensor(uninitialized: [images.shape[0], 1, images.shape[1], images.shape[2]])
        let p = t.storage.pointer
        images.values.withUnsafeBufferPointer { v in
            for i in v.indices { p[i] = Float(v[i]) / 127.5 - 1 }
        }
        return LabeledImages(images: t, labels: labels.values.map(Int.init),
                             classes: (0...Int(labels.values.max()!)).map(String.init))
            .named("IDX images \(URL(fileURLWithPath: imagesPath).lastPathComponent)")
    }

    /// An IDX images file and the labels file beside it (see `IDXFile.labelsPath(forImages:)`).
    public static func idx(images imagesPath: String) throws -> LabeledImages {
        try idx(images: imagesPath, labels: IDXFile.labelsPath(forImages: imagesPath))
    }

    /// MNIST (or Fashion-MNIST) in a folder under its usual names, train-images-idx3-ubyte and
    /// train-labels-idx1-ubyte for the training split, t10k-… for the test split, raw or .gz. With no split
    /// given: the training split when the folder has it, else the test split.
    public static func mnist(directory: String, split: DataSplit? = nil) throws -> LabeledImages {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder), isFolder.boolValue else {
            throw DiffuseError.data(path: directory, problem: "no such folder")
        }
        let prefixes = split.map { [$0 == .train ? "train" : "t10k"] } ?? ["train", "t10k"]
        let candidates = prefixes.flatMap { p in ["", ".gz"].map { "\(directory)/\(p)-images-idx3-ubyte\($0)" } }
        guard let images = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw DiffuseError.data(path: directory, problem: "holds no MNIST images file (looked for \(candidates.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", ")))")
        }
        let split = URL(fileURLWithPath: images).lastPathComponent.hasPrefix("train") ? "training" : "test"
        return try idx(images: images).named("MNIST \(split) split", unit: "digits")
    }
}
