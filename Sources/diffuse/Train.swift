import ArgumentParser
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

extension BetaSchedule: ExpressibleByArgument {}
extension Prediction: ExpressibleByArgument {}
extension DenoisingObjective: ExpressibleByArgument {}
extension ModelKind: ExpressibleByArgument {}
extension ReconstructionLoss: ExpressibleByArgument {}
extension GANLoss: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a diffusion model, a latent diffusion model, a VAE or a GAN.",
        discussion: """
        Writes a run folder (--out): config.json, checkpoint.safetensors (weights, EMA weights, optimizer state, step, \
        random state), log.csv (the losses, learning rate, gradient norms and throughput of every step) and \
        samples/step-N.png grids. Ctrl-C saves a checkpoint and stops; `--resume` continues the run exactly where it \
        stopped. Every kind of model trains through the same loop; the model decides its losses.

        --model ddpm (default): a U-Net (images) or an MLP (2D points) trained on the simple loss; --conditional adds \
        a class embedding, trained with label dropout for classifier-free guidance (`diffuse sample --guidance`).
        --model vae: diffusers' AutoencoderKL, trained on reconstruction + --kl-weight × KL (optionally with a patch \
        discriminator, --adversarial-weight); sampled by decoding z ~ N(0, I).
        --model latent-diffusion: a U-Net on the latents of a trained VAE run (--autoencoder RUN), scaled to unit \
        variance; sampling runs the reverse process there and decodes.
        --model gan: a DCGAN, non-saturating (or --gan-loss hinge) with optional --r1-gamma; both losses are logged.
        --model classifier: a small CNN on the data's labels, whose features give `diffuse eval` a data-set-specific FID.

        Started by mpirun (Open MPI) or Slurm's srun, it trains data-parallel over the job's processes: --batch-size \
        is the global batch, shared out among them, and the result equals one process' up to the order of float \
        sums; rank 0 writes the run folder. --threads sets each process' engine threads (default: its cores).

        Examples:
          diffuse train --data shapes --out runs/shapes --steps 2000
          diffuse train --data mnist:../shared/data/mnist --preset mnist-small --minutes 15 --out runs/mnist
          diffuse train --data mnist:../shared/data/mnist --conditional --minutes 15 --out runs/mnist-cond
          diffuse train --data mnist:../shared/data/mnist --model vae --minutes 15 --out runs/vae
          diffuse train --data mnist:../shared/data/mnist --model latent-diffusion --autoencoder runs/vae --out runs/ldm
          diffuse train --data mnist:../shared/data/mnist --model gan --minutes 15 --out runs/gan
          diffuse train --data swiss-roll --out runs/roll --steps 3000
          diffuse train --out runs/shapes --resume
          mpirun -np 2 diffuse train --data mnist:../shared/data/mnist --batch-size 64 --out runs/mnist-2
        """)

    @Option(help: "What to train: \(ModelKind.allCases.map(\.rawValue).joined(separator: ", ")).") var model = ModelKind.ddpm

    @Option(help: "Data: shapes (built-in images), swiss-roll, two-moons, 8-gaussians, checkerboard (2D), mnist:DIR, an IDX images file, cifar10:DIR, folder:DIR (PNGs, needs --image-size).")
    var data = "shapes"
    @Option(help: "Resize and centre-crop images to this size (default: as they are; 32 for shapes).") var imageSize: Int?
    @Option(help: "Use this many examples (default: 10,000 generated for built-in sets, all of a file's).") var examples: Int?
    @Option(help: "U-Net preset for image data: \(UNet2DConfig.presets.joined(separator: ", ")) (latent: the default for latent diffusion). Image size and channels follow the data.")
    var preset: String?
    @Option(help: "Widths per level of the U-Net, or of the VAE, e.g. 32,64,128 (overrides the preset's).") var channels: String?
    @Flag(help: "Class-conditional diffusion on the data's labels, with label dropout for classifier-free guidance.")
    var conditional = false
    @Option(help: "Probability of training a conditional model on the null label instead of the true one.") var labelDropout = 0.1
    @Option(help: "Latent diffusion: the VAE run whose encoder and decoder it works through.") var autoencoder: String?
    @Option(help: "VAE: latent channels.") var latentChannels = 4
    @Option(help: "VAE: reconstruction term, l1 or l2 (per pixel).") var reconstruction = ReconstructionLoss.l2
    @Option(help: "VAE: weight of the KL term per pixel (2σ² of a Gaussian decoder for l2). 1 samples coherent digits from N(0, I); a first stage for latent diffusion wants little, e.g. 0.01.") var klWeight = 1.0
    @Option(help: "VAE: weight of a patch discriminator's adversarial term (0: no discriminator).") var adversarialWeight = 0.0
    @Option(help: "GAN: dimension of z.") var latentDim = 64
    @Option(help: "GAN: width of the generator's last stage and the discriminator's first.") var width = 64
    @Option(help: "GAN: loss, non-saturating or hinge.") var ganLoss = GANLoss.nonSaturating
    @Option(help: "GAN: weight γ of the R1 penalty on real data (0: off).") var r1Gamma = 0.0
    @Option(help: "Hidden widths of the MLP for 2D data, e.g. 128,128,128.") var hidden = "128,128,128"
    @Option(help: "Noise schedule: linear, scaled_linear, squaredcos_cap_v2 (cosine), sigmoid.") var schedule = BetaSchedule.linear
    @Option(help: "Diffusion timesteps T.") var timesteps = 1000
    @Option(help: "Diffusion models: diffusion (DDPM's simple loss) or flow (rectified flow: the velocity ε − x₀ on x_t = (1 − t)·x₀ + t·ε, t logit-normal).")
    var objective = DenoisingObjective.diffusion
    @Option(help: "Rectified flow: the shift of its sampling schedule, t ← s·t/(1 + (s − 1)·t) (default 1).") var shift: Double?
    @Option(help: "What the network predicts: epsilon, sample, v_prediction (flow_prediction with --objective flow).")
    var prediction: Prediction?
    @Option(help: "Min-SNR-γ loss weighting (e.g. 5); off by default.") var minSnrGamma: Double?
    @Option(help: "Optimizer steps (default 2000; with --resume, the run's own unless given).") var steps: Int?
    @Option(help: "Stop after this many minutes (a checkpoint is written), whatever --steps says.") var minutes: Double?
    @Option(help: "Examples per step.") var batchSize = 32
    @Option(help: "Peak learning rate of AdamW (default 1e-3; 2e-4 for a GAN).") var learningRate: Float?
    @Option(help: "Linear warm-up steps before the cosine decay.") var warmup = 100
    @Option(help: "Decay of the weights' exponential moving average.") var emaDecay: Float = 0.999
    @Option(help: "Clip gradients to this global norm (0: off).") var gradClip: Float = 1
    @Option(help: "Dropout in the U-Net's ResNet blocks.") var dropout: Double = 0
    @Option(help: "Random seed: the same seed gives the same run.") var seed: UInt64 = 0
    @Option(help: "Write a sample grid every this many steps.") var sampleEvery = 500
    @Option(help: "Write a checkpoint every this many steps.") var checkpointEvery = 250
    @Option(help: "Keep this many checkpoints: the latest and those before it, as checkpoint-STEP.safetensors (a damaged one falls back to the one before).")
    var keepCheckpoints = 1
    @Option(help: "The run folder.") var out = "runs/latest"
    @Flag(help: "Continue the run in --out from its checkpoint (its settings are kept; --steps may extend it).") var resume = false
    @OptionGroup var engine: EngineThreads

    func run() throws {
        try engine.scope { try inProcessGroup(train(in:)) }
    }

    private func train(in group: ProcessGroup) throws {
        let folder = RunFolder(out)
        let trainer = resume ? try Trainer.resume(folder, steps: steps, group: group)
                             : try Trainer.start(try options(), in: folder, group: group)
        // Only the first process speaks.
        func say(_ line: String) { if group.isFirst { print(line) } }
        trainer.warnings.forEach(printWarning)
        let ranks = group.size > 1 ? ", shared by \(group.size) processes of \(Engine.threads) thread\(Engine.threads == 1 ? "" : "s")" : ""
        say("\(resume ? "resuming" : "training") \(trainer.summary)\(ranks) → \(out)")
        Interruption.install()
        let progress = group.isFirst ? ProgressBar(total: trainer.config.steps, label: "train", startingAt: trainer.state.step) : nil
        let deadline = minutes.map { Date().addingTimeInterval($0 * 60) }
        let firstStep = trainer.state.step
        let outcome = try trainer.train(progress: progress.map { bar in { bar.update($0, $1) } }, until: deadline)
        if group.size > 1, trainer.state.step > firstStep {
            say(String(format: "summing gradients over %d processes: %.3f s in %d steps (%.1f ms a step)", group.size,
                       trainer.gradientSumSeconds, trainer.state.step - firstStep,
                       1000 * trainer.gradientSumSeconds / Double(trainer.state.step - firstStep)))
        }
        switch outcome {
        case .finished:
            say("done: \(trainer.state.step) steps; samples in \(folder.samples), checkpoint \(folder.checkpoint)")
        case let .interrupted(step), let .outOfTime(step):
            progress?.finishLine()
            say("stopped at step \(step); checkpoint written. Continue with: diffuse train --out \(out) --resume")
            if case .interrupted = outcome { throw ExitCode(130) }
        }
    }

    /// The options of a new run, as the library takes them.
    func options() throws -> TrainingOptions {
        var o = TrainingOptions()
        (o.model, o.data, o.imageSize, o.examples, o.preset) = (model, data, imageSize, examples, preset)
        o.channels = try channels.map { try parseList($0, "--channels") }
        (o.conditional, o.labelDropout, o.autoencoder, o.latentChannels) = (conditional, labelDropout, autoencoder, latentChannels)
        (o.reconstruction, o.klWeight, o.adversarialWeight) = (reconstruction, klWeight, adversarialWeight)
        (o.latentDimension, o.width, o.ganLoss, o.r1Gamma) = (latentDim, width, ganLoss, r1Gamma)
        o.hidden = try parseList(hidden, "--hidden")
        (o.schedule, o.timesteps, o.objective, o.shift, o.prediction, o.minSNRGamma) =
            (schedule, timesteps, objective, shift, prediction, minSnrGamma)
        (o.steps, o.batchSize, o.learningRate, o.warmup, o.emaDecay, o.gradientClip, o.dropout) =
            (steps ?? o.steps, batchSize, learningRate, warmup, emaDecay, gradClip, dropout)
        (o.seed, o.sampleEvery, o.checkpointEvery, o.keepCheckpoints) = (seed, sampleEvery, checkpointEvery, keepCheckpoints)
        return o
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
