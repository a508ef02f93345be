import DiffuseDiffusion
import DiffuseEngine
import DiffuseNN
import Foundation

/// The sizes of transformers' CLIPTextModel, from the keys of its config.json that change the result.
public struct CLIPTextConfig: Equatable, Sendable {
    public var vocabSize = 49408
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var layers = 12
    public var heads = 12
    public var maxPositions = 77
    /// quick_gelu (CLIP, Stable Diffusion 1.x: x·σ(1.702x)) or gelu (OpenCLIP, Stable Diffusion 2.x).
    public var activation = "quick_gelu"
    public var layerNormEps = 1e-5

    public init() {}

    /// The config of a text_encoder/config.json object; a key of the wrong type or an unsupported activation is an
    /// error naming it and the file.
    public init(json: [String: JSONValue], path: String) throws {
        func integer(_ key: String) throws -> Int? {
            guard let value = json[key], value != .null else { return nil }
            guard case .number(let n) = value, n == n.rounded(), n >= 1, n < 1e7 else {
                throw DiffuseError.diffusers(path, "'\(key)' must be a positive whole number, got \(value)")
            }
            return Int(n)
        }
        vocabSize = try integer("vocab_size") ?? vocabSize
        hiddenSize = try integer("hidden_size") ?? hiddenSize
        intermediateSize = try integer("intermediate_size") ?? intermediateSize
        layers = try integer("num_hidden_layers") ?? layers
        heads = try integer("num_attention_heads") ?? heads
        maxPositions = try integer("max_position_embeddings") ?? maxPositions
        if case .number(let eps)? = json["layer_norm_eps"] { layerNormEps = eps }
        if let value = json["hidden_act"] {
            guard case .string(let act) = value, ["quick_gelu", "gelu"].contains(act) else {
                throw DiffuseError.diffusers(path, "'hidden_act' \(value) is not supported (quick_gelu, gelu)")
            }
            activation = act
        }
        guard hiddenSize % heads == 0 else {
            throw DiffuseError.diffusers(path, "hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)")
        }
    }
}

/// CLIP's text encoder in transformers' layout (`text_model.embeddings.token_embedding.weight`,
/// `text_model.encoder.layers.N.self_attn.q_proj.weight`, …): token and position embeddings, pre-norm transformer
/// layers with causal self-attention, a final layer norm.
public final class CLIPTextModel: Module {
    public let config: CLIPTextConfig
    let tokenEmbedding, positionEmbedding: Embedding
    let encoderLayers: [EncoderLayer]
    let finalLayerNorm: LayerNorm

    /// x + self_attn(layer_norm1(x)), then + mlp(layer_norm2(x)): attention over the positions before and at each one.
    final class EncoderLayer: Module {
        let qProj, kProj, vProj, outProj, fc1, fc2: Linear
        let layerNorm1, layerNorm2: LayerNorm
        let heads: Int
        let quickGELU: Bool

        init(_ c: CLIPTextConfig, generator: inout RandomGenerator) {
            let h = c.hiddenSize
            (qProj, kProj, vProj, outProj) = (Linear(h, h, generator: &generator), Linear(h, h, generator: &generator),
                                              Linear(h, h, generator: &generator), Linear(h, h, generator: &generator))
            (fc1, fc2) = (Linear(h, c.intermediateSize, generator: &generator), Linear(c.intermediateSize, h, generator: &generator))
            (layerNorm1, layerNorm2) = (LayerNorm(h, eps: Float(c.layerNormEps)), LayerNorm(h, eps: Float(c.layerNormEps)))
            (heads, quickGELU) = (c.heads, c.activation == "quick_gelu")
            super.init()
            let attention = Module()
            for (name, m) in [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("out_proj", outProj)] { attention.register(name, m) }
            register("self_attn", attention)
            register("layer_norm1", layerNorm1)
            let mlp = Module()
            mlp.register("fc1", fc1)
            mlp.register("fc2", fc2)
            register("mlp", mlp)
            register("layer_norm2", layerNorm2)
        }

        func callAsFunction(_ x: Tensor) -> Tensor {
            let (b, l, h) = (x.shape[0], x.shape[1], x.shape[2])
            let n = layerNorm1(x)
            func split(_ t: Tensor) -> Tensor { t.reshaped([b, l, heads, h / heads]).transposed(1, 2) }
            let attended = scaledDotProductAttention(split(qProj(n)), split(kProj(n)), split(vProj(n)), causal: true)
            let y = x + outProj(attended.transposed(1, 2).reshaped([b, l, h]))
            let u = fc1(layerNorm2(y))
            // quick_gelu(u) = u·σ(1.702·u)
            return y + fc2(quickGELU ? u * sigmoid(u * 1.702) : gelu(u))
        }
    }

    public init(_ config: CLIPTextConfig, generator: inout RandomGenerator) {
        self.config = config
        tokenEmbedding = Embedding(config.vocabSize, config.hiddenSize, generator: &generator)
        positionEmbedding = Embedding(config.maxPositions, config.hiddenSize, generator: &generator)
        encoderLayers = (0..<config.layers).map { _ in EncoderLayer(config, generator: &generator) }
        finalLayerNorm = LayerNorm(config.hiddenSize, eps: Float(config.layerNormEps))
        super.init()
        let textModel = Module(), embeddings = Module(), encoder = Module()
        embeddings.register("token_embedding", tokenEmbedding)
        embeddings.register("position_embedding", positionEmbedding)
        encoder.register("layers", ModuleList(encoderLayers))
        textModel.register("embeddings", embeddings)
        textModel.register("encoder", encoder)
        textModel.register("final_layer_norm", finalLayerNorm)
        register("text_model", textModel)
    }

    /// The model key of a published checkpoint's key: transformers 5 saves them without the `text_model.` prefix,
    /// and older checkpoints also hold the position_ids buffer, which is only 0..<L (nil: not a parameter).
    public static func publishedKey(_ key: String) -> String? {
        key.hasSuffix("embeddings.position_ids") ? nil : key.hasPrefix("text_model.") ? key : "text_model." + key
    }

    /// The encoder's output for token ids [B][L] (L ≤ max_position_embeddings), [B, L, hidden]: after the final
    /// layer norm, or with `skip` = k > 0 the output of the k-th layer from the end put through the final layer norm
    /// (diffusers' clip_skip: 1 is the penultimate layer's).
    public func callAsFunction(_ ids: [[Int]], skip: Int = 0) -> Tensor {
        let (b, l) = (ids.count, ids.first?.count ?? 0)
        precondition(ids.allSatisfy { $0.count == l } && l <= config.maxPositions && skip >= 0 && skip < config.layers,
                     "\(b) token sequences of \(l) for CLIP of \(config.maxPositions) positions, skip \(skip)")
        var x = tokenEmbedding(ids.flatMap { $0 }).reshaped([b, l, config.hiddenSize]) + positionEmbedding(Array(0..<l))
        for layer in encoderLayers.dropLast(skip) { x = layer(x) }
        return finalLayerNorm(x)
    }
}
