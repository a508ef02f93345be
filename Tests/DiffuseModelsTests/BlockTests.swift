import DiffuseEngine
import DiffuseModels
import DiffuseNN
import Foundation
import XCTest

/// Largest |a − b| must be within atol + rtol·|b| elementwise.
func assertClose(_ a: Tensor, _ b: Tensor, atol: Float, rtol: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "\(what): shape", file: file, line: line)
    guard a.shape == b.shape else { return }
    var worst: Float = 0, at = 0
    for i in 0..<a.count {
        let excess = Swift.abs(a.storage.pointer[i] - b.storage.pointer[i]) - (atol + rtol * Swift.abs(b.storage.pointer[i]))
        if excess > worst { worst = excess; at = i }
    }
    XCTAssertEqual(worst, 0, "\(what): element \(at) is \(a.storage.pointer[at]), expected \(b.storage.pointer[at])",
                   file: file, line: line)
}

func fixture(_ name: String) throws -> SafeTensorsFile {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    return try SafeTensorsFile(path: dir.appendingPathComponent(name).path)
}

/// The tensors of `file` under `prefix.`, with the prefix removed.
func state(_ file: SafeTensorsFile, prefix: String) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in file.names where name.hasPrefix(prefix + ".") {
        out[String(name.dropFirst(prefix.count + 1))] = try file.tensor(name)
    }
    return out
}

final class BlockTests: XCTestCase {
    /// A diffusers ResnetBlock2D with time embedding, then a diffusers attention block, against PyTorch: the
    /// output, the input gradients and every parameter gradient (fixture from scripts/make_block_fixtures.py).
    func testResnetAndAttentionBlocksMatchDiffusers() throws {
        let f = try fixture("blocks.safetensors")
        var generator = RandomGenerator(seed: 1)
        let resnet = ResnetBlock2D(inChannels: 8, outChannels: 16, timeEmbeddingChannels: 12, groups: 4, eps: 1e-6,
                                   generator: &generator)
        let attention = SpatialSelfAttention(channels: 16, headDimension: 8, groups: 4, eps: 1e-6, generator: &generator)
        try resnet.load(state(f, prefix: "resnet"))
        try attention.load(state(f, prefix: "attn"))

        let x = try f.tensor("x").requiringGrad(), temb = try f.tensor("temb").requiringGrad()
        let out = attention(resnet(x, timeEmbedding: temb))
        // Forward: float32 through ~10 ops, two GroupNorms and a softmax.
        assertClose(out, try f.tensor("out"), atol: 1e-5, rtol: 1e-4, "output")
        out.backward(try f.tensor("gout"))
        assertClose(x.grad!, try f.tensor("grad.x"), atol: 1e-4, rtol: 1e-3, "∂/∂x")
        assertClose(temb.grad!, try f.tensor("grad.temb"), atol: 1e-4, rtol: 1e-3, "∂/∂temb")
        for (prefix, module) in [("resnet", resnet as Module), ("attn", attention)] {
            let params = module.namedParameters()
            XCTAssertEqual(Set(params.map(\.0)), Set(try state(f, prefix: prefix).keys), "\(prefix) parameter names")
            for (name, p) in params {
                // Weight gradients sum over batch and positions: a looser absolute tolerance.
                assertClose(p.grad!, try f.tensor("grad.\(prefix).\(name)"), atol: 2e-4, rtol: 1e-3, "∂/∂\(prefix).\(name)")
            }
        }
    }

    /// Stable Diffusion's spatial transformer (diffusers' Transformer2DModel: two BasicTransformerBlocks with self- and
    /// cross-attention and GEGLU) with 1×1-convolution and linear projections, against PyTorch: the output, the
    /// gradients of x and of the context, and every parameter gradient (scripts/make_transformer_fixtures.py).
    func testTransformer2DModelMatchesDiffusers() throws {
        let f = try fixture("transformer2d.safetensors")
        for kind in ["conv", "linear"] {
            var generator = RandomGenerator(seed: 2)
            let model = Transformer2DModel(channels: 16, heads: 2, headDimension: 8, contextDimension: 12, layers: 2, groups: 4,
                                           linearProjection: kind == "linear", generator: &generator)
            try model.load(state(f, prefix: "\(kind).param"))
            let x = try f.tensor("\(kind).x").requiringGrad(), context = try f.tensor("\(kind).context").requiringGrad()
            let out = model(x, context: context)
            assertClose(out, try f.tensor("\(kind).out"), atol: 1e-5, rtol: 1e-4, "\(kind) output")
            out.backward(try f.tensor("\(kind).gout"))
            assertClose(x.grad!, try f.tensor("\(kind).grad.x"), atol: 1e-4, rtol: 1e-3, "\(kind) ∂/∂x")
            assertClose(context.grad!, try f.tensor("\(kind).grad.context"), atol: 1e-4, rtol: 1e-3, "\(kind) ∂/∂context")
            for (name, p) in model.namedParameters() {
                assertClose(p.grad!, try f.tensor("\(kind).grad.\(name)"), atol: 2e-4, rtol: 1e-3, "\(kind) ∂/∂\(name)")
            }
        }
    }

    func testLoadRejectsWrongShapesAndMissingKeys() throws {
        let f = try fixture("blocks.safetensors")
        var generator = RandomGenerator(seed: 1)
        let wide = ResnetBlock2D(inChannels: 8, outChannels: 32, timeEmbeddingChannels: 12, groups: 4, generator: &generator)
        XCTAssertThrowsError(try wide.load(state(f, prefix: "resnet"))) { error in
            XCTAssertTrue("\(error)".contains("the model expects"), "\(error)")
        }
        var partial = try state(f, prefix: "resnet")
        partial["conv1.weight"] = nil
        let block = ResnetBlock2D(inChannels: 8, outChannels: 16, timeEmbeddingChannels: 12, groups: 4, generator: &generator)
        XCTAssertThrowsError(try block.load(partial)) { error in XCTAssertTrue("\(error)".contains("conv1.weight")) }
    }
}
