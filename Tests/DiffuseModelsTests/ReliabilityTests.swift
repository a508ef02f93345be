import Foundation
import XCTest

/// What a crash, a full disk or a damaged file does to a run: nothing that cannot be recovered.
final class ReliabilityTests: FolderTestCase {
    /// The program beside the tests, run by bash with `setup` first (a ulimit); its status and output.
    private func shell(_ setup: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProgram("bash", ["-c", "\(setup); exec \"$0\" \"$@\"", try diffuseProgram()] + arguments)
    }

    private func train(_ out: String, steps: Int, extra: [String] = []) throws {
        let run = try diffuse(["train", "--data", "shapes", "--preset", "tiny", "--image-size", "16", "--examples", "200", "--steps",
                               "\(steps)", "--checkpoint-every", "5", "--sample-every", "0", "--out", out] + extra)
        XCTAssertEqual(run.status, 0, run.errors)
    }

    /// scripts/kill9.sh, reduced: 4 SIGKILLs (two while a checkpoint is written), each resumed; the losses and the
    /// final checkpoint equal an uninterrupted run's, bit for bit.
    func testKillNineAndResume() throws {
        let (status, text) = try runProgram("bash", [repositoryRoot.appendingPathComponent("scripts/kill9.sh").path],
                                            environment: ["DIFFUSE": try diffuseProgram(), "KILLS": "4", "STEPS": "60", "EVERY": "5", "SEED": "7"])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("equal the uninterrupted run's, bit for bit"), text)
        XCTAssertTrue(text.contains("mid-write"), "a kill landed while a checkpoint was being written: \(text)")
    }

    /// A disk that fills (a file-size limit, so that no mount is needed): the checkpoint and sample writes fail with
    /// an error that says so, the previous checkpoint is kept and resumes, no temporary file stays behind.
    func testFullDiskKeepsThePreviousCheckpoint() throws {
        let run = path("run")
        try train(run, steps: 10)
        let before = try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.safetensors"))
        // 4 MB of file size allowed: the log grows, the 11 MB checkpoint does not fit.
        let full = try shell("trap '' XFSZ; ulimit -f 4000", ["train", "--out", run, "--resume", "--steps", "20"])
        XCTAssertNotEqual(full.status, 0)
        XCTAssertTrue(full.output.contains("cannot write \(run)/checkpoint.safetensors: writing failed after 4096000 of"), full.output)
        XCTAssertTrue(full.output.contains("File too large"), full.output)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.safetensors")), before, "the previous checkpoint is kept")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.hasSuffix(".tmp") }, [])
        let png = try shell("trap '' XFSZ; ulimit -f 1", ["sample", run, "--count", "16", "--steps", "5", "--out", path("s.png")])
        XCTAssertNotEqual(png.status, 0)
        XCTAssertTrue(png.output.contains("cannot write \(path("s.png")): writing failed after 1024 of"), png.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("s.png")))
        // With room again, the run resumes from the kept checkpoint and ends as asked.
        let resumed = try diffuse(["train", "--out", run, "--resume", "--steps", "20"])
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertEqual(try String(contentsOfFile: run + "/log.csv", encoding: .utf8).split(separator: "\n").count, 21)
    }

    /// A real full disk where the machine lets the tests mount one (a 24 MB tmpfs, as root): a checkpoint write that
    /// meets ENOSPC fails with "No space left on device", the previous checkpoint is kept, and the run resumes once
    /// there is room again.
    func testNoSpaceLeftOnATmpfs() throws {
        let mount = path("disk")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        guard try runProgram("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mount]).status == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): testFullDiskKeepsThePreviousCheckpoint covers a full disk with a file-size limit")
        }
        defer { _ = try? runProgram("umount", [mount]) }
        let run = mount + "/run"
        try train(run, steps: 10)
        let before = try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.safetensors"))
        // Leave about 4 MB free: the next 11 MB checkpoint cannot be written.
        let free = try XCTUnwrap(try FileManager.default.attributesOfFileSystem(forPath: mount)[.systemFreeSize] as? Int)
        XCTAssertTrue(FileManager.default.createFile(atPath: mount + "/filler", contents: Data(count: max(0, free - 4_000_000))))
        let full = try diffuse(["train", "--out", run, "--resume", "--steps", "20"])
        XCTAssertNotEqual(full.status, 0)
        XCTAssertTrue(full.errors.contains("cannot write \(run)/checkpoint.safetensors: writing failed after"), full.errors)
        XCTAssertTrue(full.errors.contains("No space left on device"), full.errors)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/checkpoint.safetensors")), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.hasSuffix(".tmp") }, [])
        try FileManager.default.removeItem(atPath: mount + "/filler")
        let resumed = try diffuse(["train", "--out", run, "--resume", "--steps", "20"])
        XCTAssertEqual(resumed.status, 0, resumed.errors)
    }

    /// A ring of checkpoints (--keep-checkpoints 3): the older ones kept as checkpoint-STEP; a latest one damaged on
    /// disk (a flipped byte, caught by its checksum; a truncation) falls back to the one before, with a warning, for
    /// sampling and for resuming. With no older one, the damage is an error naming the file.
    func testDamagedCheckpointFallsBackToTheOneBefore() throws {
        let run = path("ring")
        try train(run, steps: 30, extra: ["--keep-checkpoints", "3"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.hasPrefix("checkpoint") }.sorted(),
                       ["checkpoint-000020.safetensors", "checkpoint-000025.safetensors", "checkpoint.safetensors"])
        let latest = run + "/checkpoint.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: latest))
        bytes[bytes.count - 1000] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: latest))
        let sampled = try diffuse(["sample", run, "--count", "4", "--steps", "3", "--out", path("s.png")])
        XCTAssertEqual(sampled.status, 0, sampled.errors)
        XCTAssertTrue(sampled.errors.contains("is damaged: its values do not match the checksum written with them; using \(run)/checkpoint-000025.safetensors (step 25) instead"),
                      sampled.errors)
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: latest))
        let resumed = try diffuse(["train", "--out", run, "--resume", "--steps", "35"])
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertTrue(resumed.errors.contains("checkpoint-000025.safetensors (step 25) instead"), resumed.errors)
        XCTAssertEqual(try String(contentsOfFile: run + "/log.csv", encoding: .utf8).split(separator: "\n").count, 36)

        let single = path("single")
        try train(single, steps: 10)
        var one = try Data(contentsOf: URL(fileURLWithPath: single + "/checkpoint.safetensors"))
        one[one.count - 1000] ^= 0x40
        try one.write(to: URL(fileURLWithPath: single + "/checkpoint.safetensors"))
        let refused = try diffuse(["sample", single, "--count", "4", "--out", path("t.png")])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.errors.contains("checkpoint \(single)/checkpoint.safetensors: is damaged"), refused.errors)
    }
}
