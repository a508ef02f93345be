import DiffuseEngine
import XCTest

// The convolution plan: every algorithm of every pass, forced through the plan, against the plain reference loops
// (which OpTests.testConv2d checks against PyTorch); the planner's choices; the forcing's syntax.

final class ConvolutionPlanTests: XCTestCase {
    typealias Geometry = (n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: Int, py: Int, px: Int)

    /// Odd geometries that cut the work into bands of images and tiles into pieces: one image and several, odd
    /// sizes, stride 2, 1×1, 3×3 and 4×4 kernels, rectangular ones with their own row and column padding
    /// (Inception's 1×7, 7×1, 1×3, 3×1), output channels that are not a multiple of the row tile's 8, blocks of 64
    /// with a partial last channel tile, few input channels (a first layer), one band shared by the threads
    /// (1×16×4×4), rows wider than 16 Winograd tiles (34 columns), several bands with a partial last panel
    /// (4×16×30×33: 1020 tiles), weight gradients of 32·k output channels in blocks of 64 and of 32 over several
    /// bands (3×32×30×33), rows of 17 to 32 columns, even and odd, with bands that start inside a row (5×16×26×28,
    /// 3×64×25×27), and few valid outputs (streamed weights: 1×64×5×5 → 128).
    static let geometries: [Geometry] = [
        (2, 32, 16, 16, 32, 3, 3, 1, 1, 1), (1, 16, 13, 11, 20, 3, 3, 1, 1, 1), (5, 24, 7, 7, 12, 3, 3, 1, 1, 1),
        (3, 16, 12, 10, 16, 3, 3, 2, 1, 1), (4, 8, 9, 9, 5, 3, 3, 2, 0, 0), (3, 20, 6, 5, 24, 1, 1, 1, 0, 0),
        (6, 64, 4, 4, 64, 3, 3, 1, 1, 1), (2, 16, 17, 17, 24, 1, 7, 1, 0, 3), (2, 16, 17, 17, 20, 7, 1, 1, 3, 0),
        (2, 8, 8, 8, 12, 1, 3, 1, 0, 1), (2, 8, 8, 8, 12, 3, 1, 1, 1, 0), (2, 8, 9, 9, 8, 4, 4, 2, 1, 1),
        (1, 64, 5, 5, 128, 3, 3, 1, 1, 1), (3, 64, 9, 7, 64, 3, 3, 2, 1, 1), (2, 8, 20, 19, 8, 3, 3, 2, 1, 1),
        (2, 4, 6, 40, 8, 3, 3, 2, 1, 1), (2, 17, 10, 21, 64, 3, 3, 1, 1, 1), (2, 64, 6, 6, 64, 1, 1, 1, 0, 0),
        (2, 8, 21, 21, 8, 3, 3, 2, 0, 0), (2, 17, 5, 5, 64, 3, 3, 1, 1, 1), (1, 8, 5, 7, 32, 3, 3, 1, 1, 1),
        (1, 16, 9, 9, 32, 3, 3, 2, 1, 1), (2, 3, 6, 6, 96, 3, 3, 1, 1, 1), (2, 64, 7, 7, 64, 3, 3, 2, 1, 1),
        (1, 16, 4, 4, 16, 3, 3, 1, 1, 1), (3, 5, 7, 9, 11, 3, 3, 1, 1, 1), (2, 24, 30, 34, 24, 3, 3, 1, 1, 1),
        (4, 16, 30, 33, 16, 3, 3, 1, 1, 1), (3, 32, 30, 33, 32, 3, 3, 1, 1, 1), (5, 16, 26, 28, 32, 3, 3, 1, 1, 1),
        (3, 64, 25, 27, 32, 3, 3, 1, 1, 1),
    ]

