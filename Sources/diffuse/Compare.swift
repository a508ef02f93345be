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
        _ = try gridPoints(flow: false, trainingSteps: 1000)
    }

    /// The grid's (sampler, steps) points for a model: --grid's, or each sampler it takes at the steps that give each
    /// of --grid-evaluations (once per distinct step count), after DDPM over all T steps (not for flow).
    func gridPoints(flow: Bool, trainingSteps T: Int) throws -> [(SamplerKind, Int)] {
        if let grid {
            return try grid.split(separator: ",").map { item in
                let parts = item.split(separator: ":")
                guard parts.count == 2, let kind = SamplerKind(rawValue: String(parts[0])), let n = Int(parts[1]), n > 0 else {
                    throw ValidationError("--grid takes sampler:steps items separated by commas, e.g. ddim:50, got '\(item)'")
                }
                return (kind, n)
            }
        }
        let counts = try gridEvaluations.split(separator: ",").map { item -> Int in
            guard let n = Int(item), n > 0 else {
                throw ValidationError("--grid-evaluations takes positive counts separated by commas, got '\(item)'")
            }
            return n
        }
        let samplers = flow ? Sampling.flowSamplers : SamplerKind.allCases.filter { $0 != .ddpm }
        var points: [(SamplerKind, Int)] = flow ? [] : [(.ddpm, T)]
        for kind in samplers {
            var seen: Set<Int> = []
            for evaluations in counts {
                let steps = min(T, kind == .heun ? (evaluations + 1) / 2 : kind == .pndm ? max(1, evaluations - 1) : evaluations)
                if seen.insert(steps).inserted { points.append((kind, steps)) }
            }
        }
        return points
    }

    /// The models compared, in the report's order.
    enum Entry: String, CaseIterable {
        case ddpm, flow, latentDiffusion = "latent-diffusion", vae, gan
        var name: String {
            switch self {
            case .ddpm: "DDPM"
            case .flow: "Rectified flow"
            case .latentDiffusion: "Latent diffusion"
            case .vae: "VAE"
            case .gan: "GAN"
            }
        }
        var samplesByDiffusion: Bool { self == .ddpm || self == .flow || self == .latentDiffusion }
    }

    /// Trains a new run `name` under --out on the data (for `minutes`, else its steps), with `options` as
    /// `adjust` sets them beyond the data and its examples; returns its folder.
    @discardableResult
    func train(_ name: String, minutes: Double?, _ adjust: (inout TrainingOptions) -> Void) throws -> String {
        var options = TrainingOptions()
        (options.data, options.examples, options.steps) = (data, examples, 1_000_000)
        adjust(&options)
        let folder = RunFolder(out + "/" + name)
        let trainer = try Trainer.start(options, in: folder)
        print("== training \(trainer.summary) → \(folder.path)")
        Interruption.install()
        let outcome = try trainer.train(progress: ProgressBar(total: options.steps, label: "train"),
                                        until: minutes.map { Date().addingTimeInterval($0 * 60) })
        if case .interrupted = outcome { throw ExitCode(130) }
        return folder.path
    }

    /// The runs to measure, in the report's order, training them first when asked.
    func trainedRuns() throws -> [(Entry, String)] {
        if let runs {
            return try runs.split(separator: ",").map { item in
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let kind = Entry(rawValue: parts[0]) else {
                    throw ValidationError("--runs takes kind=FOLDER items (kinds ddpm, flow, latent-diffusion, vae, gan), got '\(item)'")
                }
                return (kind, parts[1])
            }
        }
        let budget = minutes!
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let ddpm = try train("ddpm", minutes: budget) { ($0.conditional, $0.preset) = (true, "mnist-small") }
        let flow = try train("flow", minutes: budget) { ($0.objective, $0.conditional, $0.preset) = (.flow, true, "mnist-small") }
        let vae = try train("vae", minutes: budget) { ($0.model, $0.batchSize) = (.vae, 64) }
        let firstStage = try train("first-stage", minutes: budget / 3) { ($0.model, $0.klWeight, $0.batchSize) = (.vae, 0.01, 64) }
        let latent = try train("latent-diffusion", minutes: budget * 2 / 3) {
            ($0.model, $0.autoencoder, $0.batchSize) = (.latentDiffusion, firstStage, 64)
        }
        let gan = try train("gan", minutes: budget) { ($0.model, $0.batchSize) = (.gan, 64) }
        return [(.ddpm, ddpm), (.flow, flow), (.latentDiffusion, latent), (.vae, vae), (.gan, gan)]
    }

    func run() throws {
        let models = try trainedRuns()
        var classifierRun = classifier
        if classifierRun == nil {
            classifierRun = out + "/classifier"
            if !FileManager.default.fileExists(atPath: classifierRun! + "/checkpoint.safetensors") {
                try train("classifier", minutes: nil) { ($0.model, $0.steps, $0.batchSize, $0.sampleEvery) = (.classifier, 2000, 64, 0) }
            }
        }
        let network = try ClassifierFeatures(run: classifierRun!)
        let first = try RunFolder(models[0].1).readConfig()
        let (train, heldOut, dataName) = try referenceImages(first)
        let bar = ProgressBar(total: train.count, label: "reference")
        let reference = try ReferenceFeatures(images: train.images, data: dataName, examples: "0..<\(train.count)",
                                              caption: train.caption, network: network,
                                              cacheDirectory: cache) { bar.update($0) }

        var rows: [ModelResult] = [], stepRows: [StepResult] = []
        for (kind, folder) in models {
            let config = try RunFolder(folder).readConfig()
            guard config.data == first.data, config.examples == first.examples else {
                throw ValidationError("\(folder) trained on \(config.data) (examples \(config.examples.map(String.init) ?? "all")), "
                                      + "\(models[0].1) on \(first.data) (examples \(first.examples.map(String.init) ?? "all")): compare like with like")
            }
            let name = kind.name
            var settings = EvaluationSettings()
            (settings.samples, settings.sampler, settings.steps) = (samples, kind == .flow ? config.defaultSampler : sampler, steps)
            settings.nllImages = kind == .ddpm ? nll : 0
            print("== \(name): \(folder)")
            let e = try evaluate(run: folder, network: network, reference: reference, settings: settings, heldOut: heldOut?.images,
                                 progress: progressBars())
            print(summary(e))
            rows.append(ModelResult(name: name, kind: kind.rawValue,
                                    run: ComparisonResults.recorded(run: folder, resultsFolder: out), parameters: e.parameters,
                                    trainingSeconds: e.trainingSeconds, trainingSteps: e.trainingSteps, sampler: e.sampler,
                                    steps: e.steps, evaluationsPerSample: e.evaluationsPerSample, secondsPerSample: e.secondsPerSample,
                                    samples: e.quality.samples, fid: e.quality.fid, precision: e.quality.precision,
                                    recall: e.quality.recall, kid: e.quality.kid, kidStd: e.quality.kidStd,
                                    sharpness: e.quality.sharpness, referenceSharpness: e.quality.referenceSharpness,
                                    bitsPerDim: e.bitsPerDim, nllImages: e.nllImages))
            guard kind.samplesByDiffusion else { continue }
            for (gridSampler, gridSteps) in try gridPoints(flow: kind == .flow, trainingSteps: config.timesteps)
            where kind != .flow || Sampling.flowSamplers.contains(gridSampler) {
                var s = EvaluationSettings()
                (s.samples, s.sampler, s.steps, s.spacing) = (gridSamples, gridSampler, gridSteps, .trailing)
                print("== \(name): \(gridSampler.rawValue), \(gridSteps) steps")
                let g = try evaluate(run: folder, network: network, reference: reference, settings: s, progress: progressBars())
                print(String(format: "  FID %.3f, %.1f ms per sample", g.quality.fid, 1000 * g.secondsPerSample))
                stepRows.append(StepResult(model: name, sampler: gridSampler.rawValue, steps: gridSteps,
                                           evaluationsPerSample: g.evaluationsPerSample, secondsPerSample: g.secondsPerSample,
                                           samples: gridSamples, fid: g.quality.fid))
            }
        }
        let results = ComparisonResults(data: train.caption, budgetMinutes: minutes, machine: Engine.machineDescription,
                                        featureNetwork: network.name, resize: network.resize, reference: reference.description,
                                        models: rows, steps: stepRows)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try results.write(to: out + "/results.json")
        let tables = ReportText(language: .english).tables(results)
        try writeAtomically(Data(tables.utf8), to: out + "/tables.md")
        print(tables)
        print("→ \(out)/results.json, \(out)/tables.md")
    }
}
