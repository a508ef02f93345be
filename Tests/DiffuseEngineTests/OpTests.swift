import DiffuseEngine
import Foundation
import XCTest

// Every op's forward value and gradients against PyTorch. The reference values come from
// scripts/make_engine_fixtures.py (run `python3 scripts/make_engine_fixtures.py` to regenerate), stored in
// Fixtures/ops.safetensors and read here with the engine's own SafeTensorsFile. For a case NAME the file holds
// NAME.in0, NAME.in1, ... (inputs), NAME.gout (upstream gradient), NAME.out (output) and NAME.grad0, ... (the
// gradients of the inputs that have one); the op's other arguments are written in both places.

/// |actual − expected| ≤ atol + rtol·|expected| for every element.
struct Tolerance {
    var atol: Float
    var rtol: Float

    /// Forward values: a few float32 roundings of values of order 1.
    static let forward = Tolerance(atol: 1e-5, rtol: 1e-4)
    /// Gradients: a backward pass chains more roundings than the forward one.
    static let gradient = Tolerance(atol: 1e-4, rtol: 1e-3)
}

/// Fails unless `actual` has `expected`'s shape and every element is within `tolerance`; the message names the
/// worst element.
func assertClose(_ actual: Tensor, _ expected: Tensor, _ tolerance: Tolerance, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.shape == expected.shape else {
        XCTFail("\(what): shape \(actual.shape), expected \(expected.shape)", file: file, line: line)
        return
    }
    let a = actual.scalars, e = expected.scalars
    var failures = 0, worst = -1, worstExcess: Float = 0
    for i in a.indices {
        let error = Swift.abs(a[i] - e[i]), allowed = tolerance.atol + tolerance.rtol * Swift.abs(e[i])
        // A NaN error fails: `error <= allowed` is false.
        if !(error <= allowed) {
            failures += 1
            let excess = error.isNaN ? .infinity : error / allowed
            if worst < 0 || excess > worstExcess { worst = i; worstExcess = excess }
        }
    }
    if failures > 0 {
        XCTFail("\(what): \(failures) of \(a.count) elements outside atol \(tolerance.atol) + rtol \(tolerance.rtol); "
            + "worst at flat index \(worst): \(a[worst]) vs expected \(e[worst])", file: file, line: line)
    }
}

/// The fixture files, found beside this source file (not through bundle resources).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    private static let opsFile = Result { try SafeTensorsFile(path: path("ops.safetensors")) }

    static func ops() throws -> SafeTensorsFile { try opsFile.get() }
}

/// `body()` run with each of `threads` as `Engine.threads`.
func withThreads<T>(_ threads: [Int], _ body: () -> T) -> [T] {
    threads.map { Engine.withThreads($0, body) }
}

/// `body()` run with `caches` as `Engine.caches` (restored afterwards).
func withCaches<T>(_ caches: Caches, _ body: () -> T) -> T {
    let saved = Engine.caches
    defer { Engine.caches = saved }
    Engine.caches = caches
    return body()
}

/// `body()` run with `set` as `Engine.instructionSet` (restored afterwards).
func withInstructionSet<T>(_ set: Engine.InstructionSet, _ body: () -> T) -> T {
    let saved = Engine.instructionSet
    defer { Engine.instructionSet = saved }
    Engine.instructionSet = set
    return body()
}

/// `body()` run on each kind of register tile (`Engine.instructionSet`, restored afterwards): any runs on any host,
/// each at its own speed. `portable` runs the same 8-float passes as `avx2`, so it is not run again.
func withEveryInstructionSet<T>(_ body: () -> T) -> [(Engine.InstructionSet, T)] {
    [Engine.InstructionSet.avx512, .avx2].map { set in (set, withInstructionSet(set, body)) }
}

extension Tensor {
    /// The values of a tensor of whole numbers stored as F32 (labels, indices).
    var integers: [Int] { scalars.map { Int($0) } }
}

