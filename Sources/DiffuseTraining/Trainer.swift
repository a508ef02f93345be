import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import DiffuseReport
import Foundation

/// The files of a run folder.
public struct RunFolder: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
    public var config: String { path + "/config.json" }
    public var checkpoint: String { path + "/checkpoint.safetensors" }
    public var log: String { path + "/log.csv" }
    public var samples: String { path + "/samples" }
    public func file(_ name: String) -> String { path + "/" + name }

    public func readConfig() throws -> RunConfig {
        guard let data = FileManager.default.contents(atPath: config) else {
            throw CheckpointError(path: config, problem: "not found: is \(path) a run folder made by `diffuse train`?")
        }
        do { return try JSONDecoder().decode(RunConfig.self, from: data) }
        catch { throw CheckpointError(path: config, problem: "is not a valid run configuration (\(error))") }
    }

    public func write(_ config: RunConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(encoder.encode(config), to: self.config)
    }
}

/// Why training stopped.
public enum TrainingOutcome: Equatable {
    case finished
    /// Stopped by Ctrl-C, SIGTERM or the time limit, after writing a checkpoint.
    case interrupted(step: Int)
}

/// A loss that is not a finite number: the run stops and the last good checkpoint stays.
public struct DivergenceError: Error, CustomStringConvertible, LocalizedError {
    public let step: Int
    public let loss: Float
    public let checkpoint: String
    public var description: String {
        "the loss became \(loss) at step \(step); training stopped. The last good checkpoint is \(checkpoint) "
            + "(try a lower --learning-rate or --grad-clip)."
    }
    public var errorDescription: String? { description }
}

/// Builds the denoising network a configuration describes.
public func makeNetwork(_ config: RunConfig, exampleShape: [Int], generator: inout RandomGenerator) throws -> DenoisingNetwork {
    if let unet = config.unet {
        guard exampleShape == [unet.inChannels, unet.sampleSize, unet.sampleSize] else {
            throw ConfigError("the data's images are \(exampleShape), the U-Net expects [\(unet.inChannels), \(unet.sampleSize), \(unet.sampleSize)]")
        }
        return try UNet2DModel(unet, generator: &generator)
    }
    guard exampleShape.count == 1 else { throw ConfigError("image data needs a U-Net (use --preset or --channels)") }
    return MLPDenoiser(dimension: exampleShape[0], hidden: config.mlpHidden, generator: &generator)
}

/// Trains a denoising diffusion model: each step draws t ~ U{0, …, T−1} and ε ~ N(0, I) per example, builds
/// x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, and minimises the simple loss ‖target − network(x_t, t)‖² with AdamW, gradient
/// clipping, warm-up + cosine learning rate and an EMA of the weights. Writes its run folder as it goes.
public final class DiffusionTrainer {
    public let config: RunConfig
    public let folder: RunFolder
    public let network: DenoisingNetwork
    public let diffusion: GaussianDiffusion
    public let optimizer: Adam
    public let ema: ExponentialMovingAverage
    public private(set) var state: TrainingState
    let data: DataSet
    private var batches: BatchSampler
    private let schedule: WarmupCosineSchedule

