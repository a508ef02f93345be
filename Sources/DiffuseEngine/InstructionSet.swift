import COpenBLAS
import Foundation

extension Engine {
    /// The vector instructions the register tiles are cut for. `avx512`: 32 registers of 16 floats, which the 8 × 48
    /// and 6 × 64 tiles fill with 24 accumulators. `avx2` (with FMA): 16 registers of 8 floats, where those tiles
    /// would spill; they run as passes over quarters of the tile, 12 accumulators each, in the same order of sums,
    /// so that the results are the same bits. `portable`: the same 8-float passes, with no x86-specific code (ARM64's
    /// NEON holds them in its 32 registers of 4 floats).
    public enum InstructionSet: String, Sendable, CaseIterable {
        case avx512 = "AVX-512", avx2 = "AVX2+FMA", portable

        /// What the CPU this runs on reports, as far as this build may use it (a build for a CPU without AVX-512
        /// compiles 16-float vectors as pairs of 8: it takes `avx2` on any CPU).
        public static var detected: InstructionSet {
            switch diffuse_vector_level() {
            case 2: .avx512
            case 1: .avx2
            default: .portable
            }
        }

        /// `detected`, unless the environment variable DIFFUSE_INSTRUCTION_SET names another (avx512, avx2 or
        /// portable: any runs on any CPU the build runs on, at its own speed), for tests and benchmarks.
        static func chosen() -> InstructionSet {
            guard let name = ProcessInfo.processInfo.environment["DIFFUSE_INSTRUCTION_SET"] else { return detected }
            guard let set = allCases.first(where: { "\($0)" == name.lowercased() }) else {
                FileHandle.standardError.write(Data("DIFFUSE_INSTRUCTION_SET=\(name) is none of avx512, avx2, portable: using \(detected.rawValue)\n".utf8))
                return detected
            }
            return set
        }
    }

    /// The instruction set the register tiles run on (`InstructionSet.chosen()` at start; tests set it).
    nonisolated(unsafe) public static var instructionSet = InstructionSet.chosen()

    /// The CPU model (from /proc/cpuinfo where there is one), its cores and the register tiles the engine runs,
    /// for the headers of benchmarks and comparisons.
    public static var machineDescription: String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = info.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) }
        return "\(model ?? "unknown CPU"), \(cores) core\(cores == 1 ? "" : "s"), register tiles for \(instructionSet.rawValue)"
    }
}
