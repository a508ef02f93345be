import DiffuseDiffusion
import DiffuseEngine
import Foundation

/// CLIP's tokenizer, as transformers' CLIPTokenizer reads a tokenizer folder (vocab.json, merges.txt,
/// tokenizer_config.json): the special tokens (<|startoftext|>, <|endoftext|>, the pad token) taken out of the text
/// as they are;
/// the rest NFC-normalised, runs of white space made one space, lower-cased; split into contractions ('s 't 're 've
/// 'm 'll 'd), runs of letters, single digits and runs of other non-space characters; each piece's UTF-8 bytes
/// spelled in GPT-2's printable byte alphabet, its last symbol marked end-of-word (</w>), and merged by byte-pair
/// encoding, the lowest-ranked pair of merges.txt first. The ids are framed by the start and end tokens, truncated to
/// `maxLength` (keeping the end token) and padded with the pad token.
public struct CLIPTokenizer: Sendable {
    public let vocabulary: [String: Int]
    /// The rank of each merge "a b" (its line in merges.txt).
    let ranks: [String: Int]
    public let startToken: Int
    public let endToken: Int
    public let padToken: Int
    public let maxLength: Int
    /// The special tokens matched in the text before anything else, with their ids.
    let specials: [(String, Int)]

    public static let start = "<|startoftext|>", end = "<|endoftext|>"

    /// A tokenizer from its vocabulary, its merges in rank order, the pad token and the length to pad to.
    public init(vocabulary: [String: Int], merges: [(String, String)], pad: String = end, maxLength: Int = 77) throws {
        func id(_ token: String) throws -> Int {
            guard let id = vocabulary[token] else { throw DiffuseError.diffusers("tokenizer", "the vocabulary has no '\(token)'") }
            return id
        }
        guard maxLength >= 2 else { throw DiffuseError.diffusers("tokenizer", "model_max_length must be at least 2, got \(maxLength)") }
        self.vocabulary = vocabulary
        ranks = Dictionary(merges.enumerated().map { ($1.0 + " " + $1.1, $0) }, uniquingKeysWith: { first, _ in first })
        (startToken, endToken, padToken, self.maxLength) = (try id(Self.start), try id(Self.end), try id(pad), maxLength)
        specials = [(Self.start, startToken), (Self.end, endToken)] + (pad == Self.end ? [] : [(pad, padToken)])
    }

