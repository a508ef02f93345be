import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import DiffuseTraining
import Foundation
import XCTest

/// The VAE, GAN and latent-diffusion runs go through the same loop as diffusion runs: their steps, checkpoints,
/// resumption and generation.
final class ObjectiveTests: TemporaryFolderTestCase {
    /// 40 labelled 8×8 shapes.
    private let data: DataSet = {
        var g = RandomGenerator(seed: 9)
        return .images(SyntheticShapes.generate(count: 40, size: 8, generator: &g))
    }()

    private func base(_ kind: ModelKind, steps: Int) -> RunConfig {
        var c = RunConfig()
        c.model = kind
        c.steps = steps
        c.batchSize = 8
        c.warmup = 1
        c.learningRate = 1e-3
        c.timesteps = 100
        c.sampleEvery = 0
        c.checkpointEvery = 0
        c.sampleCount = 4
        c.sampleSteps = 5
        return c
    }

    private func vaeRun(steps: Int, adversarial: Bool) -> RunConfig {
        var c = base(.vae, steps: steps)
        var a = AutoencoderKLConfig()
        (a.inChannels, a.outChannels, a.sampleSize, a.latentChannels, a.normNumGroups) = (3, 3, 8, 2, 4)
        a.blockOutChannels = [8, 16]
        a.downBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D"]
        a.upBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D"]
        c.autoencoder = a
        c.adversarialWeight = adversarial ? 0.1 : nil
        return c
    }

    private func ganRun(steps: Int) -> RunConfig {
        var c = base(.gan, steps: steps)
        var g = GANConfig()
        (g.latentDimension, g.channels, g.imageSize, g.width, g.r1Gamma) = (8, 3, 8, 4, 1)
        c.gan = g
        return c
    }

    /// A class-conditional rectified-flow run (shift 3) of a tiny U-Net on the images.
    private func flowRun(steps: Int) -> RunConfig {
        var c = base(.ddpm, steps: steps)
        var u = UNet2DConfig.mnistSmall
        (u.sampleSize, u.inChannels, u.outChannels, u.blockOutChannels, u.normNumGroups) = (8, 3, 3, [8, 16, 16], 4)
        guard case let .images(images) = data else { fatalError() }
        (c.classes, c.labelDropout) = (images.classes.count, 0.2)
        u.numClassEmbeds = c.classes! + 1
        c.unet = u
        (c.objective, c.prediction, c.flowShift) = (.flow, .flow, 3)
        return c
    }

    /// A class-conditional latent-diffusion run on a trained VAE run's latents.
    private func latentRun(steps: Int, vae: RunFolder) throws -> (RunConfig, [String: Tensor]) {
        var c = base(.latentDiffusion, steps: steps)
        let (_, objective) = try vae.loadObjective()
        let autoencoder = (objective as! AutoencoderObjective).vae
        guard case let .images(images) = data else { fatalError() }
        var g = RandomGenerator(seed: 1)
        c.autoencoder = autoencoder.config
        c.autoencoder!.scalingFactor = latentScalingFactor(autoencoder, images: images.images, generator: &g)
        var u = UNet2DConfig.mnistSmall
        (u.sampleSize, u.inChannels, u.outChannels, u.normNumGroups) = (4, 2, 2, 4)
        (u.blockOutChannels, u.downBlockTypes, u.upBlockTypes) = ([8, 16], ["DownBlock2D", "AttnDownBlock2D"], ["AttnUpBlock2D", "UpBlock2D"])
        u.attentionHeadDim = 4
        c.classes = images.classes.count
        c.labelDropout = 0.2
        u.numClassEmbeds = c.classes! + 1
        c.unet = u
        return (c, autoencoder.stateDict())
    }

