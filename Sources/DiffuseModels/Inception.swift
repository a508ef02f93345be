import DiffuseEngine
import DiffuseNN

/// Convolution without bias, BatchNorm (ε = 0.001), ReLU: torchvision's `BasicConv2d`, keys `conv.*` and `bn.*`.
final class BasicConv2d: Module {
    let conv: Conv2d
    let bn: BatchNorm

    init(_ i: Int, _ o: Int, kernel: (Int, Int), stride: Int = 1, padding: (Int, Int) = (0, 0), generator: inout RandomGenerator) {
        conv = Conv2d(i, o, kernel: kernel, stride: stride, padding: padding, bias: false, generator: &generator)
        bn = BatchNorm(o, eps: 0.001)
        super.init()
        register("conv", conv)
        register("bn", bn)
    }

    convenience init(_ i: Int, _ o: Int, kernel: Int, stride: Int = 1, padding: Int = 0, generator: inout RandomGenerator) {
        self.init(i, o, kernel: (kernel, kernel), stride: stride, padding: (padding, padding), generator: &generator)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { relu(bn(conv(x))) }
}

/// A module of named `BasicConv2d`s (the branches of an Inception block), registered under their torchvision names.
class InceptionBlock: Module {
    private var convs: [String: BasicConv2d] = [:]

    func add(_ name: String, _ conv: BasicConv2d) {
        convs[name] = conv
        register(name, conv)
    }

    /// The named convolutions applied in turn.
    func chain(_ x: Tensor, _ names: String...) -> Tensor { names.reduce(x) { convs[$1]!($0) } }
}

/// Inception-v3 as pytorch-fid uses it for FID (the TensorFlow FID network's structure and weights; Szegedy et al.
/// 2016), up to the 2048-dimensional average pool: images in [−1, 1] are resized bilinearly to 299×299 and go
/// through the stem, three A blocks (35×35), B, four C blocks (17×17, factorised 1×7/7×1), D and two E blocks
/// (8×8). pytorch-fid's FID variants: the A, C and first E blocks average-pool without counting padding, the last E
/// block max-pools. Parameter names are torchvision's (`Mixed_6b.branch7x7_2.conv.weight`), those of pytorch-fid's
/// weights file; the network runs in evaluation mode (BatchNorm with its running statistics).
public final class InceptionV3: Module {
    let stem: [BasicConv2d]
    let blocks: [(String, InceptionBlock, (InceptionBlock, Tensor) -> Tensor)]

