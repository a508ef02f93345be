import DiffuseEngine
import DiffuseNN

extension Classifier {
    /// Trains on cross-entropy with AdamW for `epochs` passes over the data, each in an order drawn from `generator`.
    /// `report(step, loss)` is called after every step.
    public func fit(images: Tensor, labels: [Int], epochs: Int, batchSize: Int = 64, learningRate: Float = 2e-3,
                    generator: inout RandomGenerator, report: ((Int, Float) -> Void)? = nil) {
        train()
        let optimizer = Adam.adamW(namedParameters(), learningRate: learningRate, weightDecay: 1e-4)
        let stepsPerEpoch = labels.count / batchSize
        let schedule = WarmupCosineSchedule(base: learningRate, warmup: 20, total: epochs * stepsPerEpoch)
        var step = 0
        for _ in 0..<epochs {
            let order = generator.permutation(labels.count)
            for b in 0..<stepsPerEpoch {
                let idx = Array(order[(b * batchSize)..<((b + 1) * batchSize)])
                optimizer.learningRate = schedule(step)
                optimizer.zeroGrad()
                let loss = crossEntropy(self(images.selecting(idx)), labels: idx.map { labels[$0] })
                loss.backward()
                optimizer.step()
                report?(step, loss.item)
                step += 1
            }
        }
        eval()
    }

    /// The fraction of `images` whose most likely class is their label.
    public func accuracy(images: Tensor, labels: [Int], batchSize: Int = 500) -> Double {
        withoutGradients {
            var correct = 0
            for start in stride(from: 0, to: labels.count, by: batchSize) {
                let idx = Array(start..<min(labels.count, start + batchSize))
                let logits = self(images.selecting(idx))
                let c = logits.shape[1], p = logits.storage.pointer
                for (row, i) in idx.enumerated() {
                    let best = (0..<c).max { p[row * c + $0] < p[row * c + $1] }!
                    if best == labels[i] { correct += 1 }
                }
            }
            return Double(correct) / Double(labels.count)
        }
    }
}
