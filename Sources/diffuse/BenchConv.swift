import ArgumentParser
import DiffuseEngine
import DiffuseModels
import Foundation

/// `diffuse bench conv`: every convolution algorithm on every convolution layer of the reference U-Nets, beside the
/// one the planner picks, pass by pass: the figures that the planner's rules answer to.
struct ConvBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "Time each convolution algorithm on each layer of the U-Nets, beside the planner's choice.",
        discussion: """
        The layers are those one training step of the model runs (traced). For each, every algorithm that can run \
        it is forced (as DIFFUSE_CONVOLUTION does) and timed: the forward pass without gradients; the input gradient \
        and the weight gradient each as a backward pass through one convolution whose only leaf is the input \
        (the weight). Median milliseconds of --runs after --warmup; "*" marks the planned algorithm, "!" a plan \
        more than 10% slower than the fastest. The totals weigh each layer by its calls per step.
        """)

    @Option(name: .customLong("case"), help: ArgumentHelp(
        "Only this model and batch (repeatable), as for `diffuse bench unet`.", valueName: "model:batch"))
    var cases: [String] = []
    @Option(name: .customLong("layer"), help: ArgumentHelp(
        "Time this convolution instead of a model's (repeatable): batch, channels, height, width, output channels, "
            + "kernel size, stride, padding.", valueName: "N,C,H,W,O,K,S,P"))
    var layers: [String] = []
    @Option(help: "Timed runs per algorithm; the median is reported.") var runs = 5
    @Option(help: "Untimed warm-up calls per algorithm.") var warmup = 1
    @Option(help: "Each timed run repeats the call until it lasts at least this many seconds.") var minRunTime = 0.02

    func validate() throws {
        let known = Set(UNetBench.all.map { "\($0.0):\($0.2)" })
        for c in cases where !known.contains(c) {
            throw ValidationError("unknown case '\(c)'; the cases are \(known.sorted().joined(separator: ", "))")
        }
        guard runs > 0, warmup >= 0 else { throw ValidationError("--runs must be positive and --warmup not negative") }
        _ = try geometries()
    }

    /// The --layer geometries.
    private func geometries() throws -> [ConvGeometry] {
        try layers.map { text in
            let v = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard v.count == 8, v.allSatisfy({ $0 >= 0 }), v[0] > 0, v[1] > 0, v[4] > 0, v[5] > 0, v[6] > 0,
                  v[2] + 2 * v[7] >= v[5], v[3] + 2 * v[7] >= v[5] else {
                throw ValidationError("--layer '\(text)': give N,C,H,W,O,K,S,P as 8 whole numbers, the kernel no larger "
                                      + "than the padded input (e.g. 8,256,16,16,256,3,1,1)")
            }
            return ConvGeometry(input: [v[0], v[1], v[2], v[3]], weight: [v[4], v[1], v[5], v[5]], stride: v[6],
                                padding: (v[7], v[7]))
        }
    }

    func run() throws {
        print("machine: \(Engine.machineDescription)")
        let chosen = cases.isEmpty && layers.isEmpty ? ["mnist-small:32", "cifar-ddpm:8"] : cases
        let timer = Timer(runs: runs, warmup: warmup, minRunTime: minRunTime)
        var generator = RandomGenerator(seed: 0)
        for geometry in try geometries() {
            print("\n  \(geometry)")
            let plan = ConvolutionPlan(geometry)
            for pass in measure(geometry, timer, &generator) { print("    " + pass.line(planned: pass.planned(plan))) }
        }
        for (name, config, batch) in UNetBench.all where chosen.contains("\(name):\(batch)") {
            let model = try UNet2DModel(config, generator: &generator)
            let x = generator.normal([batch, config.inChannels, config.sampleSize, config.sampleSize])
            let t = generator.integers(batch, below: 1000).map(Double.init)
            let layers = tracingConvolutions { model(x, timesteps: t).backward(Tensor(repeating: 1, shape: x.shape)) }
            print("\n\(name), batch \(batch): \(layers.count) convolution geometries, "
                  + "\(layers.values.reduce(0) { $0 + $1.calls }) calls per training step")
            var totals = Totals()
            for (geometry, layer) in layers.sorted(by: { $0.key.description < $1.key.description }) {
                print("\n  \(geometry) ×\(layer.calls)")
                let measured = measure(geometry, timer, &generator)
                for pass in measured {
                    print("    " + pass.line(planned: pass.planned(layer.plan)))
                    totals.add(pass, planned: pass.planned(layer.plan), calls: layer.calls)
                }
            }
            totals.print()
        }
    }

    /// The timings of one geometry: per pass, each algorithm that can run it.
    private func measure(_ geo: ConvGeometry, _ timer: Timer, _ generator: inout RandomGenerator) -> [Pass] {
        let x = generator.normal(geo.input), weight = generator.normal(geo.weight, std: 0.1)
        let seed = generator.normal(geo.output)
        func time(_ forcing: Engine.ConvolutionForcing, runs: (ConvolutionPlan) -> Bool, _ body: () -> Void) -> Double? {
            Engine.withConvolutionForcing(forcing) {
                guard runs(ConvolutionPlan(geo)) else { return nil }
                return timer.measure(body).medianMs
            }
        }
        func conv(_ x: Tensor, _ w: Tensor) -> Tensor { conv2d(x, weight: w, bias: nil, stride: geo.stride, padding: geo.padding) }
        let tiles = ConvolutionAlgorithm.allCases.filter { $0 != .reference }
        let forward = tiles.map { a in
            time(.init(forward: a), runs: { $0.forward == a }) { _ = withoutGradients { conv(x, weight) } }
        }
        let input = tiles.map { a in
            time(.init(inputGradient: a), runs: { $0.inputGradient == a }) {
                let y = conv(x.requiringGrad(), weight)
                y.backward(seed)
            }
        }
        let weights = WeightGradientAlgorithm.allCases.filter { $0 != .reference }
        let weightTimes = weights.map { a in
            time(.init(weightGradient: a), runs: { $0.weightGradient == a }) {
                let y = conv(x, weight.requiringGrad())
                y.backward(seed)
            }
        }
        // The backward timings hold the forward once: take the planned forward out.
        let plannedForward = Engine.withConvolutionForcing(.init()) {
            timer.measure { _ = withoutGradients { conv(x, weight) } }.medianMs
        }
        func backward(_ ms: [Double?]) -> [Double?] { ms.map { $0.map { Swift.max(0, $0 - plannedForward) } } }
        return [Pass(name: "forward", algorithms: tiles.map(\.rawValue), ms: forward),
                Pass(name: "input", algorithms: tiles.map(\.rawValue), ms: backward(input)),
                Pass(name: "weight", algorithms: weights.map(\.rawValue), ms: backward(weightTimes))]
    }

    struct Pass {
        let name: String
        let algorithms: [String]
        let ms: [Double?]

        func planned(_ plan: ConvolutionPlan) -> Int {
            let name = switch self.name {
            case "forward": plan.forward.rawValue
            case "input": plan.inputGradient.rawValue
            default: plan.weightGradient.rawValue
            }
            return algorithms.firstIndex(of: name)!
        }

        var fastest: Double { ms.compactMap { $0 }.min() ?? 0 }

        func line(planned: Int) -> String {
            let cells = zip(algorithms, ms).enumerated().map { i, cell in
                let (algorithm, ms) = cell
                let time = ms.map { String(format: "%.3f", $0) } ?? "—"
                return "\(algorithm) \(time)\(i == planned ? "*" : "")"
            }
            let late = (ms[planned] ?? 0) > 1.1 * fastest ? "  ! planned is slower than the fastest" : ""
            return name.padding(toLength: 8, withPad: " ", startingAt: 0) + cells.joined(separator: "  ") + late
        }
    }

    /// Per pass: the step's milliseconds as planned and with each layer's fastest algorithm, and per algorithm the
    /// layers it was fastest on.
    struct Totals {
        var planned: [String: Double] = [:], best: [String: Double] = [:]
        var wins: [String: [String: Int]] = [:]

        mutating func add(_ pass: Pass, planned index: Int, calls: Int) {
            planned[pass.name, default: 0] += Double(calls) * (pass.ms[index] ?? 0)
            best[pass.name, default: 0] += Double(calls) * pass.fastest
            if let winner = zip(pass.algorithms, pass.ms).first(where: { $0.1 == pass.fastest })?.0 {
                wins[pass.name, default: [:]][winner, default: 0] += 1
            }
        }

        func print() {
            Swift.print("\n  per training step: pass, ms as planned, ms with each layer's fastest, fastest on (layers)")
            for pass in ["forward", "input", "weight"] {
                let counts = (wins[pass] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                Swift.print("    \(pass.padding(toLength: 8, withPad: " ", startingAt: 0))"
                            + String(format: "%9.2f %9.2f   ", planned[pass] ?? 0, best[pass] ?? 0)
                            + counts.joined(separator: ", "))
            }
        }
    }
}
