import ArgumentParser
import DiffuseData
import DiffuseEngine
import DiffuseModels
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe images, checkpoints, or this machine.",
        discussion: """
        For a PNG: its size and text chunks, and the generation parameters of its `parameters` chunk (written by \
        `diffuse generate` and `diffuse sample`, AUTOMATIC1111's web UI, stable-diffusion.cpp and others) one per \
        line. For a .safetensors file: its tensors by dtype, and which Stable Diffusion it is when it holds one in the \
        original layout. Without a file: the CPU and the register tiles the engine runs on it.

        Examples:
          diffuse info image.png
          diffuse info v1-5-pruned-emaonly.safetensors
          diffuse info
        """)

    @Argument(help: "PNG images or .safetensors files.") var files: [String] = []

    func run() throws {
        if files.isEmpty { print("Diffuse \(Diffuse.version) on \(Engine.machineDescription)") }
        for (i, file) in files.enumerated() {
            if i > 0 { print("") }
            if file.lowercased().hasSuffix(".safetensors") { try describeSafeTensors(file) } else { try describePNG(file) }
        }
    }

    private func describePNG(_ file: String) throws {
        let image = try PNG.read(file)
        print("\(file): \(image.shape[2])x\(image.shape[1]) pixels, \(image.shape[0] == 1 ? "greyscale" : "colour")")
        for (keyword, text) in try PNG.text(file) {
            guard keyword == "parameters" else {
                print("\(keyword): \(text)")
                continue
            }
            let p = GenerationParameters(parsing: text)
            if !p.prompt.isEmpty { print("Prompt: \(p.prompt)") }
            if !p.negativePrompt.isEmpty { print("Negative prompt: \(p.negativePrompt)") }
            for setting in p.settings { print("\(setting.key): \(setting.value)") }
        }
    }

    private func describeSafeTensors(_ file: String) throws {
        let f = try SafeTensorsFile(path: file)
        var byType: [String: (count: Int, elements: Int)] = [:]
        for entry in f.entries.values {
            let n = entry.shape.reduce(1, *)
            byType[entry.dtype.rawValue, default: (0, 0)].count += 1
            byType[entry.dtype.rawValue, default: (0, 0)].elements += n
        }
        print("\(file): \(f.entries.count) tensors")
        for (type, t) in byType.sorted(by: { $0.key < $1.key }) {
            print(String(format: "  %@: %d tensors, %.1f M values", type, t.count, Double(t.elements) / 1e6))
        }
        if let checkpoint = try? OriginalCheckpoint(path: file) {
            print("\(checkpoint.family.rawValue) checkpoint in the original layout")
            let unet = try checkpoint.unetConfig()
            print("  U-Net: block_out_channels \(unet.blockOutChannels), cross_attention_dim \(unet.crossAttentionDim.values[0])"
                  + (unet.useLinearProjection ? ", linear projections" : ""))
        }
    }
}