    private func log(_ folder: RunFolder) throws -> [String] {
        // Every column but the timing ones (the last two).
        try String(contentsOfFile: folder.log, encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).dropLast(2).joined(separator: ",") }
    }

    /// 4 steps straight, or 2 then 2 more after resuming, log the same values to the last digit, for a VAE with a
    /// patch discriminator (two optimizers), a GAN with R1 (two optimizers, no moving average) and conditional
    /// latent diffusion (a frozen first stage in the checkpoint, label dropout) and conditional rectified flow
    /// (logit-normal times drawn from the same generator).
    func testResumeIsExactForEveryKind() throws {
        let vaeFolder = tempFolder()
        _ = try Trainer(config: vaeRun(steps: 2, adversarial: false), data: data, folder: vaeFolder, resume: false).train()
        let (latent, firstStage) = try latentRun(steps: 4, vae: vaeFolder)
        let runs: [(String, RunConfig, [String: Tensor]?)] = [
            ("vae", vaeRun(steps: 4, adversarial: true), nil), ("gan", ganRun(steps: 4), nil), ("latent", latent, firstStage),
            ("flow", flowRun(steps: 4), nil),
        ]
        for (name, config, first) in runs {
            let straight = tempFolder(), split = tempFolder()
            _ = try Trainer(config: config, data: data, folder: straight, resume: false, firstStage: first).train()
            var half = config
            half.steps = 2
            _ = try Trainer(config: half, data: data, folder: split, resume: false, firstStage: first).train()
            let resumed = try Trainer(config: config, data: data, folder: split, resume: true)
            XCTAssertEqual(resumed.state.step, 2, name)
            _ = try resumed.train()
            XCTAssertEqual(try log(split), try log(straight), name)
            XCTAssertEqual(try log(straight).count, 5, name)
            XCTAssertTrue(FileManager.default.fileExists(atPath: straight.samples + "/step-000004.png"), name)
        }
    }

    /// A latent-diffusion run's training time counts the seconds its first stage trained (recorded in its config),
    /// its steps only its own.
    func testLatentDiffusionTrainingCostCountsTheFirstStage() throws {
        let vaeFolder = tempFolder(), folder = tempFolder()
        _ = try Trainer(config: vaeRun(steps: 2, adversarial: false), data: data, folder: vaeFolder, resume: false).train()
        var (config, firstStage) = try latentRun(steps: 3, vae: vaeFolder)
        config.autoencoderTrainingSeconds = 100
        _ = try Trainer(config: config, data: data, folder: folder, resume: false, firstStage: firstStage).train()
        let own = try String(contentsOfFile: folder.log, encoding: .utf8).split(separator: "\n").dropFirst()
            .map { Double($0.split(separator: ",").dropLast().last!)! }
        let (seconds, steps) = folder.trainingCost()
        XCTAssertEqual(steps, 3)
        XCTAssertEqual(seconds, 100 + own.reduce(0, +), accuracy: 1e-9)
        XCTAssertEqual(vaeFolder.trainingCost().steps, 2)
    }

    /// One GAN step moves every parameter of both networks: the discriminator's update, then the generator's.
    func testGANStepChangesBothNetworks() throws {
        let folder = tempFolder()
        let trainer = try Trainer(config: ganRun(steps: 1), data: data, folder: folder, resume: false)
        let before = trainer.objective.model.stateDict().mapValues { $0.copy() }
        _ = try trainer.train()
        let after = trainer.objective.model.stateDict()
        for network in ["generator", "discriminator"] {
            let names = before.keys.filter { $0.hasPrefix(network + ".") && !$0.contains("running") }
            XCTAssertFalse(names.isEmpty, network)
            for name in names {
                XCTAssertNotEqual(before[name]!.scalars, after[name]!.scalars, "\(name) did not change")
            }
        }
        let columns = try String(contentsOfFile: folder.log, encoding: .utf8).split(separator: "\n")[0]
        XCTAssertEqual(columns, "step,d_loss,g_loss,d_real,d_fake,r1,learning_rate,grad_norm_discriminator,grad_norm_generator,seconds,examples_per_second")
    }

    /// Latent diffusion encodes 3×8×8 images to 2×4×4 latents whose scaled values have unit variance (the scaling
    /// factor was measured on these images), diffuses there, and decodes samples back to 3×8×8 images in [−1, 1].
    func testLatentDiffusionShapesAndScaling() throws {
        let vaeFolder = tempFolder()
        _ = try Trainer(config: vaeRun(steps: 2, adversarial: false), data: data, folder: vaeFolder, resume: false).train()
        let (config, firstStage) = try latentRun(steps: 1, vae: vaeFolder)
        let trainer = try Trainer(config: config, data: data, folder: tempFolder(), resume: false, firstStage: firstStage)
        let objective = trainer.objective as! DiffusionObjective
        let vae = objective.firstStage!
        XCTAssertEqual(objective.noiseShape, [2, 4, 4])
        guard case let .images(images) = data else { return XCTFail() }
        var g = RandomGenerator(seed: 2)
        let z = withoutGradients { () -> Tensor in
            let posterior = vae.encode(images.images)
            return vae.scaled(posterior.sample(noise: g.normal(posterior.mean.shape)))
        }
        XCTAssertEqual(z.shape, [40, 2, 4, 4])
        let values = z.scalars.map(Double.init)
        let m = values.reduce(0, +) / Double(values.count)
        let sd = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count)).squareRoot()
        // Another draw of the posterior noise than the one measured: 1280 values, sd within a few percent of 1.
        XCTAssertEqual(sd, 1, accuracy: 0.05)
        XCTAssertEqual(vae.unscaled(vae.scaled(z)).scalars.map(Double.init), z.scalars.map(Double.init), accuracy: 1e-5)

        trainer.objective.model.eval()
        let sampler = try Sampling(kind: .ddim, steps: 3, diffusion: objective.diffusion, clip: nil).makeSampler()
        let images3 = objective.generate(from: g.normal([2, 2, 4, 4]), sampler: sampler, labels: [1, 2], guidance: 2,
                                         generator: &g, observe: nil)
        XCTAssertEqual(images3.shape, [2, 3, 8, 8])
        XCTAssertTrue(images3.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
    }

    /// Classifier-free guidance through a conditional U-Net, with both predictions from one doubled batch: scale 1
    /// gives the conditional prediction and scale 0 the null label's, to float32 rounding of ε_∅ + w(ε_c − ε_∅).
    func testGuidanceScaleOneIsTheConditionalPrediction() throws {
        var g = RandomGenerator(seed: 3)
        var u = UNet2DConfig.mnistSmall
        (u.sampleSize, u.blockOutChannels, u.normNumGroups, u.numClassEmbeds) = (8, [8, 16, 16], 4, 4)
        let unet = try UNet2DModel(u, generator: &g)
        unet.eval()
        let x = g.normal([3, 1, 8, 8]), labels = [0, 2, 1]
        let predict = { (x: Tensor, t: Double, l: [Int]) in unet(x, timesteps: [Double](repeating: t, count: x.shape[0]), classLabels: l) }
        withoutGradients {
            let conditional = predict(x, 250, labels), unconditional = predict(x, 250, [3, 3, 3])
            let one = guidedDenoiser(labels: labels, nullLabel: 3, scale: 1, predict)(x, 250)
            let zero = guidedDenoiser(labels: labels, nullLabel: 3, scale: 0, predict)(x, 250)
            let three = guidedDenoiser(labels: labels, nullLabel: 3, scale: 3, predict)(x, 250)
            XCTAssertEqual(one.scalars, conditional.scalars, accuracy: 1e-5)
            XCTAssertEqual(zero.scalars, unconditional.scalars, accuracy: 1e-5)
            XCTAssertEqual(three.scalars, (unconditional + (conditional - unconditional) * 3).scalars, accuracy: 1e-5)
            XCTAssertGreaterThan(zip(conditional.scalars, unconditional.scalars).map { Swift.abs($0 - $1) }.max()!, 1e-3,
                                 "the label changes the prediction")
        }
    }
}

