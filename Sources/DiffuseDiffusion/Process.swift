import DiffuseEngine
import Foundation

/// What the network ε_θ(x_t, t) is trained to output.
public enum Prediction: String, CaseIterable, Codable, Sendable {
    /// The noise ε that was added (DDPM's choice, the default).
    case epsilon
    /// The clean sample x_0.
    case sample
    /// The velocity v = √ᾱ_t·ε − √(1 − ᾱ_t)·x_0 (Salimans & Ho).
    case velocity = "v_prediction"
    /// Rectified flow's velocity v = dx_t/dt = ε − x_0 on x_t = (1 − t)·x_0 + t·ε.
    case flow = "flow_prediction"

    /// The predictions of a diffusion (variance-preserving) model: all but the flow's.
    public static let diffusion: [Prediction] = [.epsilon, .sample, .velocity]
}

extension Prediction {
    /// x̂_0 and ε̂ implied by a network output at x_t = a·x_0 + s·ε (a = √ᾱ_t, s = √(1 − ᾱ_t), as tensors that
    /// broadcast over x_t: one factor, or one per sample):
    /// ε-prediction: x̂_0 = (x_t − s·ε̂)/a;  x_0-prediction: ε̂ = (x_t − a·x̂_0)/s;
    /// v-prediction (v = a·ε − s·x_0): x̂_0 = a·x_t − s·v̂, ε̂ = s·x_t + a·v̂;
    /// flow (v = ε − x_0, with a + s = 1): x̂_0 = x_t − s·v̂, ε̂ = x_t + a·v̂.
    /// The one conversion of a network's output that training, likelihoods and every sampler go through.
    public func estimates(output: Tensor, xt: Tensor, signal a: Tensor, noise s: Tensor) -> (x0: Tensor, noise: Tensor) {
        switch self {
        case .epsilon: return ((xt - output * s) / a, output)
        case .sample: return (output, (xt - output * a) / s)
        case .velocity: return (xt * a - output * s, xt * s + output * a)
        case .flow: return (xt - output * s, xt + output * a)
        }
    }
}

/// Per-sample factors [c(t_0), c(t_1), ...] as a tensor of shape [N, 1, ..., 1] that broadcasts over samples of `rank`.
public func perSample(_ values: [Double], rank: Int) -> Tensor {
    Tensor(values.map(Float.init), shape: [values.count] + [Int](repeating: 1, count: max(rank - 1, 0)))
}

/// The forward (noising) process of a diffusion model and the quantities its training and sampling use.
public struct GaussianDiffusion: Sendable {
    public let schedule: NoiseSchedule
    public let prediction: Prediction

    public init(schedule: NoiseSchedule = NoiseSchedule(), prediction: Prediction = .epsilon) {
        self.schedule = schedule
        self.prediction = prediction
    }

    /// √ᾱ_t and √(1 − ᾱ_t) for each sample's timestep, shaped to broadcast over samples of `rank`.
    public func signalAndNoiseScales(_ t: [Int], rank: Int) -> (signal: Tensor, noise: Tensor) {
        (perSample(t.map { schedule.alphaBar[$0].squareRoot() }, rank: rank),
         perSample(t.map { (1 - schedule.alphaBar[$0]).squareRoot() }, rank: rank))
    }

    /// One Markov step of the forward process, q(x_t | x_{t−1}) = N(√(1 − β_t)·x_{t−1}, β_t·I):
    /// x_t = √(1 − β_t)·x_{t−1} + √β_t·ε.
    public func markovStep(_ previous: Tensor, t: Int, noise: Tensor) -> Tensor {
        let beta = Float(schedule.betas[t])
        return previous * (1 - beta).squareRoot() + noise * beta.squareRoot()
    }

    /// The forward process in closed form, q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I):
    /// x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, one timestep per sample.
    public func noised(_ x0: Tensor, t: [Int], noise: Tensor) -> Tensor {
        let (a, s) = signalAndNoiseScales(t, rank: x0.rank)
        return x0 * a + noise * s
    }

