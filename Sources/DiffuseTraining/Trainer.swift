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
        guard let data = fileContents(config) else {
            throw DiffuseError.checkpoint(path: config, problem: "not found: is \(path) a run folder made by `diffuse train`?")
        }
        do { return try JSONDecoder().decode(RunConfig.self, from: data) }
        catch { throw DiffuseError.checkpoint(path: config, problem: "is not a valid run configuration (\(error))") }
    }

    /// The older checkpoints kept beside the latest (`RunConfig.keepCheckpoints`): checkpoint-STEP.safetensors, by
    /// step, newest first.
    public var olderCheckpoints: [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("checkpoint-"), name.hasSuffix(".safetensors"),
                  let step = Int(name.dropFirst("checkpoint-".count).dropLast(".safetensors".count)) else { return nil }
            return (step, file(name))
        }.sorted { $0.0 > $1.0 }
    }

    /// The newest checkpoint that reads whole: the latest, else the older ones kept beside it, newest first, each
    /// one passed over named in a warning; with its path and its file's bytes. The latest's error if none reads.
    public func readCheckpoint(warn: (String) -> Void) throws -> (checkpoint: Checkpoint, path: String, bytes: Data) {
        var failure: Error?
        for path in [checkpoint] + olderCheckpoints.map(\.path) where FileManager.default.fileExists(atPath: path) || failure == nil {
            do {
                let bytes: Data
                do { bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) }
                catch { throw DiffuseError.checkpoint(path: path, problem: "cannot be read (\(error.localizedDescription))") }
                let read = try Checkpoint(data: bytes, path: path)
                if let failure { warn("\(failure.localizedDescription); using \(path) (step \(read.state.step)) instead") }
                return (read, path, bytes)
            } catch {
                if failure != nil { warn(error.localizedDescription) }
                failure = failure ?? error
            }
        }
        throw failure!
    }

    /// The run's configuration and objective, with the weights of its checkpoint (`readCheckpoint`): the moving
    /// averages where there are some (unless `averaged` is false), the trained weights elsewhere; in evaluation mode.
    public func loadObjective(averaged: Bool = true, warn: (String) -> Void = printWarning) throws -> (RunConfig, TrainingObjective) {
        let config = try readConfig()
        let (checkpoint, path, _) = try readCheckpoint(warn: warn)
        let objective = try makeObjective(config, exampleShape: config.exampleShape)
        let weights = averaged ? checkpoint.ema.merging(checkpoint.model) { ema, _ in ema } : checkpoint.model
        try Checkpoint.load(weights, into: objective.model, from: path)
        objective.model.eval()
        return (config, objective)
    }

    /// Removes what writes cut short left behind (`writeAtomically`'s temporary files): a run killed while writing.
    func removeUnfinishedWrites() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            try? FileManager.default.removeItem(atPath: file(name))
        }
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
    /// Stopped by Ctrl-C or SIGTERM (on any of the processes), after writing a checkpoint.
    case interrupted(step: Int)
    /// Stopped at the time limit, after writing a checkpoint and a sample grid.
    case outOfTime(step: Int)
}

/// Trains any model of `ModelKind` through its `TrainingObjective`: each step takes a batch, runs the objective's
/// updates in order (zero the gradients, the update's loss, backward, clip its gradients to the global norm,
/// AdamW with the warm-up + cosine learning rate), then updates the moving average of the generating weights. Writes
/// the run folder as it goes: the log, atomic checkpoints, sample grids; stops cleanly on Ctrl-C or a deadline, and
/// resumes exactly where it stopped.
public final class Trainer {
    public let config: RunConfig
    public let folder: RunFolder
    public let objective: TrainingObjective
    public let optimizers: [Adam]
    /// Every parameter of the objective's networks, whose gradients each update starts from zero.
    private let parameters: [Parameter]
    public let ema: ExponentialMovingAverage
    public private(set) var state: TrainingState
    let data: DataSet
    private var batches: BatchSampler
    private let schedule: WarmupCosineSchedule
    /// The processes training together (data-parallel: each takes its share of every batch, and their gradients
    /// are summed); the first writes the run folder, the others write nothing.
    public let group: ProcessGroup
    /// Seconds spent summing gradients over the processes, this session.
    public private(set) var gradientSumSeconds = 0.0
    /// What the user should know of the resumption (a damaged checkpoint passed over).
    public private(set) var warnings: [String] = []
    /// The step of the checkpoint in the folder (nil: none yet).
    private var savedStep: Int?

