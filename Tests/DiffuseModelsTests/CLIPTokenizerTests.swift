import DiffuseModels
import Foundation
import XCTest

/// The CLIP tokenizer against transformers' CLIPTokenizer on a small tokenizer folder
/// (scripts/make_tokenizer_fixtures.py): the same ids for every prompt, padded to 77 with <|endoftext|>, and to 16
/// with "!" (Stable Diffusion 2's pad token, which then stands for itself in the text as a special token: "!!" is two
/// pads, not "!" and "!</w>").
final class CLIPTokenizerTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/clip-tokenizer").path

    struct Expected: Decodable {
        let prompts: [String]
        let ids: [[Int]]
        let pad_exclamation_16: [[Int]]
    }

    func expected() throws -> Expected {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: URL(fileURLWithPath: Self.folder + "/expected.json")))
    }

    /// Every prompt: words merged by the merges, unmerged bytes, accents (also decomposed: NFC), digits one by one,
    /// contractions, CJK and emoji as UTF-8 bytes, runs of white space, a special token inside the text, and a prompt
    /// cut to 77 tokens (flagged).
    func testMatchesTransformers() throws {
        let e = try expected()
        let tokenizer = try CLIPTokenizer(folder: Self.folder)
        XCTAssertEqual(tokenizer.maxLength, 77)
        for (prompt, ids) in zip(e.prompts, e.ids) {
            let (got, truncated) = tokenizer.encode(prompt)
            XCTAssertEqual(got, ids, "'\(prompt)'")
            XCTAssertEqual(truncated, prompt.count > 200, "'\(prompt)': truncation flag")
        }
    }

    func testPadTokenAndLength() throws {
        let e = try expected()
        let base = try CLIPTokenizer(folder: Self.folder)
        let tokenizer = try CLIPTokenizer(vocabulary: base.vocabulary, merges: [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"),
            ("c", "a"), ("ca", "t</w>"), ("i", "n"), ("in", "g</w>"), ("o", "n</w>"), ("h", "e"), ("he", "l"), ("hel", "l"),
            ("hell", "o</w>"), ("s", "t"), ("st", "a"), ("r", "s</w>")], pad: "!", maxLength: 16)
        for (prompt, ids) in zip(e.prompts, e.pad_exclamation_16) {
            XCTAssertEqual(tokenizer.encode(prompt).ids, ids, "'\(prompt)'")
        }
    }

    /// With CLIP's real vocabulary (49 408 tokens; scripts/clip_vocab.py writes the folder from open-clip-torch's
    /// merges, and test.sh runs it), every one of 303 tricky strings (accents, other scripts, emoji, punctuation runs,
    /// numbers, A1111-style weights kept as text, prompts over 77 tokens) gives transformers' ids, padded to 77.
    func testRealVocabularyMatchesTransformers() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent(".build/clip-vocab").path
        guard FileManager.default.fileExists(atPath: folder + "/vocab.json") else {
            throw XCTSkip("no CLIP vocabulary at \(folder): python3 scripts/clip_vocab.py .build/clip-vocab writes it (test.sh does)")
        }
        struct Cases: Decodable { let strings: [String]; let ids: [[Int]]; let truncated: [Bool] }
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/clip-vocab-expected.json")))
        let tokenizer = try CLIPTokenizer(folder: folder)
        XCTAssertEqual(tokenizer.vocabulary.count, 49408)
        XCTAssertEqual(cases.strings.count, 303)
        var failures = 0
        for (i, text) in cases.strings.enumerated() {
            let (got, truncated) = tokenizer.encode(text)
            let padded = cases.ids[i] + [Int](repeating: tokenizer.endToken, count: 77 - cases.ids[i].count)
            if got != padded || truncated != cases.truncated[i] {
                failures += 1
                if failures <= 10 { XCTFail("'\(text)': \(got) (cut: \(truncated)), transformers: \(padded) (cut: \(cases.truncated[i]))") }
            }
        }
        XCTAssertEqual(failures, 0, "strings whose ids differ from transformers'")
    }

    /// A folder without its files, or with a pad token the vocabulary lacks, is an error that names the problem.
    func testBadFoldersAreClearErrors() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        XCTAssertThrowsError(try CLIPTokenizer(folder: scratch.path)) { XCTAssertTrue("\($0)".contains("vocab.json"), "\($0)") }
        try Data("{\"a\": 0}".utf8).write(to: scratch.appendingPathComponent("vocab.json"))
        try Data("#version: 0.2\na b c\n".utf8).write(to: scratch.appendingPathComponent("merges.txt"))
        XCTAssertThrowsError(try CLIPTokenizer(folder: scratch.path)) { XCTAssertTrue("\($0)".contains("line 2"), "\($0)") }
        try Data("#version: 0.2\na b\n".utf8).write(to: scratch.appendingPathComponent("merges.txt"))
        XCTAssertThrowsError(try CLIPTokenizer(folder: scratch.path)) { XCTAssertTrue("\($0)".contains("<|startoftext|>"), "\($0)") }
    }
}
