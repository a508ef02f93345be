import ArgumentParser
import COpenBLAS
import DiffuseEngine
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Diffuse's speed beside PyTorch on the same machine.",
        discussion: """
        A benchmark, not a test: it prints timings and never fails on them. Build with `-c release` first; a debug \
        build's numbers mean nothing. bench/engine.sh and bench/unet.sh run them beside PyTorch and print both.
        """,
        subcommands: [EngineBench.self, UNetBench.self, ConvBench.self, SDBench.self])
}

// MARK: - The engine benchmark

struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Time the engine's matmul and conv2d (forward, forward+backward) in GFLOP/s.",
        discussion: """
        matmul: the engine's public matmul (no graph) beside cblas_sgemm called directly on the same buffers, with \
        OpenBLAS's own threading at --threads threads ("raw"), at square sizes and at U-Net-like linear and \
        attention shapes; the ratio engine/raw is the engine's overhead.
        conv2d: the 3×3 convolutions of two diffusers UNet2DModel configs (mnist-small, batch 32; cifar-ddpm, \
        batch 8), forward and forward+backward (gradients of input, weight and bias).
        FLOPs: 2·M·N·K for a product; 2·N·O·C·KH·KW·OH·OW for a convolution's forward, 3× that forward+backward.
        Each case: warm-up calls, then one call to size a run to at least --min-run-time seconds, then --runs \
        timed runs; the per-call median is reported (bench/engine_torch.py does the same).
        """)

    @Option(name: .customLong("json"), help: ArgumentHelp("Also write the numbers as JSON to this file.", valueName: "path"))
    var jsonPath: String?
    @Option(help: "Timed runs per case; the median is reported.") var runs = 7
    @Option(help: "Untimed warm-up calls per case.") var warmup = 2
    @Option(help: "Each timed run repeats the call until it lasts at least this many seconds.") var minRunTime = 0.05
    @Option(help: "Cases whose id contains this text only (e.g. matmul, conv/cifar, square-1024).") var filter: String?
    @Option(help: "Threads for the engine's kernels and for raw OpenBLAS (default: the engine's default).")
    var threads: Int?

    func validate() throws {
        guard runs > 0, warmup >= 0 else { throw ValidationError("--runs must be positive and --warmup not negative") }
        guard minRunTime >= 0, minRunTime.isFinite else { throw ValidationError("--min-run-time must be ≥ 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
    }

    func run() throws {
        try Engine.withThreads(threads ?? Engine.threads) { try measure() }
    }

    private func measure() throws {
        #if DEBUG
        print("warning: this is a debug build; its timings are meaningless. Use `swift build -c release`.")
        let build = "debug"
        #else
        let build = "release"
        #endif
        // One small product first, so that whatever thread setting the engine gives OpenBLAS is in effect.
        consume(withoutGradients { matmul(Tensor(zeros: [64, 64]), Tensor(zeros: [64, 64])) })
        let timer = Timer(runs: runs, warmup: warmup, minRunTime: minRunTime)
        let raw = RawBLAS(threads: threads ?? Engine.threads)
        let selected = { (id: String) in filter.map { id.contains($0) } ?? true }
        let blasConfig = String(cString: openblas_get_config())
        let blasCore = String(cString: openblas_get_corename())
        let engineBlasThreads = Int(openblas_get_num_threads())
        print("diffuse bench engine (\(build) build): engine threads \(Engine.threads) (OpenBLAS inside the engine: "
              + "\(engineBlasThreads) thread\(engineBlasThreads == 1 ? "" : "s")); raw cblas_sgemm: OpenBLAS with "
              + "\(raw.threads) thread\(raw.threads == 1 ? "" : "s") [\(blasConfig), core \(blasCore)]")
        print("machine: \(Engine.machineDescription)")
        print("median of \(runs) runs after \(warmup) warm-up calls, each run ≥ \(minRunTime) s\n")

        var generator = RandomGenerator(seed: 0)
        let matmuls = MatmulCase.all.filter { selected($0.id) }.map { $0.measure(timer, raw, &generator) }
        if !matmuls.isEmpty { MatmulResult.printTable(matmuls) }
        let convs = ConvCase.all.filter { selected($0.id) }.map { $0.measure(timer, raw, &generator) }
        if !convs.isEmpty { ConvResult.printTable(convs) }

        if let jsonPath {
            let report = Report(
                tool: "diffuse", build: build,
                threads: .init(engine: Engine.threads, engineOpenblas: engineBlasThreads, rawOpenblas: raw.threads),
                blas: "\(blasConfig) (\(blasCore))",
                method: .init(runs: runs, warmup: warmup, minRunTime: minRunTime),
                matmul: matmuls, conv: convs)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            try encoder.encode(report).write(to: URL(fileURLWithPath: jsonPath))
            print("\nwrote \(jsonPath)")
        }
    }
}

// MARK: - Timing

/// Per-call times in milliseconds: the median and spread of the timed runs.
struct Timing: Codable {
    let medianMs, minMs, maxMs: Double
    let callsPerRun: Int
}

struct Timer {
    let runs, warmup: Int
    let minRunTime: Double

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

    func measure(_ body: () -> Void) -> Timing {
        for _ in 0..<warmup { body() }
        let start = Timer.now()
        body()
        let once = Swift.max(Timer.now() - start, 1e-7)
        let calls = Swift.max(1, Int((minRunTime / once).rounded(.up)))
        var samples: [Double] = []
        for _ in 0..<runs {
            let t0 = Timer.now()
            for _ in 0..<calls { body() }
            samples.append((Timer.now() - t0) / Double(calls) * 1e3)
        }
        samples.sort()
        let n = samples.count
        let median = n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2
        return Timing(medianMs: median, minMs: samples[0], maxMs: samples[n - 1], callsPerRun: calls)
    }
}

/// Keeps results observable so that no call is optimised away.
nonisolated(unsafe) private var sink: Float = 0
private func consume(_ t: Tensor) { sink += t.storage.pointer[0] }

private func gflops(_ flops: Double, _ ms: Double) -> Double { flops / (ms * 1e-3) / 1e9 }

/// Times raw cblas_sgemm calls with OpenBLAS's own threading at `threads` threads: the best the library does alone.
/// The engine may run OpenBLAS differently (single-threaded, splitting products over its own threads); its setting
/// is put back after each measurement.
struct RawBLAS {
    let threads: Int

    func measure(_ timer: Timer, _ body: () -> Void) -> Timing {
        let engineSetting = openblas_get_num_threads()
        openblas_set_num_threads(Int32(threads))
        let timing = timer.measure(body)
        openblas_set_num_threads(engineSetting)
        // OpenBLAS's idle workers spin (sched_yield), on some machines for good: stop them, so that they take nothing
        // from the engine's next measurement.
        if threads > 1 && engineSetting != threads { Engine.stopBLASThreads() }
        return timing
    }
}

/// Row-major C = op(A)·op(B) through cblas_sgemm, with the leading dimensions of dense operands.
private func rawSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                      _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(transA ? m : k), b, Int32(transB ? k : n), 0, c, Int32(n))
}

