import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a trained generative run: FID, precision/recall, KID, likelihood, sampling time.",
        discussion: """
        Draws --samples images from the run (diffusion with --sampler and --steps; VAEs and GANs in one network \
        evaluation), computes their features with --features, and compares them with the features of the run's \
        training images (--reference train, the default) or of its held-out images (--reference held-out, for a run \
        trained with --examples N): Fréchet distance (FID), precision and recall (k = 3 nearest neighbours) and KID. \
        The reference features are cached per data, feature network and resize mode (--cache), so that evaluating \
        many checkpoints computes them once. For a pixel-space diffusion model, --nll N also bounds −log p(x) in \
        bits per dimension on N held-out images, over all T steps of the variational bound (T network evaluations).
        Started by mpirun, the processes share out the batches of samples (the result is one process').

        Feature networks: classifier:RUN (the hidden layer of a `diffuse train --model classifier` run: an FID \
        specific to that data set, reported as such) or inception:FILE (pytorch-fid's Inception-v3, weights from \
        scripts/convert_inception.py; images resized bilinearly to 299×299).

        Examples:
          diffuse train --data mnist:../shared/data/mnist --model classifier --steps 1500 --out runs/classifier
          diffuse eval runs/mnist --features classifier:runs/classifier --samples 1000 --sampler dpm++2m --steps 20
          diffuse eval runs/mnist --features classifier:runs/classifier --nll 100 --out mnist-eval.json
        """)

    @Argument(help: "A run folder of a generative model (ddpm, latent-diffusion, vae, gan).") var runFolder: String
    @Option(help: "Feature network: classifier:RUN or inception:FILE.") var features: String
    @Option(help: "Generated images to measure.") var samples = 1000
    @Option(help: "Images generated (and featurised) at once.") var batchSize = 100
    @Option(help: "Diffusion sampler (default ddim; euler for flow models).") var sampler: SamplerKind?
    @Option(help: "Diffusion sampling steps.") var steps = 50
    @Option(help: "σ spacing of the σ-based samplers: discrete, karras, exponential, edm, ays.") var sigmas = SigmaSpacing.discrete
    @Option(help: "Classifier-free guidance scale for a conditional model (default: none).") var guidance: Double?
    @Option(help: "Reference images: train (the run's training images) or held-out.") var reference = "train"
    @Option(help: "Bound −log p(x) on this many held-out images (pixel-space diffusion; 0: skip).") var nll = 0
    @Option(help: "Folder of cached reference features.") var cache = defaultCacheDirectory
    @Option(help: "Random seed of the samples.") var seed: UInt64 = 0
    @Option(help: "Write the results as JSON to this file.") var out: String?
    @OptionGroup var engine: EngineThreads

    func validate() throws {
        guard samples >= 4, batchSize > 0, steps > 0, nll >= 0 else {
            throw ValidationError("--samples must be at least 4, --batch-size and --steps positive, --nll not negative")
        }
        guard ["train", "held-out"].contains(reference) else { throw ValidationError("--reference is train or held-out, got \(reference)") }
    }

    func run() throws {
        try engine.scope { try inProcessGroup(evaluate(in:)) }
    }

    /// The evaluation, its samples shared out among the processes of `group` by batch; the first one prints and
    /// writes.
    private func evaluate(in group: ProcessGroup) throws {
        let network = try featureNetwork(features)
        let config = try RunFolder(runFolder).readConfig()
        let (train, heldOut, data) = try referenceImages(config)
        let images: LabeledImages
        let examples: String
        if reference == "held-out" {
            guard let heldOut else { throw ValidationError("\(runFolder) trained on all of \(data): no held-out images (train with --examples N)") }
            (images, examples) = (heldOut, "\(train.count)..<\(train.count + heldOut.count)")
        } else {
            (images, examples) = (train, "0..<\(train.count)")
        }
        if nll > 0 && heldOut == nil { throw ValidationError("--nll needs held-out images: \(runFolder) trained on all of \(data)") }
        let bar = group.isFirst ? ProgressBar(total: images.count, label: "reference") : nil
        let referenceFeatures = try ReferenceFeatures(images: images.images, data: data, examples: examples,
                                                      caption: images.caption, network: network,
                                                      cacheDirectory: cache) { bar?.update($0) }
        var settings = EvaluationSettings()
        (settings.samples, settings.batchSize, settings.sampler, settings.steps) =
            (samples, batchSize, sampler ?? config.defaultSampler, steps)
        (settings.sigmas, settings.guidance, settings.seed, settings.nllImages) = (sigmas, guidance, seed, nll)
        let result = try DiffuseTraining.evaluate(run: runFolder, network: network, reference: referenceFeatures,
                                                  settings: settings, heldOut: heldOut?.images, group: group,
                                                  progress: group.isFirst ? progressBars() : nil)
        guard group.isFirst else { return }
        print(result.summary)
        if let out {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(encoder.encode(result), to: out)
            print("→ \(out)")
        }
    }
}

/// A progress bar per phase of an evaluation ("sample", "features", "likelihood").
func progressBars() -> (String, Int, Int) -> Void {
    var bars: [String: ProgressBar] = [:]
    return { phase, done, total in
        // A phase is first heard of when its first part is done: its rate counts from there.
        let bar = bars[phase] ?? ProgressBar(total: total, label: phase, startingAt: done)
        bars[phase] = bar
        bar.update(done)
    }
}

