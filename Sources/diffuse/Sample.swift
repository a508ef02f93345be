import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseMetrics
import DiffuseModels
import DiffuseReport
import DiffuseTraining
import Foundation

extension SamplerKind: ExpressibleByArgument {}
extension TimestepSpacing: ExpressibleByArgument {}
extension ReverseVariance: ExpressibleByArgument {}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate samples from a trained run or a diffusers model folder.",
        discussion: """
        The model: a run folder made by `diffuse train`, or with --model a Hugging Face diffusers folder, either a \
        pipeline (model_index.json, unet/, scheduler/) or a bare UNet2DModel folder (config.json and \
        diffusion_pytorch_model.safetensors, possibly sharded). A pipeline's scheduler_config.json sets the noise \
        schedule, prediction type, clipping and spacing, as diffusers' `Sampler.from_config(pipeline.scheduler.config)`; \
        a bare UNet takes them from --schedule, --beta-start, --beta-end, --train-timesteps and --prediction.

        Samplers (each steps like the diffusers scheduler of the same name, and matches it given the same noise): \
        ddpm, ddim (--eta), dpm++2m, dpm++2m-sde, euler, euler-ancestral, heun (two network evaluations a step); \
        --karras spaces the σ of dpm++2m, euler and heun as Karras et al.

        Images: --out .png writes a grid, .safetensors the raw values (tensor 'samples', [N, C, H, W]); --individual \
        writes one PNG per image too. 2D points: NAME.csv and a scatter plot over the data NAME.svg are always \
        written (plus NAME.safetensors when --out says so), and the sliced Wasserstein distance to the data is printed.

        Examples:
          diffuse sample runs/shapes --out grid.png --count 64 --sampler ddim --steps 50
          diffuse sample runs/mnist --sampler dpm++2m --karras --steps 20 --out mnist.png
          diffuse sample --model ./ddpm-cifar10-32 --sampler heun --steps 25 --count 16 --out cifar.png
          diffuse sample runs/roll --out roll.svg --count 2000
        """)

    @Argument(help: "A run folder made by `diffuse train` (or give --model).") var runFolder: String?
    @Option(help: ArgumentHelp("A diffusers pipeline or UNet2DModel folder instead of a run.", valueName: "folder"))
    var model: String?
    @Option(help: "Sampler: \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", ")).") var sampler = SamplerKind.ddim
    @Option(help: "Sampling steps (default: T for ddpm, 50 for the others).") var steps: Int?
    @Flag(help: "Karras et al.'s σ spacing (dpm++2m, dpm++2m-sde, euler, heun).") var karras = false
    @Option(help: "DDIM's η: 0 deterministic, 1 as stochastic as DDPM.") var eta: Double = 0
    @Option(help: "DDPM's reverse variance: fixed_small (β̃_t) or fixed_large (β_t) (default: the model's).") var variance: ReverseVariance?
    @Option(help: "Which timesteps a sampler of fewer steps visits: leading, linspace, trailing (default: the model's).")
    var spacing: TimestepSpacing?
    @Option(help: "Class label of every sample, for a class-conditional model.") var `class`: Int?
    @Option(help: "For a bare UNet folder: the noise schedule (default linear).") var schedule: BetaSchedule?
    @Option(help: "For a bare UNet folder: β_1 and β_T (defaults 1e-4, 0.02).") var betaStart: Double?
    @Option(help: "For a bare UNet folder: β_T (default 0.02).") var betaEnd: Double?
    @Option(help: "For a bare UNet folder: T (default 1000).") var trainTimesteps: Int?
    @Option(help: "For a bare UNet folder: what it predicts, epsilon, sample or v_prediction (default epsilon).")
    var prediction: Prediction?
    @Option(help: "Number of samples.") var count = 64
    @Option(help: "Samples computed at once.") var batchSize = 64
    @Option(help: "Random seed of the initial noise and the sampler's noise.") var seed: UInt64 = 0
    @Option(help: "Initial noise x_T from a safetensors file (tensor 'noise', shape [N, C, H, W] or [N, D]) instead of the seed.")
    var noise: String?
    @Flag(help: "For a run: use the trained weights instead of their moving average.") var noEma = false
    @Option(help: "Output file: .png, .safetensors, .csv or .svg.") var out = "samples.png"
    @Option(help: "Also write each image as a PNG in this folder.") var individual: String?
    @Option(help: "Also write the reverse trajectory of the first samples as an image strip (PNG).") var trajectory: String?

    func validate() throws {
        guard (runFolder == nil) != (model == nil) else {
            throw ValidationError("give either a run folder or --model FOLDER (a diffusers folder), not both or neither")
        }
        guard count > 0, batchSize > 0 else { throw ValidationError("--count and --batch-size must be positive") }
        guard eta >= 0 else { throw ValidationError("--eta must not be negative") }
        guard [".png", ".safetensors", ".csv", ".svg"].contains(where: { out.hasSuffix($0) }) else {
            throw ValidationError("--out must end in .png, .safetensors, .csv or .svg, got \(out)")
        }
    }

    /// The network, the sampler settings and the shape of one sample, from a run or a diffusers folder.
    private func load() throws -> (DenoisingNetwork, Sampling, [Int], conditional: Bool, name: String) {
        if let model {
            let folder = try DiffusersFolder(path: model)
            for warning in folder.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            var config = folder.scheduler ?? SchedulerConfig()
            if folder.scheduler == nil {
                config.betaSchedule = schedule?.rawValue
                config.betaStart = betaStart
                config.betaEnd = betaEnd
                config.numTrainTimesteps = trainTimesteps
                config.predictionType = prediction?.rawValue
            } else if schedule != nil || betaStart != nil || betaEnd != nil || trainTimesteps != nil || prediction != nil {
                throw ValidationError("--schedule, --beta-start, --beta-end, --train-timesteps and --prediction are for a bare "
                                      + "UNet folder; this pipeline's scheduler_config.json sets them")
            }
            let T = config.numTrainTimesteps ?? 1000
            var settings = try Sampling(kind: sampler, steps: steps ?? (sampler == .ddpm ? T : min(50, T)), config: config)
            apply(&settings)
            let u = folder.unet.config
            return (folder.unet, settings, [u.inChannels, u.sampleSize, u.sampleSize], folder.unet.isConditional, model)
        }
        let folder = RunFolder(runFolder!)
        let config = try folder.readConfig()
        let checkpoint = try Checkpoint(path: folder.checkpoint)
        var initGenerator = RandomGenerator(seed: config.seed, stream: 1)
        let network = try makeNetwork(config, exampleShape: config.exampleShape, generator: &initGenerator)
        try Checkpoint.load(noEma ? checkpoint.model : checkpoint.ema.merging(checkpoint.model) { ema, _ in ema },
                            into: network, from: folder.checkpoint)
        let T = config.diffusion.schedule.timesteps
        let isImage = config.exampleShape.count == 3
        var settings = Sampling(kind: sampler, steps: steps ?? (sampler == .ddpm ? T : min(50, T)),
                                diffusion: config.diffusion, clip: isImage ? 1 : nil)
        apply(&settings)
        return (network, settings, config.exampleShape, (network as? UNet2DModel)?.isConditional ?? false, runFolder!)
    }

    /// The user's choices over the model's settings.
    private func apply(_ settings: inout Sampling) {
        if karras { settings.karras = true }
        settings.eta = eta
        if let variance { settings.variance = variance }
        if let spacing { settings.spacing = spacing }
    }

    func run() throws {
        let (network, settings, shape, conditional, name) = try load()
        let chosen: Sampler
        do { chosen = try settings.makeSampler() } catch { throw ValidationError("\(error)") }
        network.eval()
        if conditional && `class` == nil { throw ValidationError("\(name) is class-conditional: give --class N") }
        if !conditional && `class` != nil { throw ValidationError("\(name) has no class embedding: drop --class") }
        let isImage = shape.count == 3

        var generator = RandomGenerator(seed: seed, stream: 7)
        let initial: Tensor
        if let noise {
            initial = try SafeTensorsFile(path: noise).tensor("noise")
            guard Array(initial.shape.dropFirst()) == shape else {
                throw ValidationError("\(noise): tensor 'noise' has shape \(initial.shape), this model needs [N, \(shape.map(String.init).joined(separator: ", "))]")
            }
        } else {
            initial = generator.normal([count] + shape)
        }
        let total = initial.shape[0]
        let progress = ProgressBar(total: total * chosen.evaluations, label: "sample")
        let label = `class`
        var batches: [Tensor] = []
        var states: [(Int, Tensor)] = []
        let start = Date()
        for first in stride(from: 0, to: total, by: batchSize) {
            let n = min(batchSize, total - first)
            let x = initial.slice(axis: 0, first..<(first + n))
            var done = 0
            let model: Denoiser = { x, t in
                done += 1
                progress.update(first * chosen.evaluations + done * n)
                return network.predict(x, timesteps: [Double](repeating: t, count: x.shape[0]),
                                       labels: label.map { [Int](repeating: $0, count: x.shape[0]) })
            }
            let result = chosen.sample(from: x, model: model, generator: &generator) { i, state in
                if first == 0 && trajectory != nil { states.append((i, state.slice(axis: 0, 0..<min(n, 8)))) }
            }
            batches.append(result)
        }
        let samples = concat(batches, axis: 0)
        let seconds = Date().timeIntervalSince(start)
        try write(samples, isImage: isImage)
        if !isImage, let runFolder { try reportDistance(samples, config: RunFolder(runFolder).readConfig(), plot: base + ".svg") }
        if let trajectory, isImage {
            try writeTrajectory([(-1, initial.slice(axis: 0, 0..<min(total, 8)))] + states, to: trajectory)
        }
        print(String(format: "%d samples, %d network evaluations each, in %.1f s (%.1f ms per sample) → %@", total,
                     chosen.evaluations, seconds, 1000 * seconds / Double(total), out))
    }

    /// The output path without its extension.
    private var base: String { (out as NSString).deletingPathExtension }

    private func write(_ samples: Tensor, isImage: Bool) throws {
        if out.hasSuffix(".safetensors") {
            try SafeTensorsFile.write(["samples": samples], to: out)
        } else if !isImage {
            // 2D points: the values as CSV and, beside them, a scatter plot over the data (written by reportDistance).
            let d = samples.count / samples.shape[0], p = samples.storage.pointer
            let rows = (0..<samples.shape[0]).map { i in (0..<d).map { String(p[i * d + $0]) }.joined(separator: ",") }
            try writeAtomically(Data((rows.joined(separator: "\n") + "\n").utf8), to: base + ".csv")
        } else if out.hasSuffix(".csv") || out.hasSuffix(".svg") {
            throw ValidationError("images are written as .png or .safetensors, not \(out)")
        } else {
            try PNG.write(imageGrid(samples, columns: Int(Double(samples.shape[0]).squareRoot().rounded(.up))), to: out)
        }
        if let individual, isImage {
            try FileManager.default.createDirectory(atPath: individual, withIntermediateDirectories: true)
            for i in 0..<samples.shape[0] {
                try PNG.write(samples.slice(axis: 0, i..<(i + 1)).reshaped(Array(samples.shape.dropFirst())),
                              to: String(format: "%@/%05d.png", individual, i))
            }
        }
    }

    /// For 2D models: the sliced Wasserstein distance of the samples to the training data, beside that of a fresh
    /// draw of the data (what a perfect model would score with this many points).
    private func reportDistance(_ samples: Tensor, config: RunConfig, plot: String?) throws {
        var c = config
        c.examples = samples.shape[0]
        guard case let .points(data) = try loadTrainingData(c) else { return }
        if let plot, samples.shape[1] == 2 {
            let figure = Plot(title: "\(samples.shape[0]) samples (\(sampler.rawValue))", xLabel: "x₁", yLabel: "x₂",
                              series: [Plot.Series("data", points: data), Plot.Series("samples", points: samples)])
            try writeAtomically(Data(figure.svg().utf8), to: plot)
        }
        c.seed &+= 1
        guard case let .points(fresh) = try loadTrainingData(c) else { return }
        print(String(format: "sliced Wasserstein-2 to the data: %.4f (a fresh draw of the data: %.4f)",
                     slicedWasserstein(samples, data), slicedWasserstein(fresh, data)))
    }

    /// One row per sample (up to 8): x_T, then evenly spaced states of the reverse process, ending at x_0.
    private func writeTrajectory(_ states: [(Int, Tensor)], to path: String) throws {
        let rows = (0..<states[0].1.shape[0]).map { trajectoryStrip(states: states, frames: 10, sample: $0) }
        try PNG.write(stackedRows(rows), to: path)
    }
}