/// Runs the Swift op on the case's inputs (each made `requiringGrad()`), back-propagates NAME.gout and compares the
/// output, every stored gradient and every extra output (`extras[suffix]` against NAME.suffix) with the reference.
func checkOp(_ name: String, forward: Tolerance = .forward, gradient: Tolerance = .gradient,
             file: StaticString = #filePath, line: UInt = #line,
             _ op: ([Tensor]) -> (output: Tensor, extras: [String: Tensor])) throws {
    let fixtures = try Fixtures.ops()
    var inputs: [Tensor] = []
    while fixtures.entries["\(name).in\(inputs.count)"] != nil {
        inputs.append(try fixtures.tensor("\(name).in\(inputs.count)").requiringGrad())
    }
    XCTAssertFalse(inputs.isEmpty, "\(name): no inputs in the fixture file", file: file, line: line)
    let (out, extras) = op(inputs)
    assertClose(out, try fixtures.tensor("\(name).out"), forward, "\(name) output", file: file, line: line)
    for (suffix, value) in extras {
        assertClose(value, try fixtures.tensor("\(name).\(suffix)"), forward, "\(name) \(suffix)", file: file, line: line)
    }
    out.backward(try fixtures.tensor("\(name).gout"))
    for (i, input) in inputs.enumerated() where fixtures.entries["\(name).grad\(i)"] != nil {
        guard let g = input.grad else {
            XCTFail("\(name): input \(i) got no gradient", file: file, line: line)
            continue
        }
        assertClose(g, try fixtures.tensor("\(name).grad\(i)"), gradient, "\(name) gradient of input \(i)",
                    file: file, line: line)
    }
}

/// `checkOp` for an op with one output.
func checkOp(_ name: String, forward: Tolerance = .forward, gradient: Tolerance = .gradient,
             file: StaticString = #filePath, line: UInt = #line, _ op: ([Tensor]) -> Tensor) throws {
    try checkOp(name, forward: forward, gradient: gradient, file: file, line: line) { (op($0), [:]) }
}

final class OpTests: XCTestCase {
    func testFixtureFileIsTheExpectedOne() throws {
        let fixtures = try Fixtures.ops()
        let cases = Set(fixtures.names.map { String($0.split(separator: ".")[0]) })
        XCTAssertEqual(cases.count, 122, "regenerated fixtures: update the case lists below")
        for name in fixtures.names { XCTAssertEqual(fixtures.entries[name]?.dtype, .f32, name) }
    }

    func testBinaryElementwiseWithBroadcasting() throws {
        let ops: [(String, (Tensor, Tensor) -> Tensor)] = [("add", add), ("sub", sub), ("mul", mul), ("div", div)]
        for (op, f) in ops {
            // Shapes: same [3,4]+[3,4]; bcast [2,3,4]+[3,1]; bias [2,3,2,2]+[1,3,1,1]; outer [3,1]+[1,4];
            // row [2,3,4]+[4]; cross [2,1,4,1]+[3,1,5] (both operands broadcast, in alternate dimensions).
            for shapes in ["same", "bcast", "bias", "outer", "row", "cross"] {
                try checkOp("\(op)_\(shapes)") { x in f(x[0], x[1]) }
            }
        }
        try checkOp("add_bcast") { x in x[0] + x[1] }
        try checkOp("div_bias") { x in x[0] / x[1] }
        try checkOp("scale") { x in scale(x[0], -1.5) }
        try checkOp("scale") { x in x[0] * -1.5 }
        try checkOp("shift") { x in shift(x[0], 0.75) }
        try checkOp("shift") { x in x[0] + 0.75 }
    }

    func testUnaryElementwise() throws {
        try checkOp("exp") { x in exp(x[0]) }
        try checkOp("log") { x in log(x[0]) }
        try checkOp("sqrt") { x in sqrt(x[0]) }
        try checkOp("pow_3") { x in pow(x[0], 3) }
        try checkOp("pow_half") { x in pow(x[0], 0.5) }
        try checkOp("pow_neg") { x in pow(x[0], -1.5) }
        try checkOp("square") { x in square(x[0]) }
        try checkOp("abs") { x in DiffuseEngine.abs(x[0]) }
        try checkOp("clamp") { x in clamp(x[0], min: -0.5, max: 0.7) }
        try checkOp("clamp_min") { x in clamp(x[0], min: 0.1) }
    }

