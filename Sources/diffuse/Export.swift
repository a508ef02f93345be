import ArgumentParser
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// `diffuse export RUN --diffusers OUT`: a run's model in Hugging Face diffusers' layout.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trained run's model as a Hugging Face diffusers folder.",
        discussion: """
        A diffusion run becomes a DDPMPipeline folder: model_index.json, unet/config.json, \
        unet/diffusion_pytorch_model.safetensors and scheduler/scheduler_config.json (a DDPMScheduler with the run's \
        schedule, prediction type and clipping), so that in Python `DDPMPipeline.from_pretrained(OUT)` or \
        `UNet2DModel.from_pretrained(OUT + "/unet")` loads it. A latent-diffusion run adds vae/ (an AutoencoderKL \
        with the run's scaling factor; `AutoencoderKL.from_pretrained(OUT + "/vae")`). A VAE run becomes a bare \
        AutoencoderKL folder. `diffuse sample --model OUT` reads any of them back. The weights are their moving \
        average unless --no-ema. GANs have no diffusers layout.

        Example:
          diffuse export runs/mnist --diffusers exported/mnist
        """)

    @Argument(help: "A run folder made by `diffuse train` (image data).") var runFolder: String
    @Option(help: ArgumentHelp("The folder to write.", valueName: "folder")) var diffusers: String
    @Flag(help: "Export the trained weights instead of their moving average.") var noEma = false

    func run() throws {
        let (config, objective) = try RunFolder(runFolder).loadObjective(averaged: !noEma)
        switch objective {
        case let diffusion as DiffusionObjective:
            guard let unet = diffusion.network as? UNet2DModel else {
                throw ValidationError("\(runFolder) trained an MLP on 2D points; only U-Nets (image runs) have a diffusers layout")
            }
            try DiffusersFolder.write(unet: unet, weights: unet.stateDict(), scheduler: config.diffusersScheduler,
                                      vae: diffusion.firstStage.map { ($0, $0.stateDict()) }, to: diffusers)
            print("wrote \(diffusers): \(diffusion.firstStage == nil ? "a DDPMPipeline" : "unet/, vae/ and scheduler/") "
                  + "(UNet2DModel of \(unet.parameterCount) parameters, DDPMScheduler)")
        case let autoencoder as AutoencoderObjective:
            let vae = autoencoder.vae
            try DiffusersFolder.writeComponent(vae, config: vae.config, className: "AutoencoderKL", weights: vae.stateDict(),
                                               to: URL(fileURLWithPath: diffusers))
            print("wrote \(diffusers): an AutoencoderKL of \(vae.parameterCount) parameters")
        default:
            throw ValidationError("\(runFolder) is a \(config.kind.rawValue) run; diffusers has no layout for it (export diffusion, latent diffusion or VAE runs)")
        }
    }
}