    /// A new run in `folder` (created), or with `resume` the run already there, continued from its checkpoint (the
    /// caller passes the folder's configuration, possibly with more steps). A new latent-diffusion run takes its
    /// first stage's weights from `firstStage` (the VAE run's averaged weights). Over a group of processes, the
    /// first one's initial weights, or the checkpoint it reads, go to all.
    public init(config: RunConfig, data: DataSet, folder: RunFolder, resume: Bool, firstStage: [String: Tensor]? = nil,
                group: ProcessGroup = SingleProcess()) throws {
        try config.validate()
        guard config.batchSize >= group.size else {
            throw DiffuseError.config("a batch of \(config.batchSize) cannot be shared among \(group.size) processes: use --batch-size \(group.size) or more")
        }
        self.group = group
        var config = config
        if config.exampleShape.isEmpty { config.exampleShape = data.exampleShape }
        guard config.exampleShape == data.exampleShape else {
            throw DiffuseError.config("the run was trained on examples of shape \(config.exampleShape), the data has \(data.exampleShape)")
        }
        self.config = config
        self.folder = folder
        self.data = data
        objective = try makeObjective(config, exampleShape: data.exampleShape)
        parameters = objective.model.namedParameters().map(\.1)
        optimizers = objective.updates.map {
            Adam.adamW($0.parameters, learningRate: config.learningRate, beta1: $0.beta1, weightDecay: config.weightDecay)
        }
        ema = ExponentialMovingAverage(objective.averaged, decay: config.emaDecay)
        schedule = WarmupCosineSchedule(base: config.learningRate, warmup: config.warmup, total: config.steps,
                                        minimum: config.learningRate / 10)
        state = TrainingState(generator: RandomGenerator(seed: config.seed, stream: 2))
        batches = BatchSampler(count: data.count, batchSize: config.batchSize, generator: RandomGenerator(seed: config.seed, stream: 4))
        if group.isFirst { folder.removeUnfinishedWrites() }
        if resume {
            // The first process finds the newest checkpoint that reads whole; the others take its bytes (or the first's
            // error) from it.
            var read: (checkpoint: Checkpoint, path: String, bytes: Data)?, failure: Error?
            if group.isFirst {
                do { read = try folder.readCheckpoint { warnings.append($0) } } catch { failure = error }
            }
            if group.sum([failure == nil ? 0 : 1])[0] > 0 {
                throw failure ?? DiffuseError.checkpoint(path: folder.checkpoint, problem: "cannot be read on the first process")
            }
            let path = read?.path ?? folder.checkpoint
            let bytes = group.size > 1 ? group.broadcast(read?.bytes) : nil
            let checkpoint = try read?.checkpoint ?? Checkpoint(data: bytes!, path: path)
            try Checkpoint.load(checkpoint.model, into: objective.model, from: path)
            do {
                for (update, optimizer) in zip(objective.updates, optimizers) {
                    try optimizer.load(Self.section(update.name, of: checkpoint.optimizer))
                }
                try ema.load(checkpoint.ema, updates: checkpoint.state.emaUpdates)
            } catch { throw DiffuseError.checkpoint(path: path, problem: "\(error)") }
            state = checkpoint.state
            savedStep = state.step
            guard let position = state.batches else { throw DiffuseError.checkpoint(path: path, problem: "holds no data position") }
            do { batches = try BatchSampler(count: data.count, batchSize: config.batchSize, resumingFrom: position) }
            catch { throw DiffuseError.checkpoint(path: path, problem: "\(error)") }
            let dropouts = dropoutLayers
            guard state.dropoutOffsets.count == dropouts.count else {
                throw DiffuseError.checkpoint(path: path, problem: "holds \(state.dropoutOffsets.count) dropout states for \(dropouts.count) layers")
            }
            for (d, offset) in zip(dropouts, state.dropoutOffsets) { d.generator.offset = offset }
            guard group.isFirst else { return }
            try keepLogRows(through: state.step)
            try folder.write(config)
        } else {
            if let firstStage, let vae = (objective as? DiffusionObjective)?.firstStage {
                try vae.load(firstStage)
            }
            let model = objective.model
            group.broadcast(model.namedParameters().map(\.1.value) + model.namedBuffers().map(\.1.value))
            guard group.isFirst else { return }
            try FileManager.default.createDirectory(atPath: folder.samples, withIntermediateDirectories: true)
            try folder.write(config)
            try writeAtomically(Data((["step"] + logColumns + ["seconds", "examples_per_second"]).joined(separator: ",").utf8 + [10]),
                                to: folder.log)
            try writeTeachingPictures()
        }
    }

