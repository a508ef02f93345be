/// Reverse-mode automatic differentiation, define-by-run.
///
/// Every op that has an input needing a gradient gives its output a `GradNode`: the input nodes and a closure that
/// maps the gradient of the output to the gradients of the inputs. `backward()` walks the graph from the output in
/// reverse topological order. Leaves (parameters, inputs marked `requiringGrad()`) keep their gradient, summed over
/// backward passes until it is cleared.
public final class GradNode {
    let inputs: [GradNode?]
    let backwardRule: ((Tensor) -> [Tensor?])?
    /// The gradient of the last `backward()` with respect to this node's tensor (kept on leaves only).
    public internal(set) var grad: Tensor?

    init(inputs: [GradNode?], backward: ((Tensor) -> [Tensor?])?) {
        self.inputs = inputs
        backwardRule = backward
    }

    public var isLeaf: Bool { backwardRule == nil }

    public func zeroGrad() { grad = nil }

    /// A node with no inputs, whose gradient accumulates (a parameter's).
    public static func makeLeaf() -> GradNode { GradNode(inputs: [], backward: nil) }

    /// Replaces a leaf's gradient.
    public func setGrad(_ g: Tensor?) { grad = g?.detached }

    func accumulate(_ g: Tensor) {
        grad = grad.map { add($0.detached, g) } ?? g.detached
    }
}

/// Whether ops record the graph. Off inside `withoutGradients` (sampling, evaluation, optimizer updates), for the
/// task (or thread) that runs it alone: two jobs in one process do not change each other's.
public enum GradMode {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording any graph.
@discardableResult
public func withoutGradients<T>(_ body: () throws -> T) rethrows -> T {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

extension Tensor {
    public var requiresGrad: Bool { node != nil }

    /// This tensor as a leaf of the graph: after `backward()`, its gradient is in `grad`.
    public func requiringGrad() -> Tensor {
        var t = detached
        t.node = GradNode.makeLeaf()
        return t
    }

    /// A leaf tensor that shares `node` (a parameter's persistent node).
    public func withLeafNode(_ leaf: GradNode) -> Tensor {
        var t = detached
        if GradMode.isEnabled { t.node = leaf }
        return t
    }

    /// The accumulated gradient of a leaf.
    public var grad: Tensor? { node?.grad }

    /// Attaches `backward` to this op output when recording is on and some input needs a gradient.
    /// `backward` receives the gradient of this tensor and returns one gradient per input (nil where not needed),
    /// each of its input's shape.
    public func recording(inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.node != nil }) else { return self }
        var t = self
        t.node = GradNode(inputs: inputs.map(\.node), backward: backward)
        return t
    }

    /// Back-propagates `seed` (ones for a scalar output) through the graph that produced this tensor.
    public func backward(_ seed: Tensor? = nil) {
        guard let root = node else { return }
        precondition(seed != nil || count == 1, "backward() without a seed needs a scalar, got shape \(shape)")
        // The backward rules read the gradient with the output's layout.
        precondition(seed.map { $0.shape == shape } ?? true, "backward seed of shape \(seed!.shape) for output \(shape)")
        let order = topologicalOrder(root)
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed ?? Tensor(repeating: 1, shape: shape)]
        withoutGradients {
            for n in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(n)) else { continue }
                guard let rule = n.backwardRule else {
                    n.accumulate(g)
                    continue
                }
                let inputGrads = rule(g)
                for (input, ig) in zip(n.inputs, inputGrads) {
                    guard let input, let ig else { continue }
                    let key = ObjectIdentifier(input)
                    grads[key] = grads[key].map { add($0, ig) } ?? ig
                }
            }
        }
    }
}

/// Nodes reachable from `root`, each after all of its inputs.
private func topologicalOrder(_ root: GradNode) -> [GradNode] {
    var order: [GradNode] = []
    var seen = Set<ObjectIdentifier>()
    var stack: [(GradNode, Int)] = [(root, 0)]
    seen.insert(ObjectIdentifier(root))
    while let (n, i) = stack.popLast() {
        if i < n.inputs.count {
            stack.append((n, i + 1))
            if let next = n.inputs[i], seen.insert(ObjectIdentifier(next)).inserted {
                stack.append((next, 0))
            }
        } else {
            order.append(n)
        }
    }
    return order
}
