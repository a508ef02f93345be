import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation
import XCTest

/// Tiny diffusers pipelines (scripts/make_pipeline_fixtures.py) read through `DiffusersFolder`, the code path of
/// `diffuse sample --model`, and sampled with every sampler: against diffusers' own outputs from the same noise.
final class PipelineTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let pipelines = ["eps-linear", "v-cosine", "sample-scaled", "class-cond"]

    func folder(_ name: String) -> String { Self.fixtures.appendingPathComponent(name).path }

    /// max |a − b| / max |b|: the measure ("max |difference| ≤ 1e-4 × max |diffusers' value|").
    func relativeToMax(_ a: Tensor, _ b: Tensor) -> Double {
        XCTAssertEqual(a.shape, b.shape)
        let (x, y) = (a.scalars, b.scalars)
        let difference = zip(x, y).map { Double(Swift.abs($0 - $1)) }.max() ?? 0
        return difference / Double(y.map { Swift.abs($0) }.max() ?? 1)
    }

    func labels(_ pipeline: String, _ f: SafeTensorsFile) throws -> [Int]? {
        pipeline == "class-cond" ? try f.tensor("class-cond.labels").scalars.map { Int($0) } : nil
    }

    /// The UNet of every folder (the four pipelines, a bare UNet folder, a sharded one) gives diffusers' output.
    func testUNetsMatchDiffusers() throws {
        let f = try SafeTensorsFile(path: Self.fixtures.appendingPathComponent("samplers.safetensors").path)
        let cases = Self.pipelines.map { ("pipelines/\($0)", $0) } + [("unet-only", "eps-linear"), ("unet-sharded", "eps-linear")]
        for (path, pipeline) in cases {
            let loaded = try DiffusersFolder(path: folder(path))
            XCTAssertEqual(loaded.scheduler != nil, path.hasPrefix("pipelines/"), path)
            XCTAssertEqual(loaded.warnings, [], path)
            let noise = try f.tensor("\(pipeline).noise")
            let out = withoutGradients {
                loaded.unet!.eval()
                return loaded.unet!(noise, timesteps: [37, 37], classLabels: try? labels(pipeline, f))
            }
            XCTAssertLessThanOrEqual(relativeToMax(out, try f.tensor("\(pipeline).unet_out")), 2e-6, path)
        }
    }

    /// The fixture's samplers: the name, Diffuse's sampler kind, and the keys the fixture's `Class.from_config`
    /// overrides in the pipeline's scheduler config.
    static let samplers: [(String, SamplerKind, (inout SchedulerConfig) -> Void)] = [
        ("ddim", .ddim, { _ in }), ("dpmpp_2m", .dpmSolver, { _ in }), ("dpmpp_2m_karras", .dpmSolver, { $0.useKarrasSigmas = true }),
        ("euler", .euler, { _ in }), ("euler_karras", .euler, { $0.useKarrasSigmas = true }), ("heun", .heun, { _ in }),
        ("heun_karras", .heun, { $0.useKarrasSigmas = true }), ("euler_exponential", .euler, { $0.useExponentialSigmas = true }),
        ("pndm", .pndm, { $0.skipPRKSteps = true }), ("pndm_prk", .pndm, { $0.skipPRKSteps = false }), ("dpmpp_2m_exponential", .dpmSolver, { $0.useExponentialSigmas = true }),
        ("dpmpp_3m", .dpmSolver3, { _ in }), ("dpmpp_3m_karras", .dpmSolver3, { $0.useKarrasSigmas = true }),
        ("unipc", .uniPC, { _ in }), ("unipc_bh1", .uniPCBH1, { $0.finalSigmasType = "sigma_min" }),
        ("unipc_3", .uniPC, { $0.solverOrder = 3 }), ("unipc_karras", .uniPC, { $0.useKarrasSigmas = true }),
        ("deis", .deis, { _ in }), ("deis_3", .deis, { $0.solverOrder = 3 }), ("ipndm", .iPNDM, { _ in }),
    ]

    /// The pairs diffusers refuses (x₀ prediction in the ancestral Euler and PNDM schedulers), which the fixture lacks.
    static func unsupported(_ pipeline: String, _ kind: SamplerKind) -> Bool {
        pipeline == "sample-scaled" && (kind == .eulerAncestral || kind == .pndm)
    }

    func sampler(_ pipeline: String, _ kind: SamplerKind, steps: Int, overrides: (inout SchedulerConfig) -> Void = { _ in })
        throws -> Sampler {
        var config = try DiffusersFolder(path: folder("pipelines/\(pipeline)")).scheduler!
        overrides(&config)
        return try Sampling(kind: kind, steps: steps, config: config).makeSampler()
    }

    func run(_ pipeline: String, _ sampler: Sampler, f: SafeTensorsFile,
             stepNoise: ((Int) -> Tensor)? = nil, observe: ((Int, Tensor) -> Void)? = nil) throws -> Tensor {
        let loaded = try DiffusersFolder(path: folder("pipelines/\(pipeline)"))
        let unet = loaded.unet!
        unet.eval()
        let classes = try labels(pipeline, f)
        let model: Network = { x, t in unet(x, timesteps: [t, t], classLabels: classes) }
        let noise = try f.tensor("\(pipeline).noise")
        return sampler.sample(from: noise, model: model, stepNoise: stepNoise ?? { _ in
            XCTFail("a deterministic sampler drew noise")
            return noise
        }, observe: observe)
    }

    /// Every deterministic sampler at 10 and 25 steps on every pipeline: the final sample within 1e-4 of the largest
    /// value of diffusers' (the bound; the unclipped ε-samplers end with values in the hundreds), after as many
    /// network evaluations as diffusers made (the fixture's count; iPNDM's loop has none recorded).
    func testDeterministicSamplersMatchDiffusers() throws {
        let f = try SafeTensorsFile(path: Self.fixtures.appendingPathComponent("samplers.safetensors").path)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("samplers.json")))
        let keys = (manifest as? [String: Any])?["keys"] as? [String: [String: Any]] ?? [:]
        for pipeline in Self.pipelines {
            for (name, kind, overrides) in Self.samplers where !Self.unsupported(pipeline, kind) {
                for steps in [10, 25] {
                    let sampler = try sampler(pipeline, kind, steps: steps, overrides: overrides)
                    if let evaluations = keys["\(pipeline).\(name).\(steps)"]?["unet_evaluations"] as? Int {
                        XCTAssertEqual(sampler.evaluations, evaluations, "\(pipeline) \(name) \(steps) steps: network evaluations")
                    }
                    let out = try run(pipeline, sampler, f: f)
                    let error = relativeToMax(out, try f.tensor("\(pipeline).\(name).\(steps)"))
                    XCTAssertLessThanOrEqual(error, 1e-4, "\(pipeline) \(name) \(steps) steps")
                }
            }
        }
    }

    /// The stochastic samplers, given the noise diffusers drew at each step: every state of the chain (3M SDE
    /// against diffusers' with the sign of its D₂ term's ½ corrected, see make_pipeline_fixtures.py).
    func testStochasticSamplersMatchDiffusersStepByStep() throws {
        let f = try SafeTensorsFile(path: Self.fixtures.appendingPathComponent("samplers.safetensors").path)
        for pipeline in Self.pipelines {
            for (name, kind) in [("ddpm", SamplerKind.ddpm), ("euler_ancestral", .eulerAncestral), ("dpmpp_2m_sde", .dpmSolverSDE),
                                 ("dpmpp_3m_sde", .dpmSolver3SDE)] {
                let key = "\(pipeline).\(name).10"
                if Self.unsupported(pipeline, kind) {
                    // diffusers raises for x_0 prediction here; so does Diffuse, with a message.
                    let loaded = try DiffusersFolder(path: folder("pipelines/\(pipeline)"))
                    XCTAssertThrowsError(try Sampling(kind: kind, steps: 10, config: loaded.scheduler!).makeSampler())
                    continue
                }
                let noise = try f.tensor("\(key).step_noise"), expected = try f.tensor("\(key).states")
                let shape = Array(noise.shape.dropFirst())
                var states: [Tensor] = []
                let sampler = try sampler(pipeline, kind, steps: 10)
                _ = try run(pipeline, sampler, f: f, stepNoise: { i in noise.slice(axis: 0, i..<(i + 1)).reshaped(shape) },
                            observe: { _, x in states.append(x) })
                XCTAssertEqual(states.count, 10, key)
                for (i, state) in states.enumerated() {
                    // Euler ancestral's states are x_t/a in diffusers; here every state is x_t.
                    let sigma = sampler.schedule.sigmas[i + 1]
                    let scale = kind == .eulerAncestral ? Float(1 / (sigma * sigma + 1).squareRoot()) : 1
                    let error = relativeToMax(state, expected.slice(axis: 0, i..<(i + 1)).reshaped(shape) * scale)
                    XCTAssertLessThanOrEqual(error, 1e-4, "\(key) step \(i)")
                }
            }
        }
    }

    /// A U-Net written as a diffusers folder reads back as the same network with the scheduler config written.
    func testWrittenFolderReadsBack() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var config = UNet2DConfig.mnistSmall
        config.blockOutChannels = [8, 16, 16]
        config.normNumGroups = 4
        config.midBlockType = nil
        var generator = RandomGenerator(seed: 11)
        let unet = try UNet2DModel(config, generator: &generator)
        var vaeConfig = AutoencoderKLConfig.mnist
        vaeConfig.scalingFactor = 0.7
        let vae = try AutoencoderKL(vaeConfig, generator: &generator)
        try DiffusersFolder.write(unet: unet, weights: unet.stateDict(),
                                  scheduler: ["prediction_type": .string("v_prediction"), "beta_schedule": .string("sigmoid")],
                                  vae: (vae, vae.stateDict()), to: scratch.path)
        let read = try DiffusersFolder(path: scratch.path)
        XCTAssertEqual(read.unet!.config, config)
        XCTAssertEqual(read.vae?.config, vaeConfig)
        let image = generator.normal([1, 1, 28, 28])
        XCTAssertEqual(withoutGradients { read.vae!.encode(image).mean.scalars }, withoutGradients { vae.encode(image).mean.scalars })
        let bare = try DiffusersFolder(path: scratch.appendingPathComponent("vae").path)
        XCTAssertNil(bare.unet)
        XCTAssertEqual(bare.vae?.config, vaeConfig)
        XCTAssertEqual(read.scheduler?.predictionType, "v_prediction")
        XCTAssertEqual(read.scheduler?.betaSchedule, "sigmoid")
        XCTAssertEqual(read.warnings, [])
        let x = generator.normal([2, 1, 28, 28])
        let (a, b) = withoutGradients { (unet(x, timesteps: [3, 700]), read.unet!(x, timesteps: [3, 700])) }
        XCTAssertEqual(a.scalars, b.scalars)
    }

    /// A folder that is not one, weights that are missing or only in pickle form, and a config value Diffuse does
    /// not support: errors that name the file and the problem.
    func testBadFoldersAreClearErrors() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("diffuse-pipeline-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        func expect(_ path: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try DiffusersFolder(path: path), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(text), "\($0)", file: file, line: line)
            }
        }
        expect(scratch.appendingPathComponent("nothing").path, "not a folder")
        let unet = try String(contentsOfFile: folder("unet-only/config.json"), encoding: .utf8)
        try unet.write(to: scratch.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expect(scratch.path, "no diffusion_pytorch_model.safetensors")
        try Data("not a pickle".utf8).write(to: scratch.appendingPathComponent("diffusion_pytorch_model.bin"))
        expect(scratch.path, "safe_serialization=True")
        try unet.replacingOccurrences(of: "\"act_fn\": \"silu\"", with: "\"act_fn\": \"tanh\"")
            .write(to: scratch.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        expect(scratch.path, "act_fn 'tanh' is not supported")
        try unet.replacingOccurrences(of: "\"act_fn\": \"silu\"", with: "\"act_fn\": \"silu\", \"new_key\": 3")
            .write(to: scratch.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: folder("unet-only/diffusion_pytorch_model.safetensors"),
                                         toPath: scratch.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        XCTAssertEqual(try DiffusersFolder(path: scratch.path).warnings.count, 1, "an unknown key is a warning")
    }
}
