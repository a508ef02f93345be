import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseMetrics
import DiffuseModels
import DiffuseReport
import DiffuseTraining
import Foundation

enum SamplerName: String, ExpressibleByArgument, CaseIterable {
    case ddpm, ddim
}

extension TimestepSpacing: ExpressibleByArgument {}
extension ReverseVariance: ExpressibleByArgument {}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate samples from a trained run.",
        discussion: """
        Images: --out .png writes a grid, .safetensors the raw values (tensor 'samples', [N, C, H, W]); --individual \
        writes one PNG per image too. 2D points: NAME.csv and a scatter plot over the data NAME.svg are always \
        written (plus NAME.safetensors when --out says so), and the sliced Wasserstein distance to the data is printed.

        Examples:
          diffuse sample runs/shapes --out grid.png --count 64 --sampler ddim --steps 50
          diffuse sample runs/shapes --sampler ddpm --out ddpm.png --trajectory trajectory.png
          diffuse sample runs/roll --out roll.svg --count 2000
        """)

    @Argument(help: "A run folder made by `diffuse train`.") var runFolder: String
    @Option(help: "Sampler: ddim (deterministic with --eta 0) or ddpm (ancestral, all T steps unless --steps).")
    var sampler = SamplerName.ddim
    @Option(help: "Sampling steps (default: 50 for DDIM, T for DDPM).") var steps: Int?
    @Option(help: "DDIM's η: 0 deterministic, 1 as stochastic as DDPM.") var eta: Double = 0
    @Option(help: "DDPM's reverse variance: fixed_small (β̃_t) or fixed_large (β_t).") var variance = ReverseVariance.fixedSmall
    @Option(help: "Which timesteps a sampler of fewer steps visits: leading, linspace, trailing.") var spacing = TimestepSpacing.leading
    @Option(help: "Number of samples.") var count = 64
    @Option(help: "Samples computed at once.") var batchSize = 64
    @Option(help: "Random seed of the initial noise and the sampler's noise.") var seed: UInt64 = 0
    @Option(help: "Initial noise x_T from a safetensors file (tensor 'noise', shape [N, C, H, W] or [N, D]) instead of the seed.")
    var noise: String?
    @Flag(help: "Use the trained weights instead of their moving average.") var noEma = false
    @Option(help: "Output file: .png, .safetensors, .csv or .svg.") var out = "samples.png"
    @Option(help: "Also write each image as a PNG in this folder.") var individual: String?
    @Option(help: "Also write the reverse trajectory of the first samples as an image strip (PNG).") var trajectory: String?

    func validate() throws {
        guard count > 0, batchSize > 0 else { throw ValidationError("--count and --batch-size must be positive") }
        guard eta >= 0 else { throw ValidationError("--eta must not be negative") }
        guard [".png", ".safetensors", ".csv", ".svg"].contains(where: { out.hasSuffix($0) }) else {
            throw ValidationError("--out must end in .png, .safetensors, .csv or .svg, got \(out)")
        }
    }

    func run() throws {
        let folder = RunFolder(runFolder)
        let config = try folder.readConfig()
        let checkpoint = try Checkpoint(path: folder.checkpoint)
        var initGenerator = RandomGenerator(seed: config.seed, stream: 1)
        let network = try makeNetwork(config, exampleShape: config.exampleShape, generator: &initGenerator)
        try Checkpoint.load(noEma ? checkpoint.model : checkpoint.ema.merging(checkpoint.model) { ema, _ in ema },
                            into: network, from: folder.checkpoint)
        network.eval()
        let diffusion = config.diffusion
        let T = diffusion.schedule.timesteps
        guard (steps ?? 1) >= 1 && (steps ?? 1) <= T else { throw ValidationError("--steps must be in 1...\(T)") }
        let isImage = config.exampleShape.count == 3
        let clip: Double? = isImage ? 1 : nil
        let chosen: Sampler = sampler == .ddim
            ? DDIMSampler(diffusion: diffusion, steps: steps ?? min(50, T), eta: eta, spacing: spacing, clipSample: clip)
            : DDPMSampler(diffusion: diffusion, steps: steps, spacing: spacing, variance: variance, clipSample: clip)

        var generator = RandomGenerator(seed: seed, stream: 7)
        let initial: Tensor
        if let noise {
            initial = try SafeTensorsFile(path: noise).tensor("noise")
            guard Array(initial.shape.dropFirst()) == config.exampleShape else {
                throw ValidationError("\(noise): tensor 'noise' has shape \(initial.shape), this model needs [N, \(config.exampleShape.map(String.init).joined(separator: ", "))]")
            }
        } else {
            initial = generator.normal([count] + config.exampleShape)
        }
        let total = initial.shape[0]
        let progress = ProgressBar(total: total * chosen.evaluations, label: "sample")
        let model: Denoiser = { x, t in network.predict(x, timesteps: [Int](repeating: t, count: x.shape[0]), labels: nil) }
        var batches: [Tensor] = []
        var states: [(Int, Tensor)] = []
        let start = Date()
        for first in stride(from: 0, to: total, by: batchSize) {
            let n = min(batchSize, total - first)
            let x = initial.slice(axis: 0, first..<(first + n))
            var done = 0
            let result = chosen.sample(from: x, model: model, generator: &generator) { t, state in
                done += 1
                progress.update(first * chosen.evaluations + done * n)
                if first == 0 && trajectory != nil { states.append((t, state.slice(axis: 0, 0..<min(n, 8)))) }
            }
            batches.append(result)
        }
        let samples = concat(batches, axis: 0)
        let seconds = Date().timeIntervalSince(start)
        try write(samples, isImage: isImage)
        if !isImage { try reportDistance(samples, config: config, plot: base + ".svg") }
        if let trajectory, isImage {
            try writeTrajectory([(T, initial.slice(axis: 0, 0..<min(total, 8)))] + states, to: trajectory)
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
