import DiffuseEngine
import Foundation

/// Built-in two-dimensional data sets.
public enum Toy2D {
    /// Two interleaved half circles (scikit-learn's "two moons"), label 0 for the upper and 1 for the lower,
    /// with Gaussian noise of standard deviation `noise`.
    public static func twoMoons(count: Int, noise: Float = 0.1, generator: inout RandomGenerator) -> (points: Tensor, labels: [Int]) {
        let angles = generator.uniform([count], low: 0, high: .pi).scalars
        let jitter = generator.normal([count, 2], std: noise).scalars
        let labels = (0..<count).map { $0 % 2 }
        var values = [Float](repeating: 0, count: 2 * count)
        for i in 0..<count {
            let a = angles[i]
            let (x, y) = labels[i] == 0 ? (Foundation.cos(a), Foundation.sin(a)) : (1 - Foundation.cos(a), 0.5 - Foundation.sin(a))
            values[2 * i] = x + jitter[2 * i]
            values[2 * i + 1] = y + jitter[2 * i + 1]
        }
        return (Tensor(values, shape: [count, 2]), labels)
    }
}
