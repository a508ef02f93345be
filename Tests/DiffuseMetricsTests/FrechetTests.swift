import DiffuseEngine
import DiffuseMetrics
import Foundation
import XCTest

/// The fixture of scripts/make_metric_fixtures.py.
func metricFixture() throws -> SafeTensorsFile {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    return try SafeTensorsFile(path: dir.appendingPathComponent("metrics.safetensors").path)
}

final class FrechetTests: XCTestCase {
    /// The square root of a symmetric PSD matrix (two eigendecompositions by LAPACK) against scipy.linalg.sqrtm, and
    /// squared back to the matrix.
    func testSquareRootMatchesScipy() throws {
        let f = try metricFixture()
        let covariance = try FeatureStatistics(features: f.tensor("b")).covariance
        let root = try covariance.symmetricSquareRoot()
        let expected = try f.doubles("sqrtm_cov_b")
        XCTAssertEqual(root.values.count, expected.count)
        let scale = expected.map(abs).max()!
        XCTAssertLessThanOrEqual(zip(root.values, expected).map { abs($0 - $1) }.max()!, 1e-9 * scale)
        let squared = root * root
        XCTAssertLessThanOrEqual(zip(squared.values, covariance.values).map { abs($0 - $1) }.max()!,
                                 1e-12 * covariance.values.map(abs).max()!)
    }

    /// FID's formula against pytorch-fid's computation (scipy's sqrtm of Σ₁Σ₂) for two different sets and for a
    /// set of 40 vectors in 24 dimensions, whose covariance is far from full rank in the product's spectrum; 1e-9
    /// relative (both in Float64 from the same float32 features).
    func testFrechetDistanceMatchesScipy() throws {
        let f = try metricFixture()
        let a = try FeatureStatistics(features: f.tensor("a"))
        for (other, key) in [("b", "fid_ab"), ("c", "fid_ac")] {
            let d = try frechetDistance(a, FeatureStatistics(features: f.tensor(other)))
            let expected = try f.doubles(key)[0]
            XCTAssertEqual(d, expected, accuracy: 1e-9 * expected, key)
        }
    }

    /// A set against itself gives 0 (to rounding: the trace terms are ~24 here), and the distance is symmetric.
    func testSelfDistanceIsZeroAndSymmetric() throws {
        let f = try metricFixture()
        let a = try FeatureStatistics(features: f.tensor("a")), b = try FeatureStatistics(features: f.tensor("b"))
        XCTAssertEqual(try frechetDistance(a, a), 0, accuracy: 1e-10 * a.covariance.trace)
        XCTAssertEqual(try frechetDistance(a, b), try frechetDistance(b, a), accuracy: 1e-10 * (try frechetDistance(a, b)))
        XCTAssertThrowsError(try FeatureStatistics(features: Tensor(zeros: [1, 4])))
    }

    /// KID over one subset of all vectors against numpy's direct sums.
    func testKernelInceptionDistanceMatchesNumpy() throws {
        let f = try metricFixture()
        let a = try f.tensor("a")
        for (other, key) in [("b", "kid_ab"), ("c", "kid_ac")] {
            let y = try f.tensor(other)
            let kid = try kernelInceptionDistance(real: a.slice(axis: 0, 0..<y.shape[0]), generated: y, subsets: 1,
                                                  subsetSize: y.shape[0])
            let expected = try f.doubles(key)[0]
            XCTAssertEqual(kid.mean, expected, accuracy: 1e-9 * abs(expected) + 1e-12, key)
        }
    }

    /// Precision and recall with known answers: a set against itself (1, 1); against a copy of its first half plus
    /// as many points far away, precision exactly ½ (the copies lie on the real manifold, the far points on none)
    /// and recall at least ½ (each copied real point is in its copy's ball); two clouds 100 standard deviations
    /// apart (0, 0).
    func testPrecisionRecallKnownAnswers() throws {
        var g = RandomGenerator(seed: 3)
        let real = g.normal([400, 8])
        let same = try precisionRecall(real: real, generated: real)
        XCTAssertEqual(same.precision, 1)
        XCTAssertEqual(same.recall, 1)
        let half = concat([real.slice(axis: 0, 0..<200), g.normal([200, 8]) + 100], axis: 0)
        let mixed = try precisionRecall(real: real, generated: half)
        XCTAssertEqual(mixed.precision, 0.5)
        XCTAssertGreaterThanOrEqual(mixed.recall, 0.5)
        let apart = try precisionRecall(real: real, generated: g.normal([300, 8]) + 100)
        XCTAssertEqual(apart.precision, 0)
        XCTAssertEqual(apart.recall, 0)
        XCTAssertThrowsError(try precisionRecall(real: real, generated: g.normal([300, 7])))
    }
}

final class SharpnessTests: XCTestCase {
    /// A constant image has no detail; a checkerboard of ±1 the most (|4·1 + 4·1| = 8 everywhere); blurring an image
    /// (averaging 2×2 blocks and upsampling back) lowers the score.
    func testLaplacianMagnitude() {
        XCTAssertEqual(meanLaplacianMagnitude(Tensor(repeating: 0.3, shape: [2, 1, 5, 5])), 0)
        let checker = Tensor((0..<36).map { ($0 / 6 + $0 % 6) % 2 == 0 ? 1 : -1 }, shape: [1, 1, 6, 6])
        XCTAssertEqual(meanLaplacianMagnitude(checker), 8)
        var g = RandomGenerator(seed: 1)
        let x = g.normal([3, 1, 8, 8])
        XCTAssertLessThan(meanLaplacianMagnitude(upsampleNearest2x(avgPool2d(x, kernel: 2))), meanLaplacianMagnitude(x))
    }
}
