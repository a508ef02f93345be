import DiffuseEngine

/// The mean magnitude of the discrete Laplacian, |4x[i,j] − x[i−1,j] − x[i+1,j] − x[i,j−1] − x[i,j+1]|, over the
/// interior pixels of images [N, C, H, W]: how much fine detail they hold. Blurred images score lower than the
/// data they imitate; noise scores higher.
public func meanLaplacianMagnitude(_ images: Tensor) -> Double {
    precondition(images.rank == 4 && images.shape[2] >= 3 && images.shape[3] >= 3, "Laplacian of \(images.shape)")
    let (planes, h, w) = (images.shape[0] * images.shape[1], images.shape[2], images.shape[3])
    let p = images.storage.pointer
    var total = 0.0
    for plane in 0..<planes {
        let x = p + plane * h * w
        for i in 1..<(h - 1) {
            for j in 1..<(w - 1) {
                let c = i * w + j
                total += Double(Swift.abs(4 * x[c] - x[c - w] - x[c + w] - x[c - 1] - x[c + 1]))
            }
        }
    }
    return total / Double(planes * (h - 2) * (w - 2))
}