    /// The log's value columns: the objective's, the learning rate, and the gradient norm of each update.
    private var logColumns: [String] {
        objective.logColumns + ["learning_rate"]
            + objective.updates.map { $0.name.isEmpty ? "grad_norm" : "grad_norm_\($0.name)" }
    }

    /// An optimizer's state in the checkpoint: all of it for a run with one optimizer, else the keys under its name.
    static func section(_ name: String, of state: [String: Tensor]) -> [String: Tensor] {
        guard !name.isEmpty else { return state }
        var out: [String: Tensor] = [:]
        for (k, v) in state where k.hasPrefix(name + ".") { out[String(k.dropFirst(name.count + 1))] = v }
        return out
    }

    private var dropoutLayers: [Dropout] { objective.model.allModules.compactMap { $0 as? Dropout } }

    /// The networks in training mode, but latent diffusion's frozen first stage.
    private func trainingMode() {
        objective.model.train()
        (objective as? DiffusionObjective)?.firstStage?.eval()
    }

    /// The log without the rows of steps a resumed run will redo (those after `step`).
    private func keepLogRows(through step: Int) throws {
        let text = (try? String(contentsOfFile: folder.log, encoding: .utf8)) ?? "step\n"
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let kept = lines.prefix(1) + lines.dropFirst().filter { Int($0.prefix { $0 != "," }).map { $0 <= step } ?? false }
        try writeAtomically(Data((kept.joined(separator: "\n") + "\n").utf8), to: folder.log)
    }

    /// One training step on a batch: the objective's updates in order. Returns the logged values and each
    /// update's gradient norm before clipping. On a share of the batch (data-parallel), each process' loss is
    /// weighted by its share's fraction of the batch and the gradients are summed over the processes, so that every
    /// process takes the batch's step; the logged values are the batch's too.
    func step(_ batch: Batch) throws -> (logged: [String: Float], norms: [Float]) {
        var logged: [String: Float] = [:]
        var norms: [Float] = []
        for (i, (update, optimizer)) in zip(objective.updates, optimizers).enumerated() {
            optimizer.learningRate = schedule(state.step)
            for p in parameters { p.zeroGrad() }  // all of them: an update's loss reaches the other networks too
            try BatchShare.$current.withValue(batch.share) {
                var (loss, values) = objective.loss(update: i, batch: batch, generator: &state.generator)
                // The batch's loss: this process' alone, or the shares' weighted sum.
                var batchLoss = loss.item
                if let share = batch.share {
                    loss = loss * share.fraction
                    let names = values.keys.sorted()
                    let sums = group.sum([Double(loss.item)] + names.map { Double(values[$0]! * share.fraction) })
                    for (name, sum) in zip(names, sums.dropFirst()) { values[name] = Float(sum) }
                    batchLoss = Float(sums[0])
                }
                guard batchLoss.isFinite else { throw DiffuseError.divergence(step: state.step, loss: batchLoss, checkpoint: folder.checkpoint) }
                loss.backward()
                logged.merge(values) { _, new in new }
            }
            let summing = Date()
            sumGradients(update.parameters.map(\.1), over: group)
            gradientSumSeconds += Date().timeIntervalSince(summing)
            norms.append(clipGradientNorm(update.parameters.map(\.1), maxNorm: config.gradientClip ?? .infinity))
            optimizer.step()
        }
        ema.update()
        state.step += 1
        return (logged, norms)
    }

