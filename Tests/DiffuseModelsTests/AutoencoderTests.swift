import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

final class AutoencoderTests: XCTestCase {
    /// A tiny AutoencoderKL (two levels, mid-block attention, quant convolutions) against diffusers with the same
    /// weights: the posterior, its KL, the decoding of its mean, and, for a loss over the posterior's mean and
    /// log variance and the decoding of a reparametrised sample, ∂/∂x and the gradient of every parameter.
    func testAutoencoderMatchesDiffusers() throws {
        let f = try fixture("autoencoder.safetensors")
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let config = try JSONDecoder().decode(AutoencoderKLConfig.self,
                                              from: Data(contentsOf: dir.appendingPathComponent("autoencoder_config.json")))
        XCTAssertEqual(config.latentChannels, 3)
        XCTAssertEqual(config.scalingFactor, 0.5)
        var generator = RandomGenerator(seed: 0)
        let model = try AutoencoderKL(config, generator: &generator)
        let weights = try state(f, prefix: "param")
        XCTAssertEqual(Set(model.namedParameters().map(\.0)), Set(weights.keys), "parameter names are diffusers' keys")
        try model.load(weights)

        let x = try f.tensor("x").requiringGrad()
        let posterior = model.encode(x)
        XCTAssertEqual(model.latentShape(imageSize: 8), Array(posterior.mean.shape.dropFirst()))
        // Encoder and decoder are each ~25 ops incl. 8 GroupNorms and attention, in float32 on both sides.
        assertClose(posterior.mean, try f.tensor("mean"), atol: 1e-4, rtol: 1e-3, "mean")
        assertClose(posterior.logVariance, try f.tensor("logvar"), atol: 1e-4, rtol: 1e-3, "log variance")
        assertClose(posterior.kl(), try f.tensor("kl"), atol: 1e-4, rtol: 1e-3, "KL")
        withoutGradients {
            assertClose(model.decode(posterior.mean), try! f.tensor("decoded"), atol: 1e-4, rtol: 1e-3, "decoded mean")
        }
        let out = model.decode(posterior.sample(noise: try f.tensor("eps")))
        assertClose(out, try f.tensor("out"), atol: 1e-4, rtol: 1e-3, "decoded sample")
        let loss = sum(posterior.mean * (try f.tensor("gmean"))) + sum(posterior.logVariance * (try f.tensor("glogvar")))
            + sum(out * (try f.tensor("gout")))
        loss.backward()
        assertClose(x.grad!, try f.tensor("grad.x"), atol: 2e-4, rtol: 2e-3, "∂/∂x")
        for (name, p) in model.namedParameters() {
            assertClose(p.grad!, try f.tensor("grad.\(name)"), atol: 5e-4, rtol: 2e-3, "∂/∂\(name)")
        }
    }

    /// The KL term against its closed form, computed here element by element in Float64:
    /// KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − ln σ²), summed over each sample's latents; 0 exactly at N(0, 1).
    func testKLMatchesClosedForm() {
        var generator = RandomGenerator(seed: 4)
        let mean = generator.normal([3, 2, 4, 4]), logVariance = generator.normal([3, 2, 4, 4]) * 0.5
        let kl = DiagonalGaussian(mean: mean, logVariance: logVariance).kl().scalars
        let (m, v) = (mean.scalars.map(Double.init), logVariance.scalars.map(Double.init))
        for n in 0..<3 {
            let expected = (n * 32..<(n + 1) * 32).map { 0.5 * (m[$0] * m[$0] + Foundation.exp(v[$0]) - 1 - v[$0]) }.reduce(0, +)
            XCTAssertEqual(Double(kl[n]), expected, accuracy: 1e-5 * max(1, abs(expected)), "sample \(n)")
        }
        let standard = DiagonalGaussian(mean: Tensor(zeros: [1, 2, 3, 3]), logVariance: Tensor(zeros: [1, 2, 3, 3]))
        XCTAssertEqual(standard.kl().scalars, [0])
    }

    /// The MNIST preset maps 28×28 images to 4×7×7 latents and back to 28×28.
    func testMNISTPresetShapes() throws {
        var generator = RandomGenerator(seed: 0)
        let model = try AutoencoderKL(.mnist, generator: &generator)
        let x = generator.normal([2, 1, 28, 28])
        let z = withoutGradients { model.encode(x).mean }
        XCTAssertEqual(z.shape, [2, 4, 7, 7])
        XCTAssertEqual(model.latentShape(imageSize: 28), [4, 7, 7])
        XCTAssertEqual(withoutGradients { model.decode(z) }.shape, [2, 1, 28, 28])
    }

    func testUnsupportedConfigIsAnErrorNamingTheKey() {
        var generator = RandomGenerator(seed: 0)
        var c = AutoencoderKLConfig.mnist
        c.downBlockTypes[1] = "AttnDownEncoderBlock2D"
        XCTAssertThrowsError(try AutoencoderKL(c, generator: &generator)) { XCTAssertTrue("\($0)".contains("AttnDownEncoderBlock2D")) }
        c = .mnist
        c.latentsMean = [0, 0, 0, 0]
        XCTAssertThrowsError(try AutoencoderKL(c, generator: &generator)) { XCTAssertTrue("\($0)".contains("latents_mean")) }
    }
}
