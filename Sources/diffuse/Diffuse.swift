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
                      Demo.self, Bench.self]
    )

    /// Results (standard output) reach a log file or a pipe line by line, in step with the progress lines
    /// (standard error), instead of in blocks at exit.
    static func main() {
        setvbuf(stdout, nil, _IOLBF, 0)
        main(nil)
    }
}
