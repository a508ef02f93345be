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
    @Option(help: "Threads of the engine (default: the cores this process may use; under mpirun, those of its rank).")
    var threads: Int?

    func validate() throws {
        guard (runFolder == nil) != (model == nil) else {
            throw ValidationError("give either a run folder or --model FOLDER (a diffusers folder), not both or neither")
        }
        guard (count ?? 1) > 0, batchSize > 0 else { throw ValidationError("--count and --batch-size must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
        guard eta >= 0 else { throw ValidationError("--eta must not be negative") }
        if let guidance { guard guidance.isFinite else { throw ValidationError("--guidance must be a number") } }
        guard [".png", ".safetensors", ".csv", ".svg"].contains(where: { out.hasSuffix($0) }) else {
            throw ValidationError("--out must end in .png, .safetensors, .csv or .svg, got \(out)")
        }
    }

    /// What is sampled: the model, its sampler settings (diffusion only), whether guidance was trained (a null
    /// label), and its name.
    private func load() throws -> (GenerativeObjective, Sampling?, guidable: Bool, name: String, run: RunConfig?) {
        if let model {
            let folder = try DiffusersFolder(path: model)
            for warning in folder.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            guard let unet = folder.unet else {
                return (AutoencoderObjective(vae: folder.vae!, discriminator: nil, config: RunConfig()), nil, false, model, nil)
            }
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
            var settings = try Sampling(kind: sampler ?? .ddim, steps: defaultSteps(config.numTrainTimesteps ?? 1000), config: config)
            try apply(&settings)
            let u = unet.config
            var shape = [u.inChannels, u.sampleSize, u.sampleSize]
            if let vae = folder.vae {
                shape = [vae.config.outChannels, vae.config.sampleSize, vae.config.sampleSize]
                guard vae.latentShape(imageSize: shape[1]) == [u.inChannels, u.sampleSize, u.sampleSize] else {
                    throw ValidationError("\(model): the VAE's latents are \(vae.latentShape(imageSize: shape[1])), the UNet takes "
                                          + "[\(u.inChannels), \(u.sampleSize), \(u.sampleSize)]")
                }
            }
            let classes = unet.isConditional ? (u.classEmbedType == nil ? u.numClassEmbeds : nil) : nil
            if unet.isConditional && classes == nil && `class` == nil {
                throw ValidationError("\(model) is class-conditional with labels embedded like timesteps: give --class N")
            }
            // Labels embedded like timesteps are any integers: no class count bounds them (Int.max).
            let objective = DiffusionObjective(network: unet, firstStage: folder.vae, diffusion: GaussianDiffusion(),
                                               classes: unet.isConditional ? classes ?? Int.max : nil, exampleShape: shape)
            return (objective, settings, false, model, nil)
        }
        let (config, trained) = try RunFolder(runFolder!).loadObjective(averaged: !noEma)
        guard let objective = trained as? GenerativeObjective else {
            throw ValidationError("\(runFolder!) is a \(config.kind.rawValue) run: it does not generate")
        }
        guard let diffusion = objective as? DiffusionObjective else { return (objective, nil, false, runFolder!, config) }
        var settings = config.sampling(sampler ?? config.defaultSampler,
                                       steps: defaultSteps(diffusion.diffusion.schedule.timesteps))
        try apply(&settings)
        return (objective, settings, (config.labelDropout ?? 0) > 0, runFolder!, config)
    }

    /// --steps, or by default all T steps for DDPM and 50 (at most T) for the others.
    private func defaultSteps(_ T: Int) -> Int { steps ?? (sampler == .ddpm ? T : min(50, T)) }

    /// The user's choices over the model's settings.
    private func apply(_ settings: inout Sampling) throws {
        if karras { settings.sigmaSpacing = .karras }
        if let sigmas { settings.sigmaSpacing = sigmas }
        if eta != 0 {
            guard var ddim = settings.solver as? DDIM else { throw ValidationError("--eta is DDIM's (--sampler ddim)") }
            ddim.eta = eta
            settings.solver = ddim
        }
        if let variance {
            guard var ddpm = settings.solver as? DDPM else { throw ValidationError("--variance is DDPM's (--sampler ddpm)") }
            ddpm.variance = variance
            settings.solver = ddpm
        }
        if let spacing { settings.spacing = spacing }
        if let shift {
            guard settings.flow != nil, shift > 0, shift.isFinite else {
                throw ValidationError("--shift is a positive number, for rectified-flow models (trained with --objective flow)")
            }
            settings.flow!.shift = shift
        }
    }

    /// The class label of each sample (nil for an unconditional model).
    private func labels(_ classes: Int?, guidable: Bool, name: String) throws -> [Int]? {
        guard let classes else {
            if `class` != nil || guidance != nil { throw ValidationError("\(name) has no class embedding: drop --class and --guidance") }
            return nil
        }
        if guidance != nil && !guidable {
            throw ValidationError("\(name) was not trained with label dropout (no null label), so it cannot be guided: drop --guidance")
        }
        if let label = `class` {
            guard label >= 0 && label < classes else { throw ValidationError("--class must be in 0..<\(classes), got \(label)") }
            return [Int](repeating: label, count: count ?? 64)
        }
        let perClass = count ?? 8
        return (0..<(classes * perClass)).map { $0 / perClass }
    }

    func run() throws {
        try Engine.withThreads(threads ?? Engine.threads) { try inProcessGroup(sample(in:)) }
    }

    /// Samples, the batches shared out among the processes of `group` (all the same as one process'); the first
    /// process writes and prints.
    private func sample(in group: ProcessGroup) throws {
        let (objective, settings, guidable, name, runConfig) = try load()
        let chosen: Sampler?
        do { chosen = try settings?.makeSampler() } catch { throw ValidationError("\(error)") }
        if chosen == nil {
            let diffusionOnly = ["--sampler", "--steps", "--karras", "--sigmas", "--shift", "--eta", "--variance", "--spacing", "--trajectory"]
            if let flag = diffusionOnly.first(where: CommandLine.arguments.contains) {
                throw ValidationError("\(flag) is for diffusion models; \(name) generates in one network evaluation")
            }
        }
        let labels = try self.labels(objective.classes, guidable: guidable, name: name)
        let shape = objective.noiseShape

        var generator = RandomGenerator(seed: seed, stream: 7)
        let initial: Tensor
        if let noise {
            initial = try SafeTensorsFile(path: noise).tensor("noise")
            guard Array(initial.shape.dropFirst()) == shape else {
                throw ValidationError("\(noise): tensor 'noise' has shape \(initial.shape), this model needs [N, \(shape.map(String.init).joined(separator: ", "))]")
            }
            if let labels, labels.count != initial.shape[0] {
                throw ValidationError("\(noise) holds \(initial.shape[0]) noise images for \(labels.count) labelled samples")
            }
        } else {
            initial = generator.normal([labels?.count ?? count ?? 64] + shape)
        }
        let total = initial.shape[0]
        let stepsPerSample = settings?.steps ?? 1
        let progress = group.isFirst
            ? ProgressBar(total: group.itemsComputedHere(total: total, batchSize: batchSize) * stepsPerSample, label: "sample") : nil
        var states: [(Int, Tensor)] = []
        var done = 0
        let start = Date()
        // Batch k's sampler draws from its own generator, so that it is the same on whichever process runs it.
        let samples = group.shareBatches(total: total, batchSize: batchSize) { k, items in
            var batchGenerator = generator.batch(k)
            let result = objective.generate(from: initial.slice(axis: 0, items), sampler: chosen,
                                            labels: labels.map { Array($0[items]) }, guidance: guidance,
                                            generator: &batchGenerator) { i, state in
                progress?.update(done + items.count * min(i + 1, stepsPerSample))
                if k == 0 && trajectory != nil, let diffusion = objective as? DiffusionObjective {
                    states.append((i, diffusion.images(fromState: state.slice(axis: 0, 0..<min(items.count, 8)))))
                }
            }
            done += items.count * stepsPerSample
            progress?.update(done)
            return result
        }
        let seconds = Date().timeIntervalSince(start)
        guard group.isFirst else { return }
        var made: [GenerationParameters.Setting] = [
            .init("Steps", "\(settings?.steps ?? 1)"), .init("Sampler", settings?.webUIName ?? "one network evaluation"),
        ]
        if let guidance { made.append(.init("CFG scale", String(format: "%g", guidance))) }
        if let label = `class` { made.append(.init("Class", "\(label)")) }
        made.append(.init("Seed", noise == nil ? "\(seed)" : "none (noise from \((noise! as NSString).lastPathComponent))"))
        if samples.rank == 4 { made.append(.init("Size", "\(samples.shape[3])x\(samples.shape[2])")) }
        made += [.init("Model", (name as NSString).lastPathComponent), .init("Version", "Diffuse \(Diffuse.version)")]
        try write(samples, isImage: samples.rank == 4, columns: labels != nil && `class` == nil ? total / objective.classes! : nil,
                  parameters: GenerationParameters(settings: made))
        if samples.rank != 4, let runConfig { try reportDistance(samples, config: runConfig, plot: base + ".svg") }
        if let trajectory, samples.rank == 4, let diffusion = objective as? DiffusionObjective {
            let start = diffusion.images(fromState: initial.slice(axis: 0, 0..<min(total, 8)))
            try writeTrajectory([(-1, start)] + states, to: trajectory)
        }
        let evaluations = (chosen?.evaluations ?? 1) * (guidance == nil ? 1 : 2)
        print(String(format: "%d samples, %d network evaluation%@ each, in %.1f s (%.1f ms per sample) → %@", total,
                     evaluations, evaluations == 1 ? "" : "s", seconds, 1000 * seconds / Double(total), out))
        if samples.rank == 4, let runConfig, let manifold = try DataManifold(config: runConfig) {
            let (share, (fresh, noise)) = (try manifold.share(of: samples), try manifold.baselines(count: total))
            print(String(format: "like the data: %.0f%% of the %d samples lie on the manifold of %d images of %@ in pixels "
                         + "(k-NN precision; a fresh draw of the data: %.0f%%, Gaussian noise: %.0f%%)", 100 * share, total,
                         manifold.references, runConfig.data, 100 * fresh, 100 * noise))
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
