import ArgumentParser
import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation

/// `diffuse bench unet`: the training and sampling steps of the two reference U-Nets, the figures that decide how
/// long training and sampling take; bench/unet.sh runs it beside bench/unet_torch.py (PyTorch + diffusers).
struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "Time a training step and a sampling step of the mnist-small and cifar-ddpm U-Nets.",
        discussion: """
        Training step: forward, MSE loss against a random target, backward, AdamW (dropout on, as in training). \
        Sampling step: one forward pass without gradients, in evaluation mode. Batches 32 and 64 for mnist-small, \
        1, 8 and 16 for cifar-ddpm. Median seconds of --runs after --warmup.
        """)

    @Option(name: .customLong("case"), help: ArgumentHelp(
        "Only this case (repeatable): mnist-small:32, mnist-small:64, cifar-ddpm:1, cifar-ddpm:8 or cifar-ddpm:16.",
        valueName: "model:batch"))
    var cases: [String] = []
    @Option(help: "Which step to time: train, sample or both (one step alone is handy under a profiler).")
    var phase: Phase = .both
    @Option(help: "Timed runs per case; the median is reported.") var runs = 5
    @Option(help: "Untimed warm-up calls per case.") var warmup = 2
    @Option(name: .customLong("json"), help: ArgumentHelp("Also write the numbers as JSON to this file.", valueName: "path"))
    var jsonPath: String?

    enum Phase: String, ExpressibleByArgument, CaseIterable { case train, sample, both }

    static let all: [(String, UNet2DConfig, Int)] = [("mnist-small", .mnistSmall, 32), ("mnist-small", .mnistSmall, 64),
                                                     ("cifar-ddpm", .cifarDDPM, 1), ("cifar-ddpm", .cifarDDPM, 8),
                                                     ("cifar-ddpm", .cifarDDPM, 16)]

    struct Result: Codable {
        let model: String
        let batch: Int
        let train_s: Double?
        let sample_s: Double?
    }

    func validate() throws {
        let known = Set(Self.all.map { "\($0.0):\($0.2)" })
        for c in cases where !known.contains(c) {
            throw ValidationError("unknown case '\(c)'; the cases are \(known.sorted().joined(separator: ", "))")
        }
        guard runs > 0, warmup >= 0 else { throw ValidationError("--runs must be positive and --warmup not negative") }
    }

    func run() throws {
        print("machine: \(Engine.machineDescription)")
        var generator = RandomGenerator(seed: 0)
        var results: [Result] = []
        for (name, config, batch) in Self.all where cases.isEmpty || cases.contains("\(name):\(batch)") {
            let model = try UNet2DModel(config, generator: &generator)
            let optimizer = Adam.adamW(model.namedParameters(), learningRate: 1e-4)
            let shape = [batch, config.inChannels, config.sampleSize, config.sampleSize]
            let x = generator.normal(shape), target = generator.normal(shape)
            let t = generator.integers(batch, below: 1000).map(Double.init)
            model.train()
            let train = phase == .sample ? nil : medianSeconds {
                optimizer.zeroGrad()
                let loss = mseLoss(model(x, timesteps: t), target)
                loss.backward()
                optimizer.step()
            }
            model.eval()
            // As in a sampler, whose steps after the first find the convolutions' weights packed.
            let sample = phase == .train ? nil : withFrozenWeights {
                medianSeconds { _ = withoutGradients { model(x, timesteps: t) } }
            }
            results.append(Result(model: name, batch: batch, train_s: train, sample_s: sample))
            func seconds(_ s: Double?) -> String { s.map { String(format: "%7.3f s", $0) } ?? "      —  " }
            print("\(name.padding(toLength: 12, withPad: " ", startingAt: 0)) batch \(String(format: "%3d", batch))  "
                  + "train step \(seconds(train))  sampling step \(seconds(sample))")
        }
        if let jsonPath {
            try JSONEncoder().encode(["results": results]).write(to: URL(fileURLWithPath: jsonPath))
        }
    }

    private func medianSeconds(_ body: () -> Void) -> Double {
        for _ in 0..<warmup { body() }
        let times = (0..<runs).map { _ -> Double in
            let start = Date()
            body()
            return Date().timeIntervalSince(start)
        }.sorted()
        return times[times.count / 2]
    }
}
