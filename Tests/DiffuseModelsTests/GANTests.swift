import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

/// DCGAN's networks and losses against PyTorch modules of the same layout (scripts/make_gan_fixtures.py).
final class GANTests: XCTestCase {
    let config: GANConfig = {
        var c = GANConfig()
        (c.latentDimension, c.channels, c.imageSize, c.width) = (5, 2, 8, 4)
        return c
    }()

    /// The generator in training mode: the images, every parameter gradient and the running statistics after the
    /// step (momentum 0.1, unbiased batch variance), as PyTorch's BatchNorm2d.
    func testGeneratorMatchesPyTorch() throws {
        let f = try fixture("gan.safetensors")
        var generator = RandomGenerator(seed: 0)
        let g = DCGANGenerator(config, generator: &generator)
        let weights = try state(f, prefix: "gen.param")
        XCTAssertEqual(Set(g.stateDict().keys), Set(weights.keys))
        try g.load(weights)
        let out = g(try f.tensor("z"))
        assertClose(out, try f.tensor("gen.out"), atol: 1e-5, rtol: 1e-4, "images")
        out.backward(try f.tensor("gen.gout"))
        for (name, p) in g.namedParameters() {
            assertClose(p.grad!, try f.tensor("gen.grad.\(name)"), atol: 1e-4, rtol: 1e-3, "∂/∂\(name)")
        }
        for (name, b) in g.namedBuffers() {
            assertClose(b.value, try f.tensor("gen.after.\(name)"), atol: 1e-5, rtol: 1e-4, "\(name) after the step")
        }
    }

    /// The discriminator in training mode: logits, ∂/∂x and every parameter gradient; the patch variant's logits.
    func testDiscriminatorsMatchPyTorch() throws {
        let f = try fixture("gan.safetensors")
        var generator = RandomGenerator(seed: 0)
        let d = Discriminator(channels: 2, imageSize: 8, width: 4, generator: &generator)
        try d.load(try state(f, prefix: "disc.param"))
        let x = try f.tensor("x").requiringGrad()
        let logits = d(x)
        assertClose(logits, try f.tensor("disc.out"), atol: 1e-5, rtol: 1e-4, "logits")
        logits.backward(try f.tensor("disc.gout"))
        assertClose(x.grad!, try f.tensor("disc.grad.x"), atol: 1e-5, rtol: 1e-4, "∂/∂x")
        for (name, p) in d.namedParameters() {
            assertClose(p.grad!, try f.tensor("disc.grad.\(name)"), atol: 1e-4, rtol: 1e-3, "∂/∂\(name)")
        }
        let patch = Discriminator(channels: 2, imageSize: 8, width: 4, patch: true, generator: &generator)
        try patch.load(try state(f, prefix: "patch.param"))
        let patchLogits = withoutGradients { patch(try! f.tensor("x")) }
        XCTAssertEqual(patchLogits.shape, [3, 1, 1, 1])
        assertClose(patchLogits, try f.tensor("patch.out"), atol: 1e-5, rtol: 1e-4, "patch logits")
    }

    /// Both losses, for both networks, and their gradients with respect to the logits.
    func testLossesMatchPyTorch() throws {
        let f = try fixture("gan.safetensors")
        for loss in GANLoss.allCases {
            for side in ["d", "g"] {
                let real = try f.tensor("real").requiringGrad(), fake = try f.tensor("fake").requiringGrad()
                let value = side == "d" ? loss.discriminator(real: real, fake: fake) : loss.generator(fake: fake)
                let name = "\(loss.rawValue).\(side)"
                assertClose(value.reshaped([1]), try f.tensor("loss.\(name)"), atol: 1e-6, rtol: 1e-5, name)
                value.backward()
                assertClose(real.grad ?? Tensor(zeros: real.shape), try f.tensor("loss.\(name).grad.real"), atol: 1e-6, rtol: 1e-5, "\(name) ∂/∂real")
                assertClose(fake.grad!, try f.tensor("loss.\(name).grad.fake"), atol: 1e-6, rtol: 1e-5, "\(name) ∂/∂fake")
            }
        }
    }

    /// The R1 estimator against PyTorch's exact ‖∇_x D(x)‖² (double backpropagation, evaluation mode): the mean of
    /// 400 draws of the estimate is within 4 of its standard errors of (γ/2)·mean‖∇_x D‖² (its bias is O(h²): the
    /// O(h) term has odd moments of δ only; seen: 0.3 standard errors).
    func testR1EstimatorMatchesExactPenalty() throws {
        let f = try fixture("gan.safetensors")
        var generator = RandomGenerator(seed: 0)
        let d = Discriminator(channels: 2, imageSize: 8, width: 4, generator: &generator)
        try d.load(try state(f, prefix: "disc.param"))
        d.eval()
        let x = try f.tensor("x")
        let exact = Double(try f.tensor("r1.per_image").scalars.reduce(0, +)) / 3 / 2  // γ = 1
        let draws = withoutGradients { (0..<400).map { _ in Double(r1Penalty({ d($0) }, real: x, gamma: 1, generator: &generator).item) } }
        let mean = draws.reduce(0, +) / 400
        let sd = (draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 399).squareRoot()
        XCTAssertEqual(mean, exact, accuracy: 4 * sd / 20, "estimate \(mean) ± \(sd / 20), exact \(exact)")
    }
}
