import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseReport
import DiffuseTraining
import Foundation

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train (or take) DDPM, latent diffusion, VAE and GAN runs on the same data and measure them side by side.",
        discussion: """
        With --data and --minutes, trains each model for the same wall-clock budget in --out: a class-conditional \
        DDPM (mnist-small U-Net), the same U-Net as rectified flow (--objective flow), a VAE (KL weight 1), latent \
        diffusion (a first-stage VAE with KL weight 0.01 for a third of the budget, its latent U-Net for the rest), a \
        DCGAN; plus the classifier whose features measure them (not counted in the budget). With --runs, takes \
        trained runs instead. All are trained on the first --examples images; the rest are held out for the \
        likelihood bound.

        Then measures each with `diffuse eval`'s metrics (FID, precision, recall, KID under the classifier's \
        features, against the training images; bits/dim for the DDPM; sampling time and network evaluations per \
        sample; training time and steps), and the diffusion and flow models' FID against the network evaluations of \
        every sampler they take (--grid-evaluations, trailing timesteps; plus DDPM over all T steps), or of the \
        sampler:steps points of --grid. Writes results.json and tables.md in --out; `diffuse report` turns them into \
        a report.

        Examples:
          diffuse compare --data mnist:../shared/data/mnist --minutes 15 --out runs/compare
          diffuse compare --data mnist:../shared/data/mnist --out runs/compare \\
              --runs ddpm=runs/ddpm,flow=runs/flow,latent-diffusion=runs/ldm,vae=runs/vae,gan=runs/gan \
              --classifier runs/classifier
        """)

    @Option(help: "The data (as diffuse train --data).") var data: String
    @Option(help: "Training budget per model in minutes (when training).") var minutes: Double?
    @Option(help: "Train on the first N images; the rest are held out.") var examples = 9000
    @Option(help: "Trained runs instead of training: kind=FOLDER,... with kinds ddpm, flow, latent-diffusion, vae, gan.") var runs: String?
    @Option(help: "A trained classifier run for the features (default: train one in --out).") var classifier: String?
    @Option(help: "Generated images per model for the main table.") var samples = 1000
    @Option(help: "The diffusion models' sampler for the main table.") var sampler = SamplerKind.ddim
    @Option(help: "Its steps.") var steps = 50
    @Option(help: "FID against network evaluations: these counts for every sampler a model takes.")
    var gridEvaluations = "1,2,5,10,20,50"
    @Option(help: "FID against steps at these sampler:steps points instead, e.g. ddim:10,dpm++2m:20.") var grid: String?
    @Option(help: "Generated images per point of the grid.") var gridSamples = 250
    @Option(help: "Held-out images for the DDPM's bits/dim (0: skip).") var nll = 100
    @Option(help: "Folder of cached reference features.") var cache = defaultCacheDirectory
    @Option(help: "The output folder (runs, results.json, tables.md).") var out: String

    func validate() throws {
        guard (minutes == nil) != (runs == nil) else { throw ValidationError("give either --minutes (to train) or --runs (trained runs)") }
        if let minutes { guard minutes > 0 else { throw ValidationError("--minutes must be positive") } }
        guard samples >= 4, gridSamples >= 4, steps > 0 else { throw ValidationError("--samples and --grid-samples must be at least 4") }
        _ = try (givenRuns(), gridPoints(), evaluationCounts())
    }

    /// --runs as (model, folder) pairs.
    private func givenRuns() throws -> [(ComparedModel, String)]? {
        try runs.map { text in
            try text.split(separator: ",").map { item in
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let kind = ComparedModel(rawValue: parts[0]) else {
                    throw ValidationError("--runs takes kind=FOLDER items (kinds ddpm, flow, latent-diffusion, vae, gan), got '\(item)'")
                }
                return (kind, parts[1])
            }
        }
    }

    /// --grid's points, or nil.
    private func gridPoints() throws -> [(SamplerKind, Int)]? {
        try grid.map { text in
            try text.split(separator: ",").map { item in
                let parts = item.split(separator: ":")
                guard parts.count == 2, let kind = SamplerKind(rawValue: String(parts[0])), let n = Int(parts[1]), n > 0 else {
                    throw ValidationError("--grid takes sampler:steps items separated by commas, e.g. ddim:50, got '\(item)'")
                }
                return (kind, n)
            }
        }
    }

    /// --grid-evaluations' counts.
    private func evaluationCounts() throws -> [Int] {
        try gridEvaluations.split(separator: ",").map { item in
            guard let n = Int(item), n > 0 else {
                throw ValidationError("--grid-evaluations takes positive counts separated by commas, got '\(item)'")
            }
            return n
        }
    }

    func run() throws {
        var o = ComparisonOptions(data: data, out: out)
        (o.examples, o.minutes, o.runs, o.classifier) = (examples, minutes, try givenRuns(), classifier)
        (o.samples, o.sampler, o.steps, o.gridSamples, o.nll, o.cache) = (samples, sampler, steps, gridSamples, nll, cache)
        (o.grid, o.gridEvaluations) = (try gridPoints(), try evaluationCounts())
        Interruption.install()
        let results: ComparisonResults
        do { results = try compare(o, log: { print($0) }, progress: progressBars()) }
        catch is Interruption.Stopped { throw ExitCode(130) }
        print(ReportText(language: .english).tables(results))
        print("→ \(out)/results.json, \(out)/tables.md")
    }
}
