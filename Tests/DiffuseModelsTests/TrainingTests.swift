import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

final class TrainingTests: XCTestCase {
    /// An MLP learns the two-moons distribution: its loss falls by an order of magnitude and it separates held-out
    /// points.
    func testMLPLearnsTwoMoons() {
        var generator = RandomGenerator(seed: 7)
        let train = Toy2D.twoMoons(count: 2048, generator: &generator)
        let test = Toy2D.twoMoons(count: 512, generator: &generator)
        let model = MLP(sizes: [2, 64, 64, 2], generator: &generator)
        let optimizer = Adam.adamW(model.namedParameters(), learningRate: 3e-3)
        var losses: [Float] = []
        for _ in 0..<300 {
            let idx = generator.integers(128, below: 2048)
            optimizer.zeroGrad()
            let loss = crossEntropy(model(train.points.selecting(idx)), labels: idx.map { train.labels[$0] })
            loss.backward()
            optimizer.step()
            losses.append(loss.item)
        }
        let first = losses.prefix(10).reduce(0, +) / 10, last = losses.suffix(10).reduce(0, +) / 10
        XCTAssertLessThan(last, first / 10, "loss \(first) → \(last)")
        let logits = withoutGradients { model(test.points) }.scalars
        let correct = (0..<512).filter { (logits[2 * $0 + 1] > logits[2 * $0] ? 1 : 0) == test.labels[$0] }.count
        XCTAssertGreaterThan(Double(correct) / 512, 0.97)
    }

    /// The CNN classifier on real MNIST digits (8k train, 2k held out) reaches ≥ 97 % held-out accuracy.
    func testClassifierOnMNIST() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../shared/data/mnist").standardized.path
        let images = dir + "/t10k-images-idx3-ubyte.gz", labels = dir + "/t10k-labels-idx1-ubyte.gz"
        guard FileManager.default.fileExists(atPath: images) else {
            throw XCTSkip("MNIST not found at \(dir): skipping the classifier training test")
        }
        let data = try LabeledImages.idx(images: images, labels: labels)
        XCTAssertEqual(data.count, 10_000)
        var generator = RandomGenerator(seed: 3)
        let order = generator.permutation(data.count)
        let train = data.subset(Array(order[..<8000])), heldOut = data.subset(Array(order[8000...]))
        let model = Classifier(generator: &generator)
        let start = Date()
        model.fit(images: train.images, labels: train.labels, epochs: 8, generator: &generator)
        let accuracy = model.accuracy(images: heldOut.images, labels: heldOut.labels)
        print(String(format: "MNIST classifier: %.2f%% held-out accuracy after %.1f s of training", 100 * accuracy,
                     Date().timeIntervalSince(start)))
        XCTAssertGreaterThanOrEqual(accuracy, 0.97)
    }

    /// After warm-up, a training step (forward, backward, clipping, AdamW, EMA) takes every tensor buffer from the
    /// engine's pool: no new tensor memory is allocated, so a long run's memory stays flat.
    func testTrainingStepAllocatesNoNewTensorMemoryAfterWarmUp() {
        var generator = RandomGenerator(seed: 5)
        let resnet = ResnetBlock2D(inChannels: 8, outChannels: 16, timeEmbeddingChannels: 12, groups: 4,
                                   dropout: 0.1, generator: &generator)
        let attention = SpatialSelfAttention(channels: 16, headDimension: 8, groups: 4, generator: &generator)
        let params = resnet.namedParameters(prefix: "r.") + attention.namedParameters(prefix: "a.")
        let optimizer = Adam.adamW(params)
        let ema = ExponentialMovingAverage(params)
        func step() {
            let x = generator.normal([4, 8, 8, 8]), t = generator.normal([4, 12])
            optimizer.zeroGrad()
            let loss = mseLoss(attention(resnet(x, timeEmbedding: t)), generator.normal([4, 16, 8, 8]))
            loss.backward()
            clipGradientNorm(params.map(\.1), maxNorm: 0.1)
            optimizer.step()
            ema.update()
        }
        for _ in 0..<3 { step() }
        let before = BufferPool.shared.freshAllocations
        for _ in 0..<20 { step() }
        XCTAssertEqual(BufferPool.shared.freshAllocations, before, "tensor buffers allocated after warm-up")
    }
}
