import DiffuseEngine
import Foundation

/// Images [N, C, H, W] with values in [−1, 1] (the range diffusion models work in), a class label each, and the
/// names of the classes.
public struct LabeledImages {
    public let images: Tensor
    public let labels: [Int]
    /// The name of each class, label i being `classes[i]`; empty for a data set without classes (every label 0),
    /// such as a flat folder of images, which a model should then learn unconditionally.
    public let classes: [String]
    /// What the images are, for reports and captions ("MNIST test split"), never the path they came from.
    public var name = "images"
    /// What one example is called: "digits", "images".
    public var unit = "images"
    public var count: Int { labels.count }
    public var channels: Int { images.shape[1] }
    public var height: Int { images.shape[2] }
    public var width: Int { images.shape[3] }

    public init(images: Tensor, labels: [Int], classes: [String] = []) {
        precondition(images.rank == 4 && images.shape[0] == labels.count, "images \(images.shape) for \(labels.count) labels")
        self.images = images
        self.labels = labels
        self.classes = classes
    }

    /// The same images under another name and unit.
    public func named(_ name: String, unit: String = "images") -> LabeledImages {
        var named = self
        (named.name, named.unit) = (name, unit)
        return named
    }

    /// The name and the count, as a report states its data: "MNIST test split, 10,000 digits".
    public var caption: String {
        var number = String(count)
        for at in stride(from: number.count - 3, to: 0, by: -3) { number.insert(",", at: number.index(number.startIndex, offsetBy: at)) }
        return "\(name), \(number) \(unit)"
    }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledImages {
        LabeledImages(images: images.selecting(indices), labels: indices.map { labels[$0] }, classes: classes)
            .named(name, unit: unit)
    }

    /// Every image scaled so that its short side is `size` and cut to its centred size×size square, by area
    /// averaging when shrinking and bilinear interpolation when enlarging (`resamplingTaps` has the details); the
    /// same images when they are size×size already.
    public func resized(to size: Int) -> LabeledImages {
        precondition(size > 0, "image size \(size)")
        if height == size && width == size { return self }
        let (c, h, w) = (channels, height, width)
        let out = Tensor(uninitialized: [count, c, size, size])
        let src = images.storage.pointer, dst = out.storage.pointer
        parallelFor(count, grain: 16) { r in
            for i in r { resampleCentreSquare(src + i * c * h * w, channels: c, height: h, width: w, size: size,
                                              into: dst + i * c * size * size) }
        }
        return LabeledImages(images: out, labels: labels, classes: classes).named(name, unit: unit)
    }
}

/// For each of `size` output pixels along an axis of `n` source pixels, the source pixels it reads and their
/// weights, mapping the source window [start, start + length) onto the `size` pixels. Shrinking (length > size)
/// averages the source over each output pixel's footprint, fractional pixels at its ends weighted by how much of
/// them it covers (area averaging, as OpenCV's INTER_AREA): every source pixel counts, so fine detail does not alias.
/// Enlarging interpolates linearly between the two source pixel centres nearest the output pixel's centre
/// (bilinear, the edge pixel repeated beyond the image, as PyTorch's `align_corners=False`).
func resamplingTaps(n: Int, start: Int, length: Int, size: Int) -> [[(index: Int, weight: Float)]] {
    let scale = Double(length) / Double(size)  // source pixels per output pixel
    return (0..<size).map { j in
        if length >= size {
            let lo = Double(start) + Double(j * length) / Double(size)
            let hi = Double(start) + Double((j + 1) * length) / Double(size)
            return (Int(lo)..<Int(hi.rounded(.up))).compactMap { k in
                let overlap = min(hi, Double(k + 1)) - max(lo, Double(k))
                return overlap > 0 ? (k, Float(overlap / scale)) : nil
            }
        }
        let x = Double(start) + (Double(j) + 0.5) * scale - 0.5
        let k = Int(x.rounded(.down)), t = Float(x - Double(k))
        return [(min(max(k, 0), n - 1), 1 - t), (min(max(k + 1, 0), n - 1), t)]
    }
}

/// Resamples an image [C, H, W] to [C, size, size]: its centred square of side min(H, W) (starting at a whole
/// pixel, half a pixel off centre when the sides differ by an odd number) scaled to size×size, which is scaling
/// the short side to `size` and cropping the long one to the middle. Area averaging when shrinking, bilinear when
/// enlarging (see `resamplingTaps`); rows first, then columns.
func resampleCentreSquare(_ src: UnsafePointer<Float>, channels c: Int, height h: Int, width w: Int, size: Int,
                          into dst: UnsafeMutablePointer<Float>) {
    let side = min(h, w)
    let across = resamplingTaps(n: w, start: (w - side) / 2, length: side, size: size)
    let down = resamplingTaps(n: h, start: (h - side) / 2, length: side, size: size)
    // The source rows that the columns read, each resampled across.
    let first = down.first!.map(\.index).min()!, used = down.last!.map(\.index).max()! - first + 1
    let rows = UnsafeMutablePointer<Float>.allocate(capacity: c * used * size)
    defer { rows.deallocate() }
    for k in 0..<c {
        for y in 0..<used {
            let row = src + (k * h + first + y) * w, out = rows + (k * used + y) * size
            for (x, taps) in across.enumerated() { out[x] = taps.reduce(0) { $0 + $1.weight * row[$1.index] } }
        }
        for (y, taps) in down.enumerated() {
            let out = dst + (k * size + y) * size, plane = rows + k * used * size
            for x in 0..<size { out[x] = taps.reduce(0) { $0 + $1.weight * plane[($1.index - first) * size + x] } }
        }
    }
}

/// Each image of a batch [N, C, H, W] mirrored left to right with probability ½, the usual augmentation for
/// natural images (DDPM's CIFAR-10 runs use it), the choices drawn from `generator` (one word per image).
public func randomHorizontalFlip(_ images: Tensor, generator: inout RandomGenerator) -> Tensor {
    precondition(images.rank == 4, "horizontal flip of a batch of shape \(images.shape)")
    let flips = generator.integers(images.shape[0], below: 2)
    let out = images.copy()
    let w = images.shape[3], rowsPerImage = images.count / max(images.shape[0], 1) / max(w, 1)
    let p = out.storage.pointer
    for (i, flip) in flips.enumerated() where flip == 1 {
        for r in 0..<rowsPerImage {
            var row = UnsafeMutableBufferPointer(start: p + (i * rowsPerImage + r) * w, count: w)
            row.reverse()
        }
    }
    return out
}
