import DiffuseEngine
import Foundation

/// The languages a report is written in.
public enum ReportLanguage: String, CaseIterable, Sendable {
    case english = "en", russian = "ru"
}

/// What a report says of one trained run, gathered from its folder by the caller: its settings, its log, and the
/// pictures it wrote.
public struct RunSummary: Sendable {
    public var name: String
    public var kind: String
    public var folder: String
    public var parameters: Int
    public var imageShape: [Int]
    /// The diffusion schedule (diffusion runs): T, β_1, β_T, its kind, and the prediction target.
    public var timesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var schedule: String?
    public var prediction: String?
    /// A class-conditional model's number of classes.
    public var classes: Int?
    /// Latent diffusion: the latents' shape and the scaling factor measured on the data.
    public var latentShape: [Int]?
    public var scalingFactor: Double?
    /// The log's columns (loss, d_loss, ...) by name, one value per step.
    public var log: [String: [Double]]
    public var trainingSeconds: Double
    public var trainingSteps: Int
    /// The run's last sample grid, schedule figure and forward-process strip, where it wrote them.
    public var grid: String?
    public var scheduleFigure: String?
    public var forwardFigure: String?

    public init(name: String, kind: String, folder: String, parameters: Int, imageShape: [Int], log: [String: [Double]],
                trainingSeconds: Double, trainingSteps: Int) {
        (self.name, self.kind, self.folder, self.parameters, self.imageShape) = (name, kind, folder, parameters, imageShape)
        (self.log, self.trainingSeconds, self.trainingSteps) = (log, trainingSeconds, trainingSteps)
    }
}

/// The words of a report in one language, and its number formats.
public struct ReportText: Sendable {
    public let language: ReportLanguage
    public init(language: ReportLanguage) { self.language = language }

    /// The English or the Russian text.
    func t(_ english: String, _ russian: String) -> String { language == .english ? english : russian }

    /// A number with `digits` decimals (a decimal comma in Russian).
    func n(_ value: Double, _ digits: Int = 2) -> String {
        let s = String(format: "%.\(digits)f", value)
        return language == .english ? s : s.replacingOccurrences(of: ".", with: ",")
    }

