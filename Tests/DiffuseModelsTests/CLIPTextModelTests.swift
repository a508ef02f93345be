import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import Foundation
import XCTest

/// CLIP's text encoder against transformers' CLIPTextModel (scripts/make_clip_fixtures.py): tiny models with
/// quick_gelu (Stable Diffusion 1.x) and gelu (2.x), their weights under the published keys (text_model.*).
final class CLIPTextModelTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/clip-text")

    /// The last hidden state and the penultimate layer's (clip skip 1) within 1e-5 of transformers' largest value.
    func testMatchesTransformers() throws {
        for activation in ["quick_gelu", "gelu"] {
            let folder = Self.fixtures.appendingPathComponent(activation)
            guard case .object(let json) = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: folder.appendingPathComponent("config.json"))) else {
                return XCTFail("config.json")
            }
            let config = try CLIPTextConfig(json: json, path: folder.path)
            XCTAssertEqual(config.activation, activation)
            var generator = RandomGenerator(seed: 0)
            let model = CLIPTextModel(config, generator: &generator)
            let weights = try SafeTensorsFile(path: folder.appendingPathComponent("model.safetensors").path)
            try model.load(Dictionary(uniqueKeysWithValues: try weights.names.map { ($0, try weights.tensor($0)) }))
            let expected = try SafeTensorsFile(path: folder.appendingPathComponent("expected.safetensors").path)
            let flat = try expected.tensor("ids").scalars.map { Int($0) }
            let ids = [Array(flat[0..<16]), Array(flat[16..<32])]
            let (last, penultimate) = withoutGradients { (model(ids), model(ids, skip: 1)) }
            for (got, name) in [(last, "last_hidden_state"), (penultimate, "penultimate")] {
                let want = try expected.tensor(name)
                XCTAssertEqual(got.shape, want.shape)
                let error = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max()! / want.scalars.map(abs).max()!
                XCTAssertLessThanOrEqual(error, 1e-5, "\(activation) \(name)")
            }
        }
    }

    func testBadConfigsAreClearErrors() {
        XCTAssertThrowsError(try CLIPTextConfig(json: ["hidden_act": .string("relu")], path: "config.json")) {
            XCTAssertTrue("\($0)".contains("hidden_act"), "\($0)")
        }
        XCTAssertThrowsError(try CLIPTextConfig(json: ["hidden_size": .number(30), "num_attention_heads": .number(4)], path: "c")) {
            XCTAssertTrue("\($0)".contains("multiple"), "\($0)")
        }
        XCTAssertThrowsError(try CLIPTextConfig(json: ["num_hidden_layers": .string("12")], path: "c"))
    }
}
