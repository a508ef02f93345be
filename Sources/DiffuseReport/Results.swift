import DiffuseEngine
import Foundation

/// What `diffuse compare` measured, as its results.json: one row per model under the main sampler, and the FID of
/// the diffusion models against the number of sampling steps. The report's tables and figures are drawn from it
/// (and from the run folders it names), so every number in a report comes from a file.
public struct ComparisonResults: Codable, Equatable, Sendable {
    /// The data set and the training budget each model had (minutes of wall-clock, nil when the runs were given).
    public var data: String
    public var budgetMinutes: Double?
    /// The machine: CPU model and cores, for the timing columns.
    public var machine: String
    /// The feature network of every FID here, its resize mode, and the reference images.
    public var featureNetwork: String
    public var resize: String
    public var reference: String
    public var models: [ModelResult]
    public var steps: [StepResult]

    public init(data: String, budgetMinutes: Double?, machine: String, featureNetwork: String, resize: String, reference: String,
                models: [ModelResult], steps: [StepResult]) {
        (self.data, self.budgetMinutes, self.machine) = (data, budgetMinutes, machine)
        (self.featureNetwork, self.resize, self.reference) = (featureNetwork, resize, reference)
        (self.models, self.steps) = (models, steps)
    }

    public static func read(_ path: String) throws -> ComparisonResults {
        guard let data = fileContents(path) else {
            throw DiffuseError.report("\(path): not found (a results.json written by `diffuse compare`)")
        }
        do { return try JSONDecoder().decode(ComparisonResults.self, from: data) }
        catch { throw DiffuseError.report("\(path): not a results file of `diffuse compare` (\(error))") }
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(encoder.encode(self), to: path)
    }
}

extension ComparisonResults {
    /// A run folder as results.json records it: relative to the folder that holds the results file, so that the two
    /// can move together and a report finds the runs from anywhere.
    public static func recorded(run: String, resultsFolder: String) -> String {
        let target = URL(fileURLWithPath: run).standardizedFileURL.pathComponents
        let base = URL(fileURLWithPath: resultsFolder).standardizedFileURL.pathComponents
        let common = zip(target, base).prefix { $0 == $1 }.count
        let path = Array(repeating: "..", count: base.count - common) + target[common...]
        return path.isEmpty ? "." : path.joined(separator: "/")
    }

    /// The run folder of a model whose results file lies in `resultsFolder`: its recorded path taken from there, or,
    /// for results written before runs were recorded so (relative to where `diffuse compare` ran), as given.
    public static func located(run: String, resultsFolder: String) -> String {
        if run.hasPrefix("/") { return run }
        let fromResults = URL(fileURLWithPath: resultsFolder).appendingPathComponent(run).standardizedFileURL.path
        return FileManager.default.fileExists(atPath: fromResults + "/config.json") ? fromResults : run
    }
}

/// One trained model's measurements.
public struct ModelResult: Codable, Equatable, Sendable {
    /// The name shown (DDPM, Latent diffusion, VAE, GAN) and the kind of run.
    public var name: String
    public var kind: String
    /// The run folder, relative to the folder of the results file (see `ComparisonResults.recorded`).
    public var run: String
    public var parameters: Int
    public var trainingSeconds: Double
    public var trainingSteps: Int
    public var sampler: String
    public var steps: Int?
    public var evaluationsPerSample: Int
    public var secondsPerSample: Double
    public var samples: Int
    public var fid: Double
    public var precision: Double
    public var recall: Double
    public var kid: Double
    public var kidStd: Double
    /// The mean Laplacian magnitude of the samples and of the reference images (see `meanLaplacianMagnitude`).
    public var sharpness: Double
    public var referenceSharpness: Double
    public var bitsPerDim: Double?
    public var nllImages: Int?

    public init(name: String, kind: String, run: String, parameters: Int, trainingSeconds: Double, trainingSteps: Int,
                sampler: String, steps: Int?, evaluationsPerSample: Int, secondsPerSample: Double, samples: Int, fid: Double,
                precision: Double, recall: Double, kid: Double, kidStd: Double, sharpness: Double, referenceSharpness: Double,
                bitsPerDim: Double?, nllImages: Int?) {
        (self.name, self.kind, self.run, self.parameters) = (name, kind, run, parameters)
        (self.trainingSeconds, self.trainingSteps, self.sampler, self.steps) = (trainingSeconds, trainingSteps, sampler, steps)
        (self.evaluationsPerSample, self.secondsPerSample, self.samples) = (evaluationsPerSample, secondsPerSample, samples)
        (self.fid, self.precision, self.recall, self.kid, self.kidStd) = (fid, precision, recall, kid, kidStd)
        (self.sharpness, self.referenceSharpness) = (sharpness, referenceSharpness)
        (self.bitsPerDim, self.nllImages) = (bitsPerDim, nllImages)
    }
}

/// A diffusion model's FID with one sampler at one number of steps.
public struct StepResult: Codable, Equatable, Sendable {
    public var model: String
    public var sampler: String
    public var steps: Int
    public var evaluationsPerSample: Int
    public var secondsPerSample: Double
    public var samples: Int
    public var fid: Double

    public init(model: String, sampler: String, steps: Int, evaluationsPerSample: Int, secondsPerSample: Double, samples: Int, fid: Double) {
        (self.model, self.sampler, self.steps, self.evaluationsPerSample) = (model, sampler, steps, evaluationsPerSample)
        (self.secondsPerSample, self.samples, self.fid) = (secondsPerSample, samples, fid)
    }
}