    /// Every algorithm that can run a geometry, for each pass, forced (round r forces each pass's r-th algorithm,
    /// so that each appears in a round), against the reference: output and both gradients within float32 rounding
    /// of it, the same bits on 1, 2 and 3 threads and on every instruction set's register tiles.
    func testEveryAlgorithmMatchesTheReference() throws {
        let tolerance = Tolerance(atol: 1e-3, rtol: 1e-4)
        var covered: Set<String> = []
        for (index, geo) in Self.geometries.enumerated() {
            var g = RandomGenerator(seed: UInt64(13 + index))
            let x = g.normal([geo.n, geo.c, geo.h, geo.w]), weight = g.normal([geo.o, geo.c, geo.kh, geo.kw], std: 0.1)
            let bias = g.normal([geo.o])
            let (oh, ow) = ((geo.h + 2 * geo.py - geo.kh) / geo.stride + 1, (geo.w + 2 * geo.px - geo.kw) / geo.stride + 1)
            let gout = g.normal([geo.n, geo.o, oh, ow])
            func run() -> [Tensor] {
                let (xl, wl, bl) = (x.requiringGrad(), weight.requiringGrad(), bias.requiringGrad())
                let out = conv2d(xl, weight: wl, bias: bl, stride: geo.stride, padding: (geo.py, geo.px))
                out.backward(gout)
                return [out, xl.grad!, wl.grad!]
            }
            let expected = Engine.withConvolutionForcing(try .init(parsing: "reference"), run)
            // What each algorithm needs: Winograd a 3×3 kernel at stride 1 and padding 1, channel tiles blocks of 64
            // output channels (of 32 for the weight gradient), the product a 1×1 kernel at stride 1, unpadded.
            let winograd = geo.kh == 3 && geo.kw == 3 && geo.stride == 1 && geo.py == 1 && geo.px == 1
            let pointwise = geo.kh == 1 && geo.kw == 1 && geo.stride == 1 && geo.py == 0 && geo.px == 0
            func tiles(outputs: Int) -> [ConvolutionAlgorithm] {
                ConvolutionAlgorithm.allCases.filter {
                    $0 != .reference && ($0 != .winograd || winograd) && ($0 != .channelTiles || outputs % 64 == 0)
                        && ($0 != .product || pointwise)
                }
            }
            let (forwards, inputs) = (tiles(outputs: geo.o), tiles(outputs: geo.c))
            let weights = WeightGradientAlgorithm.allCases.filter {
                $0 != .reference && ($0 != .winograd || (winograd && geo.o % 32 == 0))
                    && ($0 != .channelTiles || geo.o % 32 == 0)
            }
            for round in 0..<[forwards.count, inputs.count, weights.count].max()! {
                let forcing = Engine.ConvolutionForcing(forward: forwards[round % forwards.count],
                                                        inputGradient: inputs[round % inputs.count],
                                                        weightGradient: weights[round % weights.count])
                let (chosen, results) = Engine.withConvolutionForcing(forcing) {
                    (plan(geo), withEveryInstructionSet { withThreads([1, 2, 3], run) })
                }
                XCTAssertEqual([chosen.forward, chosen.inputGradient], [forcing.forward!, forcing.inputGradient!], "\(geo)")
                XCTAssertEqual(chosen.weightGradient, forcing.weightGradient!, "\(geo)")
                covered.formUnion(["forward \(chosen.forward)", "input \(chosen.inputGradient)", "weight \(chosen.weightGradient)"])
                let first = results[0].1[0]
                for (i, what) in ["output", "input gradient", "weight gradient"].enumerated() {
                    let label = "conv2d \(geo), \(chosen): \(what)"
                    assertClose(first[i], expected[i], tolerance, label)
                    for (set, threadRuns) in results {
                        for (threads, other) in zip([1, 2, 3], threadRuns) where other[i].scalars != first[i].scalars {
                            XCTFail("\(label): \(set.rawValue) tiles on \(threads) threads differ from 1 thread's")
                        }
                    }
                }
            }
        }
        // Every algorithm of every pass ran somewhere.
        XCTAssertEqual(covered.count, 2 * (ConvolutionAlgorithm.allCases.count - 1) + WeightGradientAlgorithm.allCases.count - 1,
                       "covered: \(covered.sorted())")
    }

    private func plan(_ geo: Geometry) -> ConvolutionPlan {
        ConvolutionPlan(ConvGeometry(input: [geo.n, geo.c, geo.h, geo.w], weight: [geo.o, geo.c, geo.kh, geo.kw],
                                     stride: geo.stride, padding: (geo.py, geo.px)))
    }

