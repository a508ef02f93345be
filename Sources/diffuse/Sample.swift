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
extension SigmaSpacing: ExpressibleByArgument {}

/// Every sampler with a line on when to use it, for --help.
let samplerGuide = SamplerKind.allCases.map { "  \($0.rawValue.padding(toLength: 16, withPad: " ", startingAt: 0))\($0.advice)" }
    .joined(separator: "\n")

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate samples from a trained run or a diffusers model folder.",
        discussion: """
        The model: a run folder made by `diffuse train` (a diffusion, latent diffusion, VAE or GAN run), or with \
        --model a Hugging Face diffusers folder: a pipeline (model_index.json, unet/, scheduler/, and vae/ for latent \
        diffusion), a bare UNet2DModel folder (config.json and diffusion_pytorch_model.safetensors, possibly sharded) \
        or a bare AutoencoderKL folder (sampled as a VAE). A pipeline's scheduler_config.json sets the noise schedule, \
        prediction type, clipping and spacing, as diffusers' `Sampler.from_config(pipeline.scheduler.config)`; a bare \
        UNet takes them from --schedule, --beta-start, --beta-end, --train-timesteps and --prediction.

        Samplers (each steps like the diffusers scheduler of the same name, and matches it given the same noise; \
        ipndm like k-diffusion's sample_ipndm):
        \(samplerGuide)

        --sigmas respaces the noise levels of the σ-based samplers (all but ddpm, ddim, pndm and euler-ancestral): \
        karras (Karras et al., ρ = 7; --karras for short), exponential (uniform in log σ), edm (Karras' spacing over \
        EDM's σ ∈ [0.002, 80]) or ays (Align Your Steps, Stable Diffusion 1.5's ten steps, interpolated). A VAE \
        decodes z ~ N(0, I) and a GAN generates from z, in one network evaluation: the sampler options are for \
        diffusion models only.

        A class-conditional model draws one row per class (--count images each, default 8), or --class N only; \
        --guidance W applies classifier-free guidance ε_∅ + W·(ε_c − ε_∅) (for models trained with label dropout).

        Images: --out .png writes a grid, .safetensors the raw values (tensor 'samples', [N, C, H, W]); --individual \
        writes one PNG per image too. For a run on the built-in shapes, the share of the samples that lie on the \
        data's manifold in pixels is printed (k-NN precision over 5000 shapes), beside that of a fresh draw of the \
        data and of noise. 2D points: NAME.csv and a scatter plot over the data NAME.svg are always \
        written (plus NAME.safetensors when --out says so), and the sliced Wasserstein distance to the data is printed.
        Batch k's sampler draws from a generator of its own (seed, then batch), so that started by mpirun, the \
        processes share out the batches and rank 0 writes what one process would.

        Examples:
          diffuse sample runs/shapes --out grid.png --count 64 --sampler ddim --steps 50
          diffuse sample runs/mnist --sampler dpm++2m --karras --steps 20 --out mnist.png
          diffuse sample runs/mnist --sampler unipc --steps 8 --out mnist-8.png
          diffuse sample runs/mnist-cond --guidance 2 --out digits.png
          diffuse sample runs/vae --out vae.png
          diffuse sample --model ./ddpm-cifar10-32 --sampler heun --steps 25 --count 16 --out cifar.png
          diffuse sample runs/roll --out roll.svg --count 2000
        """)

    @Argument(help: "A run folder made by `diffuse train` (or give --model).") var runFolder: String?
    @Option(help: ArgumentHelp("A diffusers pipeline, UNet2DModel or AutoencoderKL folder instead of a run.", valueName: "folder"))
    var model: String?
    @Option(help: "Sampler: \(SamplerKind.allCases.map(\.rawValue).joined(separator: ", ")) (default ddim; euler for flow models).")
    var sampler: SamplerKind?
    @Option(help: "Sampling steps (default: T for ddpm, 50 for the others).") var steps: Int?
    @Option(help: "σ spacing of the σ-based samplers: discrete (the model's timesteps), karras, exponential, edm, ays.")
    var sigmas: SigmaSpacing?
    @Flag(help: "Karras et al.'s σ spacing: --sigmas karras.") var karras = false
    @Option(help: "Rectified-flow models: the schedule's shift (default: the run's).") var shift: Double?
    @Option(help: "DDIM's η: 0 deterministic, 1 as stochastic as DDPM.") var eta: Double = 0
    @Option(help: "DDPM's reverse variance: fixed_small (β̃_t) or fixed_large (β_t) (default: the model's).") var variance: ReverseVariance?
    @Option(help: "Which timesteps a sampler of fewer steps visits: leading, linspace, trailing (default: the model's).")
    var spacing: TimestepSpacing?
    @Option(help: "Class label of every sample, for a class-conditional model (default: one row per class).") var `class`: Int?
    @Option(help: "Classifier-free guidance scale W (1: the conditional model; default: no guidance).") var guidance: Double?
    @Option(help: "For a bare UNet folder: the noise schedule (default linear).") var schedule: BetaSchedule?
    @Option(help: "For a bare UNet folder: β_1 and β_T (defaults 1e-4, 0.02).") var betaStart: Double?
    @Option(help: "For a bare UNet folder: β_T (default 0.02).") var betaEnd: Double?
    @Option(help: "For a bare UNet folder: T (default 1000).") var trainTimesteps: Int?
    @Option(help: "For a bare UNet folder: what it predicts, epsilon, sample or v_prediction (default epsilon).")
    var prediction: Prediction?
    @Option(help: "Number of samples (per class for a class-conditional model without --class; default 64, or 8 per class).")
    var count: Int?
    @Option(help: "Samples computed at once.") var batchSize = 64
    @Option(help: "Random seed of the initial noise and the sampler's noise.") var seed: UInt64 = 0
    @Option(help: "Initial noise (x_T, or z) from a safetensors file (tensor 'noise', shape [N, ...]) instead of the seed.")
    var noise: String?
    @Flag(help: "For a run: use the trained weights instead of their moving average.") var noEma = false
    @Option(help: "Output file: .png, .safetensors, .csv or .svg.") var out = "samples.png"
    @Option(help: "Also write each image as a PNG in this folder.") var individual: String?
    @Option(help: "Also write the reverse trajectory of the first samples as an image strip (PNG; diffusion only).") var trajectory: String?
    @OptionGroup var engine: EngineThreads

    func validate() throws {
        guard (runFolder == nil) != (model == nil) else {
            throw ValidationError("give either a run folder or --model FOLDER (a diffusers folder), not both or neither")
        }
        guard (count ?? 1) > 0, batchSize > 0 else { throw ValidationError("--count and --batch-size must be positive") }
        guard eta >= 0 else { throw ValidationError("--eta must not be negative") }
        if let guidance { guard guidance.isFinite else { throw ValidationError("--guidance must be a number") } }
        guard [".png", ".safetensors", ".csv", ".svg"].contains(where: { out.hasSuffix($0) }) else {
            throw ValidationError("--out must end in .png, .safetensors, .csv or .svg, got \(out)")
        }
    }

    func run() throws {
        try engine.scope { try inProcessGroup(sample(in:)) }
    }

    /// The model to sample from.
    private func load() throws -> SampleModel {
        guard let model else { return try SampleModel(run: runFolder!, averaged: !noEma) }
        let bare = schedule != nil || betaStart != nil || betaEnd != nil || trainTimesteps != nil || prediction != nil
        var scheduler = SchedulerConfig()
        (scheduler.betaSchedule, scheduler.betaStart, scheduler.betaEnd) = (schedule?.rawValue, betaStart, betaEnd)
        (scheduler.numTrainTimesteps, scheduler.predictionType) = (trainTimesteps, prediction?.rawValue)
        let loaded = try SampleModel(diffusers: model, scheduler: bare ? scheduler : nil, label: `class`)
        loaded.warnings.forEach(printWarning)
        return loaded
    }

    /// The options, as the library takes them.
    private func options() throws -> SampleOptions {
        var o = SampleOptions()
        (o.sampler, o.steps, o.sigmas, o.spacing, o.eta, o.variance, o.shift) =
            (sampler, steps, karras ? .karras : sigmas, spacing, eta, variance, shift)
        (o.label, o.guidance, o.count, o.batchSize, o.seed, o.trajectory) = (`class`, guidance, count, batchSize, seed, trajectory != nil)
        if let noise {
            o.noise = try SafeTensorsFile(path: noise).tensor("noise")
            o.noiseSource = (noise as NSString).lastPathComponent
        }
        return o
    }

    /// Samples, the batches shared out among the processes of `group` (all the same as one process'); the first
    /// process writes and prints.
    private func sample(in group: ProcessGroup) throws {
        let model = try load()
        let bars = progressBars()
        let made = try DiffuseTraining.sample(model, try options(), group: group) { done, total in
            if group.isFirst { bars("sample", done, total) }
        }
        guard group.isFirst else { return }
        let samples = made.values, total = samples.shape[0]
        var parameters = made.parameters
        parameters.settings.append(.init("Version", "Diffuse \(Diffuse.version)"))
        let classes = model.objective.classes
        try write(samples, isImage: samples.rank == 4,
                  columns: classes != nil && `class` == nil ? total / classes! : nil,
                  parameters: parameters)
        if samples.rank != 4, let run = model.run { try reportDistance(samples, config: run, plot: base + ".svg") }
        if let trajectory, samples.rank == 4, !made.trajectory.isEmpty { try writeTrajectory(made.trajectory, to: trajectory) }
        print(String(format: "%d samples, %d network evaluation%@ each, in %.1f s (%.1f ms per sample) → %@", total,
                     made.evaluations, made.evaluations == 1 ? "" : "s", made.seconds, 1000 * made.seconds / Double(total), out))
        if samples.rank == 4, let run = model.run, let manifold = try DataManifold(config: run) {
            let (share, (fresh, noise)) = (try manifold.share(of: samples), try manifold.baselines(count: total))
            print(String(format: "like the data: %.0f%% of the %d samples lie on the manifold of %d images of %@ in pixels "
                         + "(k-NN precision; a fresh draw of the data: %.0f%%, Gaussian noise: %.0f%%)", 100 * share, total,
                         manifold.references, run.data, 100 * fresh, 100 * noise))
        }
    }

    /// The output path without its extension.
    private var base: String { (out as NSString).deletingPathExtension }

    /// Writes the samples as --out says; PNGs carry `parameters` (how they were made) in a text chunk.
    private func write(_ samples: Tensor, isImage: Bool, columns: Int?, parameters: GenerationParameters) throws {
        let text = [("parameters", parameters.text)]
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
            try PNG.write(imageGrid(samples, columns: columns ?? Int(Double(samples.shape[0]).squareRoot().rounded(.up))), to: out,
                          text: text)
        }
        if let individual, isImage {
            try FileManager.default.createDirectory(atPath: individual, withIntermediateDirectories: true)
            for i in 0..<samples.shape[0] {
                try PNG.write(samples.slice(axis: 0, i..<(i + 1)).reshaped(Array(samples.shape.dropFirst())),
                              to: String(format: "%@/%05d.png", individual, i), text: text)
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
            let figure = Plot(title: "\(samples.shape[0]) samples (\((sampler ?? .ddim).rawValue))", xLabel: "x₁", yLabel: "x₂",
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
