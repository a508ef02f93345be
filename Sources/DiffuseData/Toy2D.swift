import DiffuseEngine
import Foundation

/// Built-in two-dimensional data sets (the toy distributions of FFJORD and the diffusion tutorials), each scaled
/// to roughly unit variance per coordinate.
public enum Toy2D: String, CaseIterable, Sendable {
    case swissRoll = "swiss-roll"
    case twoMoons = "two-moons"
    case eightGaussians = "8-gaussians"
    case checkerboard

    /// `count` points [count, 2] drawn from the distribution.
    public func sample(_ count: Int, generator: inout RandomGenerator) -> Tensor {
        switch self {
        case .twoMoons: return Self.twoMoons(count: count, generator: &generator).points
        case .swissRoll:
            // t ~ U(1.5π, 4.5π), (t cos t, t sin t) + N(0, 0.5²), divided by 5 (~unit scale).
            let u = generator.uniform([count]).scalars, z = generator.normal([count, 2], std: 0.5).scalars
            return Tensor((0..<count).flatMap { i -> [Float] in
                let t = 1.5 * Float.pi * (1 + 2 * u[i])
                return [(t * Foundation.cos(t) + z[2 * i]) / 5, (t * Foundation.sin(t) + z[2 * i + 1]) / 5]
            }, shape: [count, 2])
        case .eightGaussians:
            // Centres at radius 2 every 45°, standard deviation 0.2 (FFJORD's 4·(c + 0.5·z)/√2 scaled by 1/√2).
            let which = generator.integers(count, below: 8), z = generator.normal([count, 2], std: 0.2).scalars
            return Tensor((0..<count).flatMap { i -> [Float] in
                let a = Float(which[i]) * Float.pi / 4
                return [2 * Foundation.cos(a) + z[2 * i], 2 * Foundation.sin(a) + z[2 * i + 1]]
            }, shape: [count, 2])
        case .checkerboard:
            // x uniform on [−2, 2); y uniform on the squares of the other colour, a 4×4 board.
            let u = generator.uniform([count, 2]).scalars, row = generator.integers(count, below: 2)
            return Tensor((0..<count).flatMap { i -> [Float] in
                let x = 4 * u[2 * i] - 2
                let y = u[2 * i + 1] - Float(row[i]) * 2 + Float(Int(Foundation.floor(x)) & 1)
                return [x, y]
            }, shape: [count, 2])
        }
    }

    /// Two interleaved half circles (scikit-learn's "two moons"), label 0 for the upper and 1 for the lower,
    /// with Gaussian noise of standard deviation `noise`, centred at the origin.
    public static func twoMoons(count: Int, noise: Float = 0.1, generator: inout RandomGenerator) -> (points: Tensor, labels: [Int]) {
        let angles = generator.uniform([count], low: 0, high: .pi).scalars
        let jitter = generator.normal([count, 2], std: noise).scalars
        let labels = (0..<count).map { $0 % 2 }
        var values = [Float](repeating: 0, count: 2 * count)
        for i in 0..<count {
            let a = angles[i]
            let (x, y) = labels[i] == 0 ? (Foundation.cos(a), Foundation.sin(a)) : (1 - Foundation.cos(a), 0.5 - Foundation.sin(a))
            values[2 * i] = x + jitter[2 * i] - 0.5
            values[2 * i + 1] = y + jitter[2 * i + 1] - 0.25
        }
        return (Tensor(values, shape: [count, 2]), labels)
    }
}
