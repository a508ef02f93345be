import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

final class BatchSamplerTests: XCTestCase {
    func batches(_ sampler: inout BatchSampler, _ n: Int) -> [[Int]] { (0..<n).map { _ in sampler.next() } }

    /// The same generator gives the same batches, another one other batches.
    func testSameSeedSameBatches() {
        var a = BatchSampler(count: 100, batchSize: 16, generator: RandomGenerator(seed: 5))
        var b = BatchSampler(count: 100, batchSize: 16, generator: RandomGenerator(seed: 5))
        var c = BatchSampler(count: 100, batchSize: 16, generator: RandomGenerator(seed: 6))
        let first = batches(&a, 30)
        XCTAssertEqual(first, batches(&b, 30))
        XCTAssertNotEqual(first, batches(&c, 30))
    }

    /// Every epoch visits each example once, in a new order; batches cross epoch ends and are always full.
    func testEpochs() {
        var sampler = BatchSampler(count: 10, batchSize: 4, generator: RandomGenerator(seed: 1))
        let stream = batches(&sampler, 15).flatMap { $0 }  // 60 indices: 6 epochs
        XCTAssertEqual(stream.count, 60)
        let epochs = (0..<6).map { Array(stream[10 * $0..<10 * ($0 + 1)]) }
        for epoch in epochs { XCTAssertEqual(epoch.sorted(), Array(0..<10)) }
        XCTAssertEqual(Set(epochs.map { $0.map(String.init).joined(separator: ",") }).count, 6)
        XCTAssertEqual(sampler.position.epoch, 6)
        XCTAssertEqual(sampler.position.index, 0)
        // The first epoch is the generator's permutation.
        var g = RandomGenerator(seed: 1)
        XCTAssertEqual(epochs[0], g.permutation(10))
        XCTAssertEqual(epochs[1], g.permutation(10))
        // A batch larger than the data set spans epochs.
        var wide = BatchSampler(count: 3, batchSize: 7, generator: RandomGenerator(seed: 2))
        XCTAssertEqual(wide.next().count, 7)
        XCTAssertEqual(wide.position.epoch, 2)
        XCTAssertEqual(wide.position.index, 1)
    }

    /// A position saved after k batches (through JSON, as a checkpoint would) continues with exactly the batches
    /// of a sampler that was never interrupted, across epoch ends.
    func testResumeContinuesTheSameBatches() throws {
        for k in [0, 1, 5, 6, 7, 19] {
            var uninterrupted = BatchSampler(count: 50, batchSize: 8, generator: RandomGenerator(seed: 3, stream: 7))
            var interrupted = BatchSampler(count: 50, batchSize: 8, generator: RandomGenerator(seed: 3, stream: 7))
            XCTAssertEqual(batches(&uninterrupted, k), batches(&interrupted, k))
            let saved = try JSONEncoder().encode(interrupted.position)
            let position = try JSONDecoder().decode(BatchSampler.Position.self, from: saved)
            XCTAssertEqual(position, interrupted.position)
            var resumed = try BatchSampler(count: 50, batchSize: 8, resumingFrom: position)
            XCTAssertEqual(batches(&resumed, 25), batches(&uninterrupted, 25), "resumed after \(k) batches")
            XCTAssertEqual(resumed.position, uninterrupted.position)
        }
    }

    /// A position of another data set, or no position at all, is refused.
    func testResumeRefusesOtherData() {
        var sampler = BatchSampler(count: 50, batchSize: 8, generator: RandomGenerator(seed: 3))
        _ = sampler.next()
        assertDataError(try BatchSampler(count: 60, batchSize: 8, resumingFrom: sampler.position), path: "the saved data position",
                        "is for 50 examples, the data set has 60")
        for (epoch, index) in [(-1, 0), (0, 50), (0, -1)] {
            let bad = BatchSampler.Position(count: 50, epoch: epoch, index: index, generator: RandomGenerator(seed: 3))
            assertDataError(try BatchSampler(count: 50, batchSize: 8, resumingFrom: bad), path: "the saved data position",
                            "is not a position in 50 examples")
        }
    }
}
