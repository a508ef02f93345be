import Foundation

/// How an image was made, in the text that AUTOMATIC1111's web UI and stable-diffusion.cpp put in a PNG's
/// `parameters` chunk, which image viewers and model sites read:
///
///     a watercolour of a lighthouse
///     Negative prompt: blurry, text
///     Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: v1-5
///
/// The prompt (any number of lines), then the negative prompt if there is one, then one line of settings: `key: value`
/// pairs separated by commas, a value with a comma, colon or quote written as a JSON string.
public struct GenerationParameters: Equatable, Sendable {
    public struct Setting: Equatable, Sendable {
        public var key: String
        public var value: String
        public init(_ key: String, _ value: String) { (self.key, self.value) = (key, value) }
    }

    public var prompt: String
    public var negativePrompt: String
    public var settings: [Setting]

    public init(prompt: String = "", negativePrompt: String = "", settings: [Setting]) {
        (self.prompt, self.negativePrompt, self.settings) = (prompt, negativePrompt, settings)
    }

    public subscript(key: String) -> String? { settings.first { $0.key == key }?.value }

    /// The chunk's text.
    public var text: String {
        var lines: [String] = []
        if !prompt.isEmpty { lines.append(prompt) }
        if !negativePrompt.isEmpty { lines.append("Negative prompt: " + negativePrompt) }
        lines.append(settings.map { "\($0.key): \(Self.quoted($0.value))" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// A value as the web UI writes it: as is, or as a JSON string when it holds a comma, colon or quote.
    static func quoted(_ value: String) -> String {
        guard value.contains(where: { ",:\"".contains($0) }) else { return value }
        let data = try! JSONEncoder().encode(value)  // a String always encodes
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\\/", with: "/")
    }

    /// Reads the text as the web UI does: the last line is the settings when it holds at least three `key: value`
    /// pairs (otherwise the whole text is the prompt); the lines from the first that starts with "Negative prompt:"
    /// are the negative prompt.
    public init(parsing text: String) {
        var lines = text.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n")
        settings = []
        if let last = lines.last, let pairs = Self.settings(in: last), pairs.count >= 3 {
            settings = pairs
            lines.removeLast()
        }
        var prompt: [String] = [], negative: [String] = []
        for line in lines {
            if !negative.isEmpty || line.hasPrefix("Negative prompt:") {
                negative.append(negative.isEmpty ? String(line.dropFirst("Negative prompt:".count)).trimmingCharacters(in: .whitespaces) : line)
            } else {
                prompt.append(line)
            }
        }
        self.prompt = prompt.joined(separator: "\n")
        negativePrompt = negative.joined(separator: "\n")
    }

    /// The `key: value` pairs of a settings line, or nil where it is not one. A key is a word of letters, digits,
    /// spaces, '-' and '/'; a value runs to the next comma, or is a JSON string.
    static func settings(in line: String) -> [Setting]? {
        var pairs: [Setting] = []
        var rest = Substring(line)
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " }
            guard let colon = rest.firstIndex(of: ":") else { return pairs.isEmpty ? nil : pairs }
            let key = rest[..<colon]
            guard let first = key.first, first.isLetter || first.isNumber || first == "_",
                  key.allSatisfy({ $0.isLetter || $0.isNumber || " _-/".contains($0) }) else { return nil }
            rest = rest[rest.index(after: colon)...].drop { $0 == " " }
            var value: String
            if rest.first == "\"", let end = Self.endOfJSONString(rest),
               let decoded = try? JSONDecoder().decode(String.self, from: Data(rest[...end].utf8)) {
                value = decoded
                rest = rest[rest.index(after: end)...]
                guard rest.isEmpty || rest.first == "," else { return nil }
            } else {
                let comma = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<comma]).trimmingCharacters(in: .whitespaces)
                rest = rest[comma...]
            }
            pairs.append(Setting(String(key).trimmingCharacters(in: .whitespaces), value))
            rest = rest.dropFirst()  // the comma
        }
        return pairs
    }

    /// The index of the quote that closes the JSON string starting at `s`'s first character.
    private static func endOfJSONString(_ s: Substring) -> Substring.Index? {
        var escaped = false
        for i in s.indices.dropFirst() {
            if escaped { escaped = false } else if s[i] == "\\" { escaped = true } else if s[i] == "\"" { return i }
        }
        return nil
    }
}
