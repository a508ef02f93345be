import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseMetrics
import DiffuseModels
import DiffuseNN
import Foundation

/// A network whose activations summarise images for FID, precision/recall and KID.
public protocol FeatureNetwork {
    /// What reports print: the network, e.g. "MNIST classifier (runs/classifier)".
    var name: String { get }
    /// How images are brought to the network's input size, e.g. "none (28×28)" or "bilinear to 299×299".
    var resize: String { get }
    /// Identifies the network's weights and settings exactly: part of the reference cache's key.
    var identity: String { get }
    /// Images per call: what fits in memory with the network's activations.
    var batchSize: Int { get }
    /// Features [N, d] of images [N, C, H, W] in [−1, 1] (in evaluation mode, without gradients).
    func features(_ images: Tensor) -> Tensor
}

extension FeatureNetwork {
    /// Features of many images, `batchSize` at a time, reporting how many are done.
    public func features(of images: Tensor, progress: ((Int) -> Void)? = nil) -> Tensor {
        var parts: [Tensor] = []
        for start in stride(from: 0, to: images.shape[0], by: batchSize) {
            let end = min(images.shape[0], start + batchSize)
            parts.append(withoutGradients { features(images.slice(axis: 0, start..<end)) })
            progress?(end)
        }
        return concat(parts, axis: 0)
    }
}

/// The hidden features of a classifier trained by Diffuse (`diffuse train --model classifier`): a data-set-specific
/// feature space, named for its data set in reports (FID under it is not comparable with Inception FIDs).
public struct ClassifierFeatures: FeatureNetwork {
    public let classifier: Classifier
    public let name: String
    public let resize: String
    public let identity: String
    public let batchSize = 250
    let imageShape: [Int]

    /// The averaged weights of a classifier run.
    public init(run path: String) throws {
        let folder = RunFolder(path)
        let (config, objective) = try folder.loadObjective()
        guard let classifier = (objective as? ClassifierObjective)?.classifier, let c = config.classifier else {
            throw DiffuseError.config("\(path) is a \(config.kind.rawValue) run, not a classifier run (diffuse train --model classifier)")
        }
        self.classifier = classifier
        let dataName = config.data.split(separator: ":").first.map(String.init)?.uppercased() ?? config.data
        name = "\(dataName) classifier (\(path))"
        resize = "none (\(c.imageSize)×\(c.imageSize))"
        imageShape = [c.channels, c.imageSize, c.imageSize]
        identity = "classifier:" + String(fileDigest(folder.checkpoint), radix: 16)
    }

    public func features(_ images: Tensor) -> Tensor {
        precondition(Array(images.shape.dropFirst()) == imageShape, "images \(images.shape) for a classifier of \(imageShape)")
        return classifier.features(images)
    }
}

/// FNV-1a, 64 bits, of a file's bytes (0 when it cannot be read): identifies weights in cache keys.
public func fileDigest(_ path: String) -> UInt64 {
    guard let data = fileContents(path) else { return 0 }
    return digest(data)
}

/// FNV-1a, 64 bits.
public func digest<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// The features of the reference images for one feature network, cached on disk under a key hashed from the data
/// (its description and which examples), the network's identity and the resize mode, so that evaluating many
/// checkpoints computes them once. The cache file is safetensors (tensor `features`, the key in the metadata).
public struct ReferenceFeatures {
    public let features: Tensor
    public let statistics: FeatureStatistics
    /// The reference images' mean Laplacian magnitude.
    public let sharpness: Double
    /// Which images, for reports: what the data is (`caption`, else `data`) and the examples.
    public let description: String
    public let fromCache: Bool

    /// `data` and `examples` name the images in the cache's key; `caption` says what they are in reports
    /// (LabeledImages.caption).
    public init(images: Tensor, data: String, examples: String, caption: String? = nil, network: FeatureNetwork,
                cacheDirectory: String, progress: ((Int) -> Void)? = nil) throws {
        let key = "data=\(data);examples=\(examples);network=\(network.identity);resize=\(network.resize)"
        let file = cacheDirectory + "/reference-" + String(digest(Array(key.utf8)), radix: 16) + ".safetensors"
        description = "\(caption ?? data), examples \(examples)"
        if let cached = try? SafeTensorsFile(path: file), cached.metadata["key"] == key, let f = try? cached.tensor("features"),
           f.shape.first == images.shape[0] {
            features = f
            fromCache = true
        } else {
            features = network.features(of: images, progress: progress)
            try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
            try SafeTensorsFile.write(["features": features], metadata: ["key": key], to: file)
            fromCache = false
        }
        statistics = try FeatureStatistics(features: features)
        sharpness = meanLaplacianMagnitude(images)
    }
}

