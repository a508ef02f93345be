import DiffuseEngine

/// Classifier-free guidance (Ho & Salimans 2022): the prediction moved away from the unconditional one,
///   ε̃ = ε_∅ + w·(ε_c − ε_∅),
/// w = 1 being the conditional prediction and w = 0 the unconditional one. Applies alike to ε-, x₀- and
/// v-predictions (each is affine in the score).
public func classifierFreeGuidance(conditional: Tensor, unconditional: Tensor, scale w: Double) -> Tensor {
    unconditional + (conditional - unconditional) * Float(w)
}

/// A network that guides a class-conditional network `predict(x, t, labels)` towards `labels` with scale `w`:
/// both predictions come from one call on the doubled batch [x; x] with labels [labels; null label].
public func guidedDenoiser(labels: [Int], nullLabel: Int, scale w: Double,
                           _ predict: @escaping (Tensor, Double, [Int]) -> Tensor) -> Network {
    { x, t in
        let n = x.shape[0]
        let both = predict(concat([x, x], axis: 0), t, labels + [Int](repeating: nullLabel, count: n))
        return classifierFreeGuidance(conditional: both.slice(axis: 0, 0..<n), unconditional: both.slice(axis: 0, n..<(2 * n)),
                                      scale: w)
    }
}
