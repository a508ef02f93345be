import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseReport
import Foundation

/// The models a comparison measures, in the report's order.
public enum ComparedModel: String, CaseIterable, Sendable {
    case ddpm, flow, latentDiffusion = "latent-diffusion", vae, gan

    public var name: String {
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

/// What `diffuse compare` asks: the runs (trained here for `minutes` each, or given), how to measure them, and the
/// folder of the results.
public struct ComparisonOptions: Sendable {
    /// The data (as `TrainingOptions.data`), of which the first `examples` images train and the rest are held out.
    public var data: String
    public var examples = 9000
    /// The training budget per model, in minutes; or the trained runs.
    public var minutes: Double?
    public var runs: [(ComparedModel, String)]?
    /// A trained classifier run for the features (nil: train one in `out`).
    public var classifier: String?
    /// The main table: samples per model, and the diffusion models' sampler and steps.
    public var samples = 1000
    public var sampler = SamplerKind.ddim
    public var steps = 50
    /// FID against network evaluations: these counts for every sampler a model takes, or the points of `grid`.
    public var gridEvaluations = [1, 2, 5, 10, 20, 50]
    public var grid: [(SamplerKind, Int)]?
    public var gridSamples = 250
    /// Held-out images for the DDPM's bits/dim (0: skip).
    public var nll = 100
    /// The folder of cached reference features.
    public var cache = defaultCacheDirectory
    /// The results folder (and the runs trained here).
    public var out: String

    public init(data: String, out: String) { (self.data, self.out) = (data, out) }

    /// The grid's (sampler, steps) points for a model: `grid`'s, or each sampler it takes at the steps that give each
    /// of `gridEvaluations` (once per distinct step count), after DDPM over all T steps (not for flow).
    func gridPoints(flow: Bool, trainingSteps T: Int) -> [(SamplerKind, Int)] {
        if let grid { return grid }
        let samplers = flow ? Sampling.flowSamplers : SamplerKind.allCases.filter { $0 != .ddpm }
        var points: [(SamplerKind, Int)] = flow ? [] : [(.ddpm, T)]
        for kind in samplers {
            var seen: Set<Int> = []
            for evaluations in gridEvaluations {
                let steps = min(T, kind == .heun ? (evaluations + 1) / 2 : kind == .pndm ? max(1, evaluations - 1) : evaluations)
                if seen.insert(steps).inserted { points.append((kind, steps)) }
            }
        }
        return points
    }
}

/// Trains (or takes) DDPM, rectified flow, latent diffusion, a VAE and a GAN on the same data and measures them side
/// by side: each with `evaluate`'s metrics under a classifier's features, and the diffusion and flow models' FID
/// against the network evaluations of every sampler they take. Writes results.json and tables.md in `out`.
/// `log` hears what is done; `progress(phase, done, total)` each phase's progress ("train", "sample", ...).
public func compare(_ o: ComparisonOptions, log: (String) -> Void = { _ in },
                    progress: ((String, Int, Int) -> Void)? = nil) throws -> ComparisonResults {
    try FileManager.default.createDirectory(atPath: o.out, withIntermediateDirectories: true)
    /// Trains a new run `name` under `out` on the data (for `minutes`, else its steps), as `adjust` sets it.
    func train(_ name: String, minutes: Double?, _ adjust: (inout TrainingOptions) -> Void) throws -> String {
        var options = TrainingOptions()
        (options.data, options.examples, options.steps) = (o.data, o.examples, 1_000_000)
        adjust(&options)
        let folder = RunFolder(o.out + "/" + name)
        let trainer = try Trainer.start(options, in: folder)
        log("== training \(trainer.summary) → \(folder.path)")
        let outcome = try trainer.train(progress: { step, _ in progress?("train", step, options.steps) },
                                        until: minutes.map { Date().addingTimeInterval($0 * 60) })
        if case .interrupted = outcome { throw Interruption.Stopped() }
        return folder.path
    }
    let models: [(ComparedModel, String)]
    if let runs = o.runs {
        models = runs
    } else {
        let budget = o.minutes!
        let ddpm = try train("ddpm", minutes: budget) { ($0.conditional, $0.preset) = (true, "mnist-small") }
        let flow = try train("flow", minutes: budget) { ($0.objective, $0.conditional, $0.preset) = (.flow, true, "mnist-small") }
        let vae = try train("vae", minutes: budget) { ($0.model, $0.batchSize) = (.vae, 64) }
        let firstStage = try train("first-stage", minutes: budget / 3) { ($0.model, $0.klWeight, $0.batchSize) = (.vae, 0.01, 64) }
        let latent = try train("latent-diffusion", minutes: budget * 2 / 3) {
            ($0.model, $0.autoencoder, $0.batchSize) = (.latentDiffusion, firstStage, 64)
        }
        let gan = try train("gan", minutes: budget) { ($0.model, $0.batchSize) = (.gan, 64) }
        models = [(.ddpm, ddpm), (.flow, flow), (.latentDiffusion, latent), (.vae, vae), (.gan, gan)]
    }
    var classifierRun = o.classifier
    if classifierRun == nil {
        classifierRun = o.out + "/classifier"
        if !FileManager.default.fileExists(atPath: classifierRun! + "/checkpoint.safetensors") {
            _ = try train("classifier", minutes: nil) { ($0.model, $0.steps, $0.batchSize, $0.sampleEvery) = (.classifier, 2000, 64, 0) }
        }
    }
    let network = try ClassifierFeatures(run: classifierRun!)
    let first = try RunFolder(models[0].1).readConfig()
    let (train, heldOut, dataName) = try referenceImages(first)
    let reference = try ReferenceFeatures(images: train.images, data: dataName, examples: "0..<\(train.count)",
                                          caption: train.caption, network: network,
                                          cacheDirectory: o.cache) { progress?("reference", $0, train.count) }
    var rows: [ModelResult] = [], stepRows: [StepResult] = []
    for (kind, folder) in models {
        let config = try RunFolder(folder).readConfig()
        guard config.data == first.data, config.examples == first.examples else {
            throw DiffuseError.config("\(folder) trained on \(config.data) (examples \(config.examples.map(String.init) ?? "all")), "
                              + "\(models[0].1) on \(first.data) (examples \(first.examples.map(String.init) ?? "all")): compare like with like")
        }
        var settings = EvaluationSettings()
        (settings.samples, settings.sampler, settings.steps) = (o.samples, kind == .flow ? config.defaultSampler : o.sampler, o.steps)
        settings.nllImages = kind == .ddpm ? o.nll : 0
        log("== \(kind.name): \(folder)")
        let e = try evaluate(run: folder, network: network, reference: reference, settings: settings, heldOut: heldOut?.images,
                             progress: progress)
        log(e.summary)
        rows.append(ModelResult(name: kind.name, kind: kind.rawValue,
                                run: ComparisonResults.recorded(run: folder, resultsFolder: o.out), parameters: e.parameters,
                                trainingSeconds: e.trainingSeconds, trainingSteps: e.trainingSteps, sampler: e.sampler,
                                steps: e.steps, evaluationsPerSample: e.evaluationsPerSample, secondsPerSample: e.secondsPerSample,
                                samples: e.quality.samples, fid: e.quality.fid, precision: e.quality.precision,
                                recall: e.quality.recall, kid: e.quality.kid, kidStd: e.quality.kidStd,
                                sharpness: e.quality.sharpness, referenceSharpness: e.quality.referenceSharpness,
                                bitsPerDim: e.bitsPerDim, nllImages: e.nllImages))
        guard kind.samplesByDiffusion else { continue }
        for (gridSampler, gridSteps) in o.gridPoints(flow: kind == .flow, trainingSteps: config.timesteps)
        where kind != .flow || Sampling.flowSamplers.contains(gridSampler) {
            var s = EvaluationSettings()
            (s.samples, s.sampler, s.steps, s.spacing) = (o.gridSamples, gridSampler, gridSteps, .trailing)
            log("== \(kind.name): \(gridSampler.rawValue), \(gridSteps) steps")
            let g = try evaluate(run: folder, network: network, reference: reference, settings: s, progress: progress)
            log(String(format: "  FID %.3f, %.1f ms per sample", g.quality.fid, 1000 * g.secondsPerSample))
            stepRows.append(StepResult(model: kind.name, sampler: gridSampler.rawValue, steps: gridSteps,
                                       evaluationsPerSample: g.evaluationsPerSample, secondsPerSample: g.secondsPerSample,
                                       samples: o.gridSamples, fid: g.quality.fid))
        }
    }
    let results = ComparisonResults(data: train.caption, budgetMinutes: o.minutes, machine: Engine.machineDescription,
                                    featureNetwork: network.name, resize: network.resize, reference: reference.description,
                                    models: rows, steps: stepRows)
    try results.write(to: o.out + "/results.json")
    try writeAtomically(Data(ReportText(language: .english).tables(results).utf8), to: o.out + "/tables.md")
    return results
}
