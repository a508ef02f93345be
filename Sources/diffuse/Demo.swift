import ArgumentParser
import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small MLP on the built-in two-moons data and watch its loss fall.",
        discussion: "A quick check that the engine, autodiff and optimizer work on this machine (a few seconds).")

    @Option(help: "Training steps.") var steps = 400
    @Option(help: "Examples per step.") var batchSize = 128
    @Option(help: "Learning rate of AdamW.") var learningRate: Float = 3e-3
    @Option(help: "Random seed: the same seed gives the same run.") var seed: UInt64 = 0

    func validate() throws {
        guard steps > 0, batchSize > 0 else { throw ValidationError("--steps and --batch-size must be positive") }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be positive") }
    }

    func run() throws {
        var generator = RandomGenerator(seed: seed)
        let train = Toy2D.twoMoons(count: 4096, generator: &generator)
        let test = Toy2D.twoMoons(count: 1024, generator: &generator)
        let model = MLP(sizes: [2, 64, 64, 2], generator: &generator)
        let optimizer = Adam.adamW(model.namedParameters(), learningRate: learningRate)
        print("two moons: MLP 2-64-64-2 (\(model.parameterCount) parameters), \(steps) steps of \(batchSize)")
        let start = Date()
        var running: Float = 0
        for step in 0..<steps {
            let idx = generator.integers(batchSize, below: train.labels.count)
            optimizer.zeroGrad()
            let loss = crossEntropy(model(train.points.selecting(idx)), labels: idx.map { train.labels[$0] })
            loss.backward()
            optimizer.step()
            running = step == 0 ? loss.item : 0.9 * running + 0.1 * loss.item
            if step % 50 == 0 || step == steps - 1 {
                print(String(format: "step %4d  loss %.4f", step, running))
            }
        }
        let logits = withoutGradients { model(test.points) }
        let predicted = (0..<test.labels.count).map { logits.storage.pointer[2 * $0 + 1] > logits.storage.pointer[2 * $0] ? 1 : 0 }
        let accuracy = Double(zip(predicted, test.labels).filter { $0 == $1 }.count) / Double(test.labels.count)
        print(String(format: "held-out accuracy %.1f%%  (%.1f s)", 100 * accuracy, Date().timeIntervalSince(start)))
    }
}