    /// A duration as minutes and seconds.
    func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? t("\(s / 60) min \(s % 60) s", "\(s / 60) мин \(s % 60) с") : t("\(s) s", "\(s) с")
    }

    func millions(_ count: Int) -> String { n(Double(count) / 1e6, 2) + t(" M", " млн") }

    /// A pipe table whose header rule gives each column as many dashes as its widest cell or title word, so that
    /// pandoc, fitting a wide table to the page, shares the width out by them (figures right-aligned, unbroken).
    func pipeTable(_ header: String, rightAligned: Set<Int>, rows: [[String]]) -> String {
        let titles = header.components(separatedBy: " | ")
        let widths = titles.indices.map { i in  // a title wraps at its spaces, a number does not
            (titles[i].split(separator: " ").map(String.init) + rows.map { $0[i] }).map(\.count).max()!
        }
        let rule = widths.indices.map { i in String(repeating: "-", count: max(3, widths[i]) - 1) + (rightAligned.contains(i) ? ":" : "-") }
        let unbroken = rows.map { row in  // "15 min 0 s", "134.7 ± 29.7": figures keep their units on one line
            row.indices.map { rightAligned.contains($0) ? row[$0].replacingOccurrences(of: " ", with: "\u{00A0}") : row[$0] }
        }
        return ([titles, rule] + unbroken).map { "| " + $0.joined(separator: " | ") + " |\n" }.joined()
    }

    /// A value ± its spread, both with the decimals that give the spread three significant digits (KID, whose
    /// scale depends on the features).
    func uncertain(_ value: Double, _ spread: Double) -> String {
        let digits = spread > 0 && spread.isFinite ? max(0, min(8, 2 - Int(Foundation.log10(spread).rounded(.down)))) : 3
        return n(value, digits) + " ± " + n(spread, digits)
    }

    /// The comparison's tables in Markdown (pipe tables), each with its caption: the methods compared, FID and
    /// training time per model, and FID against sampling steps (when measured).
    public func tables(_ r: ComparisonResults) -> String {
        methodsTable(r) + qualityTable(r) + (r.steps.isEmpty ? "" : stepsTable(r))
    }

    func methodsTable(_ r: ComparisonResults) -> String {
        let rows = r.models.map { m in
            [m.name, millions(m.parameters), duration(m.trainingSeconds), "\(m.trainingSteps)",
             m.steps.map { "\(m.sampler), \($0)" } ?? m.sampler, "\(m.evaluationsPerSample)", n(1000 * m.secondsPerSample, 1)]
        }
        return pipeTable(t("Model | Parameters | Training | Steps | Sampler | Network evaluations / sample | ms / sample",
                           "Модель | Параметры | Обучение | Шагов | Сэмплер | Вычислений сети / образец | мс / образец"),
                         rightAligned: [1, 2, 3, 5, 6], rows: rows)
            + "\n: " + t("The methods compared: size, training and cost of generation (\(r.machine)). The training time of latent diffusion includes its first stage's; its steps are the U-Net's.",
                         "Сравниваемые методы: размер, обучение и стоимость генерации (\(r.machine)). Время обучения латентной диффузии включает время первой стадии; шаги — шаги U-Net.") + "\n\n"
    }

    func qualityTable(_ r: ComparisonResults) -> String {
        let rows = r.models.map { m in
            [m.name, n(m.fid), n(m.precision, 3), n(m.recall, 3), uncertain(m.kid, m.kidStd), n(m.sharpness, 3),
             m.bitsPerDim.map { n($0, 3) } ?? "—", duration(m.trainingSeconds)]
        }
        let samples = r.models.first?.samples ?? 0
        return pipeTable(t("Model | FID | Precision | Recall | KID | Sharpness | Bits/dim | Training time",
                           "Модель | FID | Точность | Полнота | KID | Резкость | Бит/измерение | Время обучения"),
                         rightAligned: Set(1...7), rows: rows)
            + "\n: " + t("FID and training time per model: \(samples) samples each against \(r.reference); features: \(r.featureNetwork), resize \(r.resize). Sharpness: the mean Laplacian magnitude of the samples (\(n(r.models.first?.referenceSharpness ?? 0, 3)) for the data). Bits/dim: the variational bound on held-out images.",
                         "FID и время обучения каждой модели: по \(samples) образцов против \(r.reference); признаки: \(r.featureNetwork), масштабирование \(r.resize). Резкость: среднее абсолютное значение лапласиана образцов (\(n(r.models.first?.referenceSharpness ?? 0, 3)) у данных). Бит/измерение: вариационная граница на отложенных изображениях.") + "\n\n"
    }

    /// FID against network evaluations, one table per model: a row per sampler, a column per number of evaluations.
    func stepsTable(_ r: ComparisonResults) -> String {
        func ordered(_ names: [String]) -> [String] { names.reduce(into: []) { if !$0.contains($1) { $0.append($1) } } }
        let gridSamples = r.steps.first?.samples ?? 0
        return ordered(r.steps.map(\.model)).map { model in
            let points = r.steps.filter { $0.model == model }
            let counts = Set(points.map(\.evaluationsPerSample)).sorted()
            let rows = ordered(points.map(\.sampler)).map { sampler in
                [sampler] + counts.map { k in points.first { $0.sampler == sampler && $0.evaluationsPerSample == k }.map { n($0.fid, 1) } ?? "" }
            }
            return pipeTable(t("Sampler | ", "Сэмплер | ") + counts.map(String.init).joined(separator: " | "),
                             rightAligned: Set(1...counts.count), rows: rows)
                + "\n: " + t("FID of \(model) by sampler (rows) and network evaluations per sample (columns); \(gridSamples) samples per point, so compare within the table.",
                             "FID модели \(model) по сэмплерам (строки) и числу вычислений сети на образец (столбцы); \(gridSamples) образцов на точку, поэтому сравнивайте внутри таблицы.") + "\n\n"
        }.joined()
    }
}

/// The title page of a report.
public struct ReportOptions: Sendable {
    public var title: String?
    public var author: String?
    public var language = ReportLanguage.english
    /// The date printed (today's by default), as YYYY-MM-DD.
    public var date: String
    public init(title: String? = nil, author: String? = nil, language: ReportLanguage = .english, date: String) {
        (self.title, self.author, self.language, self.date) = (title, author, language, date)
    }
}

/// Writes a Pandoc project from real runs: `report.md` (Markdown with LaTeX equations, pipe tables, figures with
/// captions and the listing of the training step), `figures/` (sample grids and forward strips copied from the
/// runs, loss curves and FID-against-steps plots drawn as SVG) and a `Makefile` whose targets run pandoc to
/// HTML, DOCX and PDF. It follows the theory's outline; every number comes from the runs' files and the
/// comparison's results.
public struct ReportWriter {
    public let runs: [RunSummary]
    public let comparison: ComparisonResults?
    public let options: ReportOptions
    /// The Swift source of the diffusion training step, shown as a listing.
    public let listing: String
    let text: ReportText

    public init(runs: [RunSummary], comparison: ComparisonResults?, options: ReportOptions, listing: String) {
        self.runs = runs
        self.comparison = comparison
        self.options = options
        self.listing = listing
        text = ReportText(language: options.language)
    }

    func t(_ english: String, _ russian: String) -> String { text.t(english, russian) }

