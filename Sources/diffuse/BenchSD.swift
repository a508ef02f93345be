import ArgumentParser
import DiffuseEngine
import DiffuseModels
import Foundation

/// `diffuse bench sd`: the pieces of Stable Diffusion's text to image, timed on a pipeline folder; bench/sd.sh runs
/// it beside bench/sd_torch.py (diffusers) and times the whole of `diffuse generate`.
struct SDBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sd",
        abstract: "Time Stable Diffusion's text encoder, U-Net step and VAE decode.",
        discussion: """
        The text encoder on a prompt and a negative prompt; one U-Net step on a batch of 2 (as with guidance) at \
        256² and 512² images (latents of 32² and 64²); the VAE decode of one 512² image. Median seconds of --runs \
        after one warm-up call. bench/sd.sh writes an SD 1.5-sized folder with random weights for it.
        """)

    @Option(help: ArgumentHelp("A Stable Diffusion pipeline folder or single-file checkpoint.", valueName: "path")) var model: String
    @Option(help: ArgumentHelp("For a single-file checkpoint: a pipeline folder of the same family.", valueName: "folder"))
    var config: String?
    @Option(help: "Timed runs per piece; the median is reported.") var runs = 3
    @Option(name: .customLong("json"), help: ArgumentHelp("Also write the numbers as JSON to this file.", valueName: "path"))
    var jsonPath: String?

    func validate() throws { guard runs > 0 else { throw ValidationError("--runs must be positive") } }

    func run() throws {
        print("machine: \(Engine.machineDescription)")
        let sd = try StableDiffusion(path: model, config: config)
        var results: [String: Double] = [:]
        // One untimed call (the timer's sizing call), then --runs timed ones of one call each.
        let timer = Timer(runs: runs, warmup: 0, minRunTime: 0)
        func time(_ name: String, _ body: () -> Void) {
            let seconds = timer.measure(body).medianMs / 1000
            results[name] = seconds
            print(String(format: "%-18@ %8.3f s", name as NSString, seconds))
        }
        let prompt = "a photograph of an astronaut riding a horse on the moon", negative = "blurry, low quality"
        time("text_encoder_s") { _ = sd.embed(prompt: prompt, negativePrompt: negative) }
        let context = sd.embed(prompt: prompt, negativePrompt: negative).context
        var generator = RandomGenerator(seed: 0)
        for side in [256, 512] {
            let x = generator.normal([2] + (try sd.latentShape(height: side, width: side)))
            time("unet_\(side)_s") { _ = withoutGradients { sd.unet(x, timesteps: [500, 500], context: context) } }
        }
        let z = generator.normal([1] + (try sd.latentShape(height: 512, width: 512)))
        time("vae_decode_512_s") { _ = sd.decode(z) }
        if let jsonPath { try JSONEncoder().encode(results).write(to: URL(fileURLWithPath: jsonPath)) }
    }
}
