// conv2d, the op: each of its passes runs the algorithm its plan gives (ConvPlan.swift), Winograd's F(2×2, 3×3)
// (Winograd.swift), correlations over wide layouts on register tiles (Correlation.swift, ChannelTiles.swift,
// RowTiles.swift, PositionLanes.swift) or plain loops (ReferenceConvolution.swift).

/// ⌊a/b⌋ and a mod b (in [0, b)) for b > 0, negative a included.
private func floorDivMod(_ a: Int, _ b: Int) -> (Int, Int) {
    let q = a >= 0 ? a / b : -((-a + b - 1) / b)
    return (q, a - q * b)
}

/// The geometry of a 2D convolution over NCHW input with an [O, C, KH, KW] kernel, stride s and zero padding p
/// (py rows above and below, px columns left and right).
public struct ConvGeometry: Hashable, Sendable, CustomStringConvertible {
    let n, c, h, w, o, kh, kw, py, px: Int
    public let stride: Int

    init(n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: Int, py: Int, px: Int) {
        (self.n, self.c, self.h, self.w, self.o, self.kh, self.kw) = (n, c, h, w, o, kh, kw)
        (self.stride, self.py, self.px) = (stride, py, px)
    }

    /// A convolution of `input` ([N, C, H, W]) with `weight` ([O, C, KH, KW]).
    public init(input: [Int], weight: [Int], stride: Int = 1, padding: (rows: Int, columns: Int) = (0, 0)) {
        self.init(n: input[0], c: input[1], h: input[2], w: input[3], o: weight[0], kh: weight[2], kw: weight[3],
                  stride: stride, py: padding.rows, px: padding.columns)
    }

    public var input: [Int] { [n, c, h, w] }
    public var weight: [Int] { [o, c, kh, kw] }
    public var output: [Int] { [n, o, oh, ow] }
    public var padding: (rows: Int, columns: Int) { (py, px) }
    public var oh: Int { (h + 2 * py - kh) / stride + 1 }
    public var ow: Int { (w + 2 * px - kw) / stride + 1 }
    var taps: Int { kh * kw }
    /// A 3×3 kernel at stride 1 with one row and column of padding: what Winograd's F(2×2, 3×3) runs.
    var fitsWinograd: Bool { kh == 3 && kw == 3 && stride == 1 && py == 1 && px == 1 }
    /// A 1×1 kernel at stride 1 without padding: each image's output is the weights (outputs × channels) times its
    /// input (channels × positions), what the product algorithm runs.
    var isPointwise: Bool { kh == 1 && kw == 1 && stride == 1 && py == 0 && px == 0 }
    public var description: String {
        "\(n)×\(c)×\(h)×\(w) → \(o), \(kh)×\(kw)" + (stride > 1 ? " stride \(stride)" : "")
            + (py > 0 || px > 0 ? " padding \(py == px ? "\(py)" : "(\(py), \(px))")" : "")
    }

    /// Tap (i, j) of output (Y, X) reads input (sY + i − p, sX + j − p): phase ((i − p) mod s, (j − p) mod s) of the
    /// input at (Y + ⌊(i − p)/s⌋, X + ⌊(j − p)/s⌋).
    func forward(images: Int) -> Correlation {
        var taps: [Tap] = []
        for i in 0..<kh {
            for j in 0..<kw {
                let (dy, a) = floorDivMod(i - py, stride), (dx, b) = floorDivMod(j - px, stride)
                taps.append(Tap(phase: a * stride + b, dy: dy, dx: dx))
            }
        }
        let layout = WideLayout(images: images, channels: c, phases: stride * stride,
                                sourceRows: (h + stride - 1) / stride, sourceColumns: (w + stride - 1) / stride,
                                outputRows: oh, outputColumns: ow, taps: taps)
        return Correlation(layout, taps: taps, outputRows: oh, outputColumns: ow)
    }

