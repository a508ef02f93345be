/// A dense, contiguous, row-major Float32 array of any rank. A tensor is a value: ops return new tensors and
/// never write into their inputs. When it takes part in a computation that needs gradients it carries a graph
/// node (see Autodiff.swift).
public struct Tensor: CustomStringConvertible, @unchecked Sendable {
    public let shape: [Int]
    public let storage: TensorStorage
    /// The node of the gradient graph, or nil for a constant.
    public internal(set) var node: GradNode?

    public init(storage: TensorStorage, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 } && storage.count == shape.reduce(1, *),
                     "storage of \(storage.count) elements does not fit shape \(shape)")
        self.storage = storage
        self.shape = shape
        node = nil
    }

    /// A tensor of uninitialised memory (every kernel writes all of its output).
    public init(uninitialized shape: [Int]) {
        self.init(storage: TensorStorage(uninitializedCount: shape.reduce(1, *)), shape: shape)
    }

    public init(zeros shape: [Int]) {
        self.init(storage: TensorStorage(zeros: shape.reduce(1, *)), shape: shape)
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitialized: shape)
        storage.pointer.initialize(repeating: value, count: count)
    }

    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values do not fill shape \(shape)")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    public init(_ values: [Float]) { self.init(values, shape: [values.count]) }

    public init(scalar: Float) { self.init([scalar], shape: []) }

    public var rank: Int { shape.count }
    public var count: Int { storage.count }
    public var scalars: [Float] { Array(storage.buffer) }
    /// The single value of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item of a tensor of shape \(shape)")
        return storage.pointer[0]
    }

    /// Row-major strides of `shape`.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    /// An axis in 0..<rank, counting from the end when negative.
    public func axis(_ a: Int) -> Int {
        let r = a < 0 ? a + rank : a
        precondition(r >= 0 && r < rank, "axis \(a) out of range for shape \(shape)")
        return r
    }

    /// The same values, cut from the graph: no gradient flows through the result.
    public var detached: Tensor { Tensor(storage: storage, shape: shape) }

    public func detach() -> Tensor { detached }

    /// A new tensor with its own copy of the values (and no graph).
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        out.storage.pointer.update(from: storage.pointer, count: count)
        return out
    }

    public var description: String {
        let shown = scalars.prefix(8).map { String(format: "%.4f", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(shown)\(count > 8 ? ", …" : "")]"
    }
}

import Foundation