    func testReductions() throws {
        try checkOp("sum_all") { x in sum(x[0]) }
        try checkOp("sum_axes") { x in sum(x[0], axes: [0, 2]) }
        try checkOp("sum_keep") { x in sum(x[0], axes: [1], keepDims: true) }
        try checkOp("sum_last") { x in sum(x[0], axes: [-1]) }
        try checkOp("mean_all") { x in mean(x[0]) }
        try checkOp("mean_axes") { x in mean(x[0], axes: [0, 2]) }
        try checkOp("mean_keep") { x in mean(x[0], axes: [1, 2], keepDims: true) }
        try checkOp("var_all") { x in variance(x[0]) }
        try checkOp("var_unbiased") { x in variance(x[0], axes: [1, 2], unbiased: true) }
        try checkOp("var_biased_keep") { x in variance(x[0], axes: [2], unbiased: false, keepDims: true) }
        try checkOp("var_biased") { x in variance(x[0], axes: [0], unbiased: false) }
    }

    func testShapeOps() throws {
        try checkOp("reshape") { x in x[0].reshaped([4, -1]) }
        try checkOp("permute") { x in x[0].permuted([2, 0, 3, 1]) }
        try checkOp("transpose") { x in x[0].transposed(0, 2) }
        try checkOp("transpose_last") { x in x[0].transposed() }
        try checkOp("concat_axis1") { x in concat([x[0], x[1], x[2]], axis: 1) }
        try checkOp("concat_axis0") { x in concat([x[0], x[1]], axis: 0) }
        try checkOp("concat_last") { x in concat([x[0], x[1]], axis: -1) }
        try checkOp("slice") { x in x[0].slice([1..<3, 0..<4, 2..<5]) }
        try checkOp("slice_axis") { x in x[0].slice(axis: -1, 1..<4) }
        // F.pad(x, (2, 1, 1, 2)) pads the last dimension by (2, 1) and the one before by (1, 2).
        try checkOp("padded") { x in x[0].padded([(0, 0), (1, 2), (2, 1)]) }
        try checkOp("padded_value") { x in x[0].padded([(1, 0), (0, 1), (0, 0)], value: 0.5) }
    }

    func testMatMul() throws {
        for prefix in ["mm", "bmm"] {
            try checkOp(prefix) { x in matmul(x[0], x[1]) }
            try checkOp("\(prefix)_tA") { x in matmul(x[0], x[1], transposeA: true) }
            try checkOp("\(prefix)_tB") { x in matmul(x[0], x[1], transposeB: true) }
            try checkOp("\(prefix)_tAB") { x in matmul(x[0], x[1], transposeA: true, transposeB: true) }
        }
        try checkOp("bmm4d") { x in matmul(x[0], x[1]) }
        try checkOp("bmm4d_tB") { x in matmul(x[0], x[1], transposeB: true) }
        try checkOp("mm_shared") { x in matmul(x[0], x[1]) }
        try checkOp("mm_shared_tB") { x in matmul(x[0], x[1], transposeB: true) }
        try checkOp("mm_shared_tA") { x in matmul(x[0], x[1], transposeA: true) }  // [2,2,4,3]ᵀ × [4,5]
        try checkOp("mm_shared_tAB") { x in matmul(x[0], x[1], transposeA: true, transposeB: true) }
    }

    func testLinear() throws {
        try checkOp("linear") { x in linear(x[0], weight: x[1], bias: x[2]) }
        try checkOp("linear_nobias") { x in linear(x[0], weight: x[1], bias: nil) }
    }

