import ArgumentParser
import DiffuseData
import DiffuseEngine
import DiffuseModels
import DiffuseReport
import DiffuseTraining
import Foundation

extension ReportLanguage: ExpressibleByArgument {}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a Pandoc report (Markdown, figures, Makefile) from a comparison and trained runs.",
        discussion: """
        Each input is a folder written by `diffuse compare` (its results.json gives the tables) or a run folder of \
        `diffuse train`. The report follows the theory's outline — introduction, the forward process, the reverse \
        process and the ELBO, the implementation (the real Swift training step, from the source), the architectures, \
        the comparison with GANs and VAEs (methods; FID and training time), FID against sampling steps, sample grids \
        and training curves, and conclusions drawn from the numbers — with every number taken from those files.

        --out receives report.md, figures/ and a Makefile: `make` builds report.html and report.docx with pandoc, \
        `make report.pdf` a PDF (xelatex). Or directly: pandoc --standalone --mathml -o report.html report.md

        Examples:
          diffuse report runs/compare --out report
          diffuse report runs/compare --lang ru --title "Диффузионные модели" --author "A. Student" --out report-ru
          diffuse report runs/mnist --out report-mnist
        """)

    @Argument(help: "Folders of `diffuse compare` and/or `diffuse train`.") var inputs: [String]
    @Option(help: "Language: en or ru.") var lang = ReportLanguage.english
    @Option(help: "Title (default: a title in the report's language).") var title: String?
    @Option(help: "Author.") var author: String?
    @Option(help: "Date printed (default: today), YYYY-MM-DD.") var date: String?
    @Option(help: "The Diffuse source tree whose training step the report lists (default: the one this binary was built from).")
    var source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    @Option(help: "The folder to write.") var out = "report"

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one folder (of diffuse compare or diffuse train)") }
    }

    func run() throws {
        var comparison: ComparisonResults?
        var runs: [RunSummary] = []
        for input in inputs {
            let results = input + "/results.json"
            if FileManager.default.fileExists(atPath: results) {
                guard comparison == nil else { throw ValidationError("one comparison per report: \(input) is the second") }
                let c = try ComparisonResults.read(results)
                comparison = c
                runs += try c.models.map {
                    try RunSummary(RunFolder(ComparisonResults.located(run: $0.run, resultsFolder: input)), name: $0.name)
                }
            } else if FileManager.default.fileExists(atPath: input + "/config.json") {
                runs.append(try RunSummary(RunFolder(input), name: URL(fileURLWithPath: input).lastPathComponent))
            } else {
                throw ValidationError("\(input) holds neither results.json (diffuse compare) nor config.json (a run)")
            }
        }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd"
        let options = ReportOptions(title: title, author: author, language: lang, date: date ?? formatter.string(from: Date()))
        try ReportWriter(runs: runs, comparison: comparison, options: options, listing: try trainingStepListing(source: source))
            .write(to: out)
        print("wrote \(out)/report.md, \(out)/figures/ and \(out)/Makefile; build with: make -C \(out)  (or make -C \(out) report.pdf)")
    }
}
