import DiffuseData
import DiffuseEngine
import Foundation
import XCTest

/// The `parameters` chunk of generated images, in AUTOMATIC1111's format, against files Pillow wrote
/// (scripts/make_data_fixtures.py).
final class GenerationParametersTests: DataTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// Every textual chunk Pillow writes (tEXt, iTXt, zTXt, compressed iTXt) reads back as written.
    func testReadsPillowTextChunks() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("texts.json")))
        let files = try XCTUnwrap(json as? [String: [[String]]])
        XCTAssertEqual(files.count, 3)
        for (name, chunks) in files {
            let read = try PNG.text(Self.fixtures.appendingPathComponent(name).path)
            XCTAssertEqual(read.map { [$0.keyword, $0.text] }, chunks, name)
        }
    }

    /// The web UI's text: prompt lines, negative prompt lines, and the settings with a quoted value.
    func testParsesWebUIText() throws {
        let text = try XCTUnwrap(PNG.text(Self.fixtures.appendingPathComponent("parameters-utf8.png").path).first?.text)
        let p = GenerationParameters(parsing: text)
        XCTAssertEqual(p.prompt, "灯台 🌅 at dusk\nsecond line of the prompt")
        XCTAssertEqual(p.negativePrompt, "ugly\nworse, with a second line")
        XCTAssertEqual(p.settings.map(\.key), ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "Lora hashes", "Version"])
        XCTAssertEqual(p["Sampler"], "DPM++ 2M Karras")
        XCTAssertEqual(p["Lora hashes"], "detail: 1a2b, style: 3c4d")
        XCTAssertEqual(p["Version"], "v1.10.1")
        // Text without a settings line is all prompt.
        XCTAssertEqual(GenerationParameters(parsing: "just a prompt, nothing: else").prompt, "just a prompt, nothing: else")
        XCTAssertEqual(GenerationParameters(parsing: "just a prompt, nothing: else").settings, [])
    }

    /// What Diffuse writes reads back the same, Latin-1 text as tEXt and any other as iTXt.
    func testRoundTrip() throws {
        for prompt in ["a red fox in snow", "猫, 🐈 and \"quotes\"\nover two lines", ""] {
            let parameters = GenerationParameters(
                prompt: prompt, negativePrompt: prompt.isEmpty ? "" : "blurry, low quality",
                settings: [.init("Steps", "20"), .init("Sampler", "Euler a"), .init("CFG scale", "7.5"), .init("Seed", "42"),
                           .init("Size", "512x512"), .init("Model", "my model, v2: \"final\"")])
            XCTAssertEqual(GenerationParameters(parsing: parameters.text), parameters)
            let file = path("parameters.png")
            try PNG.write(Tensor(zeros: [3, 2, 2]), to: file, text: [("parameters", parameters.text)])
            XCTAssertEqual(try PNG.text(file).map(\.keyword), ["parameters"])
            XCTAssertEqual(GenerationParameters(parsing: try PNG.text(file)[0].text), parameters)
            XCTAssertEqual(try PNG.read(file).shape, [3, 2, 2])
        }
    }

    /// A file that is not a PNG, or whose chunk is cut short, is an error naming the file.
    func testBadFiles() throws {
        let notPNG = try write(Array("hello".utf8), to: "x.png")
        XCTAssertThrowsError(try PNG.text(notPNG)) { XCTAssertTrue("\($0)".contains(notPNG)) }
        let whole = try [UInt8](Data(contentsOf: Self.fixtures.appendingPathComponent("parameters.png")))
        let cut = try write(Array(whole.prefix(60)), to: "cut.png")
        XCTAssertThrowsError(try PNG.text(cut)) { XCTAssertTrue("\($0)".contains("cut short")) }
    }
}
