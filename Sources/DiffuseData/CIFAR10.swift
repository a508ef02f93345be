import DiffuseEngine
import Foundation

extension LabeledImages {
    /// CIFAR-10's class names, in label order.
    public static let cifar10Classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    /// CIFAR-10 binary batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin; raw or .gz), concatenated in
    /// the order given: 3073-byte records of a label (0–9) then a 32×32 image as its red, green and blue planes,
    /// which is [C, H, W] order already.
    public static func cifar10(paths: [String]) throws -> LabeledImages {
        let record = 1 + 3 * 32 * 32
        let files = try paths.map { path in
            let bytes = try readMaybeGzipped(path)
            guard bytes.count % record == 0 else {
                throw DiffuseError.data(path: path, problem: "holds \(bytes.count) bytes, not a whole number of \(record)-byte CIFAR-10 records (a label byte and 3×32×32 pixels)")
            }
            if let bad = stride(from: 0, to: bytes.count, by: record).first(where: { bytes[$0] > 9 }) {
                throw DiffuseError.data(path: path, problem: "record \(bad / record) has label \(bytes[bad]); CIFAR-10 labels are 0–9")
            }
            return bytes
        }
        let count = files.reduce(0) { $0 + $1.count / record }
        guard count > 0 else { throw DiffuseError.data(path: paths.joined(separator: ", "), problem: "holds no images") }
        let images = Tensor(uninitialized: [count, 3, 32, 32])
        var labels: [Int] = []
        labels.reserveCapacity(count)
        var p = images.storage.pointer
        for bytes in files {
            bytes.withUnsafeBufferPointer { b in
                for start in stride(from: 0, to: b.count, by: record) {
                    labels.append(Int(b[start]))
                    for k in 1..<record { p[k - 1] = Float(b[start + k]) / 127.5 - 1 }
                    p += record - 1
                }
            }
        }
        return LabeledImages(images: images, labels: labels, classes: cifar10Classes)
            .named("CIFAR-10 \(paths.map { URL(fileURLWithPath: $0).lastPathComponent }.joined(separator: ", "))")
    }

    /// The CIFAR-10 binary batches in a folder (the archive's cifar-10-batches-bin): the training split is every
    /// data_batch_*.bin in name order, the test split test_batch.bin, raw or .gz. With no split given: the training
    /// split when the folder has it, else the test split.
    public static func cifar10(directory: String, split: DataSplit? = nil) throws -> LabeledImages {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let train = names.filter { $0.hasPrefix("data_batch_") && ($0.hasSuffix(".bin") || $0.hasSuffix(".bin.gz")) }.sorted()
        let test = Array(names.filter { $0 == "test_batch.bin" || $0 == "test_batch.bin.gz" }.sorted().prefix(1))
        let (chosen, wanted): ([String], String)
        switch split {
        case .train: (chosen, wanted) = (train, "data_batch_*.bin")
        case .test: (chosen, wanted) = (test, "test_batch.bin")
        case nil: (chosen, wanted) = (train.isEmpty ? test : train, "data_batch_*.bin or test_batch.bin")
        }
        guard !chosen.isEmpty else {
            let exists = FileManager.default.fileExists(atPath: directory)
            throw DiffuseError.data(path: directory, problem: exists ? "holds no CIFAR-10 binary batches (\(wanted))" : "no such folder")
        }
        return try cifar10(paths: chosen.map { "\(directory)/\($0)" })
            .named("CIFAR-10 \(chosen == test ? "test" : "training") split")
    }
}
