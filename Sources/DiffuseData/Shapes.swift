import DiffuseEngine
import Foundation

/// The built-in image data set, which needs no download: one coloured shape (disc, square or triangle) of random
/// colour, size and position on a dark background of random tint, size×size RGB, values in [−1, 1]. Labels are the
/// shape kinds (0 disc, 1 square, 2 triangle). The same generator state gives the same images.
public enum SyntheticShapes {
    public static let classes = ["disc", "square", "triangle"]

    public static func generate(count: Int, size: Int = 32, generator: inout RandomGenerator) -> LabeledImages {
        let kinds = generator.integers(count, below: 3)
        let u = generator.uniform([count, 9]).scalars
        let images = Tensor(uninitialized: [count, 3, size, size])
        let p = images.storage.pointer, s = Float(size)
        for i in 0..<count {
            let r = u[9 * i..<9 * i + 9].map { $0 }
            let radius = s * (0.18 + 0.17 * r[0])
            let (cx, cy) = (radius + (s - 2 * radius) * r[1], radius + (s - 2 * radius) * r[2])
            let background = [0.1 * r[3], 0.1 * r[4], 0.1 * r[5]].map { $0 * 2 - 1 }
            let colour = [0.4 + 0.6 * r[6], 0.4 + 0.6 * r[7], 0.4 + 0.6 * r[8]].map { $0 * 2 - 1 }
            for y in 0..<size {
                for x in 0..<size {
                    let (dx, dy) = (Float(x) + 0.5 - cx, Float(y) + 0.5 - cy)
                    let inside: Bool
                    switch kinds[i] {
                    case 0: inside = dx * dx + dy * dy <= radius * radius
                    case 1: inside = Swift.abs(dx) <= radius * 0.8 && Swift.abs(dy) <= radius * 0.8
                    default: inside = dy <= radius * 0.7 && dy >= -radius && Swift.abs(dx) <= (dy + radius) * 0.6
                    }
                    for c in 0..<3 { p[((i * 3 + c) * size + y) * size + x] = inside ? colour[c] : background[c] }
                }
            }
        }
        return LabeledImages(images: images, labels: kinds, classes: classes).named("built-in coloured shapes")
    }
}
