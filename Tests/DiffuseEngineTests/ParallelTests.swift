import DiffuseEngine
import Dispatch
import XCTest

final class ParallelTests: XCTestCase {
    /// Every index of every parallelFor is visited exactly once, for several thread counts: calls back to back (the
    /// workers spinning), after pauses (the workers asleep), nested in a piece (run by that piece's thread), and from
    /// a second thread while the first one's calls run.
    func testParallelForVisitsEveryIndexOnce() {
        @Sendable func check(_ round: Int) -> Bool {
            let n = 1 + round % 97, grain = 1 + round % 5
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: n)
            let nested = UnsafeMutableBufferPointer<Int>.allocate(capacity: 4 * n)
            defer { counts.deallocate(); nested.deallocate() }
            counts.initialize(repeating: 0)
            nested.initialize(repeating: 0)
            parallelFor(n, grain: grain) { range in
                for i in range {
                    counts[i] += 1
                    parallelFor(4, grain: 1) { inner in for k in inner { nested[4 * i + k] += 1 } }
                }
            }
            return counts.allSatisfy { $0 == 1 } && nested.allSatisfy { $0 == 1 }
        }
        for threads in [2, 3, 5] { Engine.withThreads(threads) {
            let other = DispatchGroup()
            nonisolated(unsafe) var otherFailures = 0
            DispatchQueue.global().async(group: other) {
                for round in 0..<300 where !check(round) { otherFailures += 1 }
            }
            var failures = 0
            for round in 0..<3000 {
                if !check(round) { failures += 1 }
                if round % 1000 == 999 { usleep(5000) }  // longer than the workers spin
            }
            other.wait()
            XCTAssertEqual(failures, 0, "\(threads) threads")
            XCTAssertEqual(otherFailures, 0, "\(threads) threads, second caller")
        } }
    }
}