    /// What the network should output for x_t built from x_0 and ε: ε, x_0, or v = √ᾱ_t·ε − √(1 − ᾱ_t)·x_0.
    public func target(x0: Tensor, noise: Tensor, t: [Int]) -> Tensor {
        switch prediction {
        case .epsilon: return noise
        case .sample: return x0
        case .velocity:
            let (a, s) = signalAndNoiseScales(t, rank: x0.rank)
            return noise * a - x0 * s
        case .flow: return noise - x0
        }
    }

    /// The estimates of x_0 and ε implied by the network output at x_t, each sample at its timestep
    /// (Prediction.estimates).
    public func estimates(output: Tensor, xt: Tensor, t: [Int]) -> (x0: Tensor, noise: Tensor) {
        let (a, s) = signalAndNoiseScales(t, rank: xt.rank)
        return prediction.estimates(output: output, xt: xt, signal: a, noise: s)
    }

    /// The min-SNR-γ loss weights (Hang et al. 2023), one per sample: w_t = min(SNR(t), γ)/SNR(t) = min(1, γ/SNR(t))
    /// for ε-prediction (the second form stays 1 where SNR = 0, at a zero-terminal-SNR schedule's last step),
    /// min(SNR(t), γ) for x_0, min(SNR(t), γ)/(SNR(t) + 1) for v.
    public func minSNRWeights(t: [Int], gamma: Double) -> [Double] {
        t.map { step in
            let snr = schedule.snr(step)
            switch prediction {
            case .epsilon: return min(1, gamma / snr)
            case .sample: return min(snr, gamma)
            case .velocity: return min(snr, gamma) / (snr + 1)
            case .flow: return 1
            }
        }
    }

    /// The simple loss of DDPM, mean ‖target − output‖², optionally weighted per sample by `minSNRWeights`.
    public func loss(output: Tensor, target: Tensor, t: [Int], minSNRGamma: Double? = nil) -> Tensor {
        guard let gamma = minSNRGamma else { return mseLoss(output, target) }
        return mean(square(output - target) * perSample(minSNRWeights(t: t, gamma: gamma), rank: output.rank))
    }
}

/// Rectified flow (Liu et al. 2023; Lipman et al. 2023): the straight path x_t = (1 − t)·x_0 + t·ε, t ∈ [0, 1],
/// whose velocity v = dx_t/dt = ε − x_0 the network learns (prediction `.flow`), seeing the timestep t·T as
/// diffusers' flow-matching schedulers give it.
public struct RectifiedFlow: Sendable {
    /// T: the network's timestep is t·T.
    public var trainingSteps: Int
    /// The shift of the sampling schedule, t ← shift·t/(1 + (shift − 1)·t) (1: none; > 1 spends more steps near noise).
    public var shift: Double

    public init(trainingSteps: Int = 1000, shift: Double = 1) { (self.trainingSteps, self.shift) = (trainingSteps, shift) }

    /// x_t = (1 − t)·x_0 + t·ε, one t per sample.
    public func noised(_ x0: Tensor, t: [Double], noise: Tensor) -> Tensor {
        x0 * perSample(t.map { 1 - $0 }, rank: x0.rank) + noise * perSample(t, rank: x0.rank)
    }

    /// The velocity the network should output: v = ε − x_0.
    public func target(x0: Tensor, noise: Tensor) -> Tensor { noise - x0 }

    /// n times t = 1/(1 + e^{−u}), u ~ N(0, 1): the logit-normal law of Esser et al. (2024), which puts the training
    /// where the path is hardest to predict, mid-way.
    public static func logitNormal(_ n: Int, generator: inout RandomGenerator, share: BatchShare? = nil) -> [Double] {
        generator.normal([n], share: share).scalars.map { 1 / (1 + Foundation.exp(-Double($0))) }
    }
}
