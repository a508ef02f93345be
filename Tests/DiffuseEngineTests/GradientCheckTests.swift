import DiffuseEngine
import Foundation
import XCTest

// Autodiff against central finite differences. The objective is L = Σ out ⊙ gout for a fixed random gout, summed
// in Double; its derivative with respect to an input element is (L(x + ε) − L(x − ε)) / 2ε up to O(ε²) and the
// float32 rounding of the forward pass divided by 2ε. With ε = 1e-2 both stay far below the tolerance for the
// functions here (inputs of order 1, a few hundred elements; the largest error seen is 2% of what is allowed).
// Tolerance: |autodiff − finite difference| ≤ 1e-3 + 5e-3·|finite difference| for every element.
// Checked by breaking backward rules one at a time, each of which made the matching check here fail: the sign of
// the dot term in softmax's, ∂/∂b of div without its minus, a 0.9 factor on conv2d's weight gradient, one of the
// four terms of upsampling's, a swapped (before, after) in slice's, the one-hot term of crossEntropy scaled by 0.9,
// and the subtle ones: normalization's gradient scaled by 1.02, logSoftmax's softmax term by 1.03, one matmul
// transpose case by 1.05, sigmoid's σ(1 − σ) as σ(1.02 − σ), exact GELU's 1/√(2π) as 0.41.

private let eps: Float = 1e-2
private let fdTolerance = Tolerance(atol: 1e-3, rtol: 5e-3)

