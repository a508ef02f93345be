import DiffuseEngine
import Foundation

/// One chart: series of (x, y) points drawn as lines or dots on axes with round ticks, a title, axis labels and a
/// legend. `svg` and `svgFigure` write it as a standalone SVG document (text as <text>, no external resources).
public struct Plot: Sendable {
    public enum Mark: Sendable { case line, dots }

    public struct Series: Sendable {
        public var label: String
        public var x: [Double]
        public var y: [Double]
        public var mark: Mark
        /// Its colour's place in the palette (default: the series' own place), so that one thing keeps its colour
        /// across panels that show different subsets.
        public var colour: Int?

        public init(_ label: String, x: [Double], y: [Double], mark: Mark = .line, colour: Int? = nil) {
            precondition(x.count == y.count, "series '\(label)' has \(x.count) x and \(y.count) y values")
            self.label = label
            self.x = x
            self.y = y
            self.mark = mark
            self.colour = colour
        }

        /// The rows of `points` [N, 2] as (x, y), drawn as dots: 2D samples or data.
        public init(_ label: String, points: Tensor, mark: Mark = .dots) {
            precondition(points.rank == 2 && points.shape[1] == 2, "points of shape \(points.shape), expected [N, 2]")
            let p = points.scalars
            self.init(label, x: stride(from: 0, to: p.count, by: 2).map { Double(p[$0]) },
                      y: stride(from: 1, to: p.count, by: 2).map { Double(p[$0]) }, mark: mark)
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// A logarithmic y axis (only y > 0 is drawn).
    public var logY: Bool
    public var series: [Series]

    public init(title: String = "", xLabel: String = "", yLabel: String = "", logY: Bool = false, series: [Series] = []) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logY = logY
        self.series = series
    }