    func testConv2d() throws {
        // NAME_k{kernel}_s{stride}_p{padding}[_bias]
        let cases: [(String, stride: Int, padding: Int)] = [
            ("conv_k3_s1_p1_bias", 1, 1), ("conv_k3_s1_p0_bias", 1, 0), ("conv_k3_s2_p1", 2, 1),
            ("conv_k3_s2_p1_bias", 2, 1), ("conv_k3_s2_p0", 2, 0), ("conv_k1_s1_p0_bias", 1, 0),
            ("conv_k1_s2_p0", 2, 0), ("conv_k1_s1_p1", 1, 1),
        ]
        // As planned, and on the plain loops that every other algorithm is tested against.
        for forcing in [Engine.ConvolutionForcing(), try .init(parsing: "reference")] {
            try Engine.withConvolutionForcing(forcing) {
                for (name, stride, padding) in cases {
                    try checkOp(name) { x in
                        conv2d(x[0], weight: x[1], bias: x.count > 2 ? x[2] : nil, stride: stride, padding: padding)
                    }
                }
            }
        }
    }

    func testUpsampleAndAveragePool() throws {
        try checkOp("upsample") { x in upsampleNearest2x(x[0]) }
        try checkOp("avgpool_k2") { x in avgPool2d(x[0], kernel: 2) }
        try checkOp("avgpool_k3") { x in avgPool2d(x[0], kernel: 3) }
    }

    /// Inception-v3's pooling (max 3×3 with stride 2 or 1, average 3×3 with and without counting the padding) and
    /// its bilinear input resizing, up and down.
    func testWindowedPoolingAndBilinearResize() throws {
        try checkOp("maxpool_k3s2") { x in maxPool2d(x[0], kernel: 3, stride: 2) }
        try checkOp("maxpool_k3s1p1") { x in maxPool2d(x[0], kernel: 3, stride: 1, padding: 1) }
        try checkOp("avgpool_k3s1p1") { x in avgPool2d(x[0], kernel: 3, stride: 1, padding: 1, countPadding: false) }
        try checkOp("avgpool_k3s1p1_pad") { x in avgPool2d(x[0], kernel: 3, stride: 1, padding: 1, countPadding: true) }
        try checkOp("resize_up") { x in resizeBilinear(x[0], height: 11, width: 13) }
        try checkOp("resize_down") { x in resizeBilinear(x[0], height: 4, width: 6) }
    }

    func testGroupNorm() throws {
        try checkOp("groupnorm_eps5") { x in groupNorm(x[0], groups: 3, weight: x[1], bias: x[2], eps: 1e-5) }
        try checkOp("groupnorm_eps6") { x in groupNorm(x[0], groups: 2, weight: x[1], bias: x[2], eps: 1e-6) }
        try checkOp("groupnorm_rank3") { x in groupNorm(x[0], groups: 2, weight: x[1], bias: x[2], eps: 1e-5) }
        try checkOp("groupnorm_silu") { x in groupNorm(x[0], groups: 2, weight: x[1], bias: x[2], eps: 1e-5, silu: true) }
    }

    func testLayerNorm() throws {
        try checkOp("layernorm") { x in layerNorm(x[0], weight: x[1], bias: x[2], eps: 1e-5) }
        try checkOp("layernorm_eps6") { x in layerNorm(x[0], weight: x[1], bias: x[2], eps: 1e-6) }
    }

    func testBatchNorm() throws {
        for name in ["batchnorm_train", "batchnorm_train_2d"] {
            try checkOp(name) { x in
                let r = batchNorm(x[0], weight: x[1], bias: x[2], eps: 1e-5)
                return (r.output, ["mean": Tensor(r.mean), "var": Tensor(r.unbiasedVariance)])
            }
        }
        try checkOp("batchnorm_eval") { x in
            batchNorm(x[0], runningMean: x[1], runningVariance: x[2], weight: x[3], bias: x[4], eps: 1e-5)
        }
    }

    func testActivations() throws {
        try checkOp("silu") { x in silu(x[0]) }
        try checkOp("relu") { x in relu(x[0]) }
        try checkOp("leakyrelu") { x in leakyRelu(x[0], slope: 0.2) }
        try checkOp("gelu") { x in gelu(x[0]) }
        try checkOp("gelu_tanh") { x in gelu(x[0], approximate: true) }
        try checkOp("mish") { x in mish(x[0]) }
        try checkOp("tanh") { x in tanh(x[0]) }
        try checkOp("sigmoid") { x in sigmoid(x[0]) }
    }