    /// Why to stop before the next step, the same on every process: an interruption (Ctrl-C or SIGTERM, or a
    /// `StopRequest` in scope) on any of them, or the first one's deadline.
    private func stopReason(deadline: Date?) -> (interrupted: Bool, deadline: Bool) {
        let passed = group.isFirst && deadline.map { Date() >= $0 } == true
        let interrupted = Interruption.requested || StopRequest.isRequested
        guard group.size > 1 else { return (interrupted, passed) }
        let votes = group.sum([interrupted ? 1 : 0, passed ? 1 : 0])
        return (votes[0] > 0, votes[1] > 0)
    }

    /// Trains until `config.steps` (or `deadline`), writing the log, checkpoints and sample grids; stops cleanly
    /// (checkpoint and sample grid first) when an interruption is requested. `progress(step, figures)` hears each
    /// step done, with the first logged values ("loss 0.0312").
    public func train(progress: ((Int, String) -> Void)? = nil, until deadline: Date? = nil) throws -> TrainingOutcome {
        trainingMode()
        var lastTime = Date()
        while state.step < config.steps {
            let stop = stopReason(deadline: deadline)
            if stop.interrupted {
                try saveCheckpoint()
                return .interrupted(step: state.step)
            }
            if stop.deadline {
                try saveCheckpoint()
                try writeSampleGrid()
                return .outOfTime(step: state.step)
            }
            let indices = batches.next()
            let share = group.size > 1 ? BatchShare(total: indices.count, group: group) : nil
            let (x, labels) = data.batch(share.map { Array(indices[$0.rows]) } ?? indices)
            let (logged, norms) = try step(Batch(x: x, labels: labels, share: share))
            let now = Date(), seconds = now.timeIntervalSince(lastTime)
            lastTime = now
            guard group.isFirst else { continue }
            let values = objective.logColumns.map { logged[$0].map { String(format: "%.6f", $0) } ?? "" }
                + [String(format: "%.3e", optimizers[0].learningRate)] + norms.map { String(format: "%.4f", $0) }
                + [String(format: "%.4f", seconds), String(format: "%.1f", Double(config.batchSize) / max(seconds, 1e-9))]
            try append(Data((([String(state.step)] + values).joined(separator: ",") + "\n").utf8), to: folder.log)
            let shown = objective.logColumns.prefix(2).compactMap { name in logged[name].map { String(format: "%@ %.4f", name, $0) } }
            progress?(state.step, shown.joined(separator: "  "))
            if config.checkpointEvery > 0 && state.step % config.checkpointEvery == 0 { try saveCheckpoint() }
            if config.sampleEvery > 0 && state.step % config.sampleEvery == 0 { try writeSampleGrid() }
        }
        try saveCheckpoint()
        if config.sampleEvery == 0 || config.steps % config.sampleEvery != 0 { try writeSampleGrid() }
        return .finished
    }

    /// `schedule.svg` (ᾱ_t and log-SNR of the run's schedule) and, for images, `forward.png`: the forward process
    /// of four training images, one row each, at t = 0, 5 %, 10 %, 20 %, 40 %, 60 %, 80 % of T and T.
    private func writeTeachingPictures() throws {
        guard let diffusion = (objective as? DiffusionObjective)?.diffusion else { return }
        try writeAtomically(Data(scheduleFigure(diffusion.schedule).utf8), to: folder.file("schedule.svg"))
        guard case let .images(images) = data, config.kind == .ddpm else { return }
        let T = diffusion.schedule.timesteps
        let steps = [0.05, 0.1, 0.2, 0.4, 0.6, 0.8].map { Int($0 * Double(T)) }
        var g = RandomGenerator(seed: config.seed, stream: 5)
        let strips = (0..<min(4, images.count)).map { i in
            forwardStrip(x0: images.images.slice(axis: 0, i..<(i + 1)).reshaped(config.exampleShape), diffusion: diffusion,
                         timesteps: steps, generator: &g)
        }
        try PNG.write(stackedRows(strips), to: folder.file("forward.png"))
    }

