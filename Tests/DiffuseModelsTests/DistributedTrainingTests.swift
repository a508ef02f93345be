import DiffuseEngine
import Foundation
import XCTest

/// Data-parallel training over MPI (`mpirun -np 2 diffuse train`) against one process: the same losses and weights
/// up to the order of float sums; a killed rank ends the job and leaves a loadable checkpoint; SIGTERM to one rank
/// stops both with one checkpoint; a run resumes on another number of processes. Needs Open MPI's mpirun (the
/// README's test command installs it); skips with a message without it.
final class DistributedTrainingTests: XCTestCase {
    /// The largest differences seen, printed for the record: weights (relative to the largest weight) and losses.
    static let tolerance: Float = 1e-4

    private var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-\(getpid())-\(name.filter(\.isLetter))")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: folder) }

    private static let mpirun: URL? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].map(URL.init(fileURLWithPath:))
        .first { FileManager.default.isExecutableFile(atPath: $0.path) }

    private var program: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("diffuse")
    }

    /// `mpirun -np ranks diffuse arguments` (`diffuse arguments` for one), started, not waited for; its output in a
    /// file of the test's folder.
    private func launch(ranks: Int, _ arguments: [String], log: String) throws -> Process {
        guard let mpirun = Self.mpirun else {
            throw XCTSkip("Open MPI's mpirun is not installed (apt-get install openmpi-bin; scripts/test.sh does)")
        }
        guard FileManager.default.isExecutableFile(atPath: program.path) else {
            throw XCTSkip("no diffuse program beside the tests: build it first (swift build --build-tests)")
        }
        // One process runs alone, as a user would run it without MPI.
        let process = Process()
        process.executableURL = ranks == 1 ? program : mpirun
        process.arguments = (ranks == 1 ? [] : ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "\(ranks)", program.path])
            + arguments + ["--threads", "1"]
        _ = FileManager.default.createFile(atPath: folder.appendingPathComponent(log).path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: folder.appendingPathComponent(log))
        process.standardError = process.standardOutput
        try process.run()
        return process
    }

    private func run(ranks: Int, _ arguments: [String]) throws {
        let log = "log-\(ranks)-\(arguments.joined().filter(\.isLetter).suffix(20)).txt"
        let process = try launch(ranks: ranks, arguments, log: log)
        process.waitUntilExit()
        let output = (try? String(contentsOf: folder.appendingPathComponent(log), encoding: .utf8)) ?? ""
        XCTAssertEqual(process.terminationStatus, 0, output)
    }

    private func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// The values of a run's log column, step by step.
    private func column(_ name: String, of run: String) throws -> [Float] {
        let lines = try String(contentsOfFile: path(run) + "/log.csv", encoding: .utf8).split(separator: "\n")
        let index = try XCTUnwrap(lines[0].split(separator: ",").firstIndex(of: Substring(name)), "\(name) in \(lines[0])")
        return lines.dropFirst().map { Float($0.split(separator: ",", omittingEmptySubsequences: false)[index])! }
    }

    /// The largest difference between the model weights of two runs' checkpoints, relative to the largest weight,
    /// and between their logged values of `columns`; asserts both are within `tolerance`.
    /// `noise`: parameters and buffers (keys after `model.` or `ema.`) compared only to `noiseTolerance`: those whose
    /// gradient is 0 in exact arithmetic (a convolution's bias just before BatchNorm, which subtracts it again), so
    /// that Adam's m/√v turns their float noise, different in any other order of sums, into steps of up to the
    /// learning rate; and the running means that follow them.
    private func assertSameRun(_ a: String, _ b: String, columns: [String], noise: Set<String> = [],
                               noiseTolerance: Float = 0) throws {
        let (x, y) = (try SafeTensorsFile(path: path(a) + "/checkpoint.safetensors"),
                      try SafeTensorsFile(path: path(b) + "/checkpoint.safetensors"))
        XCTAssertEqual(x.names.sorted(), y.names.sorted())
        var (largest, difference, noisy): (Float, Float, Float) = (0, 0, 0)
        for name in x.names where name.hasPrefix("model.") || name.hasPrefix("ema.") {
            let (u, v) = (try x.tensor(name).scalars, try y.tensor(name).scalars)
            let isNoise = noise.contains(String(name.drop { $0 != "." }.dropFirst()))
            for (p, q) in zip(u, v) {
                largest = max(largest, abs(p))
                if isNoise { noisy = max(noisy, abs(p - q)) } else { difference = max(difference, abs(p - q)) }
            }
        }
        var lossDifference: Float = 0
        for c in columns {
            let (u, v) = (try column(c, of: a), try column(c, of: b))
            XCTAssertEqual(u.count, v.count, c)
            for (p, q) in zip(u, v) { lossDifference = max(lossDifference, abs(p - q) / max(abs(p), 1)) }
        }
        print("\(name): \(a) against \(b): weights differ by \(difference / largest) of the largest, \(columns) by \(lossDifference)"
              + (noise.isEmpty ? "" : "; \(noise.sorted()) by \(noisy / largest)"))
        XCTAssertLessThan(difference / largest, Self.tolerance, "weights of \(a) and \(b)")
        XCTAssertLessThanOrEqual(noisy / largest, noiseTolerance, "\(noise.sorted()) of \(a) and \(b)")
        XCTAssertLessThan(lossDifference, Self.tolerance, "\(columns) of \(a) and \(b)")
    }

    private let ddpm = ["train", "--data", "shapes", "--examples", "64", "--preset", "tiny", "--batch-size", "8", "--dropout", "0.1",
                        "--sample-every", "0", "--checkpoint-every", "5", "--warmup", "5", "--seed", "7"]

    func testDDPMOnTwoRanksEqualsOneProcess() throws {
        try run(ranks: 1, ddpm + ["--steps", "20", "--out", path("one")])
        try run(ranks: 2, ddpm + ["--steps", "20", "--out", path("two")])
        try assertSameRun("one", "two", columns: ["loss", "grad_norm"])
    }

    func testGANOnTwoRanksEqualsOneProcess() throws {
        let gan = ["train", "--model", "gan", "--data", "shapes", "--examples", "64", "--image-size", "16", "--width", "16",
                   "--latent-dim", "16", "--batch-size", "8", "--r1-gamma", "1", "--sample-every", "0", "--steps", "20", "--seed", "3"]
        try run(ranks: 1, gan + ["--out", path("one")])
        try run(ranks: 2, gan + ["--out", path("two")])
        // 20 steps of Adam at 2e-4 move a parameter by at most 4e-3, the bound of the noisy ones.
        try assertSameRun("one", "two", columns: ["d_loss", "g_loss", "d_real", "d_fake", "r1"],
                          noise: ["discriminator.conv2.bias", "discriminator.norm.running_mean", "generator.convs.0.bias",
                                  "generator.convs.1.bias", "generator.norms.1.running_mean", "generator.norms.2.running_mean"],
                          noiseTolerance: 4e-3)
    }

    /// The pids of the ranks of a job started by `launch` (Open MPI sets OMPI_COMM_WORLD_RANK in each).
    private func ranks(of out: String) throws -> [Int: pid_t] {
        var found: [Int: pid_t] = [:]
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = pid_t(entry),
                  let command = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                  String(decoding: command, as: UTF8.self).contains(out),
                  let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            for variable in String(decoding: environment, as: UTF8.self).split(separator: "\0")
            where variable.hasPrefix("OMPI_COMM_WORLD_RANK=") {
                found[Int(variable.dropFirst("OMPI_COMM_WORLD_RANK=".count))!] = pid
            }
        }
        return found
    }

    /// Waits (up to `seconds`) for `condition`.
    private func wait(_ seconds: Double, for condition: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if try condition() { return true }
            usleep(50_000)
        }
        return false
    }

    func testKilledRankEndsTheJobAndTheCheckpointLoads() throws {
        let out = path("killed")
        let job = try launch(ranks: 2, ddpm + ["--steps", "100000", "--checkpoint-every", "3", "--out", out], log: "killed.txt")
        defer { if job.isRunning { job.terminate() } }
        XCTAssertTrue(wait(120) { FileManager.default.fileExists(atPath: out + "/checkpoint.safetensors") }, "a first checkpoint")
        let pids = try ranks(of: out)
        let victim = try XCTUnwrap(pids[1], "rank 1 among \(pids)")
        kill(victim, SIGKILL)
        let killed = Date()
        XCTAssertTrue(wait(10) { !job.isRunning }, "the job still runs 10 s after rank 1 was killed")
        print("\(name): the job ended \(Date().timeIntervalSince(killed)) s after rank 1 was killed")
        job.waitUntilExit()
        XCTAssertNotEqual(job.terminationStatus, 0)
        let checkpoint = try SafeTensorsFile(path: out + "/checkpoint.safetensors")
        XCTAssertFalse(try checkpoint.tensor(checkpoint.names.sorted()[0]).scalars.isEmpty)
        XCTAssertNotNil(checkpoint.metadata["state"])
    }

    /// SIGTERM to rank 1 of 2 stops both at the same step with one checkpoint; the run then resumes on 1 process,
    /// and a copy of it on 3, both ending as one process' uninterrupted run.
    func testSIGTERMToOneRankStopsBothAndTheRunResumesOnOneOrThreeRanks() throws {
        let steps = ddpm + ["--steps", "60", "--checkpoint-every", "0"]
        try run(ranks: 1, steps + ["--out", path("one")])
        let out = path("stopped")
        let job = try launch(ranks: 2, steps + ["--out", out], log: "stopped.txt")
        defer { if job.isRunning { job.terminate() } }
        // Running: its log has a few steps.
        XCTAssertTrue(wait(120) { ((try? String(contentsOfFile: out + "/log.csv", encoding: .utf8))?.split(separator: "\n").count ?? 0) > 3 })
        let pids = try ranks(of: out)
        kill(try XCTUnwrap(pids[1], "rank 1 among \(pids)"), SIGTERM)
        XCTAssertTrue(wait(30) { !job.isRunning }, "the job still runs 30 s after SIGTERM to rank 1")
        job.waitUntilExit()
        let output = try String(contentsOf: folder.appendingPathComponent("stopped.txt"), encoding: .utf8)
        XCTAssertEqual(job.terminationStatus == 0, false, output)
        XCTAssertTrue(output.contains("checkpoint written"), output)
        let state = try XCTUnwrap(try SafeTensorsFile(path: out + "/checkpoint.safetensors").metadata["state"])
        let step = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any])["step"] as? Int
        let logged = try column("loss", of: "stopped").count
        XCTAssertEqual(step, logged, "the checkpoint holds the last logged step")
        XCTAssertLessThan(logged, 60, "the run ended before the signal: nothing to resume")
        print("\(name): stopped at step \(logged) of 60")
        try FileManager.default.copyItem(atPath: out, toPath: path("copy"))
        try run(ranks: 1, ["train", "--out", out, "--resume"])
        try assertSameRun("one", "stopped", columns: ["loss", "grad_norm"])
        try run(ranks: 3, ["train", "--out", path("copy"), "--resume"])
        try assertSameRun("one", "copy", columns: ["loss", "grad_norm"])
    }

    /// `mpirun -np 2 diffuse sample` and `diffuse eval` share the batches out: the samples (with a stochastic
    /// sampler, over several batches) and the metrics equal one process', bit for bit.
    func testSamplingAndEvaluationSharedByBatchEqualOneProcess() throws {
        try run(ranks: 1, ddpm + ["--steps", "3", "--out", path("run")])
        try run(ranks: 1, ["train", "--model", "classifier", "--data", "shapes", "--examples", "64", "--batch-size", "8",
                           "--steps", "3", "--out", path("classifier")])
        let sample = ["sample", path("run"), "--sampler", "euler-ancestral", "--steps", "4", "--count", "10", "--batch-size", "3",
                      "--seed", "5"]
        try run(ranks: 1, sample + ["--out", path("one.safetensors")])
        try run(ranks: 2, sample + ["--out", path("two.safetensors")])
        let (one, two) = (try SafeTensorsFile(path: path("one.safetensors")).tensor("samples"),
                          try SafeTensorsFile(path: path("two.safetensors")).tensor("samples"))
        XCTAssertEqual(one.shape, [10, 3, 32, 32])
        XCTAssertEqual(one.scalars, two.scalars)
        let eval = ["eval", path("run"), "--features", "classifier:" + path("classifier"), "--samples", "12", "--batch-size", "5",
                    "--sampler", "ddpm", "--steps", "3", "--cache", path("cache")]
        try run(ranks: 1, eval + ["--out", path("one.json")])
        try run(ranks: 2, eval + ["--out", path("two.json")])
        func metrics(_ file: String) throws -> [String: Any] {
            var values = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(file))) as? [String: Any])
            values["secondsPerSample"] = nil
            return values
        }
        XCTAssertEqual(try metrics("one.json") as NSDictionary, try metrics("two.json") as NSDictionary)
    }
}
