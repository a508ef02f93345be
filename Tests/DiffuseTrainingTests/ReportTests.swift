import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseReport
import DiffuseTraining
import Foundation
import XCTest

/// The report generator on a tiny run: Markdown that pandoc (Debian's, installed by scripts/test.sh) converts to
/// HTML and DOCX without a warning, with its table and equations in the HTML, in English and in Russian.
final class ReportTests: TemporaryFolderTestCase {
    /// Runs pandoc in `folder`; returns its standard error.
    private func pandoc(_ arguments: [String], in folder: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["pandoc"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "pandoc \(arguments): \(text)")
        return text
    }

    /// A tiny DDPM run on 8×8 shapes, `steps` steps long, once pandoc is known to be there.
    private func tinyRun(steps: Int, seed: UInt64) throws -> RunFolder {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/pandoc") else {
            throw XCTSkip("pandoc is not installed (scripts/test.sh installs it: apt-get install pandoc)")
        }
        var g = RandomGenerator(seed: seed)
        let data = DataSet.images(SyntheticShapes.generate(count: 16, size: 8, generator: &g))
        var c = RunConfig()
        var u = UNet2DConfig.mnistSmall
        (u.sampleSize, u.inChannels, u.outChannels, u.blockOutChannels, u.normNumGroups) = (8, 3, 3, [8, 16, 16], 4)
        c.unet = u
        (c.steps, c.batchSize, c.timesteps, c.sampleEvery, c.checkpointEvery, c.sampleCount, c.sampleSteps) = (steps, 8, 50, 0, 0, 4, 5)
        let run = RunFolder(temporaryPath())
        _ = try Trainer(config: c, data: data, folder: run, resume: false).train()
        return run
    }

    func testReportOfATinyRunConvertsWithPandoc() throws {
        let run = try tinyRun(steps: 3, seed: 9)

        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let listing = try trainingStepListing(source: source)
        XCTAssertTrue(listing.hasPrefix("public func loss(update"), listing)
        XCTAssertTrue(listing.hasSuffix("}"), listing)
        for language in ReportLanguage.allCases {
            let out = temporaryPath()
            let options = ReportOptions(title: nil, author: "Test", language: language, date: "2026-11-28")
            try ReportWriter(runs: [RunSummary(run, name: "tiny")], comparison: nil, options: options, listing: listing).write(to: out)
            let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
            XCTAssertTrue(markdown.contains(language == .english ? "# The forward process" : "# Прямой процесс"))
            XCTAssertTrue(markdown.contains("$T = 50$"), "the schedule's numbers come from the run")
            XCTAssertTrue(markdown.contains("| tiny | ddpm |"), "the run's table")
            XCTAssertEqual(try pandoc(["--standalone", "--citeproc", "--mathml", "--self-contained", "-o", "report.html", "report.md"],
                                      in: out), "")
            XCTAssertEqual(try pandoc(["--standalone", "--citeproc", "-o", "report.docx", "report.md"], in: out), "")
            let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
            XCTAssertTrue(html.split(whereSeparator: \.isWhitespace).joined(separator: " ").contains("Denoising Diffusion Probabilistic Models"),
                          "the references, through citeproc")
            XCTAssertFalse(html.contains("?</strong>"), "a citation without its entry in references.bib")
            XCTAssertTrue(html.contains("<table"), "the table")
            XCTAssertGreaterThanOrEqual(html.components(separatedBy: "<math").count - 1, 5, "the equations")
            XCTAssertTrue(html.contains("minSNRGamma") && html.contains("sourceCode swift"), "the listing")
            let docx = try FileManager.default.attributesOfItem(atPath: out + "/report.docx")[.size] as? Int ?? 0
            XCTAssertGreaterThan(docx, 5000)
        }
    }

    /// A comparison's report: the FID-against-evaluations table per model (a row per sampler, a column per count),
    /// the figure, every solver's citation resolved by pandoc's citeproc.
    func testComparisonReportTabulatesFIDAgainstEvaluations() throws {
        let run = try tinyRun(steps: 2, seed: 2)
        func model(_ name: String, _ kind: String, fid: Double) -> ModelResult {
            ModelResult(name: name, kind: kind, run: run.path, parameters: 1000, trainingSeconds: 60, trainingSteps: 2, sampler: "ddim",
                        steps: 50, evaluationsPerSample: 50, secondsPerSample: 0.01, samples: 100, fid: fid, precision: 0.5,
                        recall: 0.5, kid: 0.01, kidStd: 0.001, sharpness: 0.1, referenceSharpness: 0.1, bitsPerDim: nil, nllImages: nil)
        }
        let steps = [("DDPM", "ddpm", 1000, 1000, 5.0), ("DDPM", "unipc", 5, 5, 9.5), ("DDPM", "unipc", 10, 10, 7.3),
                     ("DDPM", "heun", 3, 5, 12.0), ("Rectified flow", "euler", 10, 10, 8.0)].map {
            StepResult(model: $0.0, sampler: $0.1, steps: $0.2, evaluationsPerSample: $0.3, secondsPerSample: 0.01, samples: 100, fid: $0.4)
        }
        let results = ComparisonResults(data: "shapes", budgetMinutes: 1, machine: "test", featureNetwork: "classifier", resize: "none",
                                        reference: "16 images", models: [model("DDPM", "ddpm", fid: 5), model("Rectified flow", "flow", fid: 8)],
                                        steps: steps)
        let out = temporaryPath()
        let options = ReportOptions(author: "Test", language: .english, date: "2026-12-06")
        try ReportWriter(runs: [RunSummary(run, name: "DDPM")], comparison: results, options: options, listing: "func f() {}").write(to: out)
        let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        XCTAssertTrue(markdown.contains("| Sampler | 5 | 10 | 1000 |"), "DDPM's columns: the evaluation counts measured")
        XCTAssertTrue(markdown.contains("| unipc | 9.5 | 7.3 |"), "a row per sampler")
        XCTAssertTrue(markdown.contains("| Sampler | 10 |") && markdown.contains("| euler | 8.0 |"), "the flow model's own table")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/figures/fid-steps.svg"))
        for key in ["song2021", "lu2022", "zhao2023", "zhang2023", "karras2022", "lipman2023", "liu2023", "heusel2017"] {
            XCTAssertTrue(markdown.contains("@" + key), "cites \(key)")
        }
        XCTAssertEqual(try pandoc(["--standalone", "--citeproc", "--mathml", "-o", "report.html", "report.md"], in: out), "")
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8).split(whereSeparator: \.isWhitespace)
            .joined(separator: " ")
        XCTAssertTrue(html.contains("A Unified Predictor-Corrector Framework"), "UniPC's reference")
        XCTAssertFalse(html.contains("?</strong>"), "every citation resolved")
    }
}