    /// Writes the checkpoint (on the first process; the others hold the same state and write nothing).
    public func saveCheckpoint() throws {
        guard group.isFirst else { return }
        state.batches = batches.position
        state.dropoutOffsets = dropoutLayers.map(\.generator.offset)
        state.emaUpdates = ema.updates
        var optimizerState: [String: Tensor] = [:]
        for (update, optimizer) in zip(objective.updates, optimizers) {
            for (k, v) in optimizer.stateDict() { optimizerState[update.name.isEmpty ? k : update.name + "." + k] = v }
        }
        // The one it replaces stays as checkpoint-STEP (a hard link, no copy), the oldest beyond the ring go.
        let keep = config.keepCheckpoints ?? 1
        if keep > 1, let previous = savedStep, previous != state.step {
            let older = folder.file(String(format: "checkpoint-%06d.safetensors", previous))
            if !FileManager.default.fileExists(atPath: older) && link(folder.checkpoint, older) != 0 {
                try FileManager.default.copyItem(atPath: folder.checkpoint, toPath: older)
            }
        }
        try Checkpoint(model: objective.model.stateDict(), ema: ema.stateDict(), optimizer: optimizerState, state: state)
            .write(to: folder.checkpoint)
        savedStep = state.step
        for (_, path) in folder.olderCheckpoints.dropFirst(keep - 1) { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The grid written during training: generated from the averaged weights and the run's fixed noise (the same
    /// every time, so that successive grids show the model improving on the same starting points); diffusion with
    /// the run's default sampler (DDIM; Euler for rectified flow). A class-conditional model draws one row per class.
    public func writeSampleGrid() throws {
        guard group.isFirst, let objective = objective as? GenerativeObjective else { return }
        var g = RandomGenerator(seed: config.seed, stream: 3)
        let classes = objective.classes
        let count = classes.map { $0 * 8 } ?? config.sampleCount
        let noise = g.normal([count] + objective.noiseShape)
        let labels = classes.map { k in (0..<count).map { $0 / 8 % k } }
        var sampler: Sampler?
        var sampling: Sampling?
        if objective is DiffusionObjective {
            sampling = config.sampling(config.defaultSampler, steps: config.sampleSteps)
            sampler = try sampling!.makeSampler()
        }
        objective.model.eval()
        defer { trainingMode() }
        let samples = ema.withAveragedWeights {
            objective.generate(from: noise, sampler: sampler, labels: labels, guidance: nil, generator: &g, observe: nil)
        }
        let name = String(format: "%@/step-%06d", folder.samples, state.step)
        if samples.rank == 4 {
            let columns = classes == nil ? Int(Double(count).squareRoot().rounded(.up)) : 8
            // How the grid was made, in the web UI's `parameters` chunk (as `diffuse sample` writes it).
            let made = GenerationParameters(settings: [
                .init("Steps", "\(sampling?.steps ?? 1)"), .init("Sampler", sampling?.webUIName ?? "one network evaluation"),
                .init("Seed", "\(config.seed)"), .init("Size", "\(samples.shape[3])x\(samples.shape[2])"),
                .init("Model", URL(fileURLWithPath: folder.path).lastPathComponent), .init("Training step", "\(state.step)"),
            ])
            try PNG.write(imageGrid(samples, columns: columns), to: name + ".png", text: [("parameters", made.text)])
        } else if samples.shape[1] == 2, case let .points(points) = data {
            let shown = points.slice(axis: 0, 0..<min(points.shape[0], 2000))
            let plot = Plot(title: "Samples at step \(state.step)", xLabel: "x₁", yLabel: "x₂",
                            series: [Plot.Series("data", points: shown), Plot.Series("samples", points: samples)])
            try writeAtomically(Data(plot.svg().utf8), to: name + ".svg")
        }
    }
}