    /// The plot alone as an SVG document of `width`×`height` pixels.
    public func svg(width: Double = 480, height: Double = 320) -> String {
        svgFigure([self], columns: 1, panelWidth: width, panelHeight: height)
    }
}

/// Plots side by side, `columns` to a row, each in a panel of `panelWidth`×`panelHeight`, as one SVG document.
public func svgFigure(_ plots: [Plot], columns: Int? = nil, panelWidth: Double = 480, panelHeight: Double = 320) -> String {
    precondition(!plots.isEmpty, "a figure of no plots")
    let columns = max(1, min(columns ?? plots.count, plots.count))
    let rows = (plots.count + columns - 1) / columns
    let (width, height) = (Double(columns) * panelWidth, Double(rows) * panelHeight)
    var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(number(width))" height="\(number(height))" \
        viewBox="0 0 \(number(width)) \(number(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">
        <rect width="\(number(width))" height="\(number(height))" fill="white"/>

        """
    for (i, plot) in plots.enumerated() {
        let origin = (x: Double(i % columns) * panelWidth, y: Double(i / columns) * panelHeight)
        out += "<g transform=\"translate(\(number(origin.x)),\(number(origin.y)))\">\n"
        out += PanelRenderer(plot: plot, width: panelWidth, height: panelHeight, id: i).render()
        out += "</g>\n"
    }
    return out + "</svg>\n"
}

/// Round tick values covering lo…hi: about `count` multiples of a step of 1, 2 or 5 × 10^k, from the last multiple
/// at or below lo to the first at or above hi.
public func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    precondition(lo.isFinite && hi.isFinite && lo <= hi && count >= 1, "ticks for \(lo)…\(hi)")
    let step = tickStep(lo, hi, count: count)
    let first = (lo / step).rounded(.down), last = (hi / step).rounded(.up)
    return stride(from: first, through: last, by: 1).map { $0 * step + 0 }  // + 0 turns −0 into 0
}

/// The 1, 2 or 5 × 10^k nearest to (hi − lo)/count (1 for an empty range).
func tickStep(_ lo: Double, _ hi: Double, count: Int) -> Double {
    let raw = (hi - lo) / Double(count)
    guard raw > 0 else { return 1 }
    let magnitude = Foundation.pow(10, (Foundation.log10(raw)).rounded(.down))
    let residual = raw / magnitude
    return (residual < 1.5 ? 1 : residual < 3 ? 2 : residual < 7 ? 5 : 10) * magnitude
}

/// A tick label: as many decimals as the step needs, or m·10^k as "mek" for values from 1e5 or steps below 1e-3
/// (but 0 as "0"); minus signs as "−".
func tickLabel(_ value: Double, step: Double) -> String {
    let label: String, scientific = abs(value) >= 1e5 || step < 1e-3
    if scientific && value == 0 {
        label = "0"
    } else if scientific {
        let exponent = Int(Foundation.log10(abs(value)).rounded(.down))
        let mantissa = value / Foundation.pow(10, Double(exponent))
        let m = abs(mantissa - mantissa.rounded()) < 1e-9 ? String(Int(mantissa.rounded())) : String(format: "%.1f", mantissa)
        label = "\(m)e\(exponent)"
    } else {
        label = String(format: "%.\(max(0, -Int(Foundation.log10(step).rounded(.down))))f", value)
    }
    return label.replacingOccurrences(of: "-", with: "−")
}

/// A coordinate or size with at most 2 decimals and no trailing zeros.
func number(_ v: Double) -> String {
    let s = String(format: "%.2f", (v * 100).rounded() / 100 + 0)  // + 0 turns −0 into 0
    return s.contains(".") ? String(s.reversed().drop { $0 == "0" }.drop { $0 == "." }.reversed()) : s
}

/// Text with XML's five special characters escaped.
func xmlEscaped(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        .replacingOccurrences(of: "'", with: "&apos;")
}

/// Colours of successive series (Tableau 10, then six darker ones of Tableau 20b: a series per sampler).
let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
               "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]

/// Approximate advance of one character of the 11-pixel sans-serif font.
let characterWidth = 6.6

/// An axis: the data range with 4% to spare on each side (in log10 units for a log axis), ticks inside it.
struct Axis {
    let log: Bool
    let ticks: [Double]
    let labels: [String]
    let lo: Double, hi: Double  // in axis units (log10 of the value for a log axis)

    init(values: [Double], log: Bool) {
        self.log = log
        let used = values.filter { $0.isFinite && (!log || $0 > 0) }.map { log ? Foundation.log10($0) : $0 }
        var (lo, hi) = (used.min() ?? 0, used.max() ?? 1)
        if lo == hi { (lo, hi) = (lo - 1, hi + 1) }
        (lo, hi) = (lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo))
        (self.lo, self.hi) = (lo, hi)
        let decades = log ? stride(from: lo.rounded(.up), through: hi.rounded(.down), by: 1).map { Int($0) } : []
        if decades.count >= 2 {
            // Powers of ten, every k-th when there are more than 8.
            let every = (decades.count + 7) / 8
            let shown = decades.filter { ($0 - decades[0]) % every == 0 }
            ticks = shown.map { Foundation.pow(10, Double($0)) }
            labels = ticks.map { tickLabel($0, step: $0) }
        } else {
            let (a, b) = log ? (Foundation.pow(10, lo), Foundation.pow(10, hi)) : (lo, hi)
            let step = tickStep(a, b, count: 5)
            ticks = niceTicks(a, b).filter { $0 >= a && $0 <= b }
            labels = ticks.map { tickLabel($0, step: step) }
        }
    }

    /// The position in 0…1 along the axis of a value (nil where a log axis cannot show it).
    func fraction(_ v: Double) -> Double? {
        guard v.isFinite, !log || v > 0 else { return nil }
        return ((log ? Foundation.log10(v) : v) - lo) / (hi - lo)
    }
}

/// Draws one plot into a panel: frame, grid, ticks, labels, clipped series, legend.
struct PanelRenderer {
    let plot: Plot
    let width: Double, height: Double
    let id: Int

    func render() -> String {
        let xAxis = Axis(values: plot.series.flatMap(\.x), log: false)
        let yAxis = Axis(values: plot.series.flatMap(\.y), log: plot.logY)
        let yLabelSpace = plot.yLabel.isEmpty ? 0.0 : 20
        let left = 10 + yLabelSpace + Double(yAxis.labels.map(\.count).max() ?? 1) * characterWidth + 8
        let right = width - 18 - Double(xAxis.labels.last?.count ?? 0) * characterWidth / 2
        let top = plot.title.isEmpty ? 14.0 : 34, bottom = height - (plot.xLabel.isEmpty ? 26 : 44)
        func px(_ v: Double) -> Double? { xAxis.fraction(v).map { left + $0 * (right - left) } }
        func py(_ v: Double) -> Double? { yAxis.fraction(v).map { bottom - $0 * (bottom - top) } }

        var out = ""
        if !plot.title.isEmpty {
            out += text(plot.title, x: (left + right) / 2, y: 20, anchor: "middle", extra: " font-size=\"14\" font-weight=\"bold\"")
        }
        for (tick, label) in zip(xAxis.ticks, xAxis.labels) {
            let x = px(tick)!
            out += line(x, top, x, bottom, stroke: "#e4e4e4") + line(x, bottom, x, bottom + 4, stroke: "black")
            out += text(label, x: x, y: bottom + 16, anchor: "middle")
        }
        for (tick, label) in zip(yAxis.ticks, yAxis.labels) {
            let y = py(tick)!
            out += line(left, y, right, y, stroke: "#e4e4e4") + line(left - 4, y, left, y, stroke: "black")
            out += text(label, x: left - 7, y: y + 4, anchor: "end")
        }
        if !plot.xLabel.isEmpty { out += text(plot.xLabel, x: (left + right) / 2, y: height - 10, anchor: "middle") }
        if !plot.yLabel.isEmpty {
            let y = (top + bottom) / 2
            out += text(plot.yLabel, x: 16, y: y, anchor: "middle", extra: " transform=\"rotate(-90 16 \(number(y)))\"")
        }
        let clip = "plot\(id)"
        out += "<clipPath id=\"\(clip)\"><rect x=\"\(number(left))\" y=\"\(number(top))\" width=\"\(number(right - left))\" height=\"\(number(bottom - top))\"/></clipPath>\n"
        out += "<g clip-path=\"url(#\(clip))\">\n"
        var drawn: [(Double, Double)] = []  // pixel positions, to place the legend where the data is not
        for (k, series) in plot.series.enumerated() {
            let colour = palette[(series.colour ?? k) % palette.count]
            let points = zip(series.x, series.y).map { x, y in px(x).flatMap { a in py(y).map { (a, $0) } } }
            switch series.mark {
            case .dots:
                // A cloud of samples in small translucent dots, a few measurements in large opaque ones.
                let (r, opacity) = series.x.count > 500 ? (1.5, 0.6) : series.x.count > 20 ? (2.5, 0.6) : (4.5, 1)
                for case let (x, y)? in points {
                    out += "<circle cx=\"\(number(x))\" cy=\"\(number(y))\" r=\"\(number(r))\" fill=\"\(colour)\" fill-opacity=\"\(number(opacity))\"/>\n"
                    drawn.append((x, y))
                }
            case .line:
                // A polyline per run of drawable points: a non-finite value (or y ≤ 0 on a log axis) breaks the line.
                var run: [(Double, Double)] = []
                for point in points + [nil] {
                    if let p = point { run.append(p); continue }
                    if run.count > 1 {
                        out += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\""
                            + run.map { "\(number($0.0)),\(number($0.1))" }.joined(separator: " ") + "\"/>\n"
                        if series.x.count <= 20 {  // a few measurements: each one marked on its line
                            out += run.map { "<circle cx=\"\(number($0.0))\" cy=\"\(number($0.1))\" r=\"3\" fill=\"\(colour)\"/>\n" }.joined()
                        }
                        for (a, b) in zip(run, run.dropFirst()) {
                            drawn += (0..<8).map { i in (a.0 + (b.0 - a.0) * Double(i) / 8, a.1 + (b.1 - a.1) * Double(i) / 8) }
                        }
                    }
                    run = []
                }
            }
        }
        out += "</g>\n"
        out += "<rect x=\"\(number(left))\" y=\"\(number(top))\" width=\"\(number(right - left))\" height=\"\(number(bottom - top))\" fill=\"none\" stroke=\"black\"/>\n"
        return out + legend(left: left, right: right, top: top, bottom: bottom, avoiding: drawn)
    }

    /// The series' swatches and labels in a box in the plot corner that covers the fewest drawn points.
    func legend(left: Double, right: Double, top: Double, bottom: Double, avoiding drawn: [(Double, Double)]) -> String {
        let labelled = plot.series.enumerated().filter { !$0.element.label.isEmpty }
        guard !labelled.isEmpty else { return "" }
        let rowHeight = 16.0
        let boxWidth = 34 + Double(labelled.map(\.element.label.count).max()!) * characterWidth
        let boxHeight = Double(labelled.count) * rowHeight + 8
        let corners = [(right - boxWidth - 6, top + 6), (left + 6, top + 6),
                       (right - boxWidth - 6, bottom - boxHeight - 6), (left + 6, bottom - boxHeight - 6)]
        let (bx, by) = corners.min { a, b in
            func covered(_ c: (Double, Double)) -> Int {
                drawn.filter { $0.0 >= c.0 && $0.0 <= c.0 + boxWidth && $0.1 >= c.1 && $0.1 <= c.1 + boxHeight }.count
            }
            return covered(a) < covered(b)
        }!
        var out = "<rect x=\"\(number(bx))\" y=\"\(number(by))\" width=\"\(number(boxWidth))\" height=\"\(number(boxHeight))\" "
            + "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999999\"/>\n"
        for (row, (k, series)) in labelled.enumerated() {
            let y = by + 4 + rowHeight * (Double(row) + 0.5), colour = palette[(series.colour ?? k) % palette.count]
            switch series.mark {
            case .line: out += line(bx + 6, y, bx + 24, y, stroke: colour, width: 2)
            case .dots: out += "<circle cx=\"\(number(bx + 15))\" cy=\"\(number(y))\" r=\"3\" fill=\"\(colour)\"/>\n"
            }
            out += text(series.label, x: bx + 28, y: y + 4, anchor: "start")
        }
        return out
    }

    func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1) -> String {
        "<line x1=\"\(number(x1))\" y1=\"\(number(y1))\" x2=\"\(number(x2))\" y2=\"\(number(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(number(width))\"/>\n"
    }

    func text(_ s: String, x: Double, y: Double, anchor: String, extra: String = "") -> String {
        "<text x=\"\(number(x))\" y=\"\(number(y))\" text-anchor=\"\(anchor)\"\(extra)>\(xmlEscaped(s))</text>\n"
    }
}