    /// The input gradient, phase by phase of the input: x[n, c, sY + a, sX + b] gets ∂y[n, o, Y − m, X − m']·W[o, c, i, j]
    /// for the taps i = a + p + sm, j = b + p + sm'. Returns the layout of ∂y and, per phase (a, b), its correlation
    /// and its taps as (i, j).
    func inputGradient(images: Int) -> (WideLayout, [(a: Int, b: Int, plan: Correlation, taps: [(Int, Int)])]) {
        var phases: [(a: Int, b: Int, taps: [Tap], kernel: [(Int, Int)], rows: Int, columns: Int)] = []
        for a in 0..<stride {
            for b in 0..<stride {
                var taps: [Tap] = [], kernel: [(Int, Int)] = []
                for i in 0..<kh where floorDivMod(i - py - a, stride).1 == 0 {
                    for j in 0..<kw where floorDivMod(j - px - b, stride).1 == 0 {
                        taps.append(Tap(phase: 0, dy: -floorDivMod(i - py - a, stride).0,
                                        dx: -floorDivMod(j - px - b, stride).0))
                        kernel.append((i, j))
                    }
                }
                phases.append((a, b, taps, kernel, (h - a + stride - 1) / stride, (w - b + stride - 1) / stride))
            }
        }
        let layout = WideLayout(images: images, channels: o, phases: 1, sourceRows: oh, sourceColumns: ow,
                                outputRows: phases.map(\.rows).max()!, outputColumns: phases.map(\.columns).max()!,
                                taps: phases.flatMap(\.taps))
        return (layout, phases.map {
            ($0.a, $0.b, Correlation(layout, taps: $0.taps, outputRows: $0.rows, outputColumns: $0.columns), $0.kernel)
        })
    }
}

/// 2D cross-correlation (PyTorch's conv2d): y[n,o] = b[o] + Σ_c W[o,c] ⋆ x[n,c], with stride and zero padding.
///   ∂L/∂x[n,c,sY+i−p,sX+j−p] += Σ_o W[o,c,i,j]·∂L/∂y[n,o,Y,X] (a transposed convolution),
///   ∂L/∂W[o,c,i,j] = Σ_{n,Y,X} ∂L/∂y[n,o,Y,X]·x[n,c,sY+i−p,sX+j−p],  ∂L/∂b[o] = Σ_{n,Y,X} ∂L/∂y[n,o,Y,X]
/// Each pass runs on the algorithm that the convolution's plan (ConvolutionPlan) names; all agree with the plain
/// sums to float32 rounding.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    conv2d(x, weight: weight, bias: bias, stride: stride, padding: (padding, padding))
}

/// conv2d with `padding.rows` zero rows above and below and `padding.columns` zero columns left and right (for
/// rectangular kernels such as Inception's 1×7 and 7×1).
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: (rows: Int, columns: Int)) -> Tensor {
    let geo = convGeometry(x, weight: weight.shape, bias: bias, stride: stride, padding: padding)
    let plan = ConvolutionPlan(geo, frozen: frozenPacks != nil)
    convolutionTrace?.calls[geo, default: (plan, 0)].calls += 1
    let out = Tensor(uninitialized: [geo.n, geo.o, geo.oh, geo.ow])
    convForward(x, weight: UnsafePointer(weight.storage.pointer), frozen: weight, bias: bias, geo, plan, into: out)
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return out.recording(inputs: inputs) { g in
        var grads: [Tensor?] = [nil, nil]
        if x.requiresGrad { grads[0] = convInputGradient(g, weight: weight, geo, plan) }
        if weight.requiresGrad { grads[1] = convWeightGradient(x, g, geo, plan.weightGradient) }
        if let bias, bias.requiresGrad { grads.append(channelSums(g)) }
        return grads
    }
}