// MARK: - matmul

struct MatmulCase {
    let id, label: String
    /// C[batch, m, n] = A[batch, m, k] · op(B), B being [batch, k, n] or, transposed, [batch, n, k] (batch 0:
    /// plain matrices).
    let batch, m, n, k: Int
    let transB: Bool

    var flops: Double { 2 * Double(Swift.max(batch, 1) * m * n * k) }

    static let all: [MatmulCase] = [256, 512, 1024, 2048].map {
        MatmulCase(id: "matmul/square-\($0)", label: "square \($0)", batch: 0, m: $0, n: $0, k: $0, transB: false)
    } + [
        // Linear layers x·Wᵀ on [B·H·W, C] rows (attention projections, 1×1 convs), W of shape [C, C].
        MatmulCase(id: "matmul/mnist-14x14-c64-linear", label: "mnist 14² C64 x·Wᵀ",
                   batch: 0, m: 32 * 14 * 14, n: 64, k: 64, transB: true),
        MatmulCase(id: "matmul/mnist-7x7-c128-linear", label: "mnist 7² C128 x·Wᵀ",
                   batch: 0, m: 32 * 7 * 7, n: 128, k: 128, transB: true),
        MatmulCase(id: "matmul/cifar-16x16-c256-linear", label: "cifar 16² C256 x·Wᵀ",
                   batch: 0, m: 8 * 16 * 16, n: 256, k: 256, transB: true),
        MatmulCase(id: "matmul/cifar-8x8-c256-linear", label: "cifar 8² C256 x·Wᵀ",
                   batch: 0, m: 8 * 8 * 8, n: 256, k: 256, transB: true),
        // The time-embedding MLP (128·4 wide) at batch 8: launch overhead dominates.
        MatmulCase(id: "matmul/cifar-temb-512-linear", label: "cifar temb [8,512]·Wᵀ",
                   batch: 0, m: 8, n: 512, k: 512, transB: true),
        // Attention scores Q·Kᵀ per image at 16×16, 256 channels, one head: batched.
        MatmulCase(id: "matmul/cifar-16x16-attn-qk", label: "cifar 16² attn Q·Kᵀ ×8",
                   batch: 8, m: 256, n: 256, k: 256, transB: true),
    ]