/// What `diffuse eval` measures of generated images against reference ones, with how.
public struct SampleQuality: Codable, Equatable, Sendable {
    public var fid: Double
    public var precision: Double
    public var recall: Double
    public var kid: Double
    public var kidStd: Double
    /// The mean Laplacian magnitude of the generated images, and of the reference images (detail; blur lowers it).
    public var sharpness: Double
    public var referenceSharpness: Double
    public var samples: Int
    public var references: Int
    public var featureNetwork: String
    public var resize: String
    public var reference: String

    /// The metrics of generated images (`images`, with their features) against the reference's.
    public init(images: Tensor, generated: Tensor, reference: ReferenceFeatures, network: FeatureNetwork) throws {
        fid = try frechetDistance(FeatureStatistics(features: generated), reference.statistics)
        (precision, recall) = try precisionRecall(real: reference.features, generated: generated)
        (kid, kidStd) = try kernelInceptionDistance(real: reference.features, generated: generated)
        sharpness = meanLaplacianMagnitude(images)
        referenceSharpness = reference.sharpness
        samples = generated.shape[0]
        references = reference.features.shape[0]
        featureNetwork = network.name
        resize = network.resize
        self.reference = reference.description
    }
}

extension GenerativeObjective {
    /// `count` samples, `batchSize` at a time, batch k from noise drawn from `generator.batch(k)`, which its sampler
    /// then draws from too; a class-conditional model gets the labels 0, 1, …, classes − 1 in turn (balanced
    /// classes). The batches are shared out among the processes of `group`, each process ending with all samples,
    /// the same as one process'. `progress` counts the sampler's steps done here (the batches' samples × steps in
    /// the end; `group.itemsComputedHere` tells how many samples), or the samples done for a generator of one step.
    public func generate(count: Int, batchSize: Int, sampler: Sampler?, guidance: Double? = nil,
                         generator: RandomGenerator, group: ProcessGroup = SingleProcess(),
                         progress: ((Int) -> Void)? = nil) -> Tensor {
        var done = 0
        return group.shareBatches(total: count, batchSize: batchSize) { k, items in
            var g = generator.batch(k)
            let noise = g.normal([items.count] + noiseShape)
            let labels = classes.map { c in items.map { $0 % c } }
            let samples = generate(from: noise, sampler: sampler, labels: labels, guidance: guidance, generator: &g) { _, _ in
                done += items.count
                progress?(done)
            }
            if sampler == nil {
                done += items.count
                progress?(done)
            }
            return samples
        }
    }
}

extension RunConfig {
    /// The sampler used when none is named: DDIM, or Euler for rectified flow (which DDIM does not run).
    public var defaultSampler: SamplerKind { flow == nil ? .ddim : .euler }

    /// Sampler settings for this run's diffusion model: its schedule and prediction, leading spacing, and x̂_0
    /// clipped to [−1, 1] for images (not for 2D points, nor for latents); a flow run's path and shift.
    public func sampling(_ kind: SamplerKind, steps: Int) -> Sampling {
        if let flow { return Sampling(kind: kind, steps: steps, flow: flow) }
        return Sampling(kind: kind, steps: steps, diffusion: diffusion, clip: self.kind == .ddpm && exampleShape.count == 3 ? 1 : nil)
    }

    /// The held-out images of a run trained on the first `examples` of its data: the rest (none otherwise).
    public var heldOutExamples: Range<Int>? { examples.map { $0..<Int.max } }
}

/// The measurements of one trained run: its sample quality under one sampler, and what it cost.
public struct Evaluation: Codable, Equatable, Sendable {
    public var run: String
    public var kind: ModelKind
    /// The sampler and its steps, for diffusion models ("decoder" for a VAE, "generator" for a GAN).
    public var sampler: String
    public var steps: Int?
    public var evaluationsPerSample: Int
    public var secondsPerSample: Double
    public var quality: SampleQuality
    /// −log p(x) bound in bits per dimension on held-out images (pixel-space diffusion only), and on how many.
    public var bitsPerDim: Double?
    public var nllImages: Int?
    public var trainingSeconds: Double
    public var trainingSteps: Int
    public var parameters: Int
}

/// How `evaluate` samples and measures.
public struct EvaluationSettings: Sendable {
    public var samples = 1000
    public var batchSize = 100
    public var sampler = SamplerKind.ddim
    public var steps = 50
    /// The σ spacing of the σ-based samplers.
    public var sigmas = SigmaSpacing.discrete
    /// Which timesteps the samplers visit (default: the run's, leading).
    public var spacing: TimestepSpacing?
    public var guidance: Double?
    public var seed: UInt64 = 0
    /// Held-out images for the likelihood bound (0: skip it).
    public var nllImages = 0
    public init() {}
}