    func testSoftmax() throws {
        try checkOp("softmax_last") { x in softmax(x[0], axis: -1) }
        try checkOp("softmax_axis1") { x in softmax(x[0], axis: 1) }
        try checkOp("logsoftmax_last") { x in logSoftmax(x[0], axis: -1) }
        try checkOp("logsoftmax_axis1") { x in logSoftmax(x[0], axis: 1) }
    }

    func testAttention() throws {
        try checkOp("attention") { x in scaledDotProductAttention(x[0], x[1], x[2]) }
        try checkOp("attention_scale") { x in scaledDotProductAttention(x[0], x[1], x[2], scale: 0.3) }
        try checkOp("attention_causal") { x in scaledDotProductAttention(x[0], x[1], x[2], causal: true) }
        try checkOp("attention_causal_wide") { x in scaledDotProductAttention(x[0], x[1], x[2], causal: true) }
    }

    /// Attention against plain loops (in Double) where its kernels take the query rows 8 at a time with a partial
    /// last block (21 queries), keys past a whole panel of 48 (37), and heads of 40 and 24 channels; and where the
    /// forward pass runs several blocks of queries (150 > 128) and of keys (530 > 2·240, the last partial), with
    /// values of 56 channels (two column passes, the last partial): with and without the causal mask, output and the
    /// three gradients, the same bits on 1 and 2 threads.
    func testAttentionMatchesPlainLoops() {
        for causal in [false, true] {
            attentionMatchesPlainLoops(causal: causal, sizes: (2, 21, 37, 40, 24))
            attentionMatchesPlainLoops(causal: causal, sizes: (1, 150, 530, 40, 56))
        }
    }

    func attentionMatchesPlainLoops(causal: Bool, sizes: (heads: Int, l: Int, sk: Int, d: Int, e: Int)) {
        var g = RandomGenerator(seed: 41)
        let (heads, l, sk, d, e) = sizes
        let q = g.normal([1, heads, l, d]), k = g.normal([1, heads, sk, d]), v = g.normal([1, heads, sk, e])
        let gout = g.normal([1, heads, l, e])
        let (pq, pk, pv, pg) = (q.scalars.map(Double.init), k.scalars.map(Double.init), v.scalars.map(Double.init),
                                gout.scalars.map(Double.init))
        var (o, gq, gk, gv) = ([Double](repeating: 0, count: heads * l * e), [Double](repeating: 0, count: q.count),
                               [Double](repeating: 0, count: k.count), [Double](repeating: 0, count: v.count))
        let scale = 1 / Double(d).squareRoot()
        for h in 0..<heads {
            for i in 0..<l {
                let scores = (0..<sk).map { j in
                    causal && j > i ? -Double.infinity
                        : (0..<d).reduce(0.0) { $0 + pq[(h * l + i) * d + $1] * pk[(h * sk + j) * d + $1] } * scale
                }
                let m = scores.max()!, exps = scores.map { Foundation.exp($0 - m) }, total = exps.reduce(0, +)
                let prob = exps.map { $0 / total }
                for c in 0..<e { o[(h * l + i) * e + c] = (0..<sk).reduce(0.0) { $0 + prob[$1] * pv[(h * sk + $1) * e + c] } }
                // ∂P[j] = Σ_c ∂O[c]·V[j][c]; ∂S[j] = P[j]·(∂P[j] − Σ_k P[k]·∂P[k])
                let dp = (0..<sk).map { j in (0..<e).reduce(0.0) { $0 + pg[(h * l + i) * e + $1] * pv[(h * sk + j) * e + $1] } }
                let mean = (0..<sk).reduce(0.0) { $0 + prob[$1] * dp[$1] }
                for j in 0..<sk {
                    let ds = prob[j] * (dp[j] - mean) * scale
                    for c in 0..<d {
                        gq[(h * l + i) * d + c] += ds * pk[(h * sk + j) * d + c]
                        gk[(h * sk + j) * d + c] += ds * pq[(h * l + i) * d + c]
                    }
                    for c in 0..<e { gv[(h * sk + j) * e + c] += prob[j] * pg[(h * l + i) * e + c] }
                }
            }
        }
        let results = withThreads([1, 2]) { () -> [Tensor] in
            let (ql, kl, vl) = (q.requiringGrad(), k.requiringGrad(), v.requiringGrad())
            let out = scaledDotProductAttention(ql, kl, vl, causal: causal)
            out.backward(gout)
            return [out, ql.grad!, kl.grad!, vl.grad!]
        }
        let expected = [Tensor(o.map(Float.init), shape: gout.shape), Tensor(gq.map(Float.init), shape: q.shape),
                        Tensor(gk.map(Float.init), shape: k.shape), Tensor(gv.map(Float.init), shape: v.shape)]
        for (i, what) in ["output", "∂q", "∂k", "∂v"].enumerated() {
            assertClose(results[0][i], expected[i], Tolerance(atol: 1e-5, rtol: 1e-4), "attention (causal: \(causal)) \(what)")
            XCTAssertEqual(results[0][i].scalars, results[1][i].scalars, "attention (causal: \(causal)) \(what): 1 and 2 threads differ")
        }
    }