/// Elementwise equality within `accuracy`.
func XCTAssertEqual<T: FloatingPoint>(_ a: [T], _ b: [T], accuracy: T, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    if let i = a.indices.first(where: { Swift.abs(a[$0] - b[$0]) > accuracy }) {
        XCTFail("element \(i): \(a[i]) vs \(b[i])", file: file, line: line)
    }
}

/// The reference features' cache: computed once per (data, examples, network, resize), read back after.
final class ReferenceCacheTests: XCTestCase {
    final class CountingNetwork: FeatureNetwork {
        var calls = 0
        let name = "counting", resize = "none", batchSize = 4
        var identity: String
        init(_ identity: String) { self.identity = identity }
        func features(_ images: Tensor) -> Tensor {
            calls += 1
            return mean(images, axes: [2, 3])
        }
    }

    func testReferenceFeaturesAreCachedPerKey() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-cache-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        var g = RandomGenerator(seed: 1)
        let images = g.normal([10, 3, 4, 4])
        let network = CountingNetwork("a")
        let first = try ReferenceFeatures(images: images, data: "shapes", examples: "0..<10", network: network, cacheDirectory: cache)
        XCTAssertFalse(first.fromCache)
        XCTAssertEqual(network.calls, 3, "10 images, 4 at a time")
        let second = try ReferenceFeatures(images: images, data: "shapes", examples: "0..<10", network: network, cacheDirectory: cache)
        XCTAssertTrue(second.fromCache)
        XCTAssertEqual(network.calls, 3, "nothing recomputed")
        XCTAssertEqual(second.features.scalars, first.features.scalars)
        XCTAssertEqual(second.statistics, first.statistics)
        let other = CountingNetwork("b")
        XCTAssertFalse(try ReferenceFeatures(images: images, data: "shapes", examples: "0..<10", network: other, cacheDirectory: cache).fromCache)
        XCTAssertFalse(try ReferenceFeatures(images: images, data: "shapes", examples: "0..<9", network: network, cacheDirectory: cache).fromCache)
    }
}
