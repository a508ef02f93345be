import DiffuseEngine
import Foundation

/// Updates parameters from their gradients. Its state (moments, step count) is a set of named tensors, saved
/// beside the weights in a checkpoint so that a resumed run continues exactly.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    var parameters: [(String, Parameter)] { get }
    func step()
    func stateDict() -> [String: Tensor]
    func load(_ state: [String: Tensor]) throws
}

extension Optimizer {
    public func zeroGrad() { for (_, p) in parameters { p.zeroGrad() } }
}

/// Applies `body(p, g, state, range)` to every parameter that has a gradient, over pieces of its values in parallel.
private func update(_ parameters: [(String, Parameter)], _ state: [[Tensor]],
                    _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, [UnsafeMutablePointer<Float>], Range<Int>) -> Void) {
    for (i, (name, p)) in parameters.enumerated() {
        guard let g = p.grad else { continue }
        precondition(p.half == nil, "parameter '\(name)' is held in 16 bits, for inference: it cannot be trained")
        let pp = p.value.storage.pointer, pg = UnsafePointer(g.storage.pointer)
        let ps = state[i].map(\.storage.pointer)
        parallelFor(p.count) { r in body(pp, pg, ps, r) }
    }
}

/// Reads the per-parameter state tensors `prefix.key` of `state` into `into`, checking names and shapes.
private func loadSlots(_ state: [String: Tensor], _ prefixes: [String], _ parameters: [(String, Parameter)],
                       into slots: [[Tensor]]) throws {
    for (i, (key, p)) in parameters.enumerated() {
        for (k, prefix) in prefixes.enumerated() {
            let name = "\(prefix).\(key)"
            guard let t = state[name] else { throw DiffuseError.missingTensor(key: name, shape: p.shape) }
            guard t.shape == p.shape else { throw DiffuseError.tensorShape(key: name, found: t.shape, expected: p.shape) }
            slots[i][k].storage.pointer.update(from: t.storage.pointer, count: t.count)
        }
    }
}

private func stepCount(_ state: [String: Tensor]) throws -> Int {
    guard let t = state["step"], t.count == 1 else { throw DiffuseError.missingTensor(key: "step", shape: [1]) }
    return Int(t.item)
}

/// Stochastic gradient descent with momentum, as PyTorch's SGD:
/// g ← g + λθ;  b ← μb + (1 − τ)g (b = g at the first step);  g ← g + μb (Nesterov) or b;  θ ← θ − η·g
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum, dampening, weightDecay: Float
    public let nesterov: Bool
    public let parameters: [(String, Parameter)]
    private var buffers: [[Tensor]]
    private var steps = 0

    public init(_ parameters: [(String, Parameter)], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = parameters.map { [Tensor(zeros: $0.1.shape)] }
    }

    public func step() {
        let (lr, mu, tau, wd, first, nesterov) = (learningRate, momentum, dampening, weightDecay, steps == 0, nesterov)
        update(parameters, buffers) { p, g, s, r in
            let b = s[0]
            for i in r {
                var d = g[i] + wd * p[i]
                if mu != 0 {
                    b[i] = first ? d : mu * b[i] + (1 - tau) * d
                    d = nesterov ? d + mu * b[i] : b[i]
                }
                p[i] -= lr * d
            }
        }
        steps += 1
    }

    public func stateDict() -> [String: Tensor] {
        var state = ["step": Tensor(scalar: Float(steps))]
        for (i, (key, _)) in parameters.enumerated() { state["momentum_buffer.\(key)"] = buffers[i][0] }
        return state
    }

    public func load(_ state: [String: Tensor]) throws {
        steps = try stepCount(state)
        try loadSlots(state, ["momentum_buffer"], parameters, into: buffers)
    }
}