    func testEmbedding() throws {
        try checkOp("embedding") { x in embedding(x[0], indices: x[1].integers, shape: x[1].shape) }
    }

    func testLosses() throws {
        try checkOp("mse") { x in mseLoss(x[0], x[1]) }
        try checkOp("l1") { x in l1Loss(x[0], x[1]) }
        try checkOp("bce_logits") { x in binaryCrossEntropyWithLogits(x[0], x[1]) }
        try checkOp("cross_entropy") { x in crossEntropy(x[0], labels: x[1].integers) }
        try checkOp("gaussian_kl") { x in
            gaussianKL(mean1: x[0], logVariance1: x[1], mean2: x[2], logVariance2: x[3])
        }
    }

    // The fixtures are small; products of more than 2²² multiply-adds are cut into blocks computed on several
    // threads. These check such sizes against plain loops in Double, and that neither the thread count nor the
    // instruction set of the register tiles changes a bit.
    // Tolerance: sums of a few hundred products of values of order 1 in float32: atol 1e-3 + rtol 1e-4.

    func testLargeMatMulMatchesPlainLoopsForAnyThreadCount() {
        let tolerance = Tolerance(atol: 1e-3, rtol: 1e-4)
        var g = RandomGenerator(seed: 12)
        // Wide (split by columns) and tall (split by rows), every transposition; 32-column panels (n = 64 when A is
        // transposed) and a last one of 32 after panels of 48 (n = 80), over two depth blocks (k = 300) and a partial
        // row group (m = 37); tall products with n a multiple of 64 (channel tiles) with a partial last tile, and with
        // B packed in two blocks of 64 columns (n = 128), and such a product cut into 5 depth blocks (the last of 44)
        // by caches of 16 and 64 KiB, which also cut the register tile's row groups into blocks of 4 (A transposed:
        // 17 groups of m = 130 in 5 blocks).
        let small = Caches(l1: 16 << 10, l2: 64 << 10)
        // A few rows (m ≤ 8) against Bᵀ: dot products, B's rows split among the threads (8 × 300 × 100, 3 × 70 × 33).
        let cases: [(Int, Int, Int, Caches)] = [(64, 256, 512), (512, 256, 64), (37, 300, 64), (64, 300, 80), (100, 70, 128),
                                                (130, 70, 128), (8, 300, 100), (3, 70, 33)].map { ($0.0, $0.1, $0.2, Engine.caches) }
            + [(130, 300, 128, small)]
        for (m, k, n, caches) in cases {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = g.normal(ta ? [k, m] : [m, k]), b = g.normal(tb ? [n, k] : [k, n])
                let (pa, pb) = (a.scalars, b.scalars)
                var expected = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var acc: Double = 0
                        for l in 0..<k {
                            acc += Double(pa[ta ? l * m + i : i * k + l]) * Double(pb[tb ? j * k + l : l * n + j])
                        }
                        expected[i * n + j] = Float(acc)
                    }
                }
                let runs = withCaches(caches) {
                    withEveryInstructionSet { withThreads([1, 2]) { matmul(a, b, transposeA: ta, transposeB: tb) } }
                }
                let results = runs[0].1
                assertClose(results[0], Tensor(expected, shape: [m, n]), tolerance, "matmul \(m)×\(k)×\(n) \(ta) \(tb)")
                XCTAssertEqual(results[0].scalars, results[1].scalars, "1 and 2 threads differ")
                for (set, other) in runs.dropFirst() {
                    XCTAssertTrue(other[0].scalars == results[0].scalars, "matmul \(m)×\(k)×\(n) \(ta) \(tb): \(set.rawValue) tiles differ")
                }
            }
        }
    }

    /// Weights frozen for a sampler: the same bits as packing on every call, for channel tiles (64 outputs),
    /// register tiles (12) and Winograd's transformed weights (32 × 32 at 16²), a second call served from the kept
    /// packing; another tensor of the same shape gets its own; and once the scope ends, changed weights are packed
    /// anew.
    func testFrozenWeightsGiveTheSameConvolutions() {
        var g = RandomGenerator(seed: 31)
        for (c, o, h, w) in [(32, 64, 9, 7), (16, 12, 9, 7), (32, 32, 16, 16)] {
            let x = g.normal([2, c, h, w]), weight = g.normal([o, c, 3, 3], std: 0.1), other = g.normal([o, c, 3, 3])
            let bias = g.normal([o])
            func run(_ w: Tensor) -> [Float] { withoutGradients { conv2d(x, weight: w, bias: bias, padding: 1) }.scalars }
            let (plain, plainOther) = (run(weight), run(other))
            withFrozenWeights {
                XCTAssertEqual(run(weight), plain, "\(o) outputs, first call")
                XCTAssertEqual(run(weight), plain, "\(o) outputs, kept packing")
                XCTAssertEqual(run(other), plainOther, "\(o) outputs, another weight tensor")
            }
            weight.storage.pointer.update(repeating: 0.5, count: weight.count)
            let changed = run(weight)
            XCTAssertNotEqual(changed, plain)
            XCTAssertEqual(withFrozenWeights { run(weight) }, changed, "\(o) outputs, weights changed between scopes")
        }
    }

    func testNoOpDependsOnTheThreadCount() {
        // Sizes above the kernels' grains, so that 2 threads really split the work.
        var g = RandomGenerator(seed: 14)
        let x = g.normal([4, 16, 32, 32]), w = g.normal([16, 16, 3, 3], std: 0.1), gamma = g.normal([16])
        let q = g.normal([2, 4, 64, 32]), kv = g.normal([2, 4, 48, 32]), targets = g.uniform([4, 16, 32, 32])
        let gout = g.normal([4, 16, 32, 32])
        let results = withThreads([1, 2]) { () -> [[Float]] in
            let xl = x.requiringGrad(), wl = w.requiringGrad(), ql = q.requiringGrad()
            let h = silu(groupNorm(conv2d(xl, weight: wl, bias: gamma, padding: 1), groups: 4, weight: gamma, bias: nil))
            let y = avgPool2d(upsampleNearest2x(softmax(layerNorm(h, weight: nil, bias: nil), axis: 1)))
            let bn = batchNorm(y, weight: gamma, bias: gamma)
            let a = scaledDotProductAttention(ql, kv, kv)
            let loss = binaryCrossEntropyWithLogits(bn.output, targets) + mean(a) + variance(sum(gelu(xl), axes: [1]))
            (bn.output * gout).backward(gout)
            loss.backward()
            return [bn.output.scalars, bn.mean, bn.unbiasedVariance, loss.scalars, a.scalars,
                    xl.grad!.scalars, wl.grad!.scalars, ql.grad!.scalars]
        }
        for (i, (one, two)) in zip(results[0], results[1]).enumerated() {
            XCTAssertEqual(one, two, "result \(i) differs between 1 and 2 threads")
        }
    }

    func testDropout() {
        var g = RandomGenerator(seed: 8)
        let x = Tensor(repeating: 2, shape: [100, 100]).requiringGrad()
        let y = dropout(x, p: 0.25, generator: &g)
        let kept = y.scalars.filter { $0 != 0 }
        // Each value kept with probability 0.75 (standard error of the fraction: √(0.75·0.25/10⁴) ≈ 0.0043).
        XCTAssertEqual(Double(kept.count) / 10_000, 0.75, accuracy: 5 * 0.0043)
        XCTAssertTrue(kept.allSatisfy { Swift.abs($0 - 2 / 0.75) < 1e-5 }, "survivors are scaled by 1/(1 − p)")
        y.backward(Tensor(repeating: 1, shape: [100, 100]))
        XCTAssertEqual(x.grad?.scalars, y.scalars.map { $0 / 2 }, "the gradient is the mask")
        var h = RandomGenerator(seed: 8)
        XCTAssertEqual(dropout(x, p: 0, generator: &h).scalars, x.scalars)
        XCTAssertEqual(h.offset, 0, "p = 0 draws nothing")
    }
}

