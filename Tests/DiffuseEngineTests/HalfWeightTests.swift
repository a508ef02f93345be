import DiffuseEngine
import XCTest

// 16-bit weights read in place by the kernels (conv2d and linear of a HalfTensor): the same bits as the ops on the
// widened copy, on every path that packs weights, on 1 and 3 threads, for F16 and BF16.

final class HalfWeightTests: XCTestCase {
    /// Every forward algorithm that can run each of the plan tests' odd geometries (streamed weights among them),
    /// forced: output, and the gradients of x and the bias, equal to conv2d of the widened kernel.
    func testConvolutionOfHalfKernelEqualsConvolutionOfItsWidenedCopy() throws {
        var covered: Set<ConvolutionAlgorithm> = []
        for (index, geo) in ConvolutionPlanTests.geometries.enumerated() {
            var g = RandomGenerator(seed: UInt64(100 + index))
            let x = g.normal([geo.n, geo.c, geo.h, geo.w]), bias = g.normal([geo.o])
            let format: HalfTensor.Format = index % 2 == 0 ? .float16 : .bfloat16
            let half = HalfTensor(narrowing: g.normal([geo.o, geo.c, geo.kh, geo.kw], std: 0.1), format: format)
            let winograd = geo.kh == 3 && geo.kw == 3 && geo.stride == 1 && geo.py == 1 && geo.px == 1
            let pointwise = geo.kh == 1 && geo.kw == 1 && geo.stride == 1 && geo.py == 0 && geo.px == 0
            let algorithms = ConvolutionAlgorithm.allCases.filter {
                ($0 != .winograd || winograd) && ($0 != .channelTiles || geo.o % 64 == 0) && ($0 != .product || pointwise)
            }
            for algorithm in algorithms {
                let forcing = Engine.ConvolutionForcing(forward: algorithm, inputGradient: nil, weightGradient: nil)
                func run(_ weight: (Tensor, Tensor) -> Tensor) -> [[Float]] {
                    let (xl, bl) = (x.requiringGrad(), bias.requiringGrad())
                    let out = weight(xl, bl)
                    out.backward(Tensor(repeating: 0.5, shape: out.shape))
                    return [out.scalars, xl.grad!.scalars, bl.grad!.scalars]
                }
                let expected = Engine.withConvolutionForcing(forcing) {
                    run { conv2d($0, weight: half.widened(), bias: $1, stride: geo.stride, padding: (geo.py, geo.px)) }
                }
                let results = Engine.withConvolutionForcing(forcing) {
                    withThreads([1, 3]) {
                        run { conv2d($0, weight: half, bias: $1, stride: geo.stride, padding: (geo.py, geo.px)) }
                    }
                }
                for (threads, result) in zip([1, 3], results) {
                    XCTAssertEqual(result, expected, "conv2d \(geo), \(format), \(algorithm), \(threads) threads")
                }
                covered.insert(algorithm)
            }
        }
        XCTAssertEqual(covered, Set(ConvolutionAlgorithm.allCases))
    }

    /// Each path of the product: at most 8 rows (rows times rows), n a multiple of 64 with m ≥ n (channel tiles),
    /// and the packed register tile with partial panels and two depth blocks; x of rank 3 too.
    func testLinearOfHalfWeightEqualsLinearOfItsWidenedCopy() {
        let shapes: [(x: [Int], n: Int)] = [([3, 40], 70), ([200, 100], 128), ([130, 64], 64), ([30, 300], 100),
                                             ([2, 15, 64], 80), ([20, 37], 33)]
        for (index, shape) in shapes.enumerated() {
            var g = RandomGenerator(seed: UInt64(200 + index))
            let k = shape.x.last!
            let x = g.normal(shape.x), bias = g.normal([shape.n])
            for format in [HalfTensor.Format.float16, .bfloat16] {
                let half = HalfTensor(narrowing: g.normal([shape.n, k], std: 0.2), format: format)
                func run(_ layer: (Tensor, Tensor) -> Tensor) -> [[Float]] {
                    let (xl, bl) = (x.requiringGrad(), bias.requiringGrad())
                    let out = layer(xl, bl)
                    out.backward(Tensor(repeating: 0.25, shape: out.shape))
                    return [out.scalars, xl.grad!.scalars, bl.grad!.scalars]
                }
                let expected = run { linear($0, weight: half.widened(), bias: $1) }
                for (threads, result) in zip([1, 3], withThreads([1, 3]) { run { linear($0, weight: half, bias: $1) } }) {
                    XCTAssertEqual(result, expected, "linear of \(shape.x) to \(shape.n), \(format), \(threads) threads")
                }
            }
        }
    }
}
