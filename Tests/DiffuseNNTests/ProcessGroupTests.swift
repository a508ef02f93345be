import DiffuseEngine
import DiffuseNN
import Foundation
import XCTest

/// A stand-in for `copies` processes that hold the same values as this one: a sum over them is `copies` times the
/// values. (The real group, over MPI, is tested by launching `diffuse train` on several ranks.)
final class MirroredProcesses: ProcessGroup, @unchecked Sendable {
    let size: Int
    let rank: Int
    init(copies: Int, rank: Int = 0) { (size, self.rank) = (copies, rank) }
    private(set) var calls = 0
    func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        calls += 1
        for i in values.indices { values[i] *= Float(size) }
    }
    func sum(_ values: UnsafeMutableBufferPointer<Double>) {
        calls += 1
        for i in values.indices { values[i] *= Double(size) }
    }
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {}
    func abort(code: Int32) -> Never { fatalError("aborted with \(code)") }
}

final class ProcessGroupTests: XCTestCase {
    func testSharesCutTheBatchIntoContiguousNearlyEqualParts() {
        let shares = (0..<3).map { BatchShare(total: 8, group: MirroredProcesses(copies: 3, rank: $0)).rows }
        XCTAssertEqual(shares, [0..<3, 3..<6, 6..<8])
        XCTAssertEqual(BatchShare(total: 8, group: MirroredProcesses(copies: 3, rank: 2)).fraction, 0.25)
    }

    /// Each process' share of a draw is its rows of the draw one process makes for the whole batch, and every
    /// process' generator ends where that one's does: rows of 3 values cut blocks of 4 anywhere.
    func testShareDrawsAreRowsOfTheWholeBatchDraw() {
        let (total, row) = (10, 3)
        var whole = RandomGenerator(seed: 9, stream: 2, offset: 5)
        let (normal, uniform, integers) = (whole.normal([total, row]).scalars, whole.uniform([total, row]).scalars,
                                           whole.integers(total, below: 1000))
        for rank in 0..<3 {
            let share = BatchShare(total: total, group: MirroredProcesses(copies: 3, rank: rank))
            var g = RandomGenerator(seed: 9, stream: 2, offset: 5)
            let values = (share.rows.lowerBound * row)..<(share.rows.upperBound * row)
            XCTAssertEqual(g.normal([share.rows.count, row], share: share).scalars, Array(normal[values]), "rank \(rank)")
            XCTAssertEqual(g.uniform([share.rows.count, row], share: share).scalars, Array(uniform[values]), "rank \(rank)")
            XCTAssertEqual(g.integers(share.rows.count, below: 1000, share: share), Array(integers[share.rows]), "rank \(rank)")
            XCTAssertEqual(g, whole, "rank \(rank)")
        }
    }

    /// BatchNorm over a batch shared by processes that hold the same values has the statistics, outputs and
    /// gradients of one process' BatchNorm on its own values (each channel's statistics are those of every copy).
    func testSharedBatchNormEqualsBatchNormOfOneShare() {
        var g = RandomGenerator(seed: 4)
        let (x, w, b, r) = (g.normal([3, 5, 4, 4]) * 2 + 1, g.normal([5]), g.normal([5]), g.normal([3, 5, 4, 4]))
        func run(_ group: ProcessGroup?) -> [[Float]] {
            let (xl, wl, bl) = (x.requiringGrad(), w.requiringGrad(), b.requiringGrad())
            let (y, mean, _) = group.map { batchNorm(xl, weight: wl, bias: bl, group: $0) } ?? batchNorm(xl, weight: wl, bias: bl)
            sum(y * r).backward()
            return [y.scalars, mean, xl.grad!.scalars, wl.grad!.scalars, bl.grad!.scalars]
        }
        let (alone, shared) = (run(nil), run(MirroredProcesses(copies: 3)))
        for (name, (p, q)) in zip(["output", "mean", "∂x", "∂γ", "∂β"], zip(alone, shared)) {
            XCTAssertEqual(p.count, q.count, name)
            for (u, v) in zip(p, q) { XCTAssertEqual(u, v, accuracy: 1e-4 + 1e-3 * abs(u), name) }
        }
    }

    /// Gradients summed in buckets smaller than a tensor, and across tensors: every value summed once, into new
    /// tensors, in as many calls as buckets.
    func testGradientsAreSummedInBuckets() {
        let grads = [Tensor([1, 2, 3, 4, 5, 6, 7]), Tensor([10, 20]), Tensor([100, 200, 300])]
        let parameters = grads.map { Parameter(Tensor(zeros: $0.shape)) }
        for (p, g) in zip(parameters, grads) { sum(p.tensor * g).backward() }
        let group = MirroredProcesses(copies: 2)
        sumGradients(parameters, over: group, bucket: 5)
        XCTAssertEqual(parameters.map { $0.grad!.scalars }, grads.map { ($0 * 2).scalars })
        XCTAssertEqual(group.calls, 3, "12 values in buckets of 5")
    }
}