/// The bookkeeping of the gradient graph, beside the op tests.
final class AutodiffTests: XCTestCase {
    /// Settings made for a job (no gradients, threads, forced convolutions, frozen weights) hold in its own task or
    /// thread only: another job in the process keeps its own.
    func testScopedSettingsStayWithTheirJob() {
        let (entered, release, left) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        let threads = Engine.threads
        Thread {
            withoutGradients {
                Engine.withThreads(threads + 3) {
                    Engine.withConvolutionForcing(.init(forward: .reference)) {
                        withFrozenWeights {
                            XCTAssertFalse(GradMode.isEnabled)
                            XCTAssertEqual(Engine.threads, threads + 3)
                            entered.signal()
                            release.wait()
                        }
                    }
                }
            }
            left.signal()
        }.start()
        entered.wait()
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertEqual(Engine.threads, threads)
        XCTAssertEqual(Engine.convolutionForcing, .init())
        release.signal()
        left.wait()
    }

    func testLeafGradientsAddUpOverBackwardPassesUntilCleared() {
        let x = Tensor([1, 2, 3]).requiringGrad()
        sum(x * x).backward()
        XCTAssertEqual(x.grad?.scalars, [2, 4, 6])
        sum(x * 3).backward()
        XCTAssertEqual(x.grad?.scalars, [5, 7, 9])
        x.node?.zeroGrad()
        XCTAssertNil(x.grad)
    }

