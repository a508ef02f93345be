import Foundation

/// Progress of long work on standard error: a bar redrawn in place on a terminal (step, figures, rate, ETA), plain
/// lines every `lineEvery` steps otherwise (logs, CI).
public final class ProgressBar {
    public let total: Int
    public let label: String
    private let start = Date()
    private let first: Int
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private let lineEvery: Int
    private var lastDraw = Date.distantPast
    private var lastLine: Int

    public init(total: Int, label: String, startingAt first: Int = 0, lineEvery: Int? = nil) {
        self.total = total
        self.label = label
        self.first = first
        self.lineEvery = lineEvery ?? max(1, total / 20)
        lastLine = first
    }

    /// Reports that `done` of `total` are finished, with extra figures such as "loss 0.0312".
    public func update(_ done: Int, _ figures: String = "") {
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(done - first) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Self.duration(Double(total - done) / rate) : done < total ? "?" : "0s"
        let text = "\(label) \(done)/\(total) \(figures) \(String(format: "%.2f", rate)) it/s ETA \(eta)"
        if isTerminal {
            guard done == total || Date().timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = Date()
            let width = 24, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write(Data("\r\u{1B}[2K[\(bar)] \(text)".utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if done != lastLine && (done == total || (done - first) / lineEvery > (lastLine - first) / lineEvery) {
            lastLine = done  // a line each time another lineEvery steps are done, whatever the increments
            FileHandle.standardError.write(Data("\(text)\n".utf8))
        }
    }

    /// Ends the bar's line early (an interruption or an error).
    public func finishLine() {
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    /// 3h04m, 12m30s, 42s
    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" }
        if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s)s"
    }
}

/// Ctrl-C (SIGINT) and SIGTERM set a flag that long loops check between steps, so that they can save and stop cleanly.
public enum Interruption {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0

    public static var requested: Bool { flag != 0 }

    /// Work given up because an interruption was requested (its checkpoints written).
    public struct Stopped: Error, CustomStringConvertible, LocalizedError {
        public init() {}
        public var description: String { "stopped by Ctrl-C or SIGTERM" }
        public var errorDescription: String? { description }
    }

    /// Installs the handlers (a second Ctrl-C while stopping still ends the process at once).
    public static func install() {
        flag = 0
        for s in [SIGINT, SIGTERM] {
            signal(s) { _ in
                if Interruption.flag != 0 { _exit(130) }
                Interruption.flag = 1
            }
        }
    }
}

/// Writes "warning: TEXT" to standard error: what a user should know that does not stop the work.
public func printWarning(_ text: String) {
    FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
}
