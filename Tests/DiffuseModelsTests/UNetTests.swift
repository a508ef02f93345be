import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

final class UNetTests: XCTestCase {
    /// A tiny UNet2DModel (both block kinds, attention, class embedding, freq_shift 1, sin-cos order) against
    /// diffusers with the same weights: the output, ∂/∂x and the gradient of every parameter.
    func testUNetMatchesDiffusers() throws {
        let f = try fixture("unet.safetensors")
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let config = try JSONDecoder().decode(UNet2DConfig.self, from: Data(contentsOf: dir.appendingPathComponent("unet_config.json")))
        XCTAssertEqual(config.numClassEmbeds, 3)
        XCTAssertEqual(config.freqShift, 1)
        var generator = RandomGenerator(seed: 0)
        let model = try UNet2DModel(config, generator: &generator)
        let weights = try state(f, prefix: "param")
        XCTAssertEqual(Set(model.namedParameters().map(\.0)), Set(weights.keys), "parameter names are diffusers' keys")
        try model.load(weights)

        let x = try f.tensor("x").requiringGrad()
        let t = try f.tensor("timesteps").scalars.map { Double($0) }, labels = try f.tensor("labels").scalars.map { Int($0) }
        let out = model(x, timesteps: t, classLabels: labels)
        // Forward through ~40 ops incl. 10 GroupNorms and attention, in float32 on both sides.
        assertClose(out, try f.tensor("out"), atol: 1e-4, rtol: 1e-3, "output")
        out.backward(try f.tensor("gout"))
        assertClose(x.grad!, try f.tensor("grad.x"), atol: 1e-4, rtol: 1e-3, "∂/∂x")
        for (name, p) in model.namedParameters() {
            // Weight gradients are sums over batch and positions of products of float32 values: looser atol.
            assertClose(p.grad!, try f.tensor("grad.\(name)"), atol: 5e-4, rtol: 2e-3, "∂/∂\(name)")
        }
    }

    /// The two presets have diffusers' parameter counts (2.73 M and 35.7 M).
    func testPresetParameterCounts() throws {
        let f = try fixture("unet.safetensors")
        var generator = RandomGenerator(seed: 0)
        XCTAssertEqual(try UNet2DModel(.mnistSmall, generator: &generator).parameterCount, Int(try f.integers("count.mnist_small")[0]))
        XCTAssertEqual(try UNet2DModel(.cifarDDPM, generator: &generator).parameterCount, Int(try f.integers("count.cifar_ddpm")[0]))
    }

    func testUnsupportedConfigIsAnErrorNamingTheKey() {
        var generator = RandomGenerator(seed: 0)
        var c = UNet2DConfig.mnistSmall
        c.downBlockTypes[0] = "CrossAttnDownBlock2D"
        XCTAssertThrowsError(try UNet2DModel(c, generator: &generator)) { XCTAssertTrue("\($0)".contains("CrossAttnDownBlock2D")) }
        c = .mnistSmall
        c.normNumGroups = 7
        XCTAssertThrowsError(try UNet2DModel(c, generator: &generator)) { XCTAssertTrue("\($0)".contains("norm_num_groups")) }
    }
}