    func testNoGraphWithoutGradientsOrThroughDetached() {
        let x = Tensor([1, 2]).requiringGrad()
        XCTAssertFalse(withoutGradients { exp(x) }.requiresGrad)
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertFalse(exp(Tensor([1, 2])).requiresGrad, "constants make no graph")
        let y = x * x.detached
        y.backward(Tensor([1, 1]))
        XCTAssertEqual(x.grad?.scalars, [1, 2], "no gradient flows through the detached factor")
    }

    func testSharedSubexpressionGetsEveryPath() {
        // y = a·a + a with a = 2x used three times: dy/dx = 2·(2a + 1).
        let x = Tensor([0.5, -1]).requiringGrad()
        let a = x * 2
        (a * a + a).backward(Tensor([1, 1]))
        XCTAssertEqual(x.grad?.scalars, [6, -6])
    }
}

final class NaNPropagationTests: XCTestCase {
    /// A NaN going into an activation comes out as NaN (so that training notices a diverged loss), never a trap.
    func testActivationsPassNaNOn() {
        let x = Tensor([.nan, 1, -100, 100])
        for (name, y) in [("silu", silu(x)), ("sigmoid", sigmoid(x)), ("gelu", gelu(x)), ("tanh", tanh(x))] {
            XCTAssertTrue(y.scalars[0].isNaN, name)
            XCTAssertTrue(y.scalars[1...].allSatisfy(\.isFinite), name)
        }
        XCTAssertEqual(sigmoid(x).scalars[2], 0, accuracy: 1e-30)
        XCTAssertEqual(sigmoid(x).scalars[3], 1)
    }
}
