import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseTraining
import Foundation
import XCTest

/// The library calls the README shows, as a Swift program would make them: train a run, resume it, sample from it.
final class LibraryTests: TemporaryFolderTestCase {
    func testTrainResumeAndSampleThroughTheLibrary() throws {
        let folder = tempFolder()
        var options = TrainingOptions()
        (options.data, options.imageSize, options.examples, options.preset) = ("shapes", 16, 64, "tiny")
        (options.steps, options.batchSize, options.sampleEvery) = (4, 8, 0)
        var seen: [Int] = []
        let outcome = try Trainer.start(options, in: folder).train(progress: { step, _ in seen.append(step) })
        XCTAssertEqual(outcome, .finished)
        XCTAssertEqual(seen, [1, 2, 3, 4])
        // A second start in the same folder is refused; resuming extends the run.
        XCTAssertThrowsError(try Trainer.start(options, in: folder)) { error in
            XCTAssertTrue("\(error)".contains("already holds a run"), "\(error)")
        }
        let resumed = try Trainer.resume(folder, steps: 6)
        XCTAssertEqual(resumed.state.step, 4)
        _ = try resumed.train()
        XCTAssertEqual(resumed.state.step, 6)

        var sampling = SampleOptions()
        (sampling.sampler, sampling.steps, sampling.count, sampling.batchSize, sampling.seed) = (.dpmSolver, 5, 6, 4, 3)
        var progress: [Int] = []
        let samples = try sample(try SampleModel(run: folder.path), sampling) { done, total in
            XCTAssertEqual(total, 6 * 5)
            progress.append(done)
        }
        XCTAssertEqual(samples.values.shape, [6, 3, 16, 16])
        XCTAssertEqual(progress.last, 30)
        XCTAssertTrue(samples.parameters.text.contains("Steps: 5, Sampler: DPM++ 2M, Seed: 3, Size: 16x16"), samples.parameters.text)
        // The same seed gives the same samples; bad options are errors with a message.
        XCTAssertEqual(try sample(try SampleModel(run: folder.path), sampling).values.scalars, samples.values.scalars)
        sampling.label = 1
        XCTAssertThrowsError(try sample(try SampleModel(run: folder.path), sampling)) { error in
            guard case .config = error as? DiffuseError else { return XCTFail("\(error)") }
        }
    }
}
