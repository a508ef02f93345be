import COpenBLAS
import DiffuseEngine
import Foundation

/// Feature vectors [N, d] as Float64 rows.
struct Rows {
    let count: Int, dimension: Int
    let values: [Double]
    let squaredNorms: [Double]

    init(_ features: Tensor) {
        precondition(features.rank == 2, "features \(features.shape)")
        (count, dimension) = (features.shape[0], features.shape[1])
        let values = features.scalars.map(Double.init), d = dimension
        squaredNorms = (0..<count).map { i in values[(i * d)..<((i + 1) * d)].reduce(0) { $0 + $1 * $1 } }
        self.values = values
    }

    /// The inner products of rows `range` of self with every row of `other`: [range.count, other.count].
    func products(_ range: Range<Int>, _ other: Rows) -> [Double] {
        var out = [Double](repeating: 0, count: range.count * other.count)
        values.withUnsafeBufferPointer { a in
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(range.count), Int32(other.count), Int32(dimension), 1,
                        a.baseAddress! + range.lowerBound * dimension, Int32(dimension), other.values, Int32(dimension), 0, &out,
                        Int32(other.count))
        }
        return out
    }

    /// Squared Euclidean distances of rows `range` to every row of `other`, by ‖a‖² + ‖b‖² − 2a·b.
    func squaredDistances(_ range: Range<Int>, _ other: Rows) -> [Double] {
        var d = products(range, other)
        for (r, i) in range.enumerated() {
            for j in 0..<other.count { d[r * other.count + j] = max(squaredNorms[i] + other.squaredNorms[j] - 2 * d[r * other.count + j], 0) }
        }
        return d
    }
}

/// Rows at a time in the blocked distance computations (a block of 512 × 10,000 distances is 40 MB).
private let block = 512

/// The squared distance of each row to its k-th nearest other row: the radius of its k-NN ball.
func kNearestRadii(_ x: Rows, k: Int) -> [Double] {
    var radii = [Double](repeating: 0, count: x.count)
    for start in stride(from: 0, to: x.count, by: block) {
        let range = start..<min(x.count, start + block)
        let d = x.squaredDistances(range, x)
        for (r, i) in range.enumerated() {
            // The (k+1)-th smallest, the row itself (distance 0) being the first: the k + 1 smallest kept in order.
            var smallest = [Double](repeating: .infinity, count: k + 1)
            for value in d[(r * x.count)..<((r + 1) * x.count)] where value < smallest[k] {
                var j = k
                while j > 0 && smallest[j - 1] > value {
                    smallest[j] = smallest[j - 1]
                    j -= 1
                }
                smallest[j] = value
            }
            radii[i] = smallest[k]
        }
    }
    return radii
}

/// The manifold of a set of feature vectors as Kynkäänniemi et al. (2019) estimate it: the union of the balls
/// around its points, each reaching its point's k-th nearest neighbour in the set.
public struct FeatureManifold {
    let centres: Rows
    let radii: [Double]

    /// The manifold of `features` [N, d], N > k.
    public init(_ features: Tensor, k: Int = 3) throws {
        guard features.rank == 2 else { throw DiffuseError.metric("a manifold needs feature vectors [N, d], got \(features.shape)") }
        guard features.shape[0] > k else {
            throw DiffuseError.metric("a manifold with k = \(k) needs more than \(k) vectors, got \(features.shape[0])")
        }
        centres = Rows(features)
        radii = kNearestRadii(centres, k: k)
    }

    /// The fraction of `points` [M, d] that lie in at least one of the balls.
    public func coverage(of points: Tensor) throws -> Double {
        guard points.rank == 2, points.shape[1] == centres.dimension else {
            throw DiffuseError.metric("the manifold holds vectors of dimension \(centres.dimension), got \(points.shape)")
        }
        let queries = Rows(points)
        var covered = 0
        for start in stride(from: 0, to: queries.count, by: block) {
            let range = start..<min(queries.count, start + block)
            let d = queries.squaredDistances(range, centres)
            for r in 0..<range.count where (0..<centres.count).contains(where: { d[r * centres.count + $0] <= radii[$0] }) {
                covered += 1
            }
        }
        return Double(covered) / Double(queries.count)
    }
}

/// Improved precision and recall (Kynkäänniemi et al. 2019): precision is the fraction of generated points on the
/// real manifold (fidelity), recall the fraction of real points on the generated one (coverage).
public func precisionRecall(real: Tensor, generated: Tensor, k: Int = 3) throws -> (precision: Double, recall: Double) {
    guard real.rank == 2, generated.rank == 2, real.shape[1] == generated.shape[1] else {
        throw DiffuseError.metric("precision/recall need features of the same dimension, got \(real.shape) and \(generated.shape)")
    }
    return (try FeatureManifold(real, k: k).coverage(of: generated), try FeatureManifold(generated, k: k).coverage(of: real))
}

/// The kernel inception distance (Bińkowski et al. 2018): the unbiased estimate of MMD² between the two feature
/// distributions with the polynomial kernel k(x, y) = (xᵀy/d + 1)³,
///   MMD² = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2·Σ_{i,j} k(x_i, y_j)/m²,
/// averaged over `subsets` pairs of random subsets of m = min(subsetSize, N_x, N_y) vectors each (as torch-fidelity
/// and the paper's code); returns the mean and standard deviation over subsets.
public func kernelInceptionDistance(real: Tensor, generated: Tensor, subsets: Int = 100, subsetSize: Int = 1000,
                                    seed: UInt64 = 0) throws -> (mean: Double, std: Double) {
    guard real.rank == 2, generated.rank == 2, real.shape[1] == generated.shape[1] else {
        throw DiffuseError.metric("KID needs features of the same dimension, got \(real.shape) and \(generated.shape)")
    }
    let m = min(subsetSize, real.shape[0], generated.shape[0])
    guard m >= 2, subsets >= 1 else { throw DiffuseError.metric("KID needs at least 2 vectors per set and 1 subset") }
    let d = Double(real.shape[1])
    var generator = RandomGenerator(seed: seed, stream: 0x41D)
    var estimates: [Double] = []
    for _ in 0..<subsets {
        let x = Rows(real.selecting(Array(generator.permutation(real.shape[0]).prefix(m))))
        let y = Rows(generated.selecting(Array(generator.permutation(generated.shape[0]).prefix(m))))
        func kernelSum(_ a: Rows, _ b: Rows, offDiagonal: Bool) -> Double {
            let p = a.products(0..<m, b)
            var total = 0.0
            for i in 0..<m { for j in 0..<m where !(offDiagonal && i == j) { total += Foundation.pow(p[i * m + j] / d + 1, 3) } }
            return total
        }
        let same = Double(m * (m - 1))
        estimates.append(kernelSum(x, x, offDiagonal: true) / same + kernelSum(y, y, offDiagonal: true) / same
                         - 2 * kernelSum(x, y, offDiagonal: false) / Double(m * m))
    }
    let mean = estimates.reduce(0, +) / Double(subsets)
    let std = (estimates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(subsets)).squareRoot()
    return (mean, std)
}