    /// The tokenizer of a folder: vocab.json and merges.txt (or the BPE model of tokenizer.json, which transformers 5
    /// writes alone), and the pad token and model_max_length of tokenizer_config.json (or special_tokens_map.json)
    /// where given.
    public init(folder: String) throws {
        let url = URL(fileURLWithPath: folder)
        func read(_ name: String) throws -> Data {
            guard let data = fileContents(url.appendingPathComponent(name).path) else {
                throw DiffuseError.diffusers(folder, "\(name) is missing or unreadable")
            }
            return data
        }
        func vocabulary(_ value: JSONValue?, _ file: String) throws -> [String: Int] {
            guard case .object(let entries)? = value else { throw DiffuseError.diffusers(folder, "\(file): no object of tokens and ids") }
            var vocabulary: [String: Int] = [:]
            for (token, value) in entries {
                guard case .number(let n) = value, n == n.rounded(), n >= 0, n < 1e9 else {
                    throw DiffuseError.diffusers(folder, "\(file): the id of '\(token)' is not a whole number, got \(value)")
                }
                vocabulary[token] = Int(n)
            }
            return vocabulary
        }
        func pair(_ line: Substring, _ where: String) throws -> (String, String) {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { throw DiffuseError.diffusers(folder, "\(`where`) is not a pair: '\(line)'") }
            return (String(parts[0]), String(parts[1]))
        }
        let vocab: [String: Int]
        var merges: [(String, String)] = []
        let hasVocab = FileManager.default.fileExists(atPath: url.appendingPathComponent("vocab.json").path)
        if !hasVocab && FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path) {
            guard case .object(let json)? = try? JSONDecoder().decode(JSONValue.self, from: try read("tokenizer.json")),
                  case .object(let model)? = json["model"], model["type"] == .string("BPE"), case .array(let list)? = model["merges"] else {
                throw DiffuseError.diffusers(folder, "tokenizer.json has no BPE model with a vocabulary and merges")
            }
            vocab = try vocabulary(model["vocab"], "tokenizer.json")
            for (i, merge) in list.enumerated() {
                switch merge {
                case .string(let line): merges.append(try pair(Substring(line), "tokenizer.json merge \(i)"))
                case .array(let two) where two.count == 2:
                    guard case .string(let a) = two[0], case .string(let b) = two[1] else { fallthrough }
                    merges.append((a, b))
                default: throw DiffuseError.diffusers(folder, "tokenizer.json merge \(i) is not a pair: \(merge)")
                }
            }
        } else {
            vocab = try vocabulary(try? JSONDecoder().decode(JSONValue.self, from: try read("vocab.json")), "vocab.json")
            guard let text = String(data: try read("merges.txt"), encoding: .utf8) else {
                throw DiffuseError.diffusers(folder, "merges.txt is not UTF-8 text")
            }
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                if number == 0 && line.hasPrefix("#version") { continue }
                merges.append(try pair(line, "merges.txt line \(number + 1)"))
            }
        }
        var pad = Self.end, maxLength = 77
        for name in ["special_tokens_map.json", "tokenizer_config.json"] {  // the config's word last
            guard let data = fileContents(url.appendingPathComponent(name).path) else { continue }
            guard case .object(let config)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
                throw DiffuseError.diffusers(folder, "\(name) is not a JSON object")
            }
            switch config["pad_token"] {
            case .string(let token)?: pad = token
            case .object(let token)?: if case .string(let content)? = token["content"] { pad = content }
            default: break
            }
            if case .number(let n)? = config["model_max_length"], n == n.rounded(), n >= 2, n <= 1e6 { maxLength = Int(n) }
        }
        try self.init(vocabulary: vocab, merges: merges, pad: pad, maxLength: maxLength)
    }

    /// The ids of `text`, `maxLength` of them, and whether the text was cut to fit.
    public func encode(_ text: String) -> (ids: [Int], truncated: Bool) {
        var ids: [Int] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            // The text up to the next special token, then that token.
            let next = specials.compactMap { token, id in rest.range(of: token).map { ($0, id) } }
                .min { $0.0.lowerBound < $1.0.lowerBound }
            let plain = next.map { rest[..<$0.0.lowerBound] } ?? rest
            for piece in Self.pieces(of: Self.normalized(String(plain))) { ids += bytePairs(piece).map { vocabulary[$0] ?? endToken } }
            guard let (range, id) = next else { break }
            ids.append(id)
            rest = rest[range.upperBound...]
        }
        let truncated = ids.count > maxLength - 2
        let body = [startToken] + ids.prefix(maxLength - 2) + [endToken]
        return (body + [Int](repeating: padToken, count: maxLength - body.count), truncated)
    }

    /// NFC, runs of white space as one space, lower case.
    static func normalized(_ text: String) -> String {
        var out = String.UnicodeScalarView(), inSpace = false
        for scalar in text.precomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
            } else {
                out.append(scalar)
                inSpace = false
            }
        }
        return String(out).lowercased()
    }

    /// CLIP's pre-tokenisation: 's 't 're 've 'm 'll 'd | letters+ | one digit | (not space, letter or digit)+.
    static func pieces(of text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        func isLetter(_ s: Unicode.Scalar) -> Bool {
            [.uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter].contains(s.properties.generalCategory)
        }
        func isNumber(_ s: Unicode.Scalar) -> Bool {
            [.decimalNumber, .letterNumber, .otherNumber].contains(s.properties.generalCategory)
        }
        var pieces: [String] = [], i = 0
        func take(while keep: (Unicode.Scalar) -> Bool) {
            var j = i
            while j < scalars.count && keep(scalars[j]) { j += 1 }
            pieces.append(String(String.UnicodeScalarView(scalars[i..<j])))
            i = j
        }
        while i < scalars.count {
            let s = scalars[i]
            if s.properties.isWhitespace { i += 1; continue }
            if s == "'", let suffix = ["s", "t", "re", "ve", "m", "ll", "d"].first(where: { suffix in
                let end = i + 1 + suffix.unicodeScalars.count
                return end <= scalars.count && String(String.UnicodeScalarView(scalars[(i + 1)..<end])) == suffix
            }) {
                pieces.append("'" + suffix)
                i += 1 + suffix.unicodeScalars.count
            } else if isLetter(s) {
                take(while: isLetter)
            } else if isNumber(s) {
                pieces.append(String(s))
                i += 1
            } else {
                take { !$0.properties.isWhitespace && !isLetter($0) && !isNumber($0) }
            }
        }
        return pieces
    }

    /// GPT-2's printable stand-in for each byte: the printable Latin-1 characters for themselves, the others for
    /// U+0100 onwards in byte order.
    static let byteAlphabet: [Character] = {
        let printable = Array(33...126) + Array(161...172) + Array(174...255)
        var others = 0
        return (0..<256).map { b in
            if printable.contains(b) { return Character(Unicode.Scalar(UInt8(b))) }
            defer { others += 1 }
            return Character(Unicode.Scalar(UInt32(256 + others))!)
        }
    }()

    /// The byte-pair encoding of one piece: its bytes' symbols, the last marked </w>, merged lowest rank first.
    func bytePairs(_ piece: String) -> [String] {
        var symbols = piece.utf8.map { String(Self.byteAlphabet[Int($0)]) }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = ranks[symbols[i] + " " + symbols[i + 1]], rank < best?.rank ?? .max { best = (rank, i) }
            }
            guard let best else { break }
            let (a, b) = (symbols[best.index], symbols[best.index + 1])
            var merged: [String] = [], i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == a && symbols[i + 1] == b {
                    merged.append(a + b)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }
}
