import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseModels
import DiffuseTraining
import Foundation

extension BetaSchedule: ExpressibleByArgument {}
extension Prediction: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a denoising diffusion model.",
        discussion: """
        Writes a run folder (--out): config.json, checkpoint.safetensors (weights, EMA weights, optimizer state, step, \
        random state), log.csv (loss and throughput per step) and samples/step-N.png grids. Ctrl-C saves a checkpoint \
        and stops; `--resume` continues the run exactly where it stopped.

        Examples:
          diffuse train --data shapes --out runs/shapes --steps 2000
          diffuse train --data mnist:../shared/data/mnist --preset mnist-small --minutes 15 --out runs/mnist
          diffuse train --data swiss-roll --out runs/roll --steps 3000
          diffuse train --out runs/shapes --resume
        """)

    @Option(help: "Data: shapes (built-in images), swiss-roll, two-moons, 8-gaussians, checkerboard (2D), mnist:DIR, an IDX images file, cifar10:DIR, folder:DIR (PNGs, needs --image-size).")
    var data = "shapes"
    @Option(help: "Resize and centre-crop images to this size (default: as they are; 32 for shapes).") var imageSize: Int?
    @Option(help: "Use this many examples (default: 10,000 generated for built-in sets, all of a file's).") var examples: Int?
    @Option(help: "U-Net preset for image data: tiny, small, mnist-small, cifar-ddpm (image size and channels follow the data).")
    var preset = "small"
    @Option(help: "U-Net widths per level, e.g. 32,64,128 (overrides the preset's).") var channels: String?
    @Option(help: "Hidden widths of the MLP for 2D data, e.g. 128,128,128.") var hidden = "128,128,128"
    @Option(help: "Noise schedule: linear, scaled_linear, squaredcos_cap_v2 (cosine), sigmoid.") var schedule = BetaSchedule.linear
    @Option(help: "Diffusion timesteps T.") var timesteps = 1000
    @Option(help: "What the network predicts: epsilon, sample, v_prediction.") var prediction = Prediction.epsilon
    @Option(help: "Min-SNR-γ loss weighting (e.g. 5); off by default.") var minSnrGamma: Double?
    @Option(help: "Optimizer steps.") var steps = 2000
    @Option(help: "Stop after this many minutes (a checkpoint is written), whatever --steps says.") var minutes: Double?
    @Option(help: "Examples per step.") var batchSize = 32
    @Option(help: "Peak learning rate of AdamW.") var learningRate: Float = 1e-3
    @Option(help: "Linear warm-up steps before the cosine decay.") var warmup = 100
    @Option(help: "Decay of the weights' exponential moving average.") var emaDecay: Float = 0.999
    @Option(help: "Clip gradients to this global norm (0: off).") var gradClip: Float = 1
    @Option(help: "Dropout in the U-Net's ResNet blocks.") var dropout: Double = 0
    @Option(help: "Random seed: the same seed gives the same run.") var seed: UInt64 = 0
    @Option(help: "Write a sample grid every this many steps.") var sampleEvery = 500
    @Option(help: "Write a checkpoint every this many steps.") var checkpointEvery = 250
    @Option(help: "The run folder.") var out = "runs/latest"
    @Flag(help: "Continue the run in --out from its checkpoint (its settings are kept; --steps may extend it).") var resume = false

    func run() throws {
        let folder = RunFolder(out)
        var config: RunConfig
        if resume {
            config = try folder.readConfig()
            if CommandLine.arguments.contains("--steps") { config.steps = steps }
        } else {
            guard !FileManager.default.fileExists(atPath: folder.checkpoint) else {
                throw ValidationError("\(out) already holds a run: add --resume to continue it, or choose another --out")
            }
            config = try makeConfig()
        }
        let data = try loadTrainingData(config)
        if !resume {
            switch data {
            case let .images(images): config.unet = try unetConfig(channels: images.channels, size: images.height)
            case .points: config.sampleCount = 1000  // a scatter plot needs many points
            }
        }
        let trainer = try DiffusionTrainer(config: config, data: data, folder: folder, resume: resume)
        let kind = config.unet == nil ? "MLP denoiser" : "U-Net"
        print("\(resume ? "resuming" : "training") a \(kind) of \(trainer.network.parameterCount) parameters on \(config.data) "
              + "(\(data.count) examples) for \(config.steps) steps, batch \(config.batchSize) → \(out)")
        Interruption.install()
        let progress = ProgressBar(total: config.steps, label: "train", startingAt: trainer.state.step)
        let deadline = minutes.map { Date().addingTimeInterval($0 * 60) }
        let outcome = try trainer.train(progress: progress, until: deadline)
        switch outcome {
        case .finished:
            print("done: \(trainer.state.step) steps; samples in \(folder.samples), checkpoint \(folder.checkpoint)")
        case let .interrupted(step):
            progress.finishLine()
            print("stopped at step \(step); checkpoint written. Continue with: diffuse train --out \(out) --resume")
            if Interruption.requested { throw ExitCode(130) }
        }
    }

    private func makeConfig() throws -> RunConfig {
        var c = RunConfig()
        c.data = try DataSource(parsing: data).description
        c.imageSize = imageSize
        c.examples = examples
        c.mlpHidden = try parseList(hidden, "--hidden")
        c.schedule = schedule
        c.timesteps = timesteps
        c.prediction = prediction
        c.minSNRGamma = minSnrGamma
        c.steps = steps
        c.batchSize = batchSize
        c.learningRate = learningRate
        c.warmup = warmup
        c.emaDecay = emaDecay
        c.gradientClip = gradClip > 0 ? gradClip : nil
        c.seed = seed
        c.sampleEvery = sampleEvery
        c.checkpointEvery = checkpointEvery
        try c.validate()
        return c
    }

    /// The preset's U-Net with the data's image size and channels.
    private func unetConfig(channels inChannels: Int, size: Int) throws -> UNet2DConfig {
        var u: UNet2DConfig
        switch preset {
        case "mnist-small", "small": u = .mnistSmall
        case "cifar-ddpm": u = .cifarDDPM
        case "tiny":
            u = .mnistSmall
            u.blockOutChannels = [16, 32, 64]
            u.normNumGroups = 8
        default: throw ValidationError("unknown --preset \(preset): use tiny, small, mnist-small or cifar-ddpm")
        }
        if let channels { u.blockOutChannels = try parseList(channels, "--channels") }
        guard u.blockOutChannels.count == u.downBlockTypes.count else {
            throw ValidationError("--channels needs \(u.downBlockTypes.count) widths for the \(preset) preset")
        }
        let levels = u.blockOutChannels.count - 1
        guard size % (1 << levels) == 0 || preset != "cifar-ddpm" else {
            throw ValidationError("images of \(size)×\(size) do not halve \(levels) times")
        }
        u.sampleSize = size
        u.inChannels = inChannels
        u.outChannels = inChannels
        u.dropout = dropout
        return u
    }
}

/// "32,64,128" → [32, 64, 128]
func parseList(_ text: String, _ option: String) throws -> [Int] {
    let values = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
        throw ValidationError("\(option) takes positive integers separated by commas, got '\(text)'")
    }
    return values.map { $0! }
}
