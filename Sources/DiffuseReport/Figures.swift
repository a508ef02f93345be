import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import Foundation

/// Two panels against the timestep t: ᾱ_t, the signal variance left in x_t, and log SNR(t) = log(ᾱ_t/(1 − ᾱ_t)),
/// one curve per schedule. Linear against cosine is the classic picture: the linear schedule's ᾱ reaches ~0 with
/// a third of the steps to go, where the cosine one still falls gently and its log-SNR stays nearly straight.
/// A zero-terminal-SNR schedule's last log-SNR (−∞) is left out.
public func scheduleFigure(_ schedules: [(label: String, schedule: NoiseSchedule)]) -> String {
    let alphaBar = Plot(title: "Signal left, ᾱₜ", xLabel: "timestep t", yLabel: "ᾱₜ", series: schedules.map { label, s in
        Plot.Series(label, x: (0..<s.timesteps).map(Double.init), y: s.alphaBar)
    })
    let logSNR = Plot(title: "log SNR(t)", xLabel: "timestep t", yLabel: "log(ᾱₜ / (1 − ᾱₜ))", series: schedules.map { label, s in
        Plot.Series(label, x: (0..<s.timesteps).map(Double.init), y: (0..<s.timesteps).map(s.logSNR))
    })
    return svgFigure([alphaBar, logSNR], columns: 2)
}

/// `scheduleFigure` of one schedule, labelled by its kind.
public func scheduleFigure(_ schedule: NoiseSchedule) -> String {
    scheduleFigure([(label: "\(schedule.kind)", schedule: schedule)])
}

/// The forward process of one image x_0 [C, H, W] as a strip [C, H + 4, n·(W + 2) + 2] (n frames, 2 pixels apart):
/// x_0, then x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε for each t of `timesteps`, then x_T (unless the last t is T − 1).
/// Every frame uses the same draw of ε, so the strip shows one noise pattern growing over a fading image.
public func forwardStrip(x0: Tensor, diffusion: GaussianDiffusion, timesteps: [Int], generator: inout RandomGenerator) -> Tensor {
    precondition(x0.rank == 3, "an image [C, H, W], got shape \(x0.shape)")
    let last = diffusion.schedule.timesteps - 1
    let steps = timesteps.last == last ? timesteps : timesteps + [last]
    let image = x0.reshaped([1] + x0.shape)
    let noise = generator.normal(image.shape)
    let noised = diffusion.noised(concat(Array(repeating: image, count: steps.count), axis: 0), t: steps,
                                  noise: concat(Array(repeating: noise, count: steps.count), axis: 0))
    return imageGrid(concat([image, noised], axis: 0), columns: steps.count + 1)
}

/// A reverse trajectory as a strip: `frames` states evenly chosen from `states` (pairs (t, x_t) in the order a
/// sampler's `observe` reports them, x_t an image [C, H, W] or a batch [N, C, H, W] of which `sample` is shown),
/// always the first and the last, in one row as `imageGrid` lays them out. Prepend (T, x_T) to show the start.
public func trajectoryStrip(states: [(Int, Tensor)], frames: Int = 8, sample: Int = 0) -> Tensor {
    precondition(!states.isEmpty && frames >= 1, "\(frames) frames of \(states.count) states")
    let n = min(frames, states.count)
    let chosen = n == 1 ? [states.count - 1] : (0..<n).map { Int((Double($0) * Double(states.count - 1) / Double(n - 1)).rounded()) }
    let images = chosen.map { i -> Tensor in
        let x = states[i].1
        precondition(x.rank == 3 || x.rank == 4, "a state of shape \(x.shape)")
        return x.rank == 4 ? x.slice(axis: 0, sample..<(sample + 1)) : x.reshaped([1] + x.shape)
    }
    return imageGrid(concat(images, axis: 0), columns: n)
}

/// Strips (each [C, H, W], of one size) stacked top to bottom into one image, values clamped to [−1, 1]: several
/// forward strips or trajectories in one picture.
public func stackedRows(_ strips: [Tensor]) -> Tensor {
    let stacked = concat(strips.map { $0.reshaped([1] + $0.shape) }, axis: 0)
    return imageGrid(clamp(stacked, min: -1, max: 1), columns: 1, padding: 0)
}
