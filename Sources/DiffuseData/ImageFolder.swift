import DiffuseEngine
import Foundation

extension LabeledImages {
    /// The PNG images in a folder, each scaled so that its short side is `size` and cut to its centred size×size
    /// square (area averaging when shrinking, bilinear when enlarging: see `resamplingTaps`), values in [−1, 1].
    ///
    /// The folder holds either PNG files directly, which are all label 0 with no class names (a data set for an
    /// unconditional model), or one subfolder per class, named for it, holding that class's PNG files at any
    /// depth; the classes are the subfolder names in sorted order, label i the i-th. Files are PNG by their
    /// ".png" extension (any case) and are read in sorted path order; hidden files and folders, and files of other
    /// kinds, are passed over. `channels`: 1 (grey) or 3 (RGB); nil = 1 when every file is greyscale, else 3.
    ///
    /// A ".png" file that libpng cannot read stops the load with a `DataError` naming it, rather than being
    /// skipped: a data set that silently loses files is worse than one that does not load. So do a folder with no
    /// PNG files, a class subfolder with none, and PNG files beside class subfolders (their class is unclear).
    public static func imageFolder(_ directory: String, size: Int, channels: Int? = nil) throws -> LabeledImages {
        precondition(size > 0, "image size \(size)")
        precondition(channels == nil || channels == 1 || channels == 3, "images of \(channels!) channels")
        let (files, classes) = try imageFolderFiles(directory)
        let c = try channels ?? (files.contains { try PNG.isColour($0.path) } ? 3 : 1)
        let images = Tensor(uninitialized: [files.count, c, size, size])
        let out = images.storage.pointer
        var failures = [DiffuseError?](repeating: nil, count: files.count)
        failures.withUnsafeMutableBufferPointer { failures in
            parallelFor(files.count, grain: 8) { r in
                for i in r {
                    do {
                        let (pixels, w, h, _) = try PNG.decode(files[i].path, channels: c)
                        let planes = UnsafeMutablePointer<Float>.allocate(capacity: c * h * w)
                        defer { planes.deallocate() }
                        PNG.toPlanes(pixels, width: w, height: h, channels: c, into: planes)
                        resampleCentreSquare(planes, channels: c, height: h, width: w, size: size, into: out + i * c * size * size)
                    } catch {
                        failures[i] = error as? DiffuseError ?? DiffuseError.data(path: files[i].path, problem: "\(error)")
                    }
                }
            }
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        return LabeledImages(images: images, labels: files.map(\.label), classes: classes)
            .named("the images of folder \(URL(fileURLWithPath: directory).lastPathComponent)")
    }

    /// The PNG files of an image folder in load order with their labels, and the class names (see `imageFolder`).
    static func imageFolderFiles(_ directory: String) throws -> (files: [(path: String, label: Int)], classes: [String]) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder) else {
            throw DiffuseError.data(path: directory, problem: "no such folder")
        }
        guard isFolder.boolValue else { throw DiffuseError.data(path: directory, problem: "is a file, not a folder of PNG images") }
        let isFolderURL = { (u: URL) in (try? u.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true }
        let isPNG = { (u: URL) in u.pathExtension.lowercased() == "png" && !isFolderURL(u) }
        let entries = try FileManager.default.contentsOfDirectory(at: URL(fileURLWithPath: directory, isDirectory: true),
                                                                  includingPropertiesForKeys: [.isDirectoryKey], options: .skipsHiddenFiles)
        let folders = entries.filter(isFolderURL).sorted { $0.lastPathComponent < $1.lastPathComponent }
        let pngs = entries.filter(isPNG).map(\.path).sorted()
        if folders.isEmpty {
            guard !pngs.isEmpty else {
                let others = entries.map(\.lastPathComponent).sorted()
                throw DiffuseError.data(path: directory, problem: "holds no .png files" + (others.isEmpty ? " (it is empty)"
                                : " (it holds \(others.count) other file\(others.count == 1 ? "" : "s"), e.g. \(others[0]); only PNG images are read)"))
            }
            return (pngs.map { ($0, 0) }, [])
        }
        guard pngs.isEmpty else {
            throw DiffuseError.data(path: directory, problem: "holds PNG files (e.g. \(URL(fileURLWithPath: pngs[0]).lastPathComponent)) beside class subfolders (\(folders.map(\.lastPathComponent).joined(separator: ", "))): put every image in a class subfolder, or have no subfolders")
        }
        var files: [(path: String, label: Int)] = []
        for (label, folder) in folders.enumerated() {
            let found = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isDirectoryKey], options: .skipsHiddenFiles)?
                .compactMap { $0 as? URL }.filter(isPNG).map(\.path).sorted() ?? []
            guard !found.isEmpty else { throw DiffuseError.data(path: folder.path, problem: "is a class subfolder with no .png files") }
            files += found.map { ($0, label) }
        }
        return (files, folders.map(\.lastPathComponent))
    }
}