/// Σ out ⊙ gout in Double.
private func objective(_ out: Tensor, _ gout: Tensor) -> Double {
    zip(out.scalars, gout.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}

/// Compares the autodiff gradient of Σ f(inputs) ⊙ gout with central differences, for every element of every
/// input except those in `constant`.
private func checkGradients(_ what: String, _ inputs: [Tensor], constant: Set<Int> = [], eps: Float = eps,
                            tolerance: Tolerance = fdTolerance, seed: UInt64 = 7,
                            file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    let leaves = inputs.enumerated().map { constant.contains($0.offset) ? $0.element : $0.element.requiringGrad() }
    let out = f(leaves)
    var rng = RandomGenerator(seed: seed, stream: 99)
    let gout = rng.normal(out.shape)
    out.backward(gout)
    for (k, input) in inputs.enumerated() where !constant.contains(k) {
        guard let autodiff = leaves[k].grad else {
            XCTFail("\(what): input \(k) got no gradient", file: file, line: line)
            continue
        }
        var numeric = [Float](repeating: 0, count: input.count)
        withoutGradients {
            for i in 0..<input.count {
                func loss(at value: Float) -> Double {
                    var values = input.scalars
                    values[i] = value
                    var shifted = inputs
                    shifted[k] = Tensor(values, shape: input.shape)
                    return objective(f(shifted), gout)
                }
                let x = input.scalars[i]
                numeric[i] = Float((loss(at: x + eps) - loss(at: x - eps)) / Double(2 * eps))
            }
        }
        // The finite difference is the reference: the relative part of the tolerance scales with it.
        assertClose(autodiff, Tensor(numeric, shape: input.shape), tolerance, "\(what): gradient of input \(k)",
                    file: file, line: line)
    }
}

final class GradientCheckTests: XCTestCase {
    var rng = RandomGenerator(seed: 2024)

    func normal(_ shape: [Int], std: Float = 1) -> Tensor { rng.normal(shape, std: std) }
    func uniform(_ shape: [Int], _ low: Float, _ high: Float) -> Tensor { rng.uniform(shape, low: low, high: high) }

    func testElementwiseWithBroadcasting() {
        // [2,3,4] with [3,1] and [1,3,1]; the divisor stays in [1, 2].
        checkGradients("a·b − c", [normal([2, 3, 4]), normal([3, 1]), normal([1, 3, 1])]) { x in x[0] * x[1] - x[2] }
        checkGradients("(a + b) / d", [normal([2, 3, 4]), normal([4]), uniform([3, 1], 1, 2)]) { x in (x[0] + x[1]) / x[2] }
        checkGradients("exp, log, sqrt, pow", [normal([3, 4], std: 0.5), uniform([3, 4], 0.5, 2)]) { x in
            exp(x[0]) + log(x[1]) * sqrt(x[1]) - pow(x[1], 1.5) + square(x[0]) * 0.5
        }
    }

    func testReductions() {
        checkGradients("sum over [0, 2]", [normal([2, 3, 4])]) { x in sum(x[0], axes: [0, 2]) }
        checkGradients("mean over [1] keeping it", [normal([2, 3, 4])]) { x in mean(x[0], axes: [1], keepDims: true) }
        checkGradients("unbiased variance over [1, 2]", [normal([2, 3, 4])]) { x in variance(x[0], axes: [1, 2]) }
        checkGradients("biased variance of all", [normal([3, 5])]) { x in variance(x[0], unbiased: false) }
    }

    func testMatMulWithTransposes() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = normal(ta ? [2, 4, 3] : [2, 3, 4]), b = normal(tb ? [2, 5, 4] : [2, 4, 5])
            checkGradients("matmul transposeA \(ta) transposeB \(tb)", [a, b]) { x in
                matmul(x[0], x[1], transposeA: ta, transposeB: tb)
            }
        }
        checkGradients("matmul [B,M,K]×[K,N]", [normal([2, 3, 4]), normal([4, 5])]) { x in matmul(x[0], x[1]) }
        checkGradients("matmul [B,K,M]ᵀ×[N,K]ᵀ", [normal([2, 4, 3]), normal([5, 4])]) { x in
            matmul(x[0], x[1], transposeA: true, transposeB: true)
        }
        checkGradients("linear", [normal([3, 4]), normal([2, 4]), normal([2])]) { x in
            linear(x[0], weight: x[1], bias: x[2])
        }
    }

    func testConv2d() {
        checkGradients("conv2d 3×3 stride 2 padding 1", [normal([2, 2, 5, 6]), normal([3, 2, 3, 3]), normal([3])]) { x in
            conv2d(x[0], weight: x[1], bias: x[2], stride: 2, padding: 1)
        }
        checkGradients("conv2d 3×3 stride 1 padding 1", [normal([2, 2, 4, 4]), normal([2, 2, 3, 3])]) { x in
            conv2d(x[0], weight: x[1], bias: nil, stride: 1, padding: 1)
        }
        checkGradients("conv2d 1×1 stride 2", [normal([2, 3, 5, 5]), normal([2, 3, 1, 1]), normal([2])]) { x in
            conv2d(x[0], weight: x[1], bias: x[2], stride: 2, padding: 0)
        }
    }

    func testNormalizations() {
        checkGradients("groupNorm + SiLU", [normal([2, 4, 3, 3], std: 2), normal([4]), normal([4])]) { x in
            groupNorm(x[0], groups: 2, weight: x[1], bias: x[2], eps: 1e-5, silu: true)
        }
        checkGradients("groupNorm", [normal([2, 4, 3, 3], std: 2), normal([4]), normal([4])]) { x in
            groupNorm(x[0], groups: 2, weight: x[1], bias: x[2], eps: 1e-5)
        }
        checkGradients("layerNorm", [normal([3, 6], std: 2), normal([6]), normal([6])]) { x in
            layerNorm(x[0], weight: x[1], bias: x[2])
        }
        checkGradients("batchNorm train", [normal([4, 3, 2, 2], std: 2), normal([3]), normal([3])]) { x in
            batchNorm(x[0], weight: x[1], bias: x[2]).output
        }
        checkGradients("batchNorm eval", [normal([2, 3, 2, 2]), normal([3]), uniform([3], 0.5, 2), normal([3]), normal([3])]) { x in
            batchNorm(x[0], runningMean: x[1], runningVariance: x[2], weight: x[3], bias: x[4])
        }
    }

    func testSoftmaxAndLogSoftmax() {
        checkGradients("softmax axis 1", [normal([2, 4, 3], std: 2)]) { x in softmax(x[0], axis: 1) }
        checkGradients("softmax last axis", [normal([3, 5], std: 2)]) { x in softmax(x[0]) }
        checkGradients("logSoftmax last axis", [normal([2, 3, 5], std: 2)]) { x in logSoftmax(x[0]) }
        checkGradients("logSoftmax axis 0", [normal([4, 3], std: 2)]) { x in logSoftmax(x[0], axis: 0) }
    }

    func testAttention() {
        checkGradients("attention", [normal([1, 2, 3, 4]), normal([1, 2, 5, 4]), normal([1, 2, 5, 4])]) { x in
            scaledDotProductAttention(x[0], x[1], x[2])
        }
        checkGradients("causal attention", [normal([1, 2, 5, 4]), normal([1, 2, 5, 4]), normal([1, 2, 5, 4])]) { x in
            scaledDotProductAttention(x[0], x[1], x[2], causal: true)
        }
    }

    func testActivations() {
        // Smooth ones only: finite differences across a kink (relu at 0) measure an average of two slopes.
        checkGradients("silu, gelu, tanh, sigmoid, mish", [normal([4, 5], std: 2)]) { x in
            silu(x[0]) + gelu(x[0]) * 0.5 - gelu(x[0], approximate: true) * 0.25 + tanh(x[0]) + sigmoid(x[0]) * 2
                + mish(x[0]) * 0.75
        }
    }

    func testLosses() {
        checkGradients("mseLoss", [normal([3, 4]), normal([3, 4])]) { x in mseLoss(x[0], x[1]) }
        // |ŷ − y| ≥ 0.1 > ε everywhere: no difference straddles the kink at 0.
        let prediction = normal([3, 4])
        let signs = Tensor((0..<12).map { $0 % 3 == 0 ? -1 : 1 }, shape: [3, 4])
        let gap = uniform([3, 4], 0.1, 1) * signs
        checkGradients("l1Loss", [prediction, prediction - gap]) { x in l1Loss(x[0], x[1]) }
        checkGradients("binaryCrossEntropyWithLogits", [normal([3, 4], std: 2), uniform([3, 4], 0, 1)], constant: [1]) { x in
            binaryCrossEntropyWithLogits(x[0], x[1])
        }
        checkGradients("crossEntropy", [normal([4, 5], std: 2)]) { x in crossEntropy(x[0], labels: [3, 0, 4, 3]) }
        checkGradients("gaussianKL", [normal([2, 3]), normal([2, 3]), normal([2, 3]), normal([2, 3])]) { x in
            gaussianKL(mean1: x[0], logVariance1: x[1], mean2: x[2], logVariance2: x[3])
        }
    }

    func testMovingValues() {
        checkGradients("slice, pad, concat, permute", [normal([2, 3, 4]), normal([2, 1, 2])]) { x in
            let a = x[0].slice([0..<2, 1..<3, 1..<3])  // [2, 2, 2]
            let b = x[1].padded([(0, 0), (1, 0), (0, 0)], value: 0.3)  // [2, 2, 2]
            return concat([a, b, x[0].slice(axis: 2, 0..<2)], axis: 1).permuted([2, 0, 1]).reshaped([2, -1])
        }
    }

    func testUpsampleAndAveragePool() {
        checkGradients("upsampleNearest2x", [normal([2, 2, 2, 3])]) { x in upsampleNearest2x(x[0]) }
        checkGradients("avgPool2d", [normal([2, 2, 4, 6])]) { x in avgPool2d(x[0]) }
        checkGradients("upsample then pool by 3", [normal([1, 2, 3, 3])]) { x in avgPool2d(upsampleNearest2x(x[0]), kernel: 3) }
    }

    func testExpandNegAndFlatten() {
        checkGradients("expand", [normal([3, 1, 2])]) { x in expand(x[0], to: [2, 3, 4, 2]) }
        checkGradients("neg, flattened", [normal([2, 3, 2])]) { x in -x[0].flattened(from: 1) }
        checkGradients("operators with scalars", [normal([2, 3])]) { x in (x[0] * 2 - 1) / 4 + 0.5 * x[0] }
    }

    func testEmbeddingAndReuse() {
        // An input used twice and indices that repeat: gradients must add up.
        checkGradients("embedding", [normal([5, 3])]) { x in
            embedding(x[0], indices: [1, 4, 1, 0], shape: [2, 2]) * x[0].slice(axis: 0, 0..<1)
        }
        checkGradients("x·x + x", [normal([3, 3])]) { x in x[0] * x[0] + x[0] }
    }
}
