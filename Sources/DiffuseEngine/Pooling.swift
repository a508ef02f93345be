import Foundation

// Windowed pooling with stride and padding, and bilinear resizing (what Inception-v3 needs besides convolutions);
// the U-Net's nearest upsampling by 2 and average pooling.

/// The output side of a window of k with stride s over n values padded by p on both sides.
@inline(__always) private func pooledSide(_ n: Int, _ k: Int, _ s: Int, _ p: Int) -> Int { (n + 2 * p - k) / s + 1 }

/// Max pooling over k×k windows with stride s and padding p (padding never wins: −∞):
///   y[n,c,i,j] = max over the window at (s·i − p, s·j − p);  ∂L/∂x: each window's gradient goes to its (first) maximum.
public func maxPool2d(_ x: Tensor, kernel k: Int, stride s: Int, padding p: Int = 0) -> Tensor {
    precondition(x.rank == 4 && k >= 1 && s >= 1 && p >= 0 && p < k, "max pooling \(k)/\(s)/\(p) of \(x.shape)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = (pooledSide(h, k, s, p), pooledSide(w, k, s, p))
    precondition(oh > 0 && ow > 0, "max pooling window \(k) larger than the padded input \(x.shape)")
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], oh, ow])
    let argmax = [Int32](unsafeUninitializedCapacity: planes * oh * ow) { buffer, count in
        let px = x.storage.pointer, po = out.storage.pointer, pa = buffer.baseAddress!
        parallelFor(planes * oh, grain: 16) { rows in
            for r in rows {
                let (plane, i) = r.quotientAndRemainder(dividingBy: oh)
                let source = px + plane * h * w
                for j in 0..<ow {
                    var best = -Float.infinity, at = -1
                    for a in max(0, s * i - p)..<min(h, s * i - p + k) {
                        for b in max(0, s * j - p)..<min(w, s * j - p + k) where source[a * w + b] > best || at < 0 {
                            best = source[a * w + b]
                            at = a * w + b
                        }
                    }
                    po[r * ow + j] = best
                    pa[r * ow + j] = Int32(at)
                }
            }
        }
        count = planes * oh * ow
    }
    return out.recording(inputs: [x]) { g in
        let gx = Tensor(zeros: x.shape)
        let pg = g.storage.pointer, pgx = gx.storage.pointer
        parallelFor(planes, grain: 1) { range in  // a plane's windows overlap: one thread per plane
            for plane in range {
                for o in (plane * oh * ow)..<((plane + 1) * oh * ow) { pgx[plane * h * w + Int(argmax[o])] += pg[o] }
            }
        }
        return [gx]
    }
}

/// Average pooling over k×k windows with stride s and zero padding p. With `countPadding` false (PyTorch's
/// count_include_pad=False) each window divides by the number of input values it covers, else by k².
///   ∂L/∂x[a,b] = Σ over the windows covering (a, b) of ∂L/∂y / their divisor
public func avgPool2d(_ x: Tensor, kernel k: Int, stride s: Int, padding p: Int, countPadding: Bool) -> Tensor {
    precondition(x.rank == 4 && k >= 1 && s >= 1 && p >= 0 && p < k, "average pooling \(k)/\(s)/\(p) of \(x.shape)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let (oh, ow) = (pooledSide(h, k, s, p), pooledSide(w, k, s, p))
    precondition(oh > 0 && ow > 0, "average pooling window \(k) larger than the padded input \(x.shape)")
    /// The window of output (i, j) clipped to the input, and its divisor.
    func window(_ i: Int, _ j: Int) -> (Range<Int>, Range<Int>, Float) {
        let rows = max(0, s * i - p)..<min(h, s * i - p + k), columns = max(0, s * j - p)..<min(w, s * j - p + k)
        return (rows, columns, countPadding ? Float(k * k) : Float(rows.count * columns.count))
    }
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], oh, ow])
    let px = x.storage.pointer, po = out.storage.pointer
    parallelFor(planes * oh, grain: 16) { range in
        for r in range {
            let (plane, i) = r.quotientAndRemainder(dividingBy: oh)
            let source = px + plane * h * w
            for j in 0..<ow {
                let (rows, columns, divisor) = window(i, j)
                var acc: Float = 0
                for a in rows { for b in columns { acc += source[a * w + b] } }
                po[r * ow + j] = acc / divisor
            }
        }
    }
    return out.recording(inputs: [x]) { g in
        let gx = Tensor(zeros: x.shape)
        let pg = g.storage.pointer, pgx = gx.storage.pointer
        parallelFor(planes, grain: 1) { range in
            for plane in range {
                let target = pgx + plane * h * w
                for i in 0..<oh {
                    for j in 0..<ow {
                        let (rows, columns, divisor) = window(i, j)
                        let v = pg[(plane * oh + i) * ow + j] / divisor
                        for a in rows { for b in columns { target[a * w + b] += v } }
                    }
                }
            }
        }
        return [gx]
    }
}

/// The source coordinate and weights of bilinear resizing along one axis (PyTorch's align_corners=False): output
/// i reads input (i + ½)·n/m − ½, clamped at 0, between its floor and the next index.
private func bilinearTaps(from n: Int, to m: Int) -> [(Int, Int, Float)] {
    let scale = Double(n) / Double(m)
    return (0..<m).map { i in
        let source = max((Double(i) + 0.5) * scale - 0.5, 0)
        let low = min(Int(source), n - 1), high = min(low + 1, n - 1)
        return (low, high, Float(source - Double(low)))
    }
}

/// Bilinear resizing of [N, C, H, W] to [N, C, height, width] (align_corners=False, no antialiasing, as
/// torch.nn.functional.interpolate(mode="bilinear")): y = Σ of the four neighbours weighted by (1 − f)·(1 − g) ….
///   ∂L/∂x: each output's gradient spread back to its four neighbours with the same weights
public func resizeBilinear(_ x: Tensor, height: Int, width: Int) -> Tensor {
    precondition(x.rank == 4 && height > 0 && width > 0, "bilinear resize of \(x.shape) to \(height)×\(width)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let (rows, columns) = (bilinearTaps(from: h, to: height), bilinearTaps(from: w, to: width))
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], height, width])
    let px = x.storage.pointer, po = out.storage.pointer
    parallelFor(planes * height, grain: 16) { range in
        for r in range {
            let (plane, i) = r.quotientAndRemainder(dividingBy: height)
            let (r0, r1, fy) = rows[i]
            let top = px + plane * h * w + r0 * w, bottom = px + plane * h * w + r1 * w
            for j in 0..<width {
                let (c0, c1, fx) = columns[j]
                let upper = top[c0] + (top[c1] - top[c0]) * fx, lower = bottom[c0] + (bottom[c1] - bottom[c0]) * fx
                po[r * width + j] = upper + (lower - upper) * fy
            }
        }
    }
    return out.recording(inputs: [x]) { g in
        let gx = Tensor(zeros: x.shape)
        let pg = g.storage.pointer, pgx = gx.storage.pointer
        parallelFor(planes, grain: 1) { range in
            for plane in range {
                let target = pgx + plane * h * w
                for i in 0..<height {
                    let (r0, r1, fy) = rows[i]
                    for j in 0..<width {
                        let (c0, c1, fx) = columns[j]
                        let v = pg[(plane * height + i) * width + j]
                        target[r0 * w + c0] += v * (1 - fy) * (1 - fx)
                        target[r0 * w + c1] += v * (1 - fy) * fx
                        target[r1 * w + c0] += v * fy * (1 - fx)
                        target[r1 * w + c1] += v * fy * fx
                    }
                }
            }
        }
        return [gx]
    }
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