    /// What the planner picks for layers of the benchmark U-Nets (cifar-ddpm at batch 8, mnist-small at 32), and
    /// that a forced algorithm that cannot run a layer leaves it to the planner.
    func testThePlannerPicksByGeometry() {
        func planned(_ input: [Int], _ weight: [Int], stride: Int = 1, padding: Int = 1) -> ConvolutionPlan {
            ConvolutionPlan(ConvGeometry(input: input, weight: weight, stride: stride, padding: (padding, padding)))
        }
        // 3×3 between wide layers over many tiles: Winograd for all three passes.
        let wide = planned([8, 128, 32, 32], [128, 128, 3, 3])
        XCTAssertEqual([wide.forward, wide.inputGradient], [.winograd, .winograd])
        XCTAssertEqual(wide.weightGradient, .winograd)
        // 256 → 256 at 4²: 32 Winograd tiles are too few for AVX-512's tiles (blocks of 64 channels run on channel
        // tiles), enough for AVX2's; ∂W on channel tiles.
        for (set, algorithm) in [(Engine.InstructionSet.avx512, ConvolutionAlgorithm.channelTiles), (.avx2, .winograd)] {
            let deep = withInstructionSet(set) { planned([8, 256, 4, 4], [256, 256, 3, 3]) }
            XCTAssertEqual([deep.forward, deep.inputGradient], [algorithm, algorithm], "\(set)")
            XCTAssertEqual(deep.weightGradient, .channelTiles, "\(set)")
        }
        // At 8², and at 16² over a batch of one (64 tiles), Winograd forward and backward, but ∂W on channel tiles.
        let small = planned([8, 256, 8, 8], [256, 256, 3, 3])
        XCTAssertEqual([small.forward, small.inputGradient], [.winograd, .winograd])
        XCTAssertEqual(small.weightGradient, .channelTiles)
        let single = planned([1, 256, 16, 16], [256, 256, 3, 3])
        XCTAssertEqual([single.forward, single.inputGradient], [.winograd, .winograd])
        XCTAssertEqual(single.weightGradient, .channelTiles)
        // The first layer (3 channels in): row tiles forward; its input gradient correlates 128 channels, on Winograd.
        let first = planned([8, 3, 32, 32], [128, 3, 3, 3])
        XCTAssertTrue([.flatTiles, .packedTiles].contains(first.forward), "\(first)")
        XCTAssertEqual(first.inputGradient, .winograd)
        XCTAssertEqual(first.weightGradient, .positionLanes)
        // The last layer (128 → 3): Winograd forward, row tiles for the input gradient from 3 channels.
        let last = planned([8, 128, 32, 32], [3, 128, 3, 3])
        XCTAssertEqual(last.forward, .winograd)
        XCTAssertTrue([.flatTiles, .packedTiles].contains(last.inputGradient), "\(last)")
        XCTAssertEqual(last.weightGradient, .positionLanes)
        // A 1×1 shortcut 128 → 256: at 8² and 16² a product per image, at 32² row tiles; at 7², and a downsampling
        // 3×3 at stride 2: channel tiles. A padded 1×1 kernel is no product.
        for side in [8, 16] {
            let pointwise = planned([8, 128, side, side], [256, 128, 1, 1], padding: 0)
            XCTAssertEqual([pointwise.forward, pointwise.inputGradient], [.product, .product], "\(side)²")
        }
        XCTAssertTrue([.flatTiles, .packedTiles].contains(planned([8, 128, 32, 32], [256, 128, 1, 1], padding: 0).forward))
        XCTAssertEqual(planned([32, 128, 7, 7], [256, 128, 1, 1], padding: 0).forward, .channelTiles)
        XCTAssertNotEqual(planned([8, 128, 16, 16], [256, 128, 1, 1], padding: 1).forward, .product)
        XCTAssertEqual(planned([8, 128, 32, 32], [128, 128, 3, 3], stride: 2).forward, .channelTiles)
        // mnist-small's 32 channels: Winograd forward and backward, ∂W in blocks of 32.
        let mnist = planned([32, 32, 28, 28], [32, 32, 3, 3])
        XCTAssertEqual([mnist.forward, mnist.inputGradient], [.winograd, .winograd])
        XCTAssertEqual(mnist.weightGradient, .winograd)
        // Winograd forced on a 1×1 kernel, channel tiles on 20 output channels: the planner's choice instead.
        let forced = Engine.withConvolutionForcing(.init(forward: .winograd, weightGradient: .channelTiles)) {
            planned([2, 16, 8, 8], [20, 16, 1, 1], padding: 0)
        }
        XCTAssertEqual(forced, planned([2, 16, 8, 8], [20, 16, 1, 1], padding: 0))
    }

    /// tracingConvolutions reports the plan of each convolution run, with its geometry.
    func testTheTraceNamesEachConvolutionsPlan() {
        var g = RandomGenerator(seed: 3)
        let x = g.normal([2, 32, 16, 16]), w = g.normal([64, 32, 3, 3]), w1 = g.normal([64, 64, 1, 1])
        let trace = tracingConvolutions {
            _ = withoutGradients { conv2d(conv2d(x, weight: w, bias: nil, padding: 1), weight: w1, bias: nil) }
        }
        let first = ConvGeometry(input: [2, 32, 16, 16], weight: [64, 32, 3, 3], padding: (1, 1))
        let second = ConvGeometry(input: [2, 64, 16, 16], weight: [64, 64, 1, 1])
        XCTAssertEqual(Set(trace.keys), [first, second])
        XCTAssertEqual(trace[first]?.plan, ConvolutionPlan(first))
        XCTAssertEqual(trace[second]?.plan, ConvolutionPlan(second))
        XCTAssertEqual(trace[first]?.calls, 1)
        XCTAssertEqual(first.description, "2×32×16×16 → 64, 3×3 padding 1")
    }

    func testForcingIsParsedPassByPass() throws {
        XCTAssertEqual(try Engine.ConvolutionForcing(parsing: "winograd"),
                       .init(forward: .winograd, inputGradient: .winograd, weightGradient: .winograd))
        XCTAssertEqual(try Engine.ConvolutionForcing(parsing: "flat-tiles, weight=position-lanes"),
                       .init(forward: .flatTiles, inputGradient: .flatTiles, weightGradient: .positionLanes))
        XCTAssertEqual(try Engine.ConvolutionForcing(parsing: "input=packed-tiles,weight=channel-tiles"),
                       .init(inputGradient: .packedTiles, weightGradient: .channelTiles))
        for bad in ["fast", "forward=position-lanes", "weight=flat-tiles", "backward=winograd"] {
            XCTAssertThrowsError(try Engine.ConvolutionForcing(parsing: bad), bad) { error in
                XCTAssertTrue("\(error)".contains("channel-tiles"), "\(bad): \(error)")
            }
        }
    }
}
