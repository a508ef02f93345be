import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation
import XCTest

final class TrainerTests: TemporaryFolderTestCase {
    /// A tiny U-Net with dropout on 8×8 shapes: everything random in a step (data order, t, ε, dropout) is in play.
    private func tinyImageRun(steps: Int) -> (RunConfig, DataSet) {
        var g = RandomGenerator(seed: 9)
        let data = SyntheticShapes.generate(count: 40, size: 8, generator: &g)
        var c = RunConfig()
        var u = UNet2DConfig.mnistSmall
        u.sampleSize = 8
        u.inChannels = 3
        u.outChannels = 3
        u.blockOutChannels = [8, 16, 16]
        u.normNumGroups = 4
        u.dropout = 0.2
        c.unet = u
        c.steps = steps
        c.batchSize = 16
        c.learningRate = 1e-3
        c.warmup = 2
        c.timesteps = 100
        c.sampleEvery = 0
        c.checkpointEvery = 0
        c.sampleCount = 4
        c.sampleSteps = 5
        return (c, .images(data))
    }

    private func losses(_ folder: RunFolder) throws -> [String] {
        try String(contentsOfFile: folder.log, encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",")[1] }.map(String.init)
    }

    /// Training 6 steps, or 3 steps then a resumed run of 3 more, gives the same losses to the last digit.
    func testResumeGivesTheSameLossesAsAnUninterruptedRun() throws {
        let (config, data) = tinyImageRun(steps: 6)
        let straight = tempFolder()
        _ = try Trainer(config: config, data: data, folder: straight, resume: false).train()

        let split = tempFolder()
        var first = config
        first.steps = 3
        _ = try Trainer(config: first, data: data, folder: split, resume: false).train()
        let resumed = try Trainer(config: config, data: data, folder: split, resume: true)
        XCTAssertEqual(resumed.state.step, 3)
        _ = try resumed.train()
        XCTAssertEqual(try losses(split), try losses(straight))
        XCTAssertEqual(try losses(straight).count, 6)
        XCTAssertTrue(FileManager.default.fileExists(atPath: straight.samples + "/step-000006.png"))
        // The grid says how it was made, as `diffuse sample` and `diffuse generate` do.
        let made = GenerationParameters(parsing: try XCTUnwrap(PNG.text(straight.samples + "/step-000006.png").first?.text))
        XCTAssertEqual(made["Training step"], "6")
        XCTAssertEqual(made["Steps"], "\(config.sampleSteps)")
        XCTAssertEqual(made["Seed"], "\(config.seed)")
    }

    func testCorruptAndMismatchedCheckpointsAreRejectedWithClearErrors() throws {
        let (config, data) = tinyImageRun(steps: 1)
        let folder = tempFolder()
        _ = try Trainer(config: config, data: data, folder: folder, resume: false).train()

        // A run with wider channels cannot take this checkpoint: the error names the file and a tensor.
        var wider = config
        wider.unet!.blockOutChannels = [16, 16, 16]
        XCTAssertThrowsError(try Trainer(config: wider, data: data, folder: folder, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("checkpoint.safetensors"), "\(error)")
            XCTAssertTrue("\(error)".contains("the model expects"), "\(error)")
        }
        // A truncated checkpoint is refused, not a crash.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder.checkpoint))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: folder.checkpoint))
        XCTAssertThrowsError(try Trainer(config: config, data: data, folder: folder, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("checkpoint.safetensors"), "\(error)")
        }
        // A safetensors file that is not a checkpoint.
        try SafeTensorsFile.write(["x": Tensor([1])], to: folder.checkpoint)
        XCTAssertThrowsError(try Checkpoint(path: folder.checkpoint)) { XCTAssertTrue("\($0)".contains("not a Diffuse checkpoint")) }
    }

    /// A loss that becomes infinite stops the run with a DivergenceError, and the last good checkpoint stays.
    func testDivergenceStopsAndKeepsTheLastGoodCheckpoint() throws {
        var g = RandomGenerator(seed: 1)
        var config = RunConfig()
        config.steps = 2
        config.sampleEvery = 0
        config.batchSize = 4
        config.mlpHidden = [8]
        config.timesteps = 50
        config.sampleSteps = 5
        let points = Toy2D.swissRoll.sample(16, generator: &g)
        let folder = tempFolder()
        _ = try Trainer(config: config, data: .points(points), folder: folder, resume: false).train()
        let good = try Checkpoint(path: folder.checkpoint)

        for i in 0..<points.count { points.storage.pointer[i] = .infinity }  // the data turns bad
        config.steps = 4
        let trainer = try Trainer(config: config, data: .points(points), folder: folder, resume: true)
        XCTAssertThrowsError(try trainer.train()) { error in
            guard case .divergence = error as? DiffuseError else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("last good checkpoint"), "\(error)")
        }
        let kept = try Checkpoint(path: folder.checkpoint)
        XCTAssertEqual(kept.state, good.state)
        XCTAssertEqual(kept.model.keys.sorted(), good.model.keys.sorted())
        for (k, v) in kept.model { XCTAssertEqual(v.scalars, good.model[k]!.scalars, k) }
    }
}