    /// File names in figures/ for a run.
    func slug(_ run: RunSummary) -> String {
        run.name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }.reduce("") { $0 + String($1) }
    }

    public func write(to folder: String) throws {
        guard !runs.isEmpty else { throw DiffuseError.report("a report needs at least one run") }
        let files = FileManager.default
        let figures = folder + "/figures"
        try files.createDirectory(atPath: figures, withIntermediateDirectories: true)
        func copy(_ from: String?, _ name: String) throws -> String? {
            guard let from, files.fileExists(atPath: from) else { return nil }
            let to = figures + "/" + name
            try? files.removeItem(atPath: to)
            try files.copyItem(atPath: from, toPath: to)
            return "figures/" + name
        }
        var body = ""
        body += frontMatter()
        body += introduction()
        let diffusion = runs.first { $0.timesteps != nil }
        body += try forwardSection(diffusion, schedule: copy(diffusion?.scheduleFigure, "schedule.svg"),
                                   forward: copy(diffusion?.forwardFigure, "forward.png"))
        body += reverseSection(diffusion)
        body += implementationSection()
        body += architectureSection()
        body += comparisonSection()
        body += try stepsSection(figures)
        var grids: [(RunSummary, String)] = []
        for run in runs { if let g = try copy(run.grid, "samples-\(slug(run)).png") { grids.append((run, g)) } }
        body += samplesSection(grids)
        body += try lossSection(figures)
        body += conclusions()
        body += "# " + t("References", "Литература") + " {-}\n\n::: {#refs}\n:::\n"
        try writeAtomically(Data(body.utf8), to: folder + "/report.md")
        try writeAtomically(Data(references.utf8), to: folder + "/references.bib")
        try writeAtomically(Data(makefile().utf8), to: folder + "/Makefile")
    }

    func frontMatter() -> String {
        let title = options.title ?? t("Denoising diffusion models, measured", "Диффузионные модели: измерения")
        var yaml = "---\ntitle: \"\(title.replacingOccurrences(of: "\"", with: "'"))\"\n"
        if let author = options.author { yaml += "author: \"\(author.replacingOccurrences(of: "\"", with: "'"))\"\n" }
        yaml += "date: \(options.date)\nlang: \(options.language == .english ? "en" : "ru")\n"
        yaml += "bibliography: references.bib\nlink-citations: true\n"
        // For the PDF only: figures where they stand, and long code lines wrapped.
        yaml += """
            header-includes:
              - |
                ```{=latex}
                \\usepackage{float}
                \\floatplacement{figure}{H}
                \\usepackage{fvextra}
                \\DefineVerbatimEnvironment{Highlighting}{Verbatim}{breaklines,commandchars=\\\\\\{\\}}
                ```

            """
        return yaml + "---\n\n"
    }

    func introduction() -> String {
        var s = "# " + t("Introduction", "Введение") + "\n\n"
        s += t("Generative models learn a distribution from examples and draw new ones from it. Generative adversarial networks (GANs) pit a generator against a discriminator; variational autoencoders (VAEs) decode samples of a latent Gaussian; denoising diffusion models learn to undo a gradual noising of the data, step by step [@goodfellow2014; @kingma2014; @ho2020]. This report describes diffusion models, the DDPM and latent-diffusion architectures, and measures them against a VAE and a GAN trained with the same tool, on the same data and machine.",
               "Генеративные модели обучаются на примерах распределению данных и порождают из него новые образцы. Генеративно-состязательные сети (GAN) противопоставляют генератор дискриминатору; вариационные автокодировщики (VAE) декодируют образцы латентного гауссовского распределения; диффузионные модели учатся шаг за шагом обращать постепенное зашумление данных [@goodfellow2014; @kingma2014; @ho2020]. В отчёте описаны диффузионные модели, архитектуры DDPM и латентной диффузии, и они сравниваются с VAE и GAN, обученными тем же инструментом на тех же данных и той же машине.")
        s += "\n\n"
        if let c = comparison {
            let budget = c.budgetMinutes.map { t("a budget of \(text.n($0, 0)) minutes of training each", "по \(text.n($0, 0)) минут обучения на модель") }
                ?? t("the training runs listed below", "перечисленные ниже обучающие запуски")
            s += t("All figures come from runs of Diffuse on the \(c.data), with \(budget), on \(c.machine).",
                   "Все числа получены в запусках Diffuse на данных \(c.data), \(budget), на машине \(c.machine).") + "\n\n"
        } else {
            s += t("All figures come from the runs: ", "Все числа получены в запусках: ") + runs.map { "`\($0.folder)`" }.joined(separator: ", ") + ".\n\n"
        }
        return s
    }

    func forwardSection(_ run: RunSummary?, schedule: String?, forward: String?) throws -> String {
        var s = "# " + t("The forward process", "Прямой процесс") + "\n\n"
        s += t("The forward process of DDPM [@ho2020] is a Markov chain that adds Gaussian noise to an image $x_0$ over $T$ steps:",
               "Прямой процесс DDPM [@ho2020] — марковская цепь, добавляющая к изображению $x_0$ гауссовский шум за $T$ шагов:") + "\n\n"
        s += "$$q(x_t \\mid x_{t-1}) = \\mathcal{N}\\left(x_t;\\ \\sqrt{1-\\beta_t}\\,x_{t-1},\\ \\beta_t I\\right).$$\n\n"
        s += t("With $\\alpha_t = 1 - \\beta_t$ and $\\bar\\alpha_t = \\prod_{s=1}^{t} \\alpha_s$ it has a closed form, so that $x_t$ is drawn in one step:",
               "При $\\alpha_t = 1 - \\beta_t$ и $\\bar\\alpha_t = \\prod_{s=1}^{t} \\alpha_s$ он имеет замкнутую форму, и $x_t$ получается за один шаг:") + "\n\n"
        s += "$$q(x_t \\mid x_0) = \\mathcal{N}\\left(x_t;\\ \\sqrt{\\bar\\alpha_t}\\,x_0,\\ (1-\\bar\\alpha_t) I\\right), \\qquad x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon,\\quad \\varepsilon \\sim \\mathcal{N}(0, I).$$\n\n"
        if let run, let T = run.timesteps, let b1 = run.betaStart, let bT = run.betaEnd {
            s += t("The runs here use the \(run.schedule ?? "linear") schedule of $\\beta_t$ from \(text.n(b1, 4)) to \(text.n(bT, 4)) over $T = \(T)$ steps.",
                   "Здесь используется расписание \(run.schedule ?? "linear"): $\\beta_t$ от \(text.n(b1, 4)) до \(text.n(bT, 4)) за $T = \(T)$ шагов.") + "\n\n"
        }
        if let schedule {
            s += "![" + t("The signal left, $\\bar\\alpha_t$, and the log signal-to-noise ratio of the schedule.",
                          "Доля сигнала $\\bar\\alpha_t$ и логарифм отношения сигнал/шум для расписания.") + "](\(schedule)){width=95%}\n\n"
        }
        if let forward {
            s += "![" + t("The forward process on training images: $x_0$, then $x_t$ at 5, 10, 20, 40, 60 and 80 % of $T$, and $x_T$.",
                          "Прямой процесс на обучающих изображениях: $x_0$, затем $x_t$ при 5, 10, 20, 40, 60 и 80 % от $T$ и $x_T$.") + "](\(forward)){width=80%}\n\n"
        }
        return s
    }

    func reverseSection(_ run: RunSummary?) -> String {
        var s = "# " + t("The reverse process and the ELBO", "Обратный процесс и ELBO") + "\n\n"
        s += t("Generation runs the chain backwards from $x_T \\sim \\mathcal{N}(0, I)$ with learned Gaussian steps",
               "Генерация проходит цепь в обратную сторону от $x_T \\sim \\mathcal{N}(0, I)$ обучаемыми гауссовскими шагами") + "\n\n"
        s += "$$p_\\theta(x_{t-1} \\mid x_t) = \\mathcal{N}\\left(x_{t-1};\\ \\mu_\\theta(x_t, t),\\ \\sigma_t^2 I\\right), \\qquad \\mu_\\theta(x_t, t) = \\frac{1}{\\sqrt{\\alpha_t}}\\left(x_t - \\frac{\\beta_t}{\\sqrt{1-\\bar\\alpha_t}}\\,\\varepsilon_\\theta(x_t, t)\\right),$$\n\n"
        s += t("where the network $\\varepsilon_\\theta$ predicts the noise in $x_t$. Training maximises the evidence lower bound, a sum of one term per step:",
               "где сеть $\\varepsilon_\\theta$ предсказывает шум в $x_t$. Обучение максимизирует нижнюю оценку правдоподобия (ELBO) — сумму слагаемых по шагам:") + "\n\n"
        s += "$$\\begin{aligned}-\\log p_\\theta(x_0) \\le\\ & \\underbrace{D_{KL}\\left(q(x_T \\mid x_0)\\,\\|\\,p(x_T)\\right)}_{L_T} \\\\ & + \\sum_{t=2}^{T} \\underbrace{D_{KL}\\left(q(x_{t-1} \\mid x_t, x_0)\\,\\|\\,p_\\theta(x_{t-1} \\mid x_t)\\right)}_{L_{t-1}} \\underbrace{-\\log p_\\theta(x_0 \\mid x_1)}_{L_0}.\\end{aligned}$$\n\n"
        s += t("Up to weights, each $L_{t-1}$ is a squared error between the true and the predicted noise, which gives the simple loss that DDPM trains on:",
               "С точностью до весов каждое $L_{t-1}$ — квадрат ошибки между истинным и предсказанным шумом, что даёт простую функцию потерь DDPM:") + "\n\n"
        s += "$$L_\\text{simple} = \\mathbb{E}_{t, x_0, \\varepsilon}\\left\\|\\varepsilon - \\varepsilon_\\theta\\left(\\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\varepsilon,\\ t\\right)\\right\\|^2.$$\n\n"
        if let bits = comparison?.models.first(where: { $0.bitsPerDim != nil }), let b = bits.bitsPerDim, let k = bits.nllImages {
            s += t("Summed over all $T$ steps, the bound gives the \(bits.name) \(text.n(b, 3)) bits per dimension on \(k) held-out images.",
                   "Сумма по всем $T$ шагам даёт для \(bits.name) \(text.n(b, 3)) бит на измерение на \(k) отложенных изображениях.") + "\n\n"
        }
        return s
    }

    func implementationSection() -> String {
        var s = "# " + t("Implementation", "Реализация") + "\n\n"
        s += t("Diffuse is written in Swift on its own tensor and reverse-mode autodiff engine for the CPU. The training step of a diffusion model, as it is in the source (`Sources/DiffuseTraining/Objectives.swift`):",
               "Diffuse написан на Swift поверх собственного движка тензоров и обратного автоматического дифференцирования для CPU. Шаг обучения диффузионной модели в исходном коде (`Sources/DiffuseTraining/Objectives.swift`):") + "\n\n"
        return s + "```swift\n" + listing.trimmingCharacters(in: .newlines) + "\n```\n\n"
    }

    func architectureSection() -> String {
        var s = "# " + t("Architectures", "Архитектуры") + "\n\n"
        for run in runs {
            let shape = run.imageShape.map(String.init).joined(separator: "×")
            switch run.kind {
            case "ddpm":
                let kind = run.name == "DDPM" ? "" : " (DDPM)"
                s += t("**\(run.name)**\(kind): a U-Net of \(text.millions(run.parameters)) parameters in diffusers' `UNet2DModel` layout — ResNet blocks with the timestep's sinusoidal embedding, self-attention at the lowest resolution, skip connections between the halves — on \(shape) images.",
                       "**\(run.name)**\(kind): U-Net из \(text.millions(run.parameters)) параметров в формате `UNet2DModel` библиотеки diffusers — ResNet-блоки с синусоидальным вложением шага, самовнимание на наименьшем разрешении, пропускающие связи между половинами — на изображениях \(shape).")
            case "latent-diffusion":
                let latent = run.latentShape?.map(String.init).joined(separator: "×") ?? "?"
                s += t("**\(run.name)**: a VAE encodes \(shape) images to \(latent) latents, scaled by \(text.n(run.scalingFactor ?? 1, 4)) to unit variance; a U-Net denoises there, and the decoder maps samples back to pixels, as in latent diffusion [@rombach2022] (\(text.millions(run.parameters)) parameters in all).",
                       "**\(run.name)**: VAE кодирует изображения \(shape) в латентные тензоры \(latent), умноженные на \(text.n(run.scalingFactor ?? 1, 4)) до единичной дисперсии; U-Net удаляет шум в латентном пространстве, декодер возвращает образцы в пиксели, как в латентной диффузии [@rombach2022] (всего \(text.millions(run.parameters)) параметров).")
            case "vae":
                s += t("**\(run.name)**: diffusers' `AutoencoderKL` (\(text.millions(run.parameters)) parameters), trained on reconstruction plus the KL divergence of its posterior from $\\mathcal{N}(0, I)$; it samples by decoding $z \\sim \\mathcal{N}(0, I)$.",
                       "**\(run.name)**: `AutoencoderKL` из diffusers (\(text.millions(run.parameters)) параметров), обученный на реконструкцию плюс KL-расхождение апостериорного распределения с $\\mathcal{N}(0, I)$; образцы — декодирование $z \\sim \\mathcal{N}(0, I)$.")
            case "gan":
                s += t("**\(run.name)**: a DCGAN — a generator of upsampling convolutions with BatchNorm, a convolutional discriminator with LeakyReLU — trained with the non-saturating loss (\(text.millions(run.parameters)) parameters in the generator).",
                       "**\(run.name)**: DCGAN — генератор из свёрток с повышением разрешения и BatchNorm, свёрточный дискриминатор с LeakyReLU — обученный с ненасыщающейся функцией потерь (\(text.millions(run.parameters)) параметров в генераторе).")
            default:
                s += "**\(run.name)** (\(run.kind)): \(text.millions(run.parameters))."
            }
            s += "\n\n"
        }
        return s
    }

    func comparisonSection() -> String {
        var s = "# " + t("Comparison with GANs and VAEs", "Сравнение с GAN и VAE") + "\n\n"
        guard let c = comparison else {
            let rows = runs.map { run in
                let key = ["loss", "d_loss"].first { run.log[$0] != nil } ?? "loss"
                let final = run.log[key]?.suffix(50) ?? []
                let value = final.isEmpty ? "—" : text.n(final.reduce(0, +) / Double(final.count), 4)
                return [run.name, run.kind, text.millions(run.parameters), "\(run.trainingSteps)", text.duration(run.trainingSeconds), value]
            }
            s += text.pipeTable(t("Run | Kind | Parameters | Steps | Training time | Final loss", "Запуск | Тип | Параметры | Шагов | Время обучения | Итоговая потеря"),
                                rightAligned: Set(2...5), rows: rows)
            return s + "\n: " + t("The runs (final loss: the mean of the last 50 steps).", "Запуски (итоговая потеря: среднее за последние 50 шагов).") + "\n\n"
        }
        s += t("The theory contrasts the three families: GANs train unstably, VAEs give blurry images, diffusion models generate slowly. The tables measure each claim on the runs, sample quality by the Fréchet distance of features (FID) [@heusel2017].",
               "Теория противопоставляет три семейства: GAN обучаются нестабильно, VAE дают размытые изображения, диффузионные модели генерируют медленно. Таблицы измеряют каждое утверждение на запусках, качество образцов — расстоянием Фреше между признаками (FID) [@heusel2017].") + "\n\n"
        return s + text.methodsTable(c) + text.qualityTable(c)
    }

    func stepsSection(_ figures: String) throws -> String {
        var s = "# " + t("Faster generation", "Ускорение генерации") + "\n\n"
        s += t("DDPM samples with all $T$ steps. Seen as the solution of an ordinary differential equation in the noise level σ [@karras2022], with a denoiser $D(x; \\sigma)$ that every parametrisation of the network (ε, $x_0$, $v$) reduces to, sampling becomes numerical integration, and higher-order solvers need far fewer network evaluations (NFE). DDIM [@song2021] is Euler's method on that equation; Heun's method [@karras2022] is second order at two evaluations a step; PNDM [@liu2022] and iPNDM [@zhang2023] are linear multistep methods; DPM-Solver++ [@lu2022], DEIS [@zhang2023] and UniPC [@zhao2023] integrate the linear part exactly (exponential integrators) and extrapolate the denoiser from earlier steps, UniPC adding a corrector. Rectified flow [@liu2023; @lipman2023] trains the network on the straight path $x_t = (1-t)\\,x_0 + t\\,\\varepsilon$ (at logit-normal $t$ [@esser2024]) to predict its velocity $\\varepsilon - x_0$, whose paths are meant to be straight enough for few Euler steps. Schedules of σ (Karras', exponential, Align Your Steps [@sabour2024]) place the steps.",
               "DDPM генерирует за все $T$ шагов. Если рассматривать генерацию как решение обыкновенного дифференциального уравнения по уровню шума σ [@karras2022] с денойзером $D(x; \\sigma)$, к которому сводится любая параметризация сети (ε, $x_0$, $v$), сэмплирование становится численным интегрированием, и решатели высокого порядка требуют гораздо меньше вычислений сети (NFE). DDIM [@song2021] — метод Эйлера для этого уравнения; метод Хойна [@karras2022] имеет второй порядок при двух вычислениях на шаг; PNDM [@liu2022] и iPNDM [@zhang2023] — линейные многошаговые методы; DPM-Solver++ [@lu2022], DEIS [@zhang2023] и UniPC [@zhao2023] интегрируют линейную часть точно (экспоненциальные интеграторы) и экстраполируют денойзер по предыдущим шагам, а UniPC добавляет корректор. Выпрямленный поток [@liu2023; @lipman2023] обучает сеть на прямом пути $x_t = (1-t)\\,x_0 + t\\,\\varepsilon$ (при логит-нормальном $t$ [@esser2024]) предсказывать его скорость $\\varepsilon - x_0$; такие пути должны быть достаточно прямыми для немногих шагов Эйлера. Расписания σ (Карраса, экспоненциальное, Align Your Steps [@sabour2024]) задают положение шагов.") + "\n\n"
        guard let c = comparison, !c.steps.isEmpty else { return s }
        s += t("Each model was sampled with every solver it takes at each number of network evaluations, on timesteps spaced to end at $T$ (trailing spacing); Heun's method spends two evaluations a step (but the last), PNDM one more than its steps.",
               "Каждая модель сэмплировалась каждым подходящим решателем при каждом числе вычислений сети, с шагами по времени, кончающимися в $T$ (trailing); метод Хойна тратит два вычисления на шаг (кроме последнего), PNDM — на одно больше числа шагов.") + "\n\n"
        s += text.stepsTable(c)
        // A panel per model, a series per sampler, coloured by its place in the order measured (so that a sampler keeps
        // its colour from panel to panel).
        func ordered(_ names: [String]) -> [String] { names.reduce(into: []) { if !$0.contains($1) { $0.append($1) } } }
        let samplers = ordered(c.steps.map(\.sampler))
        let plots = ordered(c.steps.map(\.model)).map { model in
            // FID spans orders of magnitude between one evaluation and fifty: a logarithmic axis. A model's panel lists
            // the samplers it was measured with (a flow model takes fewer).
            Plot(title: model, xLabel: t("log₁₀ network evaluations per sample", "log₁₀ вычислений сети на образец"), yLabel: "FID",
                 logY: true, series: samplers.enumerated().compactMap { k, sampler in
                     let points = c.steps.filter { $0.model == model && $0.sampler == sampler }.sorted { $0.evaluationsPerSample < $1.evaluationsPerSample }
                     guard !points.isEmpty else { return nil }
                     return Plot.Series(sampler, x: points.map { Foundation.log10(Double($0.evaluationsPerSample)) }, y: points.map(\.fid),
                                        mark: points.count > 1 ? .line : .dots, colour: k)
                 })
        }
        try writeAtomically(Data(svgFigure(plots, columns: plots.count, panelWidth: 420, panelHeight: 340).utf8), to: figures + "/fid-steps.svg")
        s += "![" + t("FID of the diffusion models against the network evaluations per sample, by sampler.",
                      "FID диффузионных моделей в зависимости от числа вычислений сети на образец, по сэмплерам.") + "](figures/fid-steps.svg){width=90%}\n\n"
        return s
    }

    func samplesSection(_ grids: [(RunSummary, String)]) -> String {
        guard !grids.isEmpty else { return "" }
        var s = "# " + t("Samples", "Образцы") + "\n\n"
        for (run, path) in grids {
            let rows = run.classes.map { t(", one row per class (\($0) classes)", ", по строке на класс (\($0) классов)") } ?? ""
            s += "![" + t("Samples of \(run.name) after \(run.trainingSteps) training steps\(rows).",
                          "Образцы \(run.name) после \(run.trainingSteps) шагов обучения\(rows).") + "](\(path)){width=45%}\n\n"
        }
        return s
    }

    func lossSection(_ figures: String) throws -> String {
        var s = "# " + t("Training curves", "Кривые обучения") + "\n\n"
        for run in runs {
            let columns = ["loss", "d_loss", "g_loss"].filter { run.log[$0] != nil }
            guard !columns.isEmpty else { continue }
            let window = max(1, run.log[columns[0]]!.count / 100)  // the caption's, for every column
            let series = columns.map { column -> Plot.Series in
                let values = run.log[column]!
                return Plot.Series(column, x: (1...values.count).map(Double.init), y: movingAverage(values, window: window))
            }
            let plot = Plot(title: run.name, xLabel: t("step", "шаг"), yLabel: t("loss (moving average)", "потеря (скользящее среднее)"),
                            logY: run.kind != "gan", series: series)
            try writeAtomically(Data(plot.svg(width: 560, height: 320).utf8), to: figures + "/loss-\(slug(run)).svg")
            s += "![" + t("Training losses of \(run.name), moving average over \(window) steps.",
                          "Функции потерь \(run.name) при обучении, скользящее среднее по \(window) шагам.")
                + "](figures/loss-\(slug(run)).svg){width=70%}\n\n"
        }
        return s
    }

    func conclusions() -> String {
        var s = "# " + t("Conclusions", "Выводы") + "\n\n"
        guard let c = comparison, let best = c.models.min(by: { $0.fid < $1.fid }), let worst = c.models.max(by: { $0.fid < $1.fid }) else {
            return s + t("The runs above trained as their curves show; `diffuse compare` measures them against each other.",
                         "Запуски обучились так, как показывают кривые; `diffuse compare` сравнивает их между собой.") + "\n"
        }
        s += "- " + t("Sample quality: \(best.name) reaches the lowest FID, \(text.n(best.fid)), and \(worst.name) the highest, \(text.n(worst.fid)).",
                      "Качество образцов: наименьший FID у \(best.name) — \(text.n(best.fid)), наибольший у \(worst.name) — \(text.n(worst.fid)).") + "\n"
        let oneShot = c.models.filter { $0.evaluationsPerSample == 1 }
        if let fast = oneShot.min(by: { $0.secondsPerSample < $1.secondsPerSample }),
           let slow = c.models.max(by: { $0.secondsPerSample < $1.secondsPerSample }), slow.secondsPerSample > fast.secondsPerSample {
            s += "- " + t("Generation speed: \(slow.name) needs \(slow.evaluationsPerSample) network evaluations and \(text.n(1000 * slow.secondsPerSample, 1)) ms per sample, \(text.n(slow.secondsPerSample / fast.secondsPerSample, 0)) times the \(text.n(1000 * fast.secondsPerSample, 2)) ms of \(fast.name)'s single evaluation.",
                          "Скорость генерации: \(slow.name) требует \(slow.evaluationsPerSample) вычислений сети и \(text.n(1000 * slow.secondsPerSample, 1)) мс на образец — в \(text.n(slow.secondsPerSample / fast.secondsPerSample, 0)) раз больше, чем \(text.n(1000 * fast.secondsPerSample, 2)) мс у \(fast.name) с единственным вычислением.") + "\n"
        }
        if let gan = runs.first(where: { $0.kind == "gan" }), let d = gan.log["d_loss"], let g = gan.log["g_loss"], d.count >= 20 {
            let late = d.count / 2
            let (dMin, dMax) = (d[late...].min()!, d[late...].max()!), (gMin, gMax) = (g[late...].min()!, g[late...].max()!)
            s += "- " + t("Training stability: in the second half of its training the GAN's discriminator loss still ranged from \(text.n(dMin)) to \(text.n(dMax)) and its generator loss from \(text.n(gMin)) to \(text.n(gMax)), an adversarial game rather than a descent.",
                          "Устойчивость обучения: во второй половине обучения потеря дискриминатора GAN колебалась от \(text.n(dMin)) до \(text.n(dMax)), а генератора — от \(text.n(gMin)) до \(text.n(gMax)): это состязательная игра, а не спуск.") + "\n"
        }
        if let vae = c.models.first(where: { $0.kind == "vae" }), let diffusion = c.models.first(where: { $0.kind == "ddpm" }) {
            let blurrier = vae.sharpness < diffusion.sharpness
            s += "- " + t("Sharpness: the VAE's samples have a mean Laplacian magnitude of \(text.n(vae.sharpness, 3)), \(diffusion.name)'s \(text.n(diffusion.sharpness, 3)) and the data's \(text.n(vae.referenceSharpness, 3))\(blurrier ? ": the VAE's are the blurrier, as the theory says" : ": here the VAE's are not the blurrier, against the theory's claim"); precision \(text.n(vae.precision, 3)) against \(text.n(diffusion.precision, 3)).",
                          "Резкость: среднее абсолютное значение лапласиана образцов VAE — \(text.n(vae.sharpness, 3)), у \(diffusion.name) — \(text.n(diffusion.sharpness, 3)), у данных — \(text.n(vae.referenceSharpness, 3))\(blurrier ? ": образцы VAE более размыты, как и утверждает теория" : ": здесь образцы VAE не более размыты, вопреки утверждению теории"); точность \(text.n(vae.precision, 3)) против \(text.n(diffusion.precision, 3)).") + "\n"
        }
        let ddpmSteps = c.steps.filter { $0.sampler == "ddpm" }, fastSteps = c.steps.filter { $0.sampler != "ddpm" && $0.sampler != "ddim" }
        if let full = ddpmSteps.max(by: { $0.steps < $1.steps }),
           let quick = fastSteps.filter({ $0.model == full.model }).min(by: { $0.fid < $1.fid }) {
            s += "- " + t("Faster generation: for \(full.model), \(quick.sampler) with \(quick.steps) steps (\(quick.evaluationsPerSample) evaluations) gives FID \(text.n(quick.fid)) against \(text.n(full.fid)) for DDPM's \(full.steps) steps, \(text.n(Double(full.evaluationsPerSample) / Double(quick.evaluationsPerSample), 0)) times fewer evaluations.",
                          "Ускорение генерации: для \(full.model) сэмплер \(quick.sampler) за \(quick.steps) шагов (\(quick.evaluationsPerSample) вычислений) даёт FID \(text.n(quick.fid)) против \(text.n(full.fid)) у DDPM за \(full.steps) шагов — в \(text.n(Double(full.evaluationsPerSample) / Double(quick.evaluationsPerSample), 0)) раз меньше вычислений.") + "\n"
        }
        return s
    }

    func makefile() -> String {
        """
        # Build the report with pandoc (Debian: apt-get install pandoc; for PDF also texlive-xetex and librsvg2-bin).
        PANDOC ?= pandoc
        FLAGS = --standalone --number-sections --toc --citeproc

        all: report.html report.docx

        report.html: report.md
        \t$(PANDOC) $(FLAGS) --mathml --self-contained -o $@ $<

        report.docx: report.md
        \t$(PANDOC) $(FLAGS) -o $@ $<

        report.pdf: report.md
        \t$(PANDOC) $(FLAGS) --pdf-engine=xelatex -V mainfont="DejaVu Serif" -V monofont="DejaVu Sans Mono" -V geometry:margin=2.5cm -o $@ $<

        clean:
        \trm -f report.html report.docx report.pdf

        .PHONY: all clean

        """
    }
}

/// The mean of each value and the `window` − 1 before it.
func movingAverage(_ values: [Double], window: Int) -> [Double] {
    var out: [Double] = [], sum = 0.0
    for (i, v) in values.enumerated() {
        sum += v
        if i >= window { sum -= values[i - window] }
        out.append(sum / Double(min(i + 1, window)))
    }
    return out
}