extension RunFolder {
    /// The columns of the run's log (log.csv) by name, each with the values that parse as numbers; empty without a log.
    public func readLog() -> [String: [Double]] {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return [:] }
        let lines = text.split(separator: "\n")
        let header = lines.first.map { $0.split(separator: ",").map(String.init) } ?? []
        var columns: [String: [Double]] = [:]
        for line in lines.dropFirst() {
            for (column, field) in zip(header, line.split(separator: ",", omittingEmptySubsequences: false)) {
                if let v = Double(field) { columns[column, default: []].append(v) }
            }
        }
        return columns
    }

    /// The training time and steps of a run: the sum of the seconds each step of its log took (`log`, when already
    /// read), with its first stage's training time for latent diffusion.
    public func trainingCost(log: [String: [Double]]? = nil) -> (seconds: Double, steps: Int) {
        let firstStage = (try? readConfig())?.autoencoderTrainingSeconds ?? 0
        let seconds = (log ?? readLog())["seconds"] ?? []
        return (firstStage + seconds.reduce(0, +), seconds.count)
    }
}

extension TrainingObjective {
    /// The parameters of the networks that generate: all but a discriminator's.
    public var generatingParameterCount: Int {
        model.namedParameters().filter { name, _ in !name.hasPrefix("discriminator.") }.reduce(0) { $0 + $1.1.value.count }
    }
}

/// Evaluates a run: `settings.samples` samples (timed), their quality against `reference` under `network`, and,
/// for a pixel-space diffusion model with held-out images, the likelihood bound on `settings.nllImages` of them.
public func evaluate(run path: String, network: FeatureNetwork, reference: ReferenceFeatures, settings: EvaluationSettings,
                     heldOut: Tensor? = nil, group: ProcessGroup = SingleProcess(),
                     progress: ((String, Int, Int) -> Void)? = nil) throws -> Evaluation {
    let folder = RunFolder(path)
    let (config, trained) = try folder.loadObjective()
    guard let objective = trained as? GenerativeObjective else {
        throw DiffuseError.config("\(path) is a \(config.kind.rawValue) run: it does not generate")
    }
    var sampler: Sampler?
    var samplerName = config.kind == .vae ? "decoder" : "generator"
    if objective is DiffusionObjective {
        var s = config.sampling(settings.sampler, steps: settings.steps)
        s.sigmaSpacing = settings.sigmas
        if let spacing = settings.spacing { s.spacing = spacing }
        sampler = try s.makeSampler()
        samplerName = settings.sampler.rawValue + (settings.sigmas == .discrete ? "" : " (\(settings.sigmas.rawValue) σ)")
    }
    let start = Date()
    let here = group.itemsComputedHere(total: settings.samples, batchSize: settings.batchSize)
    let samples = objective.generate(count: settings.samples, batchSize: settings.batchSize, sampler: sampler,
                                     guidance: settings.guidance, generator: RandomGenerator(seed: settings.seed, stream: 8),
                                     group: group) {
        progress?("sample", $0, here * (sampler == nil ? 1 : settings.steps))
    }
    let seconds = Date().timeIntervalSince(start)
    let features = network.features(of: samples) { progress?("features", $0, settings.samples) }
    let quality = try SampleQuality(images: samples, generated: features, reference: reference, network: network)

    var bits: Double?, nllImages: Int?
    if settings.nllImages > 0, let diffusion = objective as? DiffusionObjective, diffusion.firstStage == nil, diffusion.flow == nil,
       let heldOut {
        let n = min(settings.nllImages, heldOut.shape[0])
        let images = heldOut.slice(axis: 0, 0..<n)
        var values: [Double] = []
        var generator = RandomGenerator(seed: settings.seed, stream: 9)
        let T = diffusion.diffusion.schedule.timesteps
        for start in stride(from: 0, to: n, by: settings.batchSize) {
            let batch = images.slice(axis: 0, start..<min(n, start + settings.batchSize))
            let labels = diffusion.classes.map { k in [Int](repeating: k, count: batch.shape[0]) }  // the null label: p(x)
            values += withFrozenWeights {
                diffusion.diffusion.negativeLogLikelihood(batch, model: { x, t in
                    diffusion.network.predict(x, timesteps: t, labels: labels)
                }, generator: &generator) { t in progress?("likelihood", start * T + batch.shape[0] * t, n * T) }
            }
        }
        bits = values.reduce(0, +) / Double(values.count)
        nllImages = n
    }
    let (trainingSeconds, trainingSteps) = folder.trainingCost()
    return Evaluation(run: path, kind: config.kind, sampler: samplerName, steps: sampler == nil ? nil : settings.steps,
                      evaluationsPerSample: (sampler?.evaluations ?? 1) * (settings.guidance == nil ? 1 : 2),
                      secondsPerSample: seconds / Double(settings.samples), quality: quality, bitsPerDim: bits,
                      nllImages: nllImages, trainingSeconds: trainingSeconds, trainingSteps: trainingSteps,
                      parameters: objective.generatingParameterCount)
}