/// Adam (Kingma & Ba), as PyTorch's Adam and AdamW:
/// m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  θ ← θ − (η/(1 − β₁ᵗ))·m / (√v/√(1 − β₂ᵗ) + ε).
/// Weight decay λ is added to the gradient (g ← g + λθ, Adam) or, `decoupled`, applied to the weights
/// (θ ← θ(1 − ηλ), AdamW).
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1, beta2, eps, weightDecay: Float
    public let decoupled: Bool
    public let parameters: [(String, Parameter)]
    private var moments: [[Tensor]]
    public private(set) var steps = 0

    public init(_ parameters: [(String, Parameter)], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                eps: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        moments = parameters.map { [Tensor(zeros: $0.1.shape), Tensor(zeros: $0.1.shape)] }
    }

    /// AdamW: Adam with decoupled weight decay (default λ = 0.01, as PyTorch).
    public static func adamW(_ parameters: [(String, Parameter)], learningRate: Float = 1e-3, beta1: Float = 0.9,
                             beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) -> Adam {
        Adam(parameters, learningRate: learningRate, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay,
             decoupled: true)
    }

    public func step() {
        steps += 1
        let (lr, b1, b2, eps, wd, decoupled) = (learningRate, beta1, beta2, eps, weightDecay, decoupled)
        let c1 = 1 - Foundation.pow(b1, Float(steps)), c2 = (1 - Foundation.pow(b2, Float(steps))).squareRoot()
        let stepSize = lr / c1
        update(parameters, moments) { p, g, s, r in
            let m = s[0], v = s[1]
            for i in r {
                var gi = g[i]
                if decoupled { p[i] *= 1 - lr * wd } else { gi += wd * p[i] }
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                p[i] -= stepSize * m[i] / (v[i].squareRoot() / c2 + eps)
            }
        }
    }

    public func stateDict() -> [String: Tensor] {
        var state = ["step": Tensor(scalar: Float(steps))]
        for (i, (key, _)) in parameters.enumerated() {
            state["exp_avg.\(key)"] = moments[i][0]
            state["exp_avg_sq.\(key)"] = moments[i][1]
        }
        return state
    }

    public func load(_ state: [String: Tensor]) throws {
        steps = try stepCount(state)
        try loadSlots(state, ["exp_avg", "exp_avg_sq"], parameters, into: moments)
    }
}

/// Replaces each parameter's gradient by its sum over the processes of `group` (data-parallel training: each
/// process' gradient is of its share's part of the batch's loss, so the sum is the batch's gradient). The gradients
/// travel in buckets of up to `bucket` values, each one call of the group's sum, which amortises a call's latency
/// over many small tensors and bounds the staging memory; the sums land in new tensors (a gradient's storage may be
/// another tensor's too). Every process passes the same parameters in the same order.
public func sumGradients(_ parameters: [Parameter], over group: ProcessGroup, bucket: Int = 1 << 22) {
    guard group.size > 1 else { return }
    let withGradients = parameters.filter { $0.grad != nil }
    let total = withGradients.reduce(0) { $0 + $1.count }
    let sums = withGradients.map { Tensor(uninitialized: $0.shape) }
    var staging = [Float](repeating: 0, count: Swift.min(bucket, total))
    // Position (parameter, value) where the next bucket starts.
    var (first, firstValue) = (0, 0)
    staging.withUnsafeMutableBufferPointer { staging in
        while first < withGradients.count {
            var (i, v, filled) = (first, firstValue, 0)
            while i < withGradients.count && filled < staging.count {
                let take = Swift.min(withGradients[i].count - v, staging.count - filled)
                (staging.baseAddress! + filled).update(from: withGradients[i].grad!.storage.pointer + v, count: take)
                filled += take
                v += take
                if v == withGradients[i].count { (i, v) = (i + 1, 0) }
            }
            group.sum(UnsafeMutableBufferPointer(rebasing: staging[0..<filled]))
            var read = 0
            while read < filled {
                let take = Swift.min(withGradients[first].count - firstValue, filled - read)
                (sums[first].storage.pointer + firstValue).update(from: staging.baseAddress! + read, count: take)
                read += take
                firstValue += take
                if firstValue == withGradients[first].count { (first, firstValue) = (first + 1, 0) }
            }
        }
    }
    for (p, sum) in zip(withGradients, sums) { p.setGrad(sum) }
}

