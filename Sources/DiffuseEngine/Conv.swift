// Convolution as im2col + one sgemm over the whole batch; nearest upsampling; average pooling.

/// The geometry of a 2D convolution over NCHW input with an [O, C, KH, KW] kernel.
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, stride, padding: Int
    var oh: Int { (h + 2 * padding - kh) / stride + 1 }
    var ow: Int { (w + 2 * padding - kw) / stride + 1 }
    /// Rows of the column matrix: one per (channel, kernel row, kernel column).
    var rows: Int { c * kh * kw }
    /// Columns of the column matrix: one per (image, output row, output column).
    var columns: Int { n * oh * ow }

    /// cols[(c·KH + i)·KW + j, (n·OH + y)·OW + x] = input[n, c, y·s − p + i, x·s − p + j] (0 outside).
    func im2col(_ input: UnsafePointer<Float>, _ cols: UnsafeMutablePointer<Float>) {
        let (oh, ow) = (self.oh, self.ow)
        parallelFor(rows, grain: 1) { range in
            for row in range {
                let ch = row / (kh * kw), i = (row / kw) % kh, j = row % kw
                let x0 = Swift.max(0, (padding - j + stride - 1) / stride)
                let x1 = Swift.min(ow, (w + padding - j + stride - 1) / stride)
                for img in 0..<n {
                    let src = input + (img * c + ch) * h * w
                    let dst = cols + row * columns + img * oh * ow
                    for y in 0..<oh {
                        let iy = y * stride - padding + i
                        let d = dst + y * ow
                        guard iy >= 0 && iy < h, x0 < x1 else { d.update(repeating: 0, count: ow); continue }
                        for x in 0..<x0 { d[x] = 0 }
                        let s = src + iy * w - padding + j
                        if stride == 1 { (d + x0).update(from: s + x0, count: x1 - x0) }
                        else { for x in x0..<x1 { d[x] = s[x * stride] } }
                        for x in x1..<ow { d[x] = 0 }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: grad[n, c, y, x] = Σ of the column entries that read it. Each channel is summed by
    /// one thread in a fixed order.
    func col2im(_ cols: UnsafePointer<Float>, _ grad: UnsafeMutablePointer<Float>) {
        let (oh, ow) = (self.oh, self.ow)
        parallelFor(c, grain: 1) { channels in
            for ch in channels {
                for img in 0..<n { (grad + (img * c + ch) * h * w).update(repeating: 0, count: h * w) }
                for i in 0..<kh {
                    for j in 0..<kw {
                        let row = (ch * kh + i) * kw + j
                        let x0 = Swift.max(0, (padding - j + stride - 1) / stride)
                        let x1 = Swift.min(ow, (w + padding - j + stride - 1) / stride)
                        for img in 0..<n {
                            let src = cols + row * columns + img * oh * ow
                            let dst = grad + (img * c + ch) * h * w
                            for y in 0..<oh {
                                let iy = y * stride - padding + i
                                guard iy >= 0 && iy < h else { continue }
                                let d = dst + iy * w - padding + j, s = src + y * ow
                                if stride == 1 { for x in x0..<x1 { d[x] += s[x] } }
                                else { for x in x0..<x1 { d[x * stride] += s[x] } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reorders [A, B, S] to [B, A, S] (A·B blocks of S contiguous values), adding `bias[a]` when given.
private func swapBlocks(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, a: Int, b: Int, s: Int,
                        bias: UnsafePointer<Float>? = nil) {
    parallelFor(a * b, grain: Swift.max(1, 2048 / Swift.max(s, 1))) { range in
        for ab in range {
            let (ia, ib) = (ab / b, ab % b)
            let from = src + ab * s, to = dst + (ib * a + ia) * s
            if let bias {
                let v = bias[ia]
                for k in 0..<s { to[k] = from[k] + v }
            } else {
                to.update(from: from, count: s)
            }
        }
    }
}

/// 2D cross-correlation (PyTorch's conv2d): y[n,o] = b[o] + Σ_c W[o,c] ⋆ x[n,c], with stride and zero padding.
///   ∂L/∂W = ∂L/∂y · colsᵀ, ∂L/∂cols = Wᵀ · ∂L/∂y, ∂L/∂x = col2im(∂L/∂cols), ∂L/∂b = Σ ∂L/∂y
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    precondition(x.rank == 4 && weight.rank == 4 && weight.shape[1] == x.shape[1],
                 "conv2d of input \(x.shape) with kernel \(weight.shape)")
    let geo = ConvGeometry(n: x.shape[0], c: x.shape[1], h: x.shape[2], w: x.shape[3], o: weight.shape[0],
                           kh: weight.shape[2], kw: weight.shape[3], stride: stride, padding: padding)
    precondition(geo.oh > 0 && geo.ow > 0, "conv2d kernel \(weight.shape) larger than padded input \(x.shape)")
    precondition(bias.map { $0.count == geo.o } ?? true, "conv2d bias of shape \(bias!.shape) for \(geo.o) output channels")
    let out = Tensor(uninitialized: [geo.n, geo.o, geo.oh, geo.ow])
    let spatial = geo.oh * geo.ow
    let cols = Tensor(uninitialized: [geo.rows, geo.columns])
    geo.im2col(x.storage.pointer, cols.storage.pointer)
    let product = Tensor(uninitialized: [geo.o, geo.columns])
    Kernels.sgemm(transA: false, transB: false, m: geo.o, n: geo.columns, k: geo.rows,
                  weight.storage.pointer, cols.storage.pointer, product.storage.pointer)
    swapBlocks(product.storage.pointer, out.storage.pointer, a: geo.o, b: geo.n, s: spatial,
               bias: bias.map { UnsafePointer($0.storage.pointer) })
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return out.recording(inputs: inputs) { g in
        let gT = Tensor(uninitialized: [geo.o, geo.columns])
        swapBlocks(g.storage.pointer, gT.storage.pointer, a: geo.n, b: geo.o, s: spatial)
        var grads: [Tensor?] = [nil, nil]
        if weight.requiresGrad {
            let cols = Tensor(uninitialized: [geo.rows, geo.columns])
            geo.im2col(x.storage.pointer, cols.storage.pointer)
            let gw = Tensor(uninitialized: weight.shape)
            Kernels.sgemm(transA: false, transB: true, m: geo.o, n: geo.rows, k: geo.columns,
                          gT.storage.pointer, cols.storage.pointer, gw.storage.pointer)
            grads[1] = gw
        }
        if x.requiresGrad {
            let gcols = Tensor(uninitialized: [geo.rows, geo.columns])
            Kernels.sgemm(transA: true, transB: false, m: geo.rows, n: geo.columns, k: geo.o,
                          weight.storage.pointer, gT.storage.pointer, gcols.storage.pointer)
            let gx = Tensor(uninitialized: x.shape)
            geo.col2im(gcols.storage.pointer, gx.storage.pointer)
            grads[0] = gx
        }
        if let bias, bias.requiresGrad { grads.append(rowSums(gT)) }
        return grads
    }
}

/// Σ over the columns of a matrix, each row summed in order.
func rowSums(_ m: Tensor) -> Tensor {
    let (rows, cols) = (m.shape[0], m.shape[1])
    let out = Tensor(uninitialized: [rows])
    let p = m.storage.pointer, o = out.storage.pointer
    parallelFor(rows, grain: 1) { r in
        for i in r {
            var s: Float = 0
            for j in 0..<cols { s += p[i * cols + j] }
            o[i] = s
        }
    }
    return out
}

/// Nearest-neighbour upsampling by 2 in both spatial dimensions: y[n,c,2i+a,2j+b] = x[n,c,i,j].
///   ∂L/∂x[i,j] = Σ_{a,b} ∂L/∂y[2i+a, 2j+b]
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "upsampling needs NCHW input, got \(x.shape)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], 2 * h, 2 * w])
    let px = x.storage.pointer, po = out.storage.pointer
    parallelFor(planes * h, grain: 64) { rows in
        for r in rows {
            let s = px + r * w, d = po + r * 4 * w
            for j in 0..<w { d[2 * j] = s[j]; d[2 * j + 1] = s[j] }
            (d + 2 * w).update(from: d, count: 2 * w)
        }
    }
    return out.recording(inputs: [x]) { g in
        let gx = Tensor(uninitialized: x.shape)
        let pg = g.storage.pointer, pgx = gx.storage.pointer
        parallelFor(planes * h, grain: 64) { rows in
            for r in rows {
                let s = pg + r * 4 * w, d = pgx + r * w
                for j in 0..<w { d[j] = s[2 * j] + s[2 * j + 1] + s[2 * w + 2 * j] + s[2 * w + 2 * j + 1] }
            }
        }
        return [gx]
    }
}

/// Average pooling over k×k windows with stride k: y[n,c,i,j] = mean of x[n,c,ki..<ki+k, kj..<kj+k].
///   ∂L/∂x = ∂L/∂y / k², spread over each window
public func avgPool2d(_ x: Tensor, kernel k: Int = 2) -> Tensor {
    precondition(x.rank == 4 && x.shape[2] % k == 0 && x.shape[3] % k == 0,
                 "average pooling by \(k) of \(x.shape)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = (h / k, w / k)
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], oh, ow])
    let px = x.storage.pointer, po = out.storage.pointer
    let inv = 1 / Float(k * k)
    parallelFor(planes * oh, grain: 64) { rows in
        for r in rows {
            let s = px + r * k * w, d = po + r * ow
            for j in 0..<ow {
                var acc: Float = 0
                for a in 0..<k { for b in 0..<k { acc += s[a * w + j * k + b] } }
                d[j] = acc * inv
            }
        }
    }
    return out.recording(inputs: [x]) { g in
        let gx = Tensor(uninitialized: x.shape)
        let pg = g.storage.pointer, pgx = gx.storage.pointer
        parallelFor(planes * oh, grain: 64) { rows in
            for r in rows {
                let s = pg + r * ow, d = pgx + r * k * w
                for j in 0..<ow {
                    let v = s[j] * inv
                    for a in 0..<k { for b in 0..<k { d[a * w + j * k + b] = v } }
                }
            }
        }
        return [gx]
    }
}
