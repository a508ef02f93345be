import DiffuseEngine
import DiffuseMetrics
import XCTest

final class SlicedWassersteinTests: XCTestCase {
    /// Zero for a cloud and itself; for two Gaussians that differ by a shift δ, W₂ along θ is |θᵀδ|, so
    /// SW₂ = |δ|·√(E θ₁²) = |δ|/√2 in 2D (plus sampling error).
    func testIdentityAndShift() {
        var g = RandomGenerator(seed: 4)
        let a = g.normal([4000, 2])
        XCTAssertEqual(slicedWasserstein(a, a), 0, accuracy: 1e-12)
        let shifted = a + Tensor([3, 0], shape: [1, 2])
        XCTAssertEqual(slicedWasserstein(a, shifted, projections: 512), 3 / 2.0.squareRoot(), accuracy: 0.1)
        let other = g.normal([3000, 2])
        XCTAssertLessThan(slicedWasserstein(a, other), 0.1)
    }
}
