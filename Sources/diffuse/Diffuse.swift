import ArgumentParser
import DiffuseEngine
import Foundation

@main
struct Diffuse: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "diffuse",
        abstract: "Denoising diffusion models in Swift: train, sample, evaluate and compare them on the CPU.",
        discussion: """
        Diffuse runs on its own tensor and autodiff engine over OpenBLAS. Each verb has its own --help.
        """,
        version: "\(version) (\(Engine.machineDescription))",
        subcommands: [Train.self, Sample.self, Generate.self, Eval.self, Compare.self, ReportCommand.self, Export.self, Info.self,
                      Serve.self, Demo.self, Bench.self]
    )

    /// Results (standard output) reach a log file or a pipe line by line, in step with the progress lines
    /// (standard error), instead of in blocks at exit.
    static func main() {
        setvbuf(stdout, nil, _IOLBF, 0)
        // Blocks of 1 MiB and more are mapped and given back when freed. glibc's default raises that threshold to the
        // largest block freed so far (up to 32 MiB), after which a checkpoint's buffers are carved from the heap and
        // left there: a long run's resident memory then climbs a few MB at some checkpoint writes. (glibc's mallopt,
        // M_MMAP_THRESHOLD = −3, found at run time: Swift's Glibc module leaves malloc.h out.)
        if let mallopt = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {
            _ = unsafeBitCast(mallopt, to: (@convention(c) (Int32, Int32) -> Int32).self)(-3, 1 << 20)
        }
        main(nil)
    }
}

/// Runs `body` in the processes of the MPI job that a launcher (mpirun, srun) started this one in, or alone. An
/// error on one process ends them all (the others may be waiting for it in a collective call), naming its rank.
func inProcessGroup(_ body: (ProcessGroup) throws -> Void) throws {
    let group: ProcessGroup = MPIProcessGroup.launched ? try MPIProcessGroup() : SingleProcess()
    guard let mpi = group as? MPIProcessGroup else { return try body(group) }
    do {
        try body(group)
        mpi.finish()
    } catch let exit as ExitCode {
        mpi.finish()
        throw exit
    } catch {
        FileHandle.standardError.write(Data("error on rank \(mpi.rank) of \(mpi.size): \(error.localizedDescription)\n".utf8))
        mpi.abort(code: 1)
    }
}

/// `--threads`, for the commands that run the engine's kernels.
struct EngineThreads: ParsableArguments {
    @Option(help: "Threads of the engine (default: the cores this process may use; under mpirun, those of its rank).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
    }

    /// Runs `body` with the engine on --threads threads, or its default.
    func scope<R>(_ body: () throws -> R) rethrows -> R { try Engine.withThreads(threads ?? Engine.threads, body) }
}
