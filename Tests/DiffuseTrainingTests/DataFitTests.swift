import DiffuseData
import DiffuseEngine
import DiffuseTraining
import XCTest

/// The figure the main job ends with (`diffuse sample` on a shapes run): the share of images on the data's
/// manifold in pixels. It must tell the data from noise, and from the data under visible grain, for its "it
/// worked" to mean something.
final class DataFitTests: XCTestCase {
    func testDataManifoldSeparatesTheDataFromNoise() throws {
        var c = RunConfig()
        (c.data, c.imageSize, c.seed) = ("shapes", 16, 5)
        let manifold = try XCTUnwrap(DataManifold(config: c))
        XCTAssertEqual(manifold.references, 5000)
        var g = RandomGenerator(seed: 77)
        let heldOut = SyntheticShapes.generate(count: 300, size: 16, generator: &g).images

        let data = try manifold.share(of: heldOut)
        XCTAssertGreaterThan(data, 0.85, "held-out shapes lie on the data's manifold")
        let (fresh, noise) = try manifold.baselines(count: 300)
        XCTAssertGreaterThan(fresh, 0.85, "so does the fresh draw that a model's share is printed beside")
        XCTAssertEqual(noise, 0, "Gaussian noise lies on none of it")

        let grainy = try manifold.share(of: clamp(heldOut + g.normal(heldOut.shape) * 0.3, min: -1, max: 1))
        XCTAssertLessThan(grainy, data / 2, "shapes under noise of σ = 0.3 are mostly off it")
        XCTAssertEqual(try manifold.share(of: Tensor(zeros: heldOut.shape)), 0, "grey images are not shapes")
        XCTAssertThrowsError(try manifold.share(of: Tensor(zeros: [4, 3, 8, 8])), "images of another size")

        c.data = "mnist:/nonexistent"
        XCTAssertNil(try DataManifold(config: c), "file data cannot be drawn afresh: no figure")
    }
}
