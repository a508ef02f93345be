extension Tensor {
    /// The slices x[i] for i in `indices`, stacked: shape [indices.count, shape[1...]]. An embedding lookup over
    /// the flattened slices, so its gradient is the scatter-add of `embedding`.
    public func selecting(_ indices: [Int]) -> Tensor {
        let n = shape[0]
        return embedding(reshaped([n, count / Swift.max(n, 1)]), indices: indices)
            .reshaped([indices.count] + shape.dropFirst())
    }
}