/// pytorch-fid's Inception-v3 (the network of the standard FID), with weights from a safetensors file that
/// scripts/convert_inception.py writes from pytorch-fid's published ones. Images are resized bilinearly to 299×299;
/// grey images are repeated over the three colour channels.
public struct InceptionFeatures: FeatureNetwork {
    public let network: InceptionV3
    public let name = "Inception-v3 (pytorch-fid weights)"
    public let resize = "bilinear to 299×299"
    public let identity: String
    /// 16 images of 299×299 keep the largest activations (16 × 64 × 147² values) near 100 MB.
    public let batchSize = 16

    public init(weights path: String) throws {
        var g = RandomGenerator(seed: 0)
        network = InceptionV3(generator: &g)
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) }
        catch { throw DiffuseError.config("\(path): \(error) (write it with scripts/convert_inception.py)") }
        var weights: [String: Tensor] = [:]
        for name in file.names { weights[name] = try file.tensor(name) }
        do { try network.load(weights) }
        catch { throw DiffuseError.config("\(path) does not hold pytorch-fid's Inception-v3 weights: \(error)") }
        identity = "inception:" + String(fileDigest(path), radix: 16)
    }

    public func features(_ images: Tensor) -> Tensor {
        precondition(images.rank == 4 && (images.shape[1] == 1 || images.shape[1] == 3), "Inception takes RGB or grey images, got \(images.shape)")
        return network(images.shape[1] == 3 ? images : concat([images, images, images], axis: 1))
    }
}

/// The feature network a name gives (`--features`): `classifier:RUN` (a classifier run of Diffuse) or
/// `inception:FILE` (pytorch-fid's Inception-v3 weights converted to safetensors).
public func featureNetwork(_ spec: String) throws -> FeatureNetwork {
    if spec.hasPrefix("classifier:") { return try ClassifierFeatures(run: String(spec.dropFirst("classifier:".count))) }
    if spec.hasPrefix("inception:") { return try InceptionFeatures(weights: String(spec.dropFirst("inception:".count))) }
    throw DiffuseError.config("the features are classifier:RUN (a `diffuse train --model classifier` run) or inception:FILE, got '\(spec)'")
}

/// The cache folder of reference features: $XDG_CACHE_HOME/diffuse, or ~/.cache/diffuse.
public var defaultCacheDirectory: String {
    let environment = ProcessInfo.processInfo.environment
    return (environment["XDG_CACHE_HOME"] ?? (environment["HOME"] ?? ".") + "/.cache") + "/diffuse"
}

/// A run's data split into the images it trained on and the held-out rest (trained with --examples N).
public func referenceImages(_ config: RunConfig) throws -> (train: LabeledImages, heldOut: LabeledImages?, data: String) {
    var all = config
    all.examples = nil
    guard case let .images(images) = try loadTrainingData(all) else {
        throw DiffuseError.config("\(config.data) holds 2D points; image metrics need image data")
    }
    guard let n = config.examples, n < images.count else { return (images, nil, config.data) }
    return (images.subset(Array(0..<n)), images.subset(Array(n..<images.count)), config.data)
}

extension Evaluation {
    /// The figures, as lines for the terminal.
    public var summary: String {
        let e = self, q = e.quality
        var lines = [
            "\(e.run) (\(e.kind.rawValue), \(e.parameters) parameters, trained \(ProgressBar.duration(e.trainingSeconds)) / \(e.trainingSteps) steps)",
            "  sampler \(e.sampler)\(e.steps.map { ", \($0) steps" } ?? ""): \(e.evaluationsPerSample) network evaluation\(e.evaluationsPerSample == 1 ? "" : "s"), "
                + String(format: "%.1f ms per sample", 1000 * e.secondsPerSample),
            String(format: "  FID %.3f   precision %.3f   recall %.3f   KID %.3g ± %.3g   sharpness %.4f (data %.4f)", q.fid,
                   q.precision, q.recall, q.kid, q.kidStd, q.sharpness, q.referenceSharpness),
            "  \(q.samples) samples against \(q.reference); features: \(q.featureNetwork), resize \(q.resize)",
        ]
        if let bits = e.bitsPerDim, let n = e.nllImages { lines.append(String(format: "  NLL bound %.3f bits/dim on %d held-out images", bits, n)) }
        return lines.joined(separator: "\n")
    }
}
