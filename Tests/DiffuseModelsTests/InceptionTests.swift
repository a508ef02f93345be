import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

/// The FID network against pytorch-fid's InceptionV3 with the same pseudo-random weights
/// (scripts/make_inception_fixtures.py), on two 40×48 images resized to 299×299.
final class InceptionTests: XCTestCase {
    /// FNV-1a, 64 bits, of a name.
    func fnv1a(_ name: String) -> UInt64 {
        name.utf8.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    /// The fixture's weights: u = splitmix64(FNV-1a(name) + j) → [−1, 1) from its top 24 bits, scaled per kind.
    func weights(_ name: String, shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *), seed = fnv1a(name)
        let u = (0..<count).map { j -> Float in
            var z = seed &+ UInt64(j) &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 40) / Double(1 << 23) - 1)
        }
        if name.hasSuffix("conv.weight") {
            let scale = Float((6.0 / Double(count / shape[0])).squareRoot())
            return Tensor(u.map { $0 * scale }, shape: shape)
        }
        let (scale, offset): (Float, Float) = ["weight": (0.2, 1), "bias": (0.1, 0), "running_mean": (0.1, 0),
                                               "running_var": (0.5, 1)][String(name.split(separator: ".").last!)]!
        return Tensor(u.map { $0 * scale + offset }, shape: shape)
    }

    func testInceptionMatchesPytorchFID() throws {
        let f = try fixture("inception.safetensors")
        let shapes = try JSONDecoder().decode([String: [Int]].self, from: Data(f.metadata["shapes"]!.utf8))
        var generator = RandomGenerator(seed: 0)
        let model = InceptionV3(generator: &generator)
        let own = model.stateDict()
        XCTAssertEqual(Set(own.keys), Set(shapes.keys), "parameter names are torchvision's")
        for (name, tensor) in own { XCTAssertEqual(tensor.shape, shapes[name], name) }
        try model.load(Dictionary(uniqueKeysWithValues: shapes.map { ($0.key, weights($0.key, shape: $0.value)) }))
        // pytorch-fid takes images in [0, 1] (and maps them to [−1, 1] after resizing); Diffuse's are in [−1, 1].
        let images = try f.tensor("images") * 2 - 1
        let features = withoutGradients { model(images) }
        XCTAssertEqual(features.shape, [2, 2048])
        // ~95 convolutions and BatchNorms in float32 on both sides, features of mean magnitude ~1.5.
        assertClose(features, try f.tensor("features"), atol: 2e-4, rtol: 2e-3, "pool features")
    }
}