/// Scales all gradients together so that their global L2 norm √(Σ‖g‖²) is at most `maxNorm`
/// (factor maxNorm/(norm + 1e-6), as PyTorch). Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    let grads = parameters.compactMap(\.grad)
    let total = grads.reduce(0.0) { acc, g in
        let p = g.storage.pointer
        return acc + parallelSum(g.count) { r in r.reduce(0.0) { $0 + Double(p[$1] * p[$1]) } }
    }.squareRoot()
    let norm = Float(total)
    if norm > maxNorm {
        let factor = maxNorm / (norm + 1e-6)
        for p in parameters { if let g = p.grad { p.setGrad(g * factor) } }
    }
    return norm
}

/// An exponential moving average of parameters, θ̄ ← δθ̄ + (1 − δ)θ, the weights that diffusion models sample with.
/// With `warmup`, δ grows as min(decay, (1 + t)/(10 + t)) so that early averages are not dominated by the
/// initial weights (as diffusers' EMAModel).
public final class ExponentialMovingAverage {
    public let decay: Float
    public let warmup: Bool
    public let parameters: [(String, Parameter)]
    public let shadow: [Tensor]
    public private(set) var updates = 0

    public init(_ parameters: [(String, Parameter)], decay: Float = 0.999, warmup: Bool = true) {
        self.parameters = parameters
        self.decay = decay
        self.warmup = warmup
        shadow = parameters.map { $0.1.value.copy() }
    }

    public var currentDecay: Float {
        warmup ? min(decay, Float(1 + updates) / Float(10 + updates)) : decay
    }

    public func update() {
        let d = currentDecay
        for (s, (_, p)) in zip(shadow, parameters) {
            let ps = s.storage.pointer, pp = p.value.storage.pointer
            parallelFor(s.count) { r in for i in r { ps[i] = d * ps[i] + (1 - d) * pp[i] } }
        }
        updates += 1
    }

    /// Runs `body` with the averaged weights in the parameters, then puts the trained weights back.
    public func withAveragedWeights<T>(_ body: () throws -> T) rethrows -> T {
        let trained = parameters.map { $0.1.value.copy() }
        for (s, (_, p)) in zip(shadow, parameters) { p.assign(s) }
        defer { for (t, (_, p)) in zip(trained, parameters) { p.assign(t) } }
        return try body()
    }

    /// The averaged weights by parameter key.
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: zip(parameters, shadow).map { ($0.0.0, $0.1) })
    }

    public func load(_ state: [String: Tensor], updates: Int) throws {
        for ((key, p), s) in zip(parameters, shadow) {
            guard let t = state[key] else { throw DiffuseError.missingTensor(key: key, shape: p.shape) }
            guard t.shape == p.shape else { throw DiffuseError.tensorShape(key: key, found: t.shape, expected: p.shape) }
            s.storage.pointer.update(from: t.storage.pointer, count: t.count)
        }
        self.updates = updates
    }
}

/// The learning rate at step t (from 0): linear warm-up from 0 over `warmup` steps, then cosine decay from `base`
/// to `minimum` at `total` steps: η_t = min + ½(base − min)(1 + cos(π·(t − warmup)/(total − warmup))).
public struct WarmupCosineSchedule: Sendable {
    public let base: Float
    public let warmup: Int
    public let total: Int
    public let minimum: Float

    public init(base: Float, warmup: Int, total: Int, minimum: Float = 0) {
        self.base = base
        self.warmup = warmup
        self.total = total
        self.minimum = minimum
    }

    public func callAsFunction(_ step: Int) -> Float {
        if step < warmup { return base * Float(step + 1) / Float(warmup) }
        let progress = min(1, Float(step - warmup) / Float(max(1, total - warmup)))
        return minimum + 0.5 * (base - minimum) * (1 + Foundation.cos(Float.pi * progress))
    }
}