    /// A new run in `folder` (created), or with `resume` the run already there, continued from its checkpoint (the
    /// caller passes the folder's configuration, possibly with more steps).
    public init(config: RunConfig, data: DataSet, folder: RunFolder, resume: Bool) throws {
        try config.validate()
        var config = config
        if config.exampleShape.isEmpty { config.exampleShape = data.exampleShape }
        guard config.exampleShape == data.exampleShape else {
            throw ConfigError("the run was trained on examples of shape \(config.exampleShape), the data has \(data.exampleShape)")
        }
        self.config = config
        self.folder = folder
        self.data = data
        diffusion = config.diffusion
        var initGenerator = RandomGenerator(seed: config.seed, stream: 1)
        network = try makeNetwork(config, exampleShape: data.exampleShape, generator: &initGenerator)
        optimizer = Adam.adamW(network.namedParameters(), learningRate: config.learningRate, weightDecay: config.weightDecay)
        ema = ExponentialMovingAverage(network.namedParameters(), decay: config.emaDecay)
        schedule = WarmupCosineSchedule(base: config.learningRate, warmup: config.warmup, total: config.steps,
                                        minimum: config.learningRate / 10)
        state = TrainingState(generator: RandomGenerator(seed: config.seed, stream: 2))
        batches = BatchSampler(count: data.count, batchSize: config.batchSize, generator: RandomGenerator(seed: config.seed, stream: 4))
        if resume {
            let checkpoint = try Checkpoint(path: folder.checkpoint)
            try Checkpoint.load(checkpoint.model, into: network, from: folder.checkpoint)
            do {
                try optimizer.load(checkpoint.optimizer)
                try ema.load(checkpoint.ema, updates: checkpoint.state.emaUpdates)
            } catch { throw CheckpointError(path: folder.checkpoint, problem: "\(error)") }
            state = checkpoint.state
            guard let position = state.batches else { throw CheckpointError(path: folder.checkpoint, problem: "holds no data position") }
            do { batches = try BatchSampler(count: data.count, batchSize: config.batchSize, resumingFrom: position) }
            catch { throw CheckpointError(path: folder.checkpoint, problem: "\(error)") }
            let dropouts = dropoutLayers
            guard state.dropoutOffsets.count == dropouts.count else {
                throw CheckpointError(path: folder.checkpoint, problem: "holds \(state.dropoutOffsets.count) dropout states for \(dropouts.count) layers")
            }
            for (d, offset) in zip(dropouts, state.dropoutOffsets) { d.generator.offset = offset }
            try keepLogRows(through: state.step)
            try folder.write(config)
        } else {
            try FileManager.default.createDirectory(atPath: folder.samples, withIntermediateDirectories: true)
            try folder.write(config)
            try writeAtomically(Data("step,loss,learning_rate,grad_norm,seconds,examples_per_second\n".utf8), to: folder.log)
            try writeTeachingPictures()
        }
    }

    private var dropoutLayers: [Dropout] { network.allModules.compactMap { $0 as? Dropout } }

    /// The log without the rows of steps a resumed run will redo (those after `step`).
    private func keepLogRows(through step: Int) throws {
        let text = (try? String(contentsOfFile: folder.log, encoding: .utf8)) ?? "step\n"
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let kept = lines.prefix(1) + lines.dropFirst().filter { Int($0.prefix { $0 != "," }).map { $0 <= step } ?? false }
        try writeAtomically(Data((kept.joined(separator: "\n") + "\n").utf8), to: folder.log)
    }

    /// The loss of one batch: L = w_t·‖target − network(x_t, t)‖², averaged.
    public func loss(_ x0: Tensor, labels: [Int]) -> Tensor {
        let n = x0.shape[0]
        let t = state.generator.integers(n, below: diffusion.schedule.timesteps)
        let noise = state.generator.normal(x0.shape)
        let xt = diffusion.noised(x0, t: t, noise: noise)
        let output = network.predict(xt, timesteps: t, labels: labels.isEmpty ? nil : labels)
        return diffusion.loss(output: output, target: diffusion.target(x0: x0, noise: noise, t: t), t: t,
                              minSNRGamma: config.minSNRGamma)
    }

    /// Trains until `config.steps` (or `deadline`), writing the log, checkpoints and sample grids; stops cleanly
    /// (checkpoint and sample grid first) when an interruption is requested.
    public func train(progress: ProgressBar? = nil, until deadline: Date? = nil) throws -> TrainingOutcome {
        network.train()
        var lastTime = Date()
        while state.step < config.steps {
            if Interruption.requested || deadline.map({ Date() >= $0 }) == true {
                try saveCheckpoint()
                if !Interruption.requested { try writeSampleGrid() }
                return .interrupted(step: state.step)
            }
            let (x0, labels) = data.batch(batches.next())
            optimizer.learningRate = schedule(state.step)
            optimizer.zeroGrad()
            let loss = self.loss(x0, labels: labels)
            guard loss.item.isFinite else { throw DivergenceError(step: state.step, loss: loss.item, checkpoint: folder.checkpoint) }
            loss.backward()
            let norm = clipGradientNorm(network.parameters, maxNorm: config.gradientClip ?? .infinity)
            optimizer.step()
            ema.update()
            state.step += 1
            let now = Date(), seconds = now.timeIntervalSince(lastTime)
            lastTime = now
            try appendLog(String(format: "%d,%.6f,%.3e,%.4f,%.4f,%.1f\n", state.step, loss.item, optimizer.learningRate,
                                 norm, seconds, Double(config.batchSize) / max(seconds, 1e-9)))
            progress?.update(state.step, String(format: "loss %.4f", loss.item))
            if config.checkpointEvery > 0 && state.step % config.checkpointEvery == 0 { try saveCheckpoint() }
            if config.sampleEvery > 0 && state.step % config.sampleEvery == 0 { try writeSampleGrid() }
        }
        try saveCheckpoint()
        if config.sampleEvery == 0 || config.steps % config.sampleEvery != 0 { try writeSampleGrid() }
        return .finished
    }

