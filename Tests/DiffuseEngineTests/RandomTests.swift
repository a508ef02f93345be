import DiffuseEngine
import Foundation
import XCTest

final class RandomTests: XCTestCase {
    /// Philox-4×32-10 known answers from Random123 (kat_vectors): counter words (c0, c1, c2, c3) are the block
    /// counter's low and high words then the stream's, the key words (k0, k1) the seed's.
    func testPhiloxKnownAnswers() {
        let zero = RandomGenerator(seed: 0, stream: 0).block(0)
        XCTAssertEqual([zero.0, zero.1, zero.2, zero.3], [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8])
        let ones = RandomGenerator(seed: .max, stream: .max).block(.max)
        XCTAssertEqual([ones.0, ones.1, ones.2, ones.3], [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD])
        let pi = RandomGenerator(seed: 0x299F_31D0_A409_3822, stream: 0x0370_7344_1319_8A2E).block(0x85A3_08D3_243F_6A88)
        XCTAssertEqual([pi.0, pi.1, pi.2, pi.3], [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1])
    }

    func testSameSeedGivesSameNumbers() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        XCTAssertEqual(a.normal([1000]).scalars, b.normal([1000]).scalars)
        XCTAssertEqual(a.uniform([37]).scalars, b.uniform([37]).scalars)
        XCTAssertEqual(a.integers(50, below: 7), b.integers(50, below: 7))
        XCTAssertEqual(a.permutation(20), b.permutation(20))
        XCTAssertEqual(a, b)
        // And the state alone (seed, stream, offset) resumes the sequence, e.g. after a checkpoint.
        var resumed = try! JSONDecoder().decode(RandomGenerator.self, from: JSONEncoder().encode(a))
        XCTAssertEqual(resumed.normal([64]).scalars, a.normal([64]).scalars)
    }

    func testDrawingInPiecesEqualsDrawingAtOnce() {
        // Whole blocks of 4: two draws of 8 are the first and second halves of one draw of 16.
        var whole = RandomGenerator(seed: 5), pieces = RandomGenerator(seed: 5)
        let all = whole.uniform([16]).scalars
        XCTAssertEqual(pieces.uniform([8]).scalars + pieces.uniform([8]).scalars, all)
        XCTAssertEqual(whole.offset, pieces.offset)
    }

    func testResultsDoNotDependOnThreadCount() {
        func draw() -> ([Float], [Float], [Int]) {
            var g = RandomGenerator(seed: 9, stream: 3)
            return (g.normal([100_003]).scalars, g.uniform([50_001], low: -2, high: 3).scalars, g.permutation(1000))
        }
        let one = Engine.withThreads(1, draw)
        let two = Engine.withThreads(2, draw)
        XCTAssertEqual(one.0, two.0)
        XCTAssertEqual(one.1, two.1)
        XCTAssertEqual(one.2, two.2)
    }

    func testNormalMoments() {
        var g = RandomGenerator(seed: 1)
        let n = 100_000
        for (mu, sigma) in [(Float(0), Float(1)), (3, 0.5)] {
            let x = g.normal([n], mean: mu, std: sigma).scalars.map(Double.init)
            let mean = x.reduce(0, +) / Double(n)
            let std = (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)).squareRoot()
            // Standard errors: σ/√n for the mean, ≈ σ/√(2n) for the standard deviation; allow 5 of them.
            XCTAssertEqual(mean, Double(mu), accuracy: 5 * Double(sigma) / Double(n).squareRoot())
            XCTAssertEqual(std, Double(sigma), accuracy: 5 * Double(sigma) / (2 * Double(n)).squareRoot())
            XCTAssertTrue(x.allSatisfy(\.isFinite))
        }
    }

    func testUniformIsInsideTheOpenInterval() {
        var g = RandomGenerator(seed: 2)
        let n = 100_000
        let u = g.uniform([n]).scalars
        XCTAssertTrue(u.allSatisfy { $0 > 0 && $0 < 1 })
        let mean = u.reduce(0.0) { $0 + Double($1) } / Double(n)
        XCTAssertEqual(mean, 0.5, accuracy: 5 * (1.0 / 12).squareRoot() / Double(n).squareRoot())
        let v = g.uniform([1000], low: -3, high: -1).scalars
        XCTAssertTrue(v.allSatisfy { $0 > -3 && $0 < -1 })
    }

    func testUniformNeverReturnsOneForTheLargestWord() {
        // Block 2330056 of seed 0 has a third word whose top 24 bits are all ones (found by searching the
        // counters); (2²⁴ − 1 + ½)·2⁻²⁴ rounds to 1 in Float32, so a 24-bit mapping returned exactly 1.
        var g = RandomGenerator(seed: 0, offset: 2_330_056)
        let w = g.block(2_330_056)
        XCTAssertEqual(w.2 >> 8, 0xFF_FFFF)
        let u = g.uniform([4]).scalars
        XCTAssertTrue(u.allSatisfy { $0 > 0 && $0 < 1 }, "\(u)")
        var h = RandomGenerator(seed: 0, offset: 2_330_056)
        XCTAssertTrue(h.normal([4]).scalars.allSatisfy(\.isFinite))
    }

    func testPermutationIsAPermutation() {
        var g = RandomGenerator(seed: 3)
        for n in [0, 1, 2, 10, 1000] {
            let p = g.permutation(n)
            XCTAssertEqual(p.sorted(), Array(0..<n))
        }
        let p = g.permutation(100)
        XCTAssertNotEqual(p, Array(0..<100))
        XCTAssertNotEqual(p, g.permutation(100), "successive permutations differ")
    }

    func testIntegersStayBelowTheBound() {
        var g = RandomGenerator(seed: 4)
        let k = g.integers(10_000, below: 6)
        XCTAssertTrue(k.allSatisfy { (0..<6).contains($0) })
        XCTAssertEqual(Set(k).count, 6)
    }

    func testDifferentStreamsAndSeedsDiffer() {
        let base = RandomGenerator(seed: 11)
        var s1 = base.derived(stream: 1), s2 = base.derived(stream: 2), s0 = base
        let a = s1.normal([256]).scalars, b = s2.normal([256]).scalars, c = s0.normal([256]).scalars
        XCTAssertNotEqual(a, b)
        XCTAssertNotEqual(a, c)
        var other = RandomGenerator(seed: 12, stream: 1)
        XCTAssertNotEqual(other.normal([256]).scalars, a)
        // Not merely different: nearly uncorrelated (|r| < 5/√n).
        let r = zip(a, b).reduce(0.0) { $0 + Double($1.0 * $1.1) } / 256
        XCTAssertLessThan(Swift.abs(r), 5 / 16)
        // A derived generator starts its stream from the beginning, whatever the parent had used.
        var used = base
        _ = used.uniform([100])
        var again = used.derived(stream: 1)
        XCTAssertEqual(again.normal([256]).scalars, a)
    }
}
