import DiffuseEngine
import DiffuseNN
import Foundation
import XCTest

private final class Tiny: Module {
    let first: Linear
    let norm: BatchNorm
    init(generator: inout RandomGenerator) {
        first = Linear(3, 4, generator: &generator)
        norm = BatchNorm(4)
        super.init()
        register("first", first)
        register("blocks", ModuleList([norm]))
    }
}

final class ModuleTests: XCTestCase {
    func testParameterNamesAreCheckpointKeys() {
        var g = RandomGenerator(seed: 0)
        let m = Tiny(generator: &g)
        XCTAssertEqual(m.namedParameters().map(\.0), ["first.weight", "first.bias", "blocks.0.weight", "blocks.0.bias"])
        XCTAssertEqual(m.namedBuffers().map(\.0), ["blocks.0.running_mean", "blocks.0.running_var"])
        XCTAssertEqual(m.parameterCount, 12 + 4 + 4 + 4)
    }

    /// A checkpoint written with safetensors and read back restores every parameter and buffer bit for bit.
    func testStateDictRoundTripThroughSafetensors() throws {
        var g = RandomGenerator(seed: 0)
        let a = Tiny(generator: &g), b = Tiny(generator: &g)
        _ = a.norm(g.normal([5, 4]))  // moves the running statistics away from their initial values
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tiny-\(getpid()).safetensors").path
        try SafeTensorsFile.write(a.stateDict(), metadata: ["format": "pt"], to: path)
        try b.load(SafeTensorsFile(path: path).names.reduce(into: [:]) { $0[$1] = try SafeTensorsFile(path: path).tensor($1) })
        for ((ka, pa), (kb, pb)) in zip(a.namedParameters() + a.namedBuffers(), b.namedParameters() + b.namedBuffers()) {
            XCTAssertEqual(ka, kb)
            XCTAssertEqual(pa.value.scalars, pb.value.scalars, ka)
        }
        try FileManager.default.removeItem(atPath: path)
    }

    /// Gradients accumulate over backward passes until cleared; `withoutGradients` records nothing; detach cuts.
    func testGradientAccumulationNoGradAndDetach() {
        let p = Parameter(Tensor([1, 2, 3]))
        sum(p.tensor * p.tensor).backward()
        sum(p.tensor * 3).backward()
        XCTAssertEqual(p.grad!.scalars, [5, 7, 9])
        p.zeroGrad()
        XCTAssertNil(p.grad)
        let y = withoutGradients { p.tensor * 2 }
        XCTAssertFalse(y.requiresGrad)
        sum(p.tensor.detached * p.tensor).backward()
        XCTAssertEqual(p.grad!.scalars, [1, 2, 3])
    }

    /// BatchNorm's running statistics follow PyTorch's rule (momentum 0.1, unbiased variance), and evaluation
    /// mode uses them.
    func testBatchNormRunningStatistics() {
        let bn = BatchNorm(1)
        let x = Tensor([1, 2, 3, 6], shape: [4, 1])
        _ = bn(x)
        XCTAssertEqual(bn.runningMean.value.item, 0.3, accuracy: 1e-6)
        XCTAssertEqual(bn.runningVariance.value.item, 0.9 + 0.1 * 14.0 / 3.0, accuracy: 1e-5)
        bn.eval()
        let y = bn(Tensor([0.3], shape: [1, 1]))
        XCTAssertEqual(y.item, 0, accuracy: 1e-6)
    }
}