    func measure(_ timer: Timer, _ blas: RawBLAS, _ generator: inout RandomGenerator) -> MatmulResult {
        let lead = batch > 0 ? [batch] : []
        let a = generator.normal(lead + [m, k])
        let b = generator.normal(lead + (transB ? [n, k] : [k, n]))
        let engine = timer.measure {
            consume(withoutGradients { matmul(a, b, transposeB: transB) })
        }
        let c = Tensor(zeros: lead + [m, n])
        let raw = blas.measure(timer) {
            for i in 0..<Swift.max(batch, 1) {
                rawSgemm(transA: false, transB: transB, m: m, n: n, k: k, a.storage.pointer + i * m * k,
                         b.storage.pointer + i * k * n, c.storage.pointer + i * m * n)
            }
            consume(c)
        }
        return MatmulResult(id: id, label: label, batch: batch, m: m, n: n, k: k, transB: transB, flops: flops,
                            engine: engine, raw: raw, engineGflops: gflops(flops, engine.medianMs),
                            rawGflops: gflops(flops, raw.medianMs), engineOverRaw: raw.medianMs / engine.medianMs)
    }
}

struct MatmulResult: Codable {
    let id, label: String
    let batch, m, n, k: Int
    let transB: Bool
    let flops: Double
    let engine, raw: Timing
    let engineGflops, rawGflops, engineOverRaw: Double

    static func printTable(_ rows: [MatmulResult]) {
        print("matmul (forward, no graph)        ours ms  GFLOP/s   raw ms  GFLOP/s  ours/raw")
        for r in rows {
            print(pad(r.label, 32) + num(r.engine.medianMs, 9, 3) + num(r.engineGflops, 9, 1)
                  + num(r.raw.medianMs, 9, 3) + num(r.rawGflops, 9, 1) + num(100 * r.engineOverRaw, 9, 1) + "%")
        }
        print()
    }
}

// MARK: - conv2d

struct ConvCase {
    let id, config, label: String
    let n, c, h, w, o, kernel, stride, padding: Int

    var oh: Int { (h + 2 * padding - kernel) / stride + 1 }
    var ow: Int { (w + 2 * padding - kernel) / stride + 1 }
    var forwardFlops: Double { 2 * Double(n * o * c * kernel * kernel * oh * ow) }