/// conv2d with a kernel kept in 16 bits, packed for the kernels straight from its 16-bit values (no widened copy of
/// it is made): the same values as conv2d of `weight.widened()`. For inference: the gradient reaches x and the bias,
/// never the kernel, and the packing is not kept across calls (withFrozenWeights).
public func conv2d(_ x: Tensor, weight: HalfTensor, bias: Tensor?, stride: Int = 1,
                   padding: (rows: Int, columns: Int)) -> Tensor {
    let geo = convGeometry(x, weight: weight.shape, bias: bias, stride: stride, padding: padding)
    let plan = ConvolutionPlan(geo, frozen: false)
    convolutionTrace?.calls[geo, default: (plan, 0)].calls += 1
    let out = Tensor(uninitialized: [geo.n, geo.o, geo.oh, geo.ow])
    withExtendedLifetime(weight) {
        switch weight.format {
        case .float16:
            convForward(x, weight: HalfValues<Float16Format>(weight), frozen: nil, bias: bias, geo, plan, into: out)
        case .bfloat16:
            convForward(x, weight: HalfValues<BFloat16Format>(weight), frozen: nil, bias: bias, geo, plan, into: out)
        }
    }
    return out.recording(inputs: [x] + (bias.map { [$0] } ?? [])) { g in
        [x.requiresGrad ? convInputGradient(g, weight: weight.widened(), geo, plan) : nil]
            + (bias.map { [$0.requiresGrad ? channelSums(g) : nil] } ?? [])
    }
}

/// The sizes of conv2d of `x` with a kernel of shape `weight`, checked.
private func convGeometry(_ x: Tensor, weight: [Int], bias: Tensor?, stride: Int,
                          padding: (rows: Int, columns: Int)) -> ConvGeometry {
    precondition(x.rank == 4 && weight.count == 4 && weight[1] == x.shape[1],
                 "conv2d of input \(x.shape) with kernel \(weight)")
    precondition(stride >= 1 && padding.rows >= 0 && padding.columns >= 0,
                 "conv2d with stride \(stride) and padding \(padding)")
    let geo = ConvGeometry(input: x.shape, weight: weight, stride: stride, padding: padding)
    precondition(geo.oh > 0 && geo.ow > 0, "conv2d kernel \(weight) larger than padded input \(x.shape)")
    precondition(bias.map { $0.count == geo.o } ?? true,
                 "conv2d bias of shape \(bias!.shape) for \(geo.o) output channels")
    return geo
}

/// The forward pass of conv2d on `plan.forward`, reading the kernel from `weight`; its packing is kept while weights
/// are frozen by the tensor `frozen` (nil: never kept).
private func convForward<S: WeightSource>(_ x: Tensor, weight: S, frozen key: Tensor?, bias: Tensor?,
                                          _ geo: ConvGeometry, _ plan: ConvolutionPlan, into out: Tensor) {
    let (c, o, taps) = (geo.c, geo.o, geo.taps)
    let biasPointer = bias.map { UnsafePointer($0.storage.pointer) }
    switch plan.forward {
    case .reference:
        weight.withFloats(count: o * c * taps) { w in
            ReferenceConvolution.forward(x.storage.pointer, weight: w, bias: biasPointer, geo, into: out.storage.pointer)
        }
    case .winograd:
        let tiles = Winograd.Plan(images: geo.n, channels: c, outputs: o, height: geo.h, width: geo.w)
        withPacked(key, kind: 0, count: Winograd.weightCount(outputs: o, inputs: c), pack: { u in
            Winograd.transformWeights(weight, outputs: o, inputs: c, outputStride: c * taps, inputStride: taps,
                                      flipped: false, into: u)
        }) { u in
            Winograd.correlate(x.storage.pointer, tiles, weights: u, bias: biasPointer, out: out.storage.pointer)
        }
    case .product:
        let positions = geo.h * geo.w
        weight.withFloats(count: o * c) { w in
            pointwiseProducts(w, transposed: false, x.storage.pointer, images: geo.n, inputs: c, outputs: o,
                              positions: positions, bias: biasPointer, into: out.storage.pointer)
        }
    case .channelTiles, .flatTiles, .packedTiles:
        let kind = Tiling.Kind(plan.forward)
        let tapWeights = TapWeights(values: weight.values, count: o * c * taps, outputs: o, inputs: c,
                                    outputStride: c * taps, inputStride: taps, tapOffsets: Array(0..<taps))
        withWeights(key, tapWeights, kind: kind, streamed: plan.streamsForward) { weights in
            let target = CorrelationTarget(weights: weights, outputs: o, bias: biasPointer, out: out.storage.pointer,
                                           height: geo.oh, width: geo.ow)
            Kernels.correlate(images: geo.n, kind: kind, bands: { k in
                let correlation = geo.forward(images: k)
                return (correlation.layout, [(correlation, target)])
            }, fill: { layout, buffer, images, parallel in
                layout.fill(buffer, from: x.storage.pointer, images: images, height: geo.h, width: geo.w,
                            stride: geo.stride, parallel: parallel)
            })
        }
    }
}