    public init(generator: inout RandomGenerator) {
        var g = generator
        func conv(_ i: Int, _ o: Int, _ k: Int, stride: Int = 1, padding: Int = 0) -> BasicConv2d {
            BasicConv2d(i, o, kernel: k, stride: stride, padding: padding, generator: &g)
        }
        func rect(_ i: Int, _ o: Int, _ k: (Int, Int)) -> BasicConv2d {
            BasicConv2d(i, o, kernel: k, padding: (k.0 / 2, k.1 / 2), generator: &g)
        }
        stem = [conv(3, 32, 3, stride: 2), conv(32, 32, 3), conv(32, 64, 3, padding: 1), conv(64, 80, 1), conv(80, 192, 3)]

        func averagePool(_ x: Tensor) -> Tensor { avgPool2d(x, kernel: 3, stride: 1, padding: 1, countPadding: false) }
        func a(_ i: Int, pool: Int) -> InceptionBlock {
            let b = InceptionBlock()
            b.add("branch1x1", conv(i, 64, 1))
            b.add("branch5x5_1", conv(i, 48, 1))
            b.add("branch5x5_2", conv(48, 64, 5, padding: 2))
            b.add("branch3x3dbl_1", conv(i, 64, 1))
            b.add("branch3x3dbl_2", conv(64, 96, 3, padding: 1))
            b.add("branch3x3dbl_3", conv(96, 96, 3, padding: 1))
            b.add("branch_pool", conv(i, pool, 1))
            return b
        }
        let forwardA: (InceptionBlock, Tensor) -> Tensor = { b, x in
            concat([b.chain(x, "branch1x1"), b.chain(x, "branch5x5_1", "branch5x5_2"),
                    b.chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), b.chain(averagePool(x), "branch_pool")], axis: 1)
        }
        let mixed6a = InceptionBlock()
        mixed6a.add("branch3x3", conv(288, 384, 3, stride: 2))
        mixed6a.add("branch3x3dbl_1", conv(288, 64, 1))
        mixed6a.add("branch3x3dbl_2", conv(64, 96, 3, padding: 1))
        mixed6a.add("branch3x3dbl_3", conv(96, 96, 3, stride: 2))
        let forwardB: (InceptionBlock, Tensor) -> Tensor = { b, x in
            concat([b.chain(x, "branch3x3"), b.chain(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                    maxPool2d(x, kernel: 3, stride: 2)], axis: 1)
        }
        func c(_ c7: Int) -> InceptionBlock {
            let b = InceptionBlock()
            b.add("branch1x1", conv(768, 192, 1))
            b.add("branch7x7_1", conv(768, c7, 1))
            b.add("branch7x7_2", rect(c7, c7, (1, 7)))
            b.add("branch7x7_3", rect(c7, 192, (7, 1)))
            b.add("branch7x7dbl_1", conv(768, c7, 1))
            b.add("branch7x7dbl_2", rect(c7, c7, (7, 1)))
            b.add("branch7x7dbl_3", rect(c7, c7, (1, 7)))
            b.add("branch7x7dbl_4", rect(c7, c7, (7, 1)))
            b.add("branch7x7dbl_5", rect(c7, 192, (1, 7)))
            b.add("branch_pool", conv(768, 192, 1))
            return b
        }
        let forwardC: (InceptionBlock, Tensor) -> Tensor = { b, x in
            concat([b.chain(x, "branch1x1"), b.chain(x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                    b.chain(x, "branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5"),
                    b.chain(averagePool(x), "branch_pool")], axis: 1)
        }
        let mixed7a = InceptionBlock()
        mixed7a.add("branch3x3_1", conv(768, 192, 1))
        mixed7a.add("branch3x3_2", conv(192, 320, 3, stride: 2))
        mixed7a.add("branch7x7x3_1", conv(768, 192, 1))
        mixed7a.add("branch7x7x3_2", rect(192, 192, (1, 7)))
        mixed7a.add("branch7x7x3_3", rect(192, 192, (7, 1)))
        mixed7a.add("branch7x7x3_4", conv(192, 192, 3, stride: 2))
        let forwardD: (InceptionBlock, Tensor) -> Tensor = { b, x in
            concat([b.chain(x, "branch3x3_1", "branch3x3_2"),
                    b.chain(x, "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"),
                    maxPool2d(x, kernel: 3, stride: 2)], axis: 1)
        }
        func e(_ i: Int) -> InceptionBlock {
            let b = InceptionBlock()
            b.add("branch1x1", conv(i, 320, 1))
            b.add("branch3x3_1", conv(i, 384, 1))
            b.add("branch3x3_2a", rect(384, 384, (1, 3)))
            b.add("branch3x3_2b", rect(384, 384, (3, 1)))
            b.add("branch3x3dbl_1", conv(i, 448, 1))
            b.add("branch3x3dbl_2", conv(448, 384, 3, padding: 1))
            b.add("branch3x3dbl_3a", rect(384, 384, (1, 3)))
            b.add("branch3x3dbl_3b", rect(384, 384, (3, 1)))
            b.add("branch_pool", conv(i, 192, 1))
            return b
        }
        func forwardE(maxPool: Bool) -> (InceptionBlock, Tensor) -> Tensor {
            { b, x in
                let narrow = b.chain(x, "branch3x3_1"), wide = b.chain(x, "branch3x3dbl_1", "branch3x3dbl_2")
                let pooled = maxPool ? maxPool2d(x, kernel: 3, stride: 1, padding: 1) : averagePool(x)
                return concat([b.chain(x, "branch1x1"),
                               b.chain(narrow, "branch3x3_2a"), b.chain(narrow, "branch3x3_2b"),
                               b.chain(wide, "branch3x3dbl_3a"), b.chain(wide, "branch3x3dbl_3b"),
                               b.chain(pooled, "branch_pool")], axis: 1)
            }
        }
        blocks = [("Mixed_5b", a(192, pool: 32), forwardA), ("Mixed_5c", a(256, pool: 64), forwardA),
                  ("Mixed_5d", a(288, pool: 64), forwardA), ("Mixed_6a", mixed6a, forwardB),
                  ("Mixed_6b", c(128), forwardC), ("Mixed_6c", c(160), forwardC), ("Mixed_6d", c(160), forwardC),
                  ("Mixed_6e", c(192), forwardC), ("Mixed_7a", mixed7a, forwardD), ("Mixed_7b", e(1280), forwardE(maxPool: false)),
                  ("Mixed_7c", e(2048), forwardE(maxPool: true))]
        generator = g
        super.init()
        for (name, conv) in zip(["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"], stem) {
            register(name, conv)
        }
        for (name, block, _) in blocks { register(name, block) }
        eval()
    }

    /// The 2048 pool features of images [N, 3, H, W] in [−1, 1] (any size: resized to 299×299 first).
    public func callAsFunction(_ images: Tensor) -> Tensor {
        var x = images.shape[2] == 299 && images.shape[3] == 299 ? images : resizeBilinear(images, height: 299, width: 299)
        x = maxPool2d(stem[2](stem[1](stem[0](x))), kernel: 3, stride: 2)
        x = maxPool2d(stem[4](stem[3](x)), kernel: 3, stride: 2)
        for (_, block, forward) in blocks { x = forward(block, x) }
        return mean(x, axes: [2, 3])
    }
}
