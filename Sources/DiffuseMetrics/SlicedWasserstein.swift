import DiffuseEngine
import Foundation

/// The sliced Wasserstein-2 distance between two point clouds [N, D] and [M, D]:
/// SW₂ = √(E_θ W₂²(θᵀa, θᵀb)) over `projections` random unit directions θ, each one-dimensional W₂ computed between
/// the sorted projections (at N quantiles of b when the sizes differ). 0 for identical clouds.
public func slicedWasserstein(_ a: Tensor, _ b: Tensor, projections: Int = 256, seed: UInt64 = 0) -> Double {
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[1], "point clouds \(a.shape) and \(b.shape)")
    let d = a.shape[1]
    var g = RandomGenerator(seed: seed, stream: 0x5EED)
    let directions = g.normal([projections, d]).scalars
    func projected(_ x: Tensor, _ k: Int) -> [Double] {
        let theta = directions[(k * d)..<((k + 1) * d)]
        let norm = theta.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
        let p = x.storage.pointer
        return (0..<x.shape[0]).map { i in zip(theta, 0..<d).reduce(0.0) { $0 + Double($1.0) * Double(p[i * d + $1.1]) } / norm }.sorted()
    }
    var total = 0.0
    for k in 0..<projections {
        let pa = projected(a, k), pb = projected(b, k)
        var sum = 0.0
        for i in pa.indices {
            let q = pb[min(pb.count - 1, Int((Double(i) + 0.5) / Double(pa.count) * Double(pb.count)))]
            sum += (pa[i] - q) * (pa[i] - q)
        }
        total += sum / Double(pa.count)
    }
    return (total / Double(projections)).squareRoot()
}
