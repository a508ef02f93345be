import Foundation

// Pointwise nonlinearities and softmax. Each forward kernel is followed by the kernel of its derivative.

/// max(x, 0)   ∂/∂x = [x > 0]
public func relu(_ x: Tensor) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = Swift.max(x[i], 0) } }
        .recording(inputs: [x]) { g in [Kernels.zip(g, x) { o, g, x, r in for i in r { o[i] = x[i] > 0 ? g[i] : 0 } }] }
}

/// x for x > 0, a·x otherwise   ∂/∂x = 1 or a
public func leakyRelu(_ x: Tensor, slope a: Float = 0.2) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = x[i] > 0 ? x[i] : a * x[i] } }
        .recording(inputs: [x]) { g in [Kernels.zip(g, x) { o, g, x, r in for i in r { o[i] = x[i] > 0 ? g[i] : a * g[i] } }] }
}

/// eˣ for Float in plain arithmetic, so that loops over it vectorise (libm's expf is a call per element):
/// x = n·ln 2 + r with n = round(x/ln 2) taken from the bits of x/ln 2 + 1.5·2²³, |r| ≤ ½ln 2, eʳ by Cephes' expf
/// polynomial, times 2ⁿ made in the exponent bits. x is clamped to [−87, 88]; a NaN stays NaN.
@inline(__always) @usableFromInline func fastExp(_ input: Float) -> Float {
    let x = Swift.min(88, Swift.max(-87, input))  // in this order a NaN becomes −87, and is put back below
    let shifted = x * 1.442695041 + 12582912
    let n = shifted - 12582912
    let r = x - n * 0.693359375 + n * 2.12194440e-4
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let twoToN = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    let y = (p * r * r + r + 1) * twoToN
    return input.isNaN ? input : y
}

@inline(__always) @usableFromInline func sigmoidScalar(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

/// fastExp on 16 lanes, the same operations lane by lane (so the same bits); a NaN lane stays NaN through the
/// arithmetic.
@inline(__always) func fastExp(_ input: Lanes) -> Lanes {
    let x = input.replacing(with: 88, where: input .> 88).replacing(with: -87, where: input .< -87)
    let shifted = x * 1.442695041 + 12582912
    let n = shifted - 12582912
    let r = x - n * 0.693359375 + n * 2.12194440e-4
    var p = Lanes(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let exponent = (unsafeBitCast(shifted, to: SIMD16<UInt32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return (p * r * r + r + 1) * unsafeBitCast(exponent, to: Lanes.self)
}

/// σ(x) = 1/(1 + e⁻ˣ)   ∂/∂x = σ(1 − σ)
public func sigmoid(_ x: Tensor) -> Tensor {
    let y = Kernels.map(x) { y, x, r in for i in r { y[i] = sigmoidScalar(x[i]) } }
    return y.recording(inputs: [x]) { g in [Kernels.zip(g, y) { o, g, y, r in for i in r { o[i] = g[i] * y[i] * (1 - y[i]) } }] }
}

/// tanh x   ∂/∂x = 1 − tanh²
public func tanh(_ x: Tensor) -> Tensor {
    let y = Kernels.map(x) { y, x, r in for i in r { y[i] = Foundation.tanh(x[i]) } }
    return y.recording(inputs: [x]) { g in [Kernels.zip(g, y) { o, g, y, r in for i in r { o[i] = g[i] * (1 - y[i] * y[i]) } }] }
}

/// x·σ(x)   ∂/∂x = σ + x·σ·(1 − σ)
public func silu(_ x: Tensor) -> Tensor {
    Kernels.map(x) { y, x, r in for i in r { y[i] = x[i] * sigmoidScalar(x[i]) } }
        .recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in
                for i in r { let s = sigmoidScalar(x[i]); o[i] = g[i] * (s + x[i] * s * (1 - s)) }
            }]
        }
}

/// Mish: x·tanh(softplus(x)), softplus(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^(−|x|)).
///   ∂/∂x = tanh(sp) + x·(1 − tanh²(sp))·σ(x)
public func mish(_ x: Tensor) -> Tensor {
    @inline(__always) func softplus(_ v: Float) -> Float { Swift.max(v, 0) + Foundation.log1p(fastExp(-Swift.abs(v))) }
    return Kernels.map(x) { y, x, r in for i in r { y[i] = x[i] * Foundation.tanh(softplus(x[i])) } }
        .recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in
                for i in r {
                    let v = x[i], t = Foundation.tanh(softplus(v))
                    o[i] = g[i] * (t + v * (1 - t * t) * sigmoidScalar(v))
                }
            }]
        }
}

