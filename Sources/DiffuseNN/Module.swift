import DiffuseEngine

/// A trainable tensor with a persistent graph leaf, so gradients from every backward pass accumulate on it until
/// `zeroGrad()`. Optimizers update its values in place. A parameter loaded from an fp16 or bf16 checkpoint may keep
/// its values in 16 bits (`half`), widened to Float32 at each read: such a one is for inference, not training.
public final class Parameter {
    /// The Float32 values, or nil while `half` holds them.
    private var full: Tensor?
    /// The 16-bit values, when the parameter keeps them so.
    public private(set) var half: HalfTensor?
    public let shape: [Int]
    private let leaf = GradNode.makeLeaf()

    public init(_ value: Tensor) {
        full = value.detached
        shape = value.shape
    }

    /// The values: the tensor itself, or for a 16-bit parameter a Float32 copy made for this read.
    public var value: Tensor { full ?? half!.widened() }
    public var count: Int { shape.reduce(1, *) }

    /// The value as an input of the graph (a constant inside `withoutGradients`).
    public var tensor: Tensor { value.withLeafNode(leaf) }
    public var grad: Tensor? { leaf.grad }
    public func zeroGrad() { leaf.zeroGrad() }
    /// Replaces the gradient (clipping, for instance).
    public func setGrad(_ g: Tensor?) { leaf.setGrad(g) }

    /// Overwrites the values with `new`, which must have the same shape (rounded to 16 bits for a 16-bit parameter).
    public func assign(_ new: Tensor) {
        precondition(new.shape == shape, "assigning \(new.shape) to a parameter of shape \(shape)")
        if let half {
            self.half = HalfTensor(narrowing: new, format: half.format)
        } else {
            full!.storage.pointer.update(from: new.storage.pointer, count: count)
        }
    }

    /// Takes a checkpoint's tensor of the same shape: Float32 values are copied in, 16-bit ones kept as they are
    /// (the Float32 values are dropped).
    public func assign(_ new: StoredTensor) {
        switch new {
        case .float(let t): assign(t)
        case .half(let h):
            precondition(h.shape == shape, "assigning \(h.shape) to a parameter of shape \(shape)")
            (half, full) = (h, nil)
        }
    }
}

/// A node of the model tree. Its parameters and children are registered under names, and the dotted paths of
/// those names are the checkpoint keys (`down_blocks.0.resnets.1.conv1.weight`), as in PyTorch and diffusers.
open class Module {
    public private(set) var localParameters: [(name: String, parameter: Parameter)] = []
    /// Tensors saved with the parameters but not trained (BatchNorm's running statistics).
    public private(set) var localBuffers: [(name: String, buffer: Parameter)] = []
    public private(set) var children: [(name: String, module: Module)] = []
    public private(set) var isTraining = true

    public init() {}

    @discardableResult
    public func register(_ name: String, _ p: Parameter) -> Parameter {
        localParameters.append((name, p))
        return p
    }

    @discardableResult
    public func registerBuffer(_ name: String, _ b: Parameter) -> Parameter {
        localBuffers.append((name, b))
        return b
    }

    @discardableResult
    public func register<M: Module>(_ name: String, _ m: M) -> M {
        children.append((name, m))
        return m
    }

    /// Every parameter under this module, by its dotted path.
    public func namedParameters(prefix: String = "") -> [(String, Parameter)] {
        localParameters.map { (prefix + $0.name, $0.parameter) }
            + children.flatMap { $0.module.namedParameters(prefix: prefix + $0.name + ".") }
    }

    /// Every buffer under this module, by its dotted path.
    public func namedBuffers(prefix: String = "") -> [(String, Parameter)] {
        localBuffers.map { (prefix + $0.name, $0.buffer) }
            + children.flatMap { $0.module.namedBuffers(prefix: prefix + $0.name + ".") }
    }

    public var parameters: [Parameter] { namedParameters().map(\.1) }

    /// Drops the 16-bit weights read in place from a mapped checkpoint from resident memory until they are next
    /// used (see `HalfTensor.dropResident`): for a component of a pipeline while the others run.
    public func dropResidentWeights() {
        for p in parameters { p.half?.dropResident() }
    }

    /// This module and every module below it, parents before children.
    public var allModules: [Module] { [self] + children.flatMap { $0.module.allModules } }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Switches dropout and batch statistics on (training) or off (evaluation), here and below.
    public func train(_ on: Bool = true) {
        isTraining = on
        for c in children { c.module.train(on) }
    }

    public func eval() { train(false) }

    public func zeroGrad() { for p in parameters { p.zeroGrad() } }

    /// Parameters and buffers by key: what a checkpoint holds.
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: (namedParameters() + namedBuffers()).map { ($0.0, $0.1.value) })
    }

    /// Copies every tensor of `state` into the parameter or buffer of the same key. Every key must be present with
    /// the right shape; a problem is reported with the key, both shapes and what to check.
    public func load(_ state: [String: Tensor]) throws {
        let own = namedParameters() + namedBuffers()
        for (key, p) in own {
            guard let t = state[key] else { throw DiffuseError.missingTensor(key: key, shape: p.shape) }
            guard t.shape == p.shape else { throw DiffuseError.tensorShape(key: key, found: t.shape, expected: p.shape) }
        }
        let known = Set(own.map(\.0))
        if let extra = state.keys.sorted().first(where: { !known.contains($0) }) { throw DiffuseError.unexpectedTensor(key: extra) }
        for (key, p) in own { p.assign(state[key]!) }
    }

    /// Fills every parameter and buffer with `source(key)`, one tensor at a time, so that a large model's weights are
    /// never held twice; 16-bit tensors stay 16-bit. A tensor of the wrong shape stops it with the key (what was
    /// filled before stays).
    public func load(each source: (String) throws -> StoredTensor) throws {
        for (key, p) in namedParameters() + namedBuffers() {
            let t = try source(key)
            guard t.shape == p.shape else { throw DiffuseError.tensorShape(key: key, found: t.shape, expected: p.shape) }
            p.assign(t)
        }
    }
}

/// Children named 0, 1, 2, … (PyTorch's ModuleList).
public final class ModuleList<M: Module>: Module {
    public let items: [M]
    public init(_ items: [M]) {
        self.items = items
        super.init()
        for (i, m) in items.enumerated() { register(String(i), m) }
    }
}
