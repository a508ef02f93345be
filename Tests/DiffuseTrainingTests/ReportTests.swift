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

    func testReportOfATinyRunConvertsWithPandoc() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/pandoc") else {
            throw XCTSkip("pandoc is not installed (scripts/test.sh installs it: apt-get install pandoc)")
        }
        var g = RandomGenerator(seed: 9)
        let data = DataSet.images(SyntheticShapes.generate(count: 16, size: 8, generator: &g))
        var c = RunConfig()
        var u = UNet2DConfig.mnistSmall
        (u.sampleSize, u.inChannels, u.outChannels, u.blockOutChannels, u.normNumGroups) = (8, 3, 3, [8, 16, 16], 4)
        c.unet = u
        (c.steps, c.batchSize, c.timesteps, c.sampleEvery, c.checkpointEvery, c.sampleCount, c.sampleSteps) = (3, 8, 50, 0, 0, 4, 5)
        let run = RunFolder(temporaryPath())
        _ = try Trainer(config: c, data: data, folder: run, resume: false).train()

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
            XCTAssertEqual(try pandoc(["--standalone", "--mathml", "--self-contained", "-o", "report.html", "report.md"], in: out), "")
            XCTAssertEqual(try pandoc(["--standalone", "-o", "report.docx", "report.md"], in: out), "")
            let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
            XCTAssertTrue(html.contains("<table"), "the table")
            XCTAssertGreaterThanOrEqual(html.components(separatedBy: "<math").count - 1, 5, "the equations")
            XCTAssertTrue(html.contains("minSNRGamma") && html.contains("sourceCode swift"), "the listing")
            let docx = try FileManager.default.attributesOfItem(atPath: out + "/report.docx")[.size] as? Int ?? 0
            XCTAssertGreaterThan(docx, 5000)
        }
    }
}
