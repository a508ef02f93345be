import DiffuseDiffusion
import DiffuseEngine
import XCTest

final class ForwardProcessTests: XCTestCase {
    let diffusion = GaussianDiffusion()
    let n = 100_000
    /// Two coordinates per sample: the mean is checked for a positive and a negative x_0.
    let x0Values: [Float] = [0.7, -1]

    /// x_0 repeated for every sample: [n, 2].
    var x0: Tensor { Tensor((0..<n).flatMap { _ in x0Values }, shape: [n, 2]) }

    /// Checks each column of `x` [n, 2] against N(√ᾱ_t·x_0, 1 − ᾱ_t). With n samples of variance v the mean's
    /// standard error is √(v/n) and the sample variance's v·√(2/(n − 1)); both must lie within 5 standard errors
    /// (a fresh seed would fail that with probability ~6e-7; the seeds here are fixed).
    func assertMoments(_ x: Tensor, t: Int, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let bar = diffusion.schedule.alphaBar[t], v = 1 - bar
        let p = x.scalars
        for (column, x0) in x0Values.enumerated() {
            let values = stride(from: column, to: p.count, by: 2).map { Double(p[$0]) }
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            XCTAssertEqual(mean, bar.squareRoot() * Double(x0), accuracy: 5 * (v / Double(n)).squareRoot(),
                           "\(what): mean at t = \(t), x_0 = \(x0)", file: file, line: line)
            XCTAssertEqual(variance, v, accuracy: 5 * v * (2 / Double(n - 1)).squareRoot(),
                           "\(what): variance at t = \(t), x_0 = \(x0)", file: file, line: line)
        }
    }

    /// q(x_t | x_0) in closed form: `noised` has mean √ᾱ_t·x_0 and variance 1 − ᾱ_t, from t = 0 (almost x_0) to T − 1.
    func testClosedFormMoments() {
        var generator = RandomGenerator(seed: 11)
        for t in [0, 10, 250, 999] {
            let xt = diffusion.noised(x0, t: [Int](repeating: t, count: n), noise: generator.normal([n, 2]))
            assertMoments(xt, t: t, "closed form")
        }
    }

    /// t + 1 Markov steps x_s = √(1 − β_s)·x_{s−1} + √β_s·ε_s, s = 0…t, reach the same distribution as the closed form.
    func testMarkovChainMatchesClosedForm() {
        var generator = RandomGenerator(seed: 12)
        var x = x0
        let checked: Set = [0, 10, 250, 999]
        for t in 0..<1000 {
            x = diffusion.markovStep(x, t: t, noise: generator.normal([n, 2]))
            if checked.contains(t) { assertMoments(x, t: t, "Markov chain") }
        }
    }
}