/// GELU. Exact: x·Φ(x), Φ the standard normal CDF, ∂/∂x = Φ(x) + x·φ(x).
/// With `approximate`: ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³), ∂/∂x = ½(1 + tanh u) + ½x(1 − tanh²u)·u′.
public func gelu(_ x: Tensor, approximate: Bool = false) -> Tensor {
    let k: Float = 0.7978845608028654, c: Float = 0.044715
    let invSqrt2: Float = 0.7071067811865476, invSqrt2Pi: Float = 0.3989422804014327
    if approximate {
        return Kernels.map(x) { y, x, r in
            for i in r { let v = x[i]; y[i] = 0.5 * v * (1 + Foundation.tanh(k * (v + c * v * v * v))) }
        }.recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in
                for i in r {
                    let v = x[i], t = Foundation.tanh(k * (v + c * v * v * v))
                    o[i] = g[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * c * v * v))
                }
            }]
        }
    }
    return Kernels.map(x) { y, x, r in for i in r { y[i] = 0.5 * x[i] * (1 + erf(x[i] * invSqrt2)) } }
        .recording(inputs: [x]) { g in
            [Kernels.zip(g, x) { o, g, x, r in
                for i in r {
                    let v = x[i]
                    o[i] = g[i] * (0.5 * (1 + erf(v * invSqrt2)) + v * invSqrt2Pi * Foundation.exp(-0.5 * v * v))
                }
            }]
        }
}

extension Kernels {
    /// Runs `body(row)` over the rows of length `x.shape.last` of `x`, in parallel.
    static func rows(_ x: Tensor, _ body: (Int, Int) -> Void) {
        let n = x.shape.last ?? 1
        let rows = x.count / Swift.max(n, 1)
        parallelFor(rows, grain: Swift.max(1, 2048 / Swift.max(n, 1))) { r in for row in r { body(row * n, n) } }
    }
}

/// Applies a function of the last axis along `axis` by moving that axis last and back.
private func alongAxis(_ x: Tensor, _ axis: Int, _ f: (Tensor) -> Tensor) -> Tensor {
    let a = x.axis(axis)
    if a == x.rank - 1 { return f(x) }
    return f(x.transposed(a, -1)).transposed(a, -1)
}

/// softmax(x)_i = e^{x_i − max} / Σ_j e^{x_j − max} along `axis`   ∂L/∂x = y ⊙ (g − Σ g ⊙ y)
public func softmax(_ x: Tensor, axis: Int = -1) -> Tensor {
    alongAxis(x, axis) { x in
        let y = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, py = y.storage.pointer
        Kernels.rows(x) { o, n in
            let m = Kernels.maximum(px + o, n)
            for i in 0..<n { py[o + i] = fastExp(px[o + i] - m) }
            let inv = 1 / Kernels.sum(py + o, n)
            for i in 0..<n { py[o + i] *= inv }
        }
        return y.recording(inputs: [x]) { g in
            let gx = Tensor(uninitialized: x.shape)
            // y's storage is read through y, which the closure keeps alive: when `axis` is not the last, the
            // caller only holds the transposed copy, so a pointer captured from the forward pass would dangle.
            let pg = g.storage.pointer, pgx = gx.storage.pointer, py = y.storage.pointer
            Kernels.rows(x) { o, n in
                let dot = Kernels.dot(pg + o, py + o, n)
                for i in 0..<n { pgx[o + i] = py[o + i] * (pg[o + i] - dot) }
            }
            return [gx]
        }
    }
}

/// log softmax(x) = x − max − log Σ e^{x − max} along `axis`   ∂L/∂x = g − softmax(x)·Σ g
public func logSoftmax(_ x: Tensor, axis: Int = -1) -> Tensor {
    alongAxis(x, axis) { x in
        let y = Tensor(uninitialized: x.shape)
        let px = x.storage.pointer, py = y.storage.pointer
        Kernels.rows(x) { o, n in
            let m = Kernels.maximum(px + o, n)
            for i in 0..<n { py[o + i] = fastExp(px[o + i] - m) }
            let lse = m + Foundation.log(Kernels.sum(py + o, n))
            for i in 0..<n { py[o + i] = px[o + i] - lse }
        }
        return y.recording(inputs: [x]) { g in
            let gx = Tensor(uninitialized: x.shape)
            // y's storage is read through y, which the closure keeps alive: when `axis` is not the last, the
            // caller only holds the transposed copy, so a pointer captured from the forward pass would dangle.
            let pg = g.storage.pointer, pgx = gx.storage.pointer, py = y.storage.pointer
            Kernels.rows(x) { o, n in
                let s = Kernels.sum(pg + o, n)
                for i in 0..<n { pgx[o + i] = pg[o + i] - fastExp(py[o + i]) * s }
            }
            return [gx]
        }
    }
}
