import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseReport
import Foundation

/// DiffusionObjective's loss function as it is in the Diffuse source tree at `source`: the listing of a report.
public func trainingStepListing(source: String) throws -> String {
    let path = source + "/Sources/DiffuseTraining/Objectives.swift"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw DiffuseError.report("the source of the training step is not at \(path); give the Diffuse source tree with --source")
    }
    let lines = text.components(separatedBy: "\n")
    guard let classLine = lines.firstIndex(where: { $0.contains("final class DiffusionObjective") }),
          let start = lines[classLine...].firstIndex(where: { $0.contains("public func loss(update") }) else {
        throw DiffuseError.report("\(path) has no DiffusionObjective.loss to list")
    }
    var depth = 0, end = start
    for i in start..<lines.count {
        depth += lines[i].filter { $0 == "{" }.count - lines[i].filter { $0 == "}" }.count
        end = i
        if depth == 0 && i > start { break }
    }
    let body = lines[start...end]
    let indent = body.first!.prefix { $0 == " " }.count
    return body.map { String($0.dropFirst(min(indent, $0.prefix { $0 == " " }.count))) }.joined(separator: "\n")
}

extension RunSummary {
    /// What a report needs of a run folder: its settings, its log's columns, and its pictures.
    public init(_ folder: RunFolder, name: String) throws {
        let config = try folder.readConfig()
        let objective = try makeObjective(config, exampleShape: config.exampleShape)
        let log = folder.readLog()
        let (seconds, steps) = folder.trainingCost(log: log)
        self.init(name: name, kind: config.kind.rawValue, folder: folder.path, parameters: objective.generatingParameterCount,
                  imageShape: config.exampleShape, log: log, trainingSeconds: seconds, trainingSteps: steps)
        if config.kind == .ddpm || config.kind == .latentDiffusion {
            (timesteps, betaStart, betaEnd) = (config.timesteps, config.betaStart, config.betaEnd)
            (schedule, prediction, classes) = (config.schedule.rawValue, config.prediction.rawValue, config.classes)
        }
        if let diffusion = objective as? DiffusionObjective, let vae = diffusion.firstStage {
            (latentShape, scalingFactor) = (diffusion.noiseShape, vae.config.scalingFactor)
        }
        let grids = ((try? FileManager.default.contentsOfDirectory(atPath: folder.samples)) ?? []).filter { $0.hasSuffix(".png") }.sorted()
        grid = grids.last.map { folder.samples + "/" + $0 }
        scheduleFigure = folder.file("schedule.svg")
        forwardFigure = folder.file("forward.png")
    }
}
