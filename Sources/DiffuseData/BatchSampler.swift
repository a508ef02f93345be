import DiffuseEngine

/// Shuffled mini-batches of example indices, epoch after epoch. Each epoch visits all `count` examples once, in
/// an order drawn with `RandomGenerator.permutation` from the generator as the previous epoch left it. A batch
/// that crosses the end of an epoch takes the rest of its indices from the start of the next one, so every
/// batch has `batchSize` indices (an example can appear twice in a batch only when the batch is larger than the
/// data set). The whole state is `position`, which a checkpoint saves; a sampler made from a saved position
/// yields exactly the batches that the saved one would have.
public struct BatchSampler {
    /// Where a sampler stands: the epoch, how many of its examples are handed out, and the generator state that
    /// draws the epoch's order. `count` is that of the data set, so that a resumed run can tell it was given
    /// another one.
    public struct Position: Codable, Equatable, Sendable {
        public var count: Int
        public var epoch: Int
        public var index: Int
        public var generator: RandomGenerator

        public init(count: Int, epoch: Int, index: Int, generator: RandomGenerator) {
            self.count = count
            self.epoch = epoch
            self.index = index
            self.generator = generator
        }
    }

    public let batchSize: Int
    public private(set) var position: Position
    /// The current epoch's order.
    private var order: [Int]
    /// The generator after drawing `order`, which draws the next epoch's.
    private var nextGenerator: RandomGenerator

    public var count: Int { position.count }

    /// A sampler at the start of epoch 0, its orders drawn from `generator`.
    public init(count: Int, batchSize: Int, generator: RandomGenerator) {
        precondition(count > 0 && batchSize > 0, "batches of \(batchSize) from \(count) examples")
        self.batchSize = batchSize
        position = Position(count: count, epoch: 0, index: 0, generator: generator)
        (order, nextGenerator) = Self.draw(count, position.generator)
    }

    /// A sampler that continues from a saved position over a data set of `count` examples; an error when the
    /// position is of another data set or not a position at all.
    public init(count: Int, batchSize: Int, resumingFrom position: Position) throws {
        precondition(count > 0 && batchSize > 0, "batches of \(batchSize) from \(count) examples")
        guard position.count == count else {
            throw DiffuseError.data(path: "the saved data position", problem: "is for \(position.count) examples, the data set has \(count)")
        }
        guard position.epoch >= 0, (0..<count).contains(position.index) else {
            throw DiffuseError.data(path: "the saved data position", problem: "epoch \(position.epoch), example \(position.index) is not a position in \(count) examples")
        }
        self.batchSize = batchSize
        self.position = position
        (order, nextGenerator) = Self.draw(count, position.generator)
    }

    /// An epoch's order and the generator after drawing it.
    private static func draw(_ count: Int, _ generator: RandomGenerator) -> ([Int], RandomGenerator) {
        var g = generator
        return (g.permutation(count), g)
    }

    /// The next batch's indices.
    public mutating func next() -> [Int] {
        var batch: [Int] = []
        batch.reserveCapacity(batchSize)
        while batch.count < batchSize {
            let take = min(batchSize - batch.count, count - position.index)
            batch += order[position.index..<position.index + take]
            position.index += take
            if position.index == count {
                position = Position(count: count, epoch: position.epoch + 1, index: 0, generator: nextGenerator)
                (order, nextGenerator) = Self.draw(count, position.generator)
            }
        }
        return batch
    }
}