/// The product algorithm of a 1×1 convolution: for each image, out (outputs × positions) = W·x (+ the bias of each
/// output channel), W being `w` (outputs × inputs) or, `transposed`, `w`ᵀ (w inputs × outputs: an input gradient).
private func pointwiseProducts(_ w: UnsafePointer<Float>, transposed: Bool, _ x: UnsafePointer<Float>, images: Int,
                               inputs: Int, outputs: Int, positions: Int, bias: UnsafePointer<Float>?,
                               into out: UnsafeMutablePointer<Float>) {
    for image in 0..<images {
        let y = out + image * outputs * positions
        if let bias {
            for channel in 0..<outputs { (y + channel * positions).update(repeating: bias[channel], count: positions) }
        }
        Kernels.sgemm(transA: transposed, transB: false, m: outputs, n: positions, k: inputs, w,
                      x + image * inputs * positions, beta: bias == nil ? 0 : 1, y)
    }
}

/// ∂L/∂x of conv2d on `plan.inputGradient`: on Winograd's F(2×2, 3×3), a correlation of ∂L/∂y (padded by 1) with
/// the kernel rotated by 180° and its channels swapped; on tiles, for each phase (a, b) of the input, a correlation
/// of ∂L/∂y with the kernel taps that reach it.
private func convInputGradient(_ g: Tensor, weight: Tensor, _ geo: ConvGeometry, _ plan: ConvolutionPlan) -> Tensor {
    let gx = Tensor(uninitialized: [geo.n, geo.c, geo.h, geo.w])
    let pw = UnsafePointer(weight.storage.pointer)
    let (c, o, kh, kw) = (geo.c, geo.o, geo.kh, geo.kw)
    switch plan.inputGradient {
    case .reference:
        ReferenceConvolution.inputGradient(g.storage.pointer, weight: pw, geo, into: gx.storage.pointer)
    case .winograd:
        let tiles = Winograd.Plan(images: geo.n, channels: o, outputs: c, height: geo.h, width: geo.w)
        withBuffer(Winograd.weightCount(outputs: c, inputs: o)) { u in
            Winograd.transformWeights(pw, outputs: c, inputs: o, outputStride: kh * kw, inputStride: c * kh * kw,
                                      flipped: true, into: u)
            Winograd.correlate(g.storage.pointer, tiles, weights: u, bias: nil, out: gx.storage.pointer)
        }
    case .product:
        pointwiseProducts(pw, transposed: true, g.storage.pointer, images: geo.n, inputs: o, outputs: c,
                          positions: geo.h * geo.w, bias: nil, into: gx.storage.pointer)
    case .channelTiles, .flatTiles, .packedTiles:
        let kind = Tiling.Kind(plan.inputGradient)
        let phases = geo.inputGradient(images: 1).1
        if phases.contains(where: { $0.taps.isEmpty }) { gx.storage.pointer.update(repeating: 0, count: gx.count) }
        // One set of packed weights per phase, shared by every band (none where the tiles stream them).
        let group = kind == .channels ? Kernels.channelTileOutputs : Kernels.tileRows
        let tapWeights = phases.map {
            TapWeights(values: .float(pw), count: weight.count, outputs: c, inputs: o, outputStride: kh * kw,
                       inputStride: c * kh * kw, tapOffsets: $0.taps.map { $0.0 * kw + $0.1 })
        }
        let packs = tapWeights.map { weights -> TensorStorage? in
            guard !plan.streamsInputGradient else { return nil }
            let packed = TensorStorage(uninitializedCount: (c + group - 1) / group * group * Swift.max(weights.depth, 1))
            Kernels.packTaps(weights, group: group, into: packed.pointer)
            return packed
        }
        let targets = zip(phases, zip(tapWeights, packs)).map { phase, weights in
            CorrelationTarget(weights: weights.1.map { .packed($0.pointer) } ?? .streamed(weights.0), outputs: c,
                              bias: nil, out: gx.storage.pointer, height: geo.h, width: geo.w, rowStep: geo.stride,
                              rowOffset: phase.a, colStep: geo.stride, colOffset: phase.b)
        }
        withExtendedLifetime(packs) {
            Kernels.correlate(images: geo.n, kind: kind, bands: { k in
                let (layout, correlations) = geo.inputGradient(images: k)
                return (layout, zip(correlations, targets).filter { !$0.0.taps.isEmpty }.map { ($0.0.plan, $0.1) })
            }, fill: { layout, buffer, images, parallel in
                layout.fill(buffer, from: g.storage.pointer, images: images, height: geo.oh, width: geo.ow, stride: 1,
                            parallel: parallel)
            })
        }
    }
    return gx
}

