/// conv2d's three sums as plain loops, each sum accumulated in Double: the reference that the tests force every
/// other algorithm against (never planned). Output (n, o, Y, X) and input (n, c, sY + i − py, sX + j − px) meet in
/// tap (i, j) wherever that input lies inside the image.
enum ReferenceConvolution {
    /// Calls `body(x index, W index)` for every tap of output `(n, o, Y, X)` that reads inside the input.
    @inline(__always)
    private static func taps(_ geo: ConvGeometry, n: Int, o: Int, y: Int, x: Int, _ body: (Int, Int) -> Void) {
        for c in 0..<geo.c {
            for i in 0..<geo.kh {
                let row = geo.stride * y + i - geo.py
                guard row >= 0 && row < geo.h else { continue }
                for j in 0..<geo.kw {
                    let column = geo.stride * x + j - geo.px
                    guard column >= 0 && column < geo.w else { continue }
                    body(((n * geo.c + c) * geo.h + row) * geo.w + column, ((o * geo.c + c) * geo.kh + i) * geo.kw + j)
                }
            }
        }
    }

    /// y[n, o, Y, X] = b[o] + Σ_{c, i, j} W[o, c, i, j] · x[n, c, sY + i − py, sX + j − px]
    static func forward(_ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        _ geo: ConvGeometry, into out: UnsafeMutablePointer<Float>) {
        var index = 0
        for n in 0..<geo.n { for o in 0..<geo.o { for y in 0..<geo.oh { for xo in 0..<geo.ow {
            var sum = Double(bias?[o] ?? 0)
            taps(geo, n: n, o: o, y: y, x: xo) { xi, wi in sum += Double(x[xi]) * Double(w[wi]) }
            out[index] = Float(sum)
            index += 1
        } } } }
    }

    /// ∂x[n, c, h, w] = Σ over the taps (o, Y, X, i, j) that read it of W[o, c, i, j] · g[n, o, Y, X]
    static func inputGradient(_ g: UnsafePointer<Float>, weight w: UnsafePointer<Float>, _ geo: ConvGeometry,
                              into gx: UnsafeMutablePointer<Float>) {
        backward(g, geo, count: geo.n * geo.c * geo.h * geo.w, into: gx) { xi, wi in (xi, w[wi]) }
    }

    /// ∂W[o, c, i, j] = Σ_{n, Y, X} g[n, o, Y, X] · x[n, c, sY + i − py, sX + j − px]
    static func weightGradient(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ geo: ConvGeometry,
                               into gw: UnsafeMutablePointer<Float>) {
        backward(g, geo, count: geo.o * geo.c * geo.kh * geo.kw, into: gw) { xi, wi in (wi, x[xi]) }
    }

    /// out[k] = Σ g[n, o, Y, X] · v over the taps of every output for which `term(x index, W index)` gives (k, v).
    private static func backward(_ g: UnsafePointer<Float>, _ geo: ConvGeometry, count: Int,
                                 into out: UnsafeMutablePointer<Float>, _ term: (Int, Int) -> (Int, Float)) {
        var sums = [Double](repeating: 0, count: count)
        var index = 0
        for n in 0..<geo.n { for o in 0..<geo.o { for y in 0..<geo.oh { for xo in 0..<geo.ow {
            let gy = Double(g[index])
            taps(geo, n: n, o: o, y: y, x: xo) { xi, wi in
                let (k, v) = term(xi, wi)
                sums[k] += gy * Double(v)
            }
            index += 1
        } } } }
        for k in sums.indices { out[k] = Float(sums[k]) }
    }
}
