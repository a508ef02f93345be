import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseReport
import Foundation
import XCTest

/// Frame k [C, H, W] of a one-row `imageGrid` strip with the default 2-pixel padding.
func frame(_ strip: Tensor, _ k: Int, height h: Int, width w: Int) -> Tensor {
    strip.slice([0..<strip.shape[0], 2..<(2 + h), (2 + k * (w + 2))..<(2 + k * (w + 2) + w)])
}

final class StripTests: XCTestCase {
    /// x_0, then x_t for each chosen t, then x_T, all from one ε: frame k is √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε with the ε
    /// that a copy of the generator draws.
    func testForwardStripUsesOneNoiseDraw() throws {
        let diffusion = GaussianDiffusion()
        var generator = RandomGenerator(seed: 4)
        let x0 = generator.uniform([3, 5, 6], low: -1, high: 1)
        var copy = generator
        let ts = [0, 100, 400]
        let strip = forwardStrip(x0: x0, diffusion: diffusion, timesteps: ts, generator: &generator)
        XCTAssertEqual(strip.shape, [3, 5 + 4, 5 * (6 + 2) + 2])
        let eps = copy.normal([3, 5, 6]).scalars
        XCTAssertEqual(generator, copy, "one draw of ε")
        XCTAssertEqual(frame(strip, 0, height: 5, width: 6).scalars, x0.scalars)
        for (k, t) in (ts + [999]).enumerated() {
            let bar = diffusion.schedule.alphaBar[t]
            let expected = zip(x0.scalars, eps).map { Float(bar.squareRoot()) * $0 + Float((1 - bar).squareRoot()) * $1 }
            let actual = frame(strip, k + 1, height: 5, width: 6).scalars
            XCTAssertLessThanOrEqual(zip(actual, expected).map { abs($0 - $1) }.max()!, 1e-6, "frame of t = \(t)")
        }
        // Writes as a PNG with the data module's writer.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("forward-\(UUID()).png").path
        try PNG.write(strip, to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(4)), [0x89, 0x50, 0x4E, 0x47])
    }

    /// Given T − 1 as the last timestep, the strip does not repeat x_T.
    func testForwardStripEndingAtTDoesNotRepeatIt() {
        var generator = RandomGenerator(seed: 4)
        let strip = forwardStrip(x0: Tensor(zeros: [1, 4, 4]), diffusion: GaussianDiffusion(), timesteps: [500, 999], generator: &generator)
        XCTAssertEqual(strip.shape, [1, 8, 3 * 6 + 2])
    }

    /// Frames evenly chosen from the states, first and last included, of the chosen sample of each batch.
    func testTrajectoryStripChoosesEvenlyIncludingTheEnds() {
        // State i: a batch of 2 images, sample 0 all i, sample 1 all −i.
        let states = (0..<21).map { i in
            (1000 - 50 * i, Tensor([Float](repeating: Float(i), count: 4) + [Float](repeating: -Float(i), count: 4), shape: [2, 1, 2, 2]))
        }
        let strip = trajectoryStrip(states: states, frames: 5)
        XCTAssertEqual(strip.shape, [1, 6, 5 * 4 + 2])
        XCTAssertEqual((0..<5).map { frame(strip, $0, height: 2, width: 2).scalars[0] }, [0, 5, 10, 15, 20])
        let second = trajectoryStrip(states: states, frames: 3, sample: 1)
        XCTAssertEqual((0..<3).map { frame(second, $0, height: 2, width: 2).scalars[0] }, [0, -10, -20])
        let unbatched = states.prefix(3).map { ($0.0, $0.1.slice(axis: 0, 0..<1).reshaped([1, 2, 2])) }
        XCTAssertEqual(trajectoryStrip(states: unbatched, frames: 8).shape, [1, 6, 3 * 4 + 2], "no more frames than states")
    }
}
