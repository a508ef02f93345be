import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

/// Stable Diffusion against diffusers' StableDiffusionPipeline (scripts/make_sd_fixtures.py): two tiny random
/// pipelines, sd1 (ε, 1×1-convolution projections, F32) and sd2 (v, linear projections, heads per level, F16).
final class StableDiffusionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sd")

    static func expected(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: fixtures.appendingPathComponent("\(name)/expected.safetensors").path)
    }

    /// The largest difference relative to the largest value of the reference.
    static func relativeError(_ got: Tensor, _ want: Tensor) -> Float {
        zip(got.scalars, want.scalars).map { abs($0 - $1) }.max()! / want.scalars.map(abs).max()!
    }

    /// One UNet2DConditionModel call within 1e-5 of diffusers' largest value.
    func testUNetMatchesDiffusers() throws {
        for name in ["sd1", "sd2"] {
            let folder = Self.fixtures.appendingPathComponent("\(name)/unet")
            let config = try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(contentsOf: folder.appendingPathComponent("config.json")))
            var generator = RandomGenerator(seed: 0)
            let unet = try UNet2DConditionModel(config, generator: &generator)
            let file = try SafeTensorsFile(path: folder.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
            try unet.load(Dictionary(uniqueKeysWithValues: try file.names.map { ($0, try file.tensor($0)) }))
            let expected = try Self.expected(name)
            let out = withoutGradients {
                unet(try! expected.tensor("unet.x"), timesteps: [37, 37], context: try! expected.tensor("embeddings"))
            }
            let want = try expected.tensor("unet.out")
            XCTAssertEqual(out.shape, want.shape)
            XCTAssertLessThanOrEqual(Self.relativeError(out, want), 1e-5, name)
        }
    }

    /// NHWC images as diffusers' output_type "np" returns them, from NCHW.
    static func channelsLast(_ x: Tensor) -> Tensor { x.transposed(1, 2).transposed(2, 3) }

    static func sampler(_ model: StableDiffusion, _ kind: SamplerKind, karras: Bool = false) throws -> Sampler {
        var config = model.scheduler
        if kind == .pndm { config.skipPRKSteps = true }  // the fixture's override, as every SD pipeline's PNDM has it
        var sampling = try Sampling(kind: kind, steps: 10, config: config)
        if karras { sampling.sigmaSpacing = .karras }
        return try sampling.makeSampler()
    }

    /// The folder's token ids and text embeddings, and the final images of PNDM, DDIM, Euler and DPM++ 2M with
    /// Karras σ at 10 steps with guidance 7.5, within 1e-4 of diffusers' largest value; img2img with DDIM likewise.
    func testPipelineMatchesDiffusers() throws {
        for name in ["sd1", "sd2"] {
            let model = try StableDiffusion(path: Self.fixtures.appendingPathComponent(name).path)
            let expected = try Self.expected(name)
            let (context, truncated) = model.embed(prompt: "the cat and the hat, hello", negativePrompt: "blurry")
            XCTAssertEqual(truncated, [])
            let ids = [model.tokenizer.encode("blurry").ids, model.tokenizer.encode("the cat and the hat, hello").ids]
            XCTAssertEqual(ids.flatMap { $0 }.map(Float.init), try expected.tensor("ids").scalars, name)
            XCTAssertLessThanOrEqual(Self.relativeError(context, try expected.tensor("embeddings")), 1e-5, name)
            let noise = try expected.tensor("noise")
            for (sampler, kind, karras) in [("pndm", SamplerKind.pndm, false), ("ddim", .ddim, false), ("euler", .euler, false),
                                            ("dpmpp_2m_karras", .dpmSolver, true)] {
                let image = model.generate(context: context, guidance: 7.5, sampler: try Self.sampler(model, kind, karras: karras),
                                           noise: noise, stepNoise: { _ in Tensor(zeros: noise.shape) })
                XCTAssertLessThanOrEqual(Self.relativeError(Self.channelsLast(image), try expected.tensor("\(sampler).image")), 1e-4,
                                         "\(name) \(sampler)")
            }
            let initImage = try expected.tensor("img2img.init").transposed(2, 3).transposed(1, 2)
            let edited = model.edit(initImage, strength: 0.6, context: context, guidance: 7.5, sampler: try Self.sampler(model, .ddim),
                                    encoderNoise: try expected.tensor("img2img.encoder_noise"), noise: try expected.tensor("img2img.noise"),
                                    stepNoise: { _ in Tensor(zeros: noise.shape) })
            XCTAssertLessThanOrEqual(Self.relativeError(Self.channelsLast(edited), try expected.tensor("img2img.image")), 1e-4,
                                     "\(name) img2img")
            XCTAssertEqual(model.defaultSampler, name == "sd1" ? .pndm : .ddim)
            // sd2's F16 weights stay 16-bit in memory, sd1's F32 ones Float32.
            for component in [model.textEncoder, model.unet, model.vae] as [Module] {
                XCTAssertTrue(component.parameters.allSatisfy { ($0.half != nil) == (name == "sd2") }, name)
            }
        }
    }

    /// Latents larger than the VAE's sample size decode in tiles as diffusers' AutoencoderKL.tiled_decode does
    /// (12×12 latents: four tiles of at most 8, blended), within 1e-5 of its largest value; StableDiffusion.decode
    /// takes that path for them only.
    func testTiledDecodeMatchesDiffusers() throws {
        let model = try StableDiffusion(path: Self.fixtures.appendingPathComponent("sd1").path)
        let expected = try Self.expected("sd1")
        let z = try expected.tensor("vae.tiled.latents")
        let image = withoutGradients { model.vae.decodeInTiles(z) }
        XCTAssertEqual(image.shape, [1, 3, 24, 24])
        XCTAssertLessThanOrEqual(Self.relativeError(image, try expected.tensor("vae.tiled.image")), 1e-5)
        XCTAssertTrue(model.decodesInTiles(z))
        XCTAssertFalse(model.decodesInTiles(try expected.tensor("noise")))
    }

    /// The same weights in one file in the original layout (written by the fixture script and checked there with
    /// diffusers' single-file converters), with the folder's configs and tokenizer, give the same embeddings and images.
    func testSingleFileCheckpointMatchesDiffusers() throws {
        for name in ["sd1", "sd2"] {
            let folder = Self.fixtures.appendingPathComponent(name)
            let model = try StableDiffusion(path: folder.appendingPathComponent("sd.safetensors").path, config: folder.path)
            let expected = try Self.expected(name)
            let (context, _) = model.embed(prompt: "the cat and the hat, hello", negativePrompt: "blurry")
            XCTAssertLessThanOrEqual(Self.relativeError(context, try expected.tensor("embeddings")), 1e-5, name)
            let noise = try expected.tensor("noise")
            let image = model.generate(context: context, guidance: 7.5, sampler: try Self.sampler(model, .ddim), noise: noise,
                                       stepNoise: { _ in Tensor(zeros: noise.shape) })
            XCTAssertLessThanOrEqual(Self.relativeError(Self.channelsLast(image), try expected.tensor("ddim.image")), 1e-4, name)
            XCTAssertEqual(model.name, "sd")
        }
    }

    /// Without configs, the sizes a checkpoint's shapes tell are read from them (the rest, such as the number of
    /// heads and of norm groups, are the published models', which these tiny ones do not have).
    func testSingleFileConfigsFromShapes() throws {
        for name in ["sd1", "sd2"] {
            let folder = Self.fixtures.appendingPathComponent(name)
            let checkpoint = try OriginalCheckpoint(path: folder.appendingPathComponent("sd.safetensors").path)
            XCTAssertEqual(checkpoint.family, name == "sd1" ? .sd1 : .sd2)
            let unet = try JSONDecoder().decode(UNet2DConditionConfig.self, from: Data(contentsOf: folder.appendingPathComponent("unet/config.json")))
            let inferred = try checkpoint.unetConfig()
            XCTAssertEqual(inferred.blockOutChannels, unet.blockOutChannels)
            XCTAssertEqual(inferred.layersPerBlock, unet.layersPerBlock)
            XCTAssertEqual(inferred.downBlockTypes, unet.downBlockTypes)
            XCTAssertEqual(inferred.upBlockTypes, unet.upBlockTypes)
            XCTAssertEqual(inferred.midBlockType, unet.midBlockType)
            XCTAssertEqual(inferred.crossAttentionDim, unet.crossAttentionDim)
            XCTAssertEqual(inferred.transformerLayersPerBlock, unet.transformerLayersPerBlock)
            XCTAssertEqual(inferred.useLinearProjection, unet.useLinearProjection)
            XCTAssertEqual([inferred.inChannels, inferred.outChannels], [unet.inChannels, unet.outChannels])
            let vae = try JSONDecoder().decode(AutoencoderKLConfig.self, from: Data(contentsOf: folder.appendingPathComponent("vae/config.json")))
            let inferredVAE = try checkpoint.vaeConfig()
            XCTAssertEqual(inferredVAE.blockOutChannels, vae.blockOutChannels)
            XCTAssertEqual(inferredVAE.layersPerBlock, vae.layersPerBlock)
            XCTAssertEqual(inferredVAE.latentChannels, vae.latentChannels)
            XCTAssertEqual(inferredVAE.downBlockTypes, vae.downBlockTypes)
            let textFile = folder.appendingPathComponent("text_encoder/config.json")
            let text = try CLIPTextConfig(json: JSONValue.object(at: textFile.path), path: textFile.path)
            let inferredText = try checkpoint.textConfig()
            // OpenCLIP's last block is one SD 2.x never uses: the fixture, like diffusers' converter, keeps all of its
            // blocks in the text encoder, and the published SD 2 text encoder config has one fewer.
            XCTAssertEqual(inferredText.layers, text.layers - (name == "sd2" ? 1 : 0))
            XCTAssertEqual([inferredText.vocabSize, inferredText.hiddenSize, inferredText.intermediateSize, inferredText.maxPositions],
                           [text.vocabSize, text.hiddenSize, text.intermediateSize, text.maxPositions])
            XCTAssertEqual(inferredText.activation, text.activation)
            XCTAssertEqual(checkpoint.schedulerConfig.predictionType, name == "sd1" ? "epsilon" : "v_prediction")
        }
    }

    /// A single file without a tokenizer, a key missing from it, or not a Stable Diffusion checkpoint: errors that
    /// name the file and what is wrong.
    func testSingleFileErrors() throws {
        let folder = Self.fixtures.appendingPathComponent("sd1")
        let file = folder.appendingPathComponent("sd.safetensors").path
        XCTAssertThrowsError(try StableDiffusion(path: file)) { XCTAssertTrue("\($0)".contains("holds no tokenizer"), "\($0)") }
        let source = try SafeTensorsFile(path: file)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sd-errors-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let dropped = "model.diffusion_model.middle_block.1.proj_in.weight"
        var tensors = Dictionary(uniqueKeysWithValues: try source.names.filter { $0 != dropped }.map { ($0, try source.tensor($0)) })
        let broken = directory.appendingPathComponent("broken.safetensors").path
        try SafeTensorsFile.write(tensors, to: broken)
        XCTAssertThrowsError(try StableDiffusion(path: broken, config: folder.path)) {
            XCTAssertTrue("\($0)".contains(broken) && "\($0)".contains(dropped), "\($0)")
        }
        tensors = tensors.filter { !$0.key.hasPrefix("cond_stage_model.") }
        try SafeTensorsFile.write(tensors, to: broken)
        XCTAssertThrowsError(try StableDiffusion(path: broken, config: folder.path)) {
            XCTAssertTrue("\($0)".contains("not a Stable Diffusion 1.x or 2.x checkpoint"), "\($0)")
        }
    }

    /// `diffuse generate` from the fixture's latent noise (--noise) gives diffusers' images for DDIM, Euler and DPM++ 2M
    /// with Karras σ, from the folder and from the single file; its PNG carries the parameters `diffuse info` prints.
    func testGenerateCommandMatchesDiffusers() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sd-generate-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for name in ["sd1", "sd2"] {
            let folder = Self.fixtures.appendingPathComponent(name), expected = try Self.expected(name)
            let noise = directory.appendingPathComponent("noise.safetensors").path
            try SafeTensorsFile.write(["noise": try expected.tensor("noise")], to: noise)
            let common = ["--prompt", "the cat and the hat, hello", "--negative-prompt", "blurry", "--steps", "10", "--size", "16x16",
                          "--noise", noise]
            for (sampler, options, model) in [("ddim", ["--sampler", "ddim"], ["--model", folder.path]),
                                              ("euler", ["--sampler", "euler"], ["--model", folder.path]),
                                              ("dpmpp_2m_karras", ["--sampler", "dpm++2m", "--karras"],
                                               ["--model", folder.appendingPathComponent("sd.safetensors").path, "--config", folder.path])] {
                let out = directory.appendingPathComponent("\(sampler).safetensors").path
                let run = try diffuse(["generate"] + model + common + options + ["--out", out])
                XCTAssertEqual(run.status, 0, run.errors)
                let images = try SafeTensorsFile(path: out).tensor("images")
                XCTAssertLessThanOrEqual(Self.relativeError(Self.channelsLast(images), try expected.tensor("\(sampler).image")), 1e-4,
                                         "\(name) \(sampler)")
            }
            let png = directory.appendingPathComponent("image.png").path
            XCTAssertEqual(try diffuse(["generate", "--model", folder.path, "--sampler", "dpm++2m", "--karras", "--seed", "11",
                                             "--clip-skip", "1", "--steps", "3", "--size", "16x16", "--prompt", "a cat", "--out", png]).status, 0)
            let info = try diffuse(["info", png])
            XCTAssertEqual(info.status, 0)
            for line in ["Prompt: a cat", "Steps: 3", "Sampler: DPM++ 2M Karras", "CFG scale: 7.5", "Seed: 11", "Size: 16x16",
                         "Model: \(name)", "Clip skip: 2"] {
                XCTAssertTrue(info.output.contains(line + "\n"), "\(line) in \(info.output)")
            }
        }
    }

    /// Bad requests stop before any work with a message and a non-zero status.
    func testGenerateCommandErrors() throws {
        let folder = Self.fixtures.appendingPathComponent("sd1").path
        for (arguments, message) in [
            (["--model", "/nonexistent", "--prompt", "x"], "no such file or folder"),
            (["--model", folder, "--prompt", "x", "--size", "17x16"], "multiple of 2"),
            (["--model", folder, "--prompt", "x", "--size", "16by16"], "size"),
            (["--model", folder, "--prompt", "x", "--clip-skip", "5"], "clip-skip"),
            (["--model", folder, "--prompt", "x", "--strength", "0.5"], "--init-image"),
            (["--model", folder, "--prompt", "x", "--init-image", "/nonexistent.png"], "/nonexistent.png"),
        ] {
            let run = try diffuse(["generate"] + arguments + ["--out", "/tmp/never.png"])
            XCTAssertNotEqual(run.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(run.errors.contains(message), "\(message) in \(run.errors)")
        }
    }
}
