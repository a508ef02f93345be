import DiffuseEngine
import DiffuseNN
import Foundation
import XCTest

private func fixture() throws -> SafeTensorsFile {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    return try SafeTensorsFile(path: dir.appendingPathComponent("optimizers.safetensors").path)
}

private func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
}

final class OptimizerTests: XCTestCase {
    /// Four steps of each optimizer on the gradients PyTorch saw give PyTorch's parameters (to float32 rounding).
    func testOptimizersMatchPyTorch() throws {
        let f = try fixture()
        let makers: [(String, ([(String, Parameter)]) -> Optimizer)] = [
            ("sgd", { SGD($0, learningRate: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01) }),
            ("nesterov", { SGD($0, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true) }),
            ("adam", { Adam($0, learningRate: 0.01, beta2: 0.99, weightDecay: 0.01) }),
            ("adamw", { Adam.adamW($0, learningRate: 0.01, beta2: 0.99, weightDecay: 0.05) }),
        ]
        for (name, make) in makers {
            let p = Parameter(try f.tensor("start"))
            let optimizer = make([("p", p)])
            for k in 0..<4 {
                p.setGrad(try f.tensor("grad.\(k)"))
                optimizer.step()
                XCTAssertLessThan(maxDifference(p.value, try f.tensor("\(name).after.\(k)")), 2e-6, "\(name) step \(k)")
            }
        }
    }

    /// A resumed optimizer (state saved and loaded into a fresh one) continues exactly like the original.
    func testOptimizerStateRoundTrip() throws {
        let f = try fixture()
        let p = Parameter(try f.tensor("start")), q = Parameter(try f.tensor("start"))
        let a = Adam.adamW([("p", p)], learningRate: 0.01), b = Adam.adamW([("p", q)], learningRate: 0.01)
        for k in 0..<2 {
            p.setGrad(try f.tensor("grad.\(k)"))
            a.step()
        }
        q.assign(p.value)
        try b.load(a.stateDict())
        for k in 2..<4 {
            p.setGrad(try f.tensor("grad.\(k)"))
            q.setGrad(try f.tensor("grad.\(k)"))
            a.step()
            b.step()
        }
        XCTAssertEqual(p.value.scalars, q.value.scalars)
        XCTAssertThrowsError(try b.load(["step": Tensor(scalar: 1)]))
    }

    func testClipGradientNormMatchesPyTorch() throws {
        let f = try fixture()
        let a = Parameter(Tensor(zeros: [4, 3])), b = Parameter(Tensor(zeros: [7]))
        a.setGrad(try f.tensor("clip.g0"))
        b.setGrad(try f.tensor("clip.g1"))
        let norm = clipGradientNorm([a, b], maxNorm: 1.5)
        XCTAssertEqual(norm, try f.tensor("clip.norm").item, accuracy: 1e-5)
        XCTAssertLessThan(maxDifference(a.grad!, try f.tensor("clip.out0")), 1e-6)
        XCTAssertLessThan(maxDifference(b.grad!, try f.tensor("clip.out1")), 1e-6)
    }

    /// θ̄ follows δθ̄ + (1 − δ)θ with δ = min(decay, (1 + t)/(10 + t)).
    func testExponentialMovingAverage() {
        let p = Parameter(Tensor([1, 2]))
        let ema = ExponentialMovingAverage([("p", p)], decay: 0.9)
        var expected: [Double] = [1, 2]
        for t in 0..<30 {
            p.assign(Tensor([Float(t), -Float(t)]))
            let d = min(0.9, Double(1 + t) / Double(10 + t))
            expected = [d * expected[0] + (1 - d) * Double(t), d * expected[1] - (1 - d) * Double(t)]
            ema.update()
        }
        XCTAssertEqual(Double(ema.shadow[0].scalars[0]), expected[0], accuracy: 1e-4)
        XCTAssertEqual(Double(ema.shadow[0].scalars[1]), expected[1], accuracy: 1e-4)
    }

    func testWarmupCosineSchedule() {
        let s = WarmupCosineSchedule(base: 1e-3, warmup: 10, total: 110, minimum: 1e-5)
        XCTAssertEqual(s(0), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s(9), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s(10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s(60), (1e-3 + 1e-5) / 2, accuracy: 1e-8)
        XCTAssertEqual(s(110), 1e-5, accuracy: 1e-9)
        XCTAssertEqual(s(500), 1e-5, accuracy: 1e-9)
    }
}