    private var logHandle: FileHandle?

    private func appendLog(_ line: String) throws {
        if logHandle == nil {
            logHandle = FileHandle(forWritingAtPath: folder.log)
            logHandle?.seekToEndOfFile()
        }
        logHandle?.write(Data(line.utf8))
    }

    /// `schedule.svg` (ᾱ_t and log-SNR of the run's schedule) and, for images, `forward.png`: the forward process
    /// of four training images, one row each, at t = 0, 5 %, 10 %, 20 %, 40 %, 60 %, 80 % of T and T.
    private func writeTeachingPictures() throws {
        try writeAtomically(Data(scheduleFigure(diffusion.schedule).utf8), to: folder.file("schedule.svg"))
        guard case let .images(images) = data else { return }
        let T = diffusion.schedule.timesteps
        let steps = [0.05, 0.1, 0.2, 0.4, 0.6, 0.8].map { Int($0 * Double(T)) }
        var g = RandomGenerator(seed: config.seed, stream: 5)
        let strips = (0..<min(4, images.count)).map { i in
            forwardStrip(x0: images.images.slice(axis: 0, i..<(i + 1)).reshaped(config.exampleShape), diffusion: diffusion,
                         timesteps: steps, generator: &g)
        }
        try PNG.write(stackedRows(strips), to: folder.file("forward.png"))
    }

    public func saveCheckpoint() throws {
        state.batches = batches.position
        state.dropoutOffsets = dropoutLayers.map(\.generator.offset)
        state.emaUpdates = ema.updates
        try Checkpoint(model: network.stateDict(), ema: ema.stateDict(), optimizer: optimizer.stateDict(), state: state)
            .write(to: folder.checkpoint)
    }

    /// Samples from the EMA weights with DDIM from the run's fixed grid noise (the same every time, so that grids
    /// of successive steps show the model improving on the same starting points).
    public func writeSampleGrid() throws {
        var g = RandomGenerator(seed: config.seed, stream: 3)
        let noise = g.normal([config.sampleCount] + data.exampleShape)
        let sampler = DDIMSampler(Sampling(kind: .ddim, steps: config.sampleSteps, diffusion: diffusion,
                                           clip: config.unet == nil ? nil : 1))
        network.eval()
        defer { network.train() }
        let samples = ema.withAveragedWeights {
            sampler.sample(from: noise, model: { x, t in self.network.predict(x, timesteps: [Double](repeating: t, count: x.shape[0]), labels: nil) },
                           generator: &g, observe: nil)
        }
        let name = String(format: "%@/step-%06d", folder.samples, state.step)
        if samples.rank == 4 {
            let columns = Int(Double(config.sampleCount).squareRoot().rounded(.up))
            try PNG.write(imageGrid(samples, columns: columns), to: name + ".png")
        } else if samples.shape[1] == 2, case let .points(points) = data {
            let shown = points.slice(axis: 0, 0..<min(points.shape[0], 2000))
            let plot = Plot(title: "Samples at step \(state.step)", xLabel: "x₁", yLabel: "x₂",
                            series: [Plot.Series("data", points: shown), Plot.Series("samples", points: samples)])
            try writeAtomically(Data(plot.svg().utf8), to: name + ".svg")
        }
    }
}
