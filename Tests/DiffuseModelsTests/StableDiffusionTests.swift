import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation
import XCTest

/// Stable Diffusion against diffusers' StableDiffusionPipeline (scripts/make_sd_fixtures.py): two tiny random
/// pipelines, sd1 (ε, 1×1-convolution projections, F32) and sd2 (v, linear projections, heads per level, F16).
final class StableDiffusionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sd")

    static func expected(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: fixtures.appendingPathComponent("\(name)/expected.safetensors").path)
    }

    /// The largest difference relative to the largest value of the reference.
    static func relativeError(_ got: Tensor, _ want: Tensor) -> Float {
        zip(got.scalars, want.scalars).map { abs($0 - $1) }.max()! / want.scalars.map(abs).max()!
    }

    /// One UNet2DConditionModel call within 1e-5 of diffusers' largest value.
    func testUNetMatchesDiffusers() throws {
        for name in ["sd1", "sd2"] {
            let folder = Self.fixtures.appendingPathComponent("\(name)/unet")
            let config = try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(contentsOf: folder.appendingPathComponent("config.json")))
            var generator = RandomGenerator(seed: 0)
            let unet = try UNet2DConditionModel(config, generator: &generator)
            let file = try SafeTensorsFile(path: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
            try unet.load(Dictionary(uniqueKeysWithValues: try file.names.map { ($0, try file.tensor($0)) }))
            let expected = try Self.expected(name)
            let out = withoutGradients {
                unet(try! expected.tensor("unet.x"), timesteps: [37, 37], context: try! expected.tensor("embeddings"))
            }
            let want = try expected.tensor("unet.out")
            XCTAssertEqual(out.shape, want.shape)
            XCTAssertLessThanOrEqual(Self.relativeError(out, want), 1e-5, name)
        }
    }
}