/// ∂L/∂W of conv2d on `algorithm`; on tiles, from the input laid out wide as for the forward correlation.
private func convWeightGradient(_ x: Tensor, _ g: Tensor, _ geo: ConvGeometry,
                                _ algorithm: WeightGradientAlgorithm) -> Tensor {
    let dw = Tensor(uninitialized: [geo.o, geo.c, geo.kh, geo.kw])
    let (px, pg, pdw) = (UnsafePointer(x.storage.pointer), UnsafePointer(g.storage.pointer), dw.storage.pointer)
    func onWideInput(_ body: (Correlation, UnsafePointer<Float>) -> Void) {
        let correlation = geo.forward(images: geo.n)
        withBuffer(correlation.layout.count) { wide in
            correlation.layout.fill(wide, from: px, images: 0..<geo.n, height: geo.h, width: geo.w, stride: geo.stride)
            body(correlation, wide)
        }
    }
    switch algorithm {
    case .reference:
        ReferenceConvolution.weightGradient(px, pg, geo, into: pdw)
    case .winograd:
        Winograd.weightGradient(px, pg, Winograd.Plan(images: geo.n, channels: geo.c, outputs: geo.o, height: geo.h,
                                                      width: geo.w),
                                block: Kernels.weightGradientBlock(outputs: geo.o)!, into: pdw)
    case .channelTiles:
        onWideInput { Kernels.channelWeightGradient($0, source: $1, g: pg, outputs: geo.o, into: pdw) }
    case .positionLanes:
        onWideInput { Kernels.positionLaneWeightGradient($0, source: $1, g: pg, outputs: geo.o, into: pdw) }
    }
    return dw
}

/// Packed forward weights of convolutions while weights are frozen (withFrozenWeights), by weight storage, shape and
/// packing; each entry keeps its weights' storage alive, so that no other tensor can take its identity meanwhile.
/// One per `withFrozenWeights` scope, in the task (or thread) that runs it.
private final class FrozenPacks: @unchecked Sendable {
    var entries: [FrozenWeights: (weights: TensorStorage, packed: TensorStorage)] = [:]
}
@TaskLocal private var frozenPacks: FrozenPacks?

