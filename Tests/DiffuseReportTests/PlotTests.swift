import DiffuseDiffusion
import DiffuseEngine
import DiffuseReport
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

/// The elements of an XML document, parsed by Foundation's XMLParser (which fails on anything not well-formed).
final class ParsedSVG: NSObject, XMLParserDelegate {
    struct Element { let name: String; let attributes: [String: String]; var text: String }
    private(set) var elements: [Element] = []
    private var open: [Int] = []

    init(_ svg: String, file: StaticString = #filePath, line: UInt = #line) {
        super.init()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = self
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")", file: file, line: line)
        XCTAssertEqual(elements.first?.name, "svg", file: file, line: line)
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        open.append(elements.count)
        elements.append(Element(name: name, attributes: attributes, text: ""))
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        open.removeLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if let i = open.last { elements[i].text += string }
    }

    func named(_ name: String) -> [Element] { elements.filter { $0.name == name } }
    var texts: [String] { named("text").map(\.text) }
    /// The points of every polyline, as pixel pairs.
    var polylines: [[(Double, Double)]] {
        named("polyline").map { e in
            e.attributes["points"]!.split(separator: " ").map { pair in
                let xy = pair.split(separator: ",").map { Double($0)! }
                return (xy[0], xy[1])
            }
        }
    }
}

final class PlotTests: XCTestCase {
    /// A plot with two line series, escaped text, axis labels and a legend parses as XML, and every text is there.
    func testLinePlotIsWellFormedSVG() {
        let xs = (0..<50).map(Double.init)
        let plot = Plot(title: "x² & √x <compared>", xLabel: "x", yLabel: "f(x)", series: [
            .init("x²", x: xs, y: xs.map { $0 * $0 }), .init("√x", x: xs, y: xs.map { $0.squareRoot() }),
        ])
        let svg = ParsedSVG(plot.svg())
        XCTAssertEqual(svg.named("polyline").count, 2)
        for label in ["x² & √x <compared>", "x", "f(x)", "x²", "√x"] { XCTAssertTrue(svg.texts.contains(label), label) }
        XCTAssertTrue(svg.texts.contains("2000"), "a y tick: \(svg.texts)")
    }

    /// Every point of every line lies inside the plot frame (the axes cover the data).
    func testLinesLieInsideTheFrame() {
        let xs = (0..<200).map { Double($0) / 10 - 3 }
        let plot = Plot(series: [.init("sin", x: xs, y: xs.map(Foundation.sin)), .init("", x: xs, y: xs.map { $0 / 7 })])
        let svg = ParsedSVG(plot.svg(width: 300, height: 200))
        let frame = svg.named("rect").first { $0.attributes["fill"] == "none" }!.attributes.mapValues { Double($0) }
        let (x, y, w, h) = (frame["x"]!!, frame["y"]!!, frame["width"]!!, frame["height"]!!)
        for line in svg.polylines {
            XCTAssertEqual(line.count, 200)
            for (px, py) in line { XCTAssertTrue(px >= x && px <= x + w && py >= y && py <= y + h, "(\(px), \(py))") }
            XCTAssertLessThan(line[0].0, line[1].0, "x grows to the right")
        }
        XCTAssertLessThan(svg.polylines[0][0].1, svg.polylines[0][15].1, "y grows upwards: sin(−3) > sin(−1.5)")
    }

    /// A non-finite value, or y ≤ 0 on a log axis, breaks a line in two instead of producing "nan" coordinates.
    func testLinesBreakWhereValuesCannotBeDrawn() {
        let xs = (0..<10).map(Double.init)
        var ys = xs.map { $0 + 1 }
        ys[4] = .nan
        XCTAssertEqual(ParsedSVG(Plot(series: [.init("a", x: xs, y: ys)]).svg()).named("polyline").count, 2)
        ys[4] = 0
        let log = Plot(logY: true, series: [.init("a", x: xs, y: ys.map { $0 * 1e-3 })]).svg()
        let svg = ParsedSVG(log)
        XCTAssertEqual(svg.named("polyline").count, 2)
        XCTAssertFalse(log.lowercased().contains("nan") || log.contains("inf"))
        XCTAssertEqual(svg.texts.filter { $0.hasPrefix("0.0") }, ["0.001", "0.01"], "decade ticks")
    }

    /// A scatter of 2D points draws one dot per row of the tensor, with a legend entry per series.
    func testScatterPlot() {
        var generator = RandomGenerator(seed: 0)
        let data = generator.normal([300, 2]), samples = generator.normal([100, 2], mean: 2)
        let plot = Plot(title: "samples vs data", series: [.init("data", points: data), .init("samples", points: samples)])
        let svg = ParsedSVG(plot.svg())
        XCTAssertEqual(svg.named("circle").count, 400 + 2, "dots and two legend swatches")
        XCTAssertTrue(svg.texts.contains("data") && svg.texts.contains("samples"))
    }

    /// Ticks are multiples of 1, 2 or 5 × 10^k that cover the range.
    func testNiceTicks() {
        XCTAssertEqual(niceTicks(0, 999), [0, 200, 400, 600, 800, 1000])
        XCTAssertEqual(niceTicks(-10.1, 9.2), [-15, -10, -5, 0, 5, 10])
        let unit = niceTicks(0, 1)
        XCTAssertEqual(unit.count, 6)
        for (tick, expected) in zip(unit, [0, 0.2, 0.4, 0.6, 0.8, 1]) { XCTAssertEqual(tick, expected, accuracy: 1e-12) }
        XCTAssertEqual(niceTicks(3, 3), [3])
    }

    /// Tick labels of a linear axis carry the step's decimals; tiny and huge values are written as mantissa e exponent.
    func testTickLabels() {
        func yLabels(_ ys: [Double]) -> [String] {
            let svg = ParsedSVG(Plot(series: [.init("", x: ys.indices.map(Double.init), y: ys)]).svg())
            return svg.named("text").filter { $0.attributes["text-anchor"] == "end" }.map(\.text)
        }
        XCTAssertEqual(yLabels([-1, 1]), ["−1.0", "−0.5", "0.0", "0.5", "1.0"])
        XCTAssertEqual(yLabels([-2e-5, 3e-5]), ["−2e−5", "−1e−5", "0", "1e−5", "2e−5", "3e−5"])
        XCTAssertEqual(yLabels([0, 4e5]), ["0", "1e5", "2e5", "3e5", "4e5"])
    }

    /// Two schedules: four curves in two panels, no −∞ written for the zero-terminal-SNR schedule's last log-SNR.
    func testScheduleFigure() {
        let linear = NoiseSchedule(.linear), cosine = NoiseSchedule(.cosine)
        let figure = scheduleFigure([(label: "linear", schedule: linear), (label: "cosine", schedule: cosine)])
        let svg = ParsedSVG(figure)
        XCTAssertEqual(svg.named("polyline").count, 4)
        XCTAssertEqual(svg.polylines.map(\.count), [1000, 1000, 1000, 1000])
        for text in ["Signal left, ᾱₜ", "log SNR(t)", "timestep t", "linear", "cosine"] { XCTAssertTrue(svg.texts.contains(text), text) }
        let zero = scheduleFigure(linear.rescaledToZeroTerminalSNR())
        XCTAssertEqual(ParsedSVG(zero).polylines.map(\.count), [1000, 999])
        XCTAssertFalse(zero.lowercased().contains("nan") || zero.contains("inf"))
    }
}