    private static func cases(config: String, batch: Int, inChannels: Int, size: Int, channels: [Int]) -> [ConvCase] {
        func conv(_ name: String, _ label: String, c: Int, o: Int, hw: Int, stride: Int = 1) -> ConvCase {
            ConvCase(id: "conv/\(config)/\(name)", config: config, label: label, n: batch, c: c, h: hw, w: hw, o: o,
                     kernel: 3, stride: stride, padding: 1)
        }
        var list = [conv("in-\(inChannels)-\(channels[0])-\(size)", "conv_in \(inChannels)→\(channels[0]) \(size)²",
                         c: inChannels, o: channels[0], hw: size)]
        var hw = size
        for ch in channels {
            list.append(conv("\(ch)-\(ch)-\(hw)", "\(ch)→\(ch) \(hw)²", c: ch, o: ch, hw: hw))
            hw /= 2
        }
        list.append(conv("down-\(channels[0])-\(size)", "down \(channels[0]) \(size)²→\(size / 2)² s2",
                         c: channels[0], o: channels[0], hw: size, stride: 2))
        return list
    }

    /// diffusers UNet2DModel: mnist-small (28², 1 channel, 32/64/128, batch 32) and google/ddpm-cifar10-32's
    /// (32², 3 channels, 128/256/256/256, batch 8).
    static let all = cases(config: "mnist-small", batch: 32, inChannels: 1, size: 28, channels: [32, 64, 128])
        + cases(config: "cifar-ddpm", batch: 8, inChannels: 3, size: 32, channels: [128, 256, 256, 256])

    func measure(_ timer: Timer, _ blas: RawBLAS, _ generator: inout RandomGenerator) -> ConvResult {
        let x = generator.normal([n, c, h, w])
        let weight = generator.normal([o, c, kernel, kernel], std: 0.1)
        let bias = generator.normal([o])
        let seed = generator.normal([n, o, oh, ow])
        let forward = timer.measure {
            consume(withoutGradients { conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding) })
        }
        let train = timer.measure {
            // Fresh leaves each call, so gradients are set rather than summed into the last call's.
            let (xl, wl, bl) = (x.requiringGrad(), weight.requiringGrad(), bias.requiringGrad())
            conv2d(xl, weight: wl, bias: bl, stride: stride, padding: padding).backward(seed)
            consume(xl.grad!); consume(wl.grad!); consume(bl.grad!)
        }

        return ConvResult(
            id: id, config: config, label: label, n: n, c: c, h: h, w: w, o: o, kernel: kernel, stride: stride,
            padding: padding, oh: oh, ow: ow, forwardFlops: forwardFlops, trainFlops: 3 * forwardFlops,
            forward: forward, train: train, forwardGflops: gflops(forwardFlops, forward.medianMs),
            trainGflops: gflops(3 * forwardFlops, train.medianMs))
    }
}

struct ConvResult: Codable {
    let id, config, label: String
    let n, c, h, w, o, kernel, stride, padding, oh, ow: Int
    let forwardFlops, trainFlops: Double
    let forward, train: Timing
    let forwardGflops, trainGflops: Double

    static func printTable(_ rows: [ConvResult]) {
        print("conv2d 3×3 pad 1 (NCHW)          forward        forward+backward")
        print("shape                         ms  GFLOP/s           ms  GFLOP/s")
        var config = ""
        for r in rows {
            if r.config != config {
                config = r.config
                print("\(config) (batch \(r.n))")
            }
            print(pad("  " + r.label, 24) + num(r.forward.medianMs, 9, 3) + num(r.forwardGflops, 9, 1)
                  + num(r.train.medianMs, 13, 3) + num(r.trainGflops, 9, 1))
        }
    }
}

// MARK: - Report

struct Report: Codable {
    struct Threads: Codable { let engine, engineOpenblas, rawOpenblas: Int }
    struct Method: Codable { let runs, warmup: Int; let minRunTime: Double }
    let tool, build: String
    let threads: Threads
    let blas: String
    let method: Method
    let matmul: [MatmulResult]
    let conv: [ConvResult]
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

private func num(_ v: Double, _ width: Int, _ decimals: Int) -> String {
    let s = String(format: "%.\(decimals)f", v)
    return s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
}
