import ArgumentParser
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// `diffuse export RUN --diffusers OUT`: a run's U-Net as a diffusers DDPMPipeline folder.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trained run's model as a Hugging Face diffusers pipeline folder.",
        discussion: """
        The folder holds model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors and \\
        scheduler/scheduler_config.json (a DDPMScheduler with the run's schedule, prediction type and clipping), so \\
        that in Python `DDPMPipeline.from_pretrained(OUT)` or `UNet2DModel.from_pretrained(OUT + "/unet")` loads it, \\
        and `diffuse sample --model OUT` reads it back. The weights are their moving average unless --no-ema.

        Example:
          diffuse export runs/mnist --diffusers exported/mnist
        """)

    @Argument(help: "A run folder made by `diffuse train` (with a U-Net: image data).") var runFolder: String
    @Option(help: ArgumentHelp("The folder to write.", valueName: "folder")) var diffusers: String
    @Flag(help: "Export the trained weights instead of their moving average.") var noEma = false

    func run() throws {
        let folder = RunFolder(runFolder)
        let config = try folder.readConfig()
        guard config.unet != nil else {
            throw ValidationError("\(runFolder) trained an MLP on 2D points; only U-Nets (image runs) have a diffusers layout")
        }
        var generator = RandomGenerator(seed: config.seed, stream: 1)
        guard let unet = try makeNetwork(config, exampleShape: config.exampleShape, generator: &generator) as? UNet2DModel else {
            throw ValidationError("\(runFolder): the run's network is not a UNet2DModel")
        }
        let checkpoint = try Checkpoint(path: folder.checkpoint)
        let weights = noEma ? checkpoint.model : checkpoint.ema.merging(checkpoint.model) { ema, _ in ema }
        try Checkpoint.load(weights, into: unet, from: folder.checkpoint)
        try DiffusersFolder.write(unet: unet, weights: unet.stateDict(), scheduler: config.diffusersScheduler, to: diffusers)
        print("wrote \(diffusers): a DDPMPipeline (UNet2DModel of \(unet.parameterCount) parameters, DDPMScheduler)")
    }
}
