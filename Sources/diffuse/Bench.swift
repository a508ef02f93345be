import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Diffuse's speed beside PyTorch on the same machine.",
        subcommands: [])
}