private struct FrozenWeights: Hashable {
    let storage: ObjectIdentifier
    let shape: [Int]
    /// The packing: packTaps' group of output channels, or 0 for Winograd's transformed weights.
    let kind: Int
}

/// Runs `body` with convolution weights frozen: a convolution packs each weight tensor for its register tiles on
/// first use and keeps the packing until `body` returns, so that a sampler's later steps skip it (at the cost of a
/// packed copy of every convolution's weights meanwhile). Nothing may change a weight's values inside `body`.
/// Nested scopes share the outermost one's packings.
public func withFrozenWeights<R>(_ body: () throws -> R) rethrows -> R {
    if frozenPacks != nil { return try body() }
    return try $frozenPacks.withValue(FrozenPacks()) { try body() }
}

/// `body` with `weight` packed by `pack` into `count` floats: kept from an earlier call while weights are frozen
/// (by storage, shape and `kind` of packing), else (or with no `weight` to key it by) packed into a pooled buffer.
private func withPacked(_ weight: Tensor?, kind: Int, count: Int, pack: (UnsafeMutablePointer<Float>) -> Void,
                        _ body: (UnsafePointer<Float>) -> Void) {
    guard let frozen = frozenPacks, let weight else {
        withBuffer(count) { packed in
            pack(packed)
            body(packed)
        }
        return
    }
    let key = FrozenWeights(storage: ObjectIdentifier(weight.storage), shape: weight.shape, kind: kind)
    if let kept = frozen.entries[key] { return body(kept.packed.pointer) }
    let packed = TensorStorage(uninitializedCount: count)
    pack(packed.pointer)
    frozen.entries[key] = (weight.storage, packed)
    body(packed.pointer)
}

/// `body` with a convolution's weights as `kind`'s tiles take them: `streamed`, or packed (withPacked) in groups of
/// 64 output channels for channel tiles, of 8 for row tiles.
private func withWeights(_ weight: Tensor?, _ tapWeights: TapWeights, kind: Tiling.Kind, streamed: Bool,
                         _ body: (CorrelationTarget.Weights) -> Void) {
    guard !streamed else { return body(.streamed(tapWeights)) }
    let o = tapWeights.outputs
    let group = kind == .channels ? Kernels.channelTileOutputs : Kernels.tileRows
    withPacked(weight, kind: group, count: (o + group - 1) / group * group * tapWeights.depth, pack: { packed in
        Kernels.packTaps(tapWeights, group: group, into: packed)
    }) { body(.packed($0)) }
}

/// The convolutions run while a trace runs (tracingConvolutions), in its task: each geometry's plan and calls.
private final class ConvolutionTrace: @unchecked Sendable {
    var calls: [ConvGeometry: (plan: ConvolutionPlan, calls: Int)] = [:]
}
@TaskLocal private var convolutionTrace: ConvolutionTrace?

/// Runs `body` and returns every convolution geometry it ran, with the plan it ran on (its first call's) and the
/// number of calls: what a model's layers run on, for benchmarks and tests.
public func tracingConvolutions(_ body: () throws -> Void) rethrows -> [ConvGeometry: (plan: ConvolutionPlan, calls: Int)] {
    let trace = ConvolutionTrace()
    try $convolutionTrace.withValue(trace) { try body() }
    return trace.calls
}

/// Σ over the batch and positions of each channel of an NCHW tensor (a convolution's bias gradient), in order.
func channelSums(_ g: Tensor) -> Tensor {
    let (n, c) = (g.shape[0], g.shape[1])
    let spatial = g.count / Swift.max(n * c, 1)
    let out = Tensor(uninitialized: [c])
    let p = g.storage.pointer, po = out.storage.pointer
    parallelFor(c, grain: Swift.max(1, 16384 / Swift.max(n * spatial, 1))) { r in
        for ch in r {
            var s: Float = 0
            for img in 0..<n { s += Kernels.sum(p + (img * c + ch) * spatial, spatial) }
            po[ch] = s
        }
    }
    return out
}
