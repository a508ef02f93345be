import COpenBLAS
import DiffuseEngine
import Foundation

/// A square matrix of Float64 values, row-major (symmetric ones are the same column-major, as LAPACK reads them).
public struct Matrix: Equatable, Codable, Sendable {
    public let size: Int
    public var values: [Double]

    public init(size: Int, values: [Double]) {
        precondition(values.count == size * size, "\(values.count) values for a \(size)×\(size) matrix")
        self.size = size
        self.values = values
    }

    public subscript(i: Int, j: Int) -> Double { values[i * size + j] }

    /// A·B, by OpenBLAS's dgemm.
    public static func * (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.size == b.size, "multiplying \(a.size)×\(a.size) by \(b.size)×\(b.size)")
        var c = [Double](repeating: 0, count: a.values.count)
        let n = Int32(a.size)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a.values, n, b.values, n, 0, &c, n)
        return Matrix(size: a.size, values: c)
    }

    public var trace: Double { (0..<size).reduce(0) { $0 + self[$1, $1] } }

    /// The eigenvalues (ascending) and orthonormal eigenvectors (the columns of `vectors`) of a symmetric matrix, by
    /// LAPACK's dsyevd.
    public func symmetricEigen() throws -> (values: [Double], vectors: Matrix) {
        var a = values
        var w = [Double](repeating: 0, count: size)
        var n = Int32(size), info: Int32 = 0
        var lwork: Int32 = -1, liwork: Int32 = -1
        var workSize = 0.0, iworkSize: Int32 = 0
        dsyevd_("V", "U", &n, &a, &n, &w, &workSize, &lwork, &iworkSize, &liwork, &info, 1, 1)  // workspace query
        lwork = Int32(workSize)
        liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_("V", "U", &n, &a, &n, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else { throw DiffuseError.metric("the eigensolver (LAPACK dsyevd) failed: info \(info)") }
        // LAPACK wrote the eigenvectors column-major: a[j·n + i] is component i of vector j. Transpose to row-major.
        var vectors = [Double](repeating: 0, count: a.count)
        for i in 0..<size { for j in 0..<size { vectors[i * size + j] = a[j * size + i] } }
        return (w, Matrix(size: size, values: vectors))
    }

    /// The square root of a symmetric positive semi-definite matrix: V·diag(√max(λ, 0))·Vᵀ. Eigenvalues below 0
    /// are rounding errors of a PSD matrix and are taken as 0.
    public func symmetricSquareRoot() throws -> Matrix {
        let (lambda, v) = try symmetricEigen()
        var scaled = v.values  // V·diag(√λ)
        for i in 0..<size { for j in 0..<size { scaled[i * size + j] *= max(lambda[j], 0).squareRoot() } }
        var out = [Double](repeating: 0, count: values.count)
        let n = Int32(size)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, scaled, n, v.values, n, 0, &out, n)
        return Matrix(size: size, values: out)
    }
}

/// The Gaussian statistics of a set of feature vectors: their count, mean μ and covariance Σ (normalised by N − 1,
/// as numpy.cov), in Float64: what a Fréchet distance compares, and what reference caches hold.
public struct FeatureStatistics: Codable, Equatable, Sendable {
    public let count: Int
    public let mean: [Double]
    public let covariance: Matrix

    /// The statistics of features [N, d] (N ≥ 2).
    public init(features: Tensor) throws {
        guard features.rank == 2, features.shape[0] >= 2 else {
            throw DiffuseError.metric("feature statistics need at least 2 vectors, got \(features.shape)")
        }
        let (n, d) = (features.shape[0], features.shape[1])
        let p = features.storage.pointer
        var mean = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += Double(p[i * d + j]) } }
        for j in 0..<d { mean[j] /= Double(n) }
        var centered = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { centered[i * d + j] = Double(p[i * d + j]) - mean[j] } }
        var covariance = [Double](repeating: 0, count: d * d)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(n), 1 / Double(n - 1),
                    centered, Int32(d), centered, Int32(d), 0, &covariance, Int32(d))
        self.init(count: n, mean: mean, covariance: Matrix(size: d, values: covariance))
    }

    public init(count: Int, mean: [Double], covariance: Matrix) {
        self.count = count
        self.mean = mean
        self.covariance = covariance
    }
}

/// The Fréchet distance between the Gaussians N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson & Landau 1982), FID's formula:
///   d² = ‖μ₁ − μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2·Tr((Σ₁Σ₂)^{1/2}),
/// with Tr((Σ₁Σ₂)^{1/2}) = Tr((Σ₁^{1/2}·Σ₂·Σ₁^{1/2})^{1/2}) = Σ √λ_i of the symmetric PSD matrix Σ₁^{1/2}Σ₂Σ₁^{1/2}: two
/// symmetric eigendecompositions, stable where Σ₁Σ₂ is singular (scipy's sqrtm of the non-symmetric product is not).
public func frechetDistance(_ a: FeatureStatistics, _ b: FeatureStatistics) throws -> Double {
    guard a.mean.count == b.mean.count else {
        throw DiffuseError.metric("feature dimensions differ: \(a.mean.count) and \(b.mean.count)")
    }
    let rootA = try a.covariance.symmetricSquareRoot()
    var middle = rootA * b.covariance * rootA
    // Symmetrise away the rounding of the products before the eigensolver, which reads one triangle.
    let d = middle.size
    for i in 0..<d { for j in 0..<i { let s = (middle[i, j] + middle[j, i]) / 2; middle.values[i * d + j] = s; middle.values[j * d + i] = s } }
    let traceRoot = try middle.symmetricEigen().values.reduce(0) { $0 + max($1, 0).squareRoot() }
    let meanTerm = zip(a.mean, b.mean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    return max(meanTerm + a.covariance.trace + b.covariance.trace - 2 * traceRoot, 0)
}
