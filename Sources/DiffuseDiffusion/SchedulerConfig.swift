import DiffuseEngine
import Foundation

/// The keys of a diffusers scheduler_config.json that change sampling. A key the file does not have stays nil, and
/// the sampler's own diffusers default applies (`Sampling`), as with diffusers' `Class.from_config(config)`.
public struct SchedulerConfig: Equatable, Sendable {
    public var className: String?
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    /// linear, scaled_linear, squaredcos_cap_v2, sigmoid
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    /// epsilon, sample, v_prediction
    public var predictionType: String?
    /// DDPM's reverse variance: fixed_small, fixed_small_log, fixed_large, learned, learned_range
    public var varianceType: String?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    /// Dynamic thresholding of x̂_0 (Imagen): clamp to the ratio-quantile of |x̂_0| (at least 1, at most
    /// sampleMaxValue) and rescale.
    public var thresholding: Bool?
    public var dynamicThresholdingRatio: Double?
    public var sampleMaxValue: Double?
    /// leading, linspace, trailing
    public var timestepSpacing: String?
    public var stepsOffset: Int?
    public var setAlphaToOne: Bool?
    public var rescaleBetasZeroSNR: Bool?
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    /// PNDM: PLMS alone (true), or after a Runge–Kutta warm-up.
    public var skipPRKSteps: Bool?
    /// UniPC: the steps after which the corrector is skipped.
    public var disableCorrector: [Int]?
    /// The multistep solvers: order (1 to 3), DPM-Solver's dpmsolver++ or sde-dpmsolver++, the second-order rule
    /// (DPM-Solver's midpoint or heun, UniPC's bh1 or bh2), and how they end.
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    /// zero or sigma_min: where the last step of DPM-Solver and Euler lands.
    public var finalSigmasType: String?
    public var lambdaMinClipped: Double?
    /// Euler: linear (σ interpolated over t) or log_linear.
    public var interpolationType: String?
    /// Euler: discrete or continuous.
    public var timestepType: String?

    public init() {}

    /// Keys diffusers writes that Diffuse reads; the flag says whether a true value asks for something Diffuse does
    /// not do (then reading fails, naming it).
    static let unsupportedWhenTrue = ["use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas",
                                      "use_dynamic_shifting"]
    /// Keys that change nothing for the samplers here (their defaults are diffusers' only behaviour we copy).
    static let inert = ["flow_shift", "time_shift_type", "shift_terminal", "sigma_min", "sigma_max", "s_churn",
                        "s_tmin", "s_tmax", "s_noise", "variance_type_ignored"]

    /// Reads the object of a scheduler_config.json. Returns the config and the keys it does not know (which change
    /// nothing here: the caller warns). A key of the wrong type or a value that is not supported is an error naming
    /// the key and the file.
    public static func read(_ json: [String: JSONValue], path: String) throws -> (SchedulerConfig, unknown: [String]) {
        var c = SchedulerConfig()
        var unknown: [String] = []
        func fail(_ key: String, _ problem: String) -> Error { DiffuseError.scheduler(path: path, key: key, problem: problem) }
        func number(_ key: String, _ value: JSONValue) throws -> Double {
            guard case .number(let d) = value else { throw fail(key, "expected a number, found \(value)") }
            return d
        }
        func integer(_ key: String, _ value: JSONValue) throws -> Int {
            let d = try number(key, value)
            guard d == d.rounded(), abs(d) < 1e15 else { throw fail(key, "expected a whole number, found \(value)") }
            return Int(d)
        }
        func flag(_ key: String, _ value: JSONValue) throws -> Bool {
            guard case .bool(let b) = value else { throw fail(key, "expected true or false, found \(value)") }
            return b
        }
        func text(_ key: String, _ value: JSONValue, _ allowed: [String]) throws -> String {
            guard case .string(let s) = value else { throw fail(key, "expected a string, found \(value)") }
            guard allowed.contains(s) else {
                throw fail(key, "'\(s)' is not supported (\(allowed.joined(separator: ", ")))")
            }
            return s
        }
        for (key, value) in json.sorted(by: { $0.key < $1.key }) {
            // null means "the class default" for every key here (trained_betas: none).
            if value == .null { continue }
            switch key {
            case "_class_name": if case .string(let name) = value { c.className = name }
            case "num_train_timesteps":
                c.numTrainTimesteps = try integer(key, value)
                guard c.numTrainTimesteps! >= 2 else { throw fail(key, "must be at least 2") }
            case "beta_start": c.betaStart = try number(key, value)
            case "beta_end": c.betaEnd = try number(key, value)
            case "beta_schedule":
                c.betaSchedule = try text(key, value, BetaSchedule.allCases.map(\.rawValue))
            case "trained_betas":
                guard case .array(let list) = value else { throw fail(key, "expected a list of numbers") }
                c.trainedBetas = try list.map { try number(key, $0) }
            case "prediction_type": c.predictionType = try text(key, value, Prediction.allCases.map(\.rawValue))
            case "variance_type":
                c.varianceType = try text(key, value, ["fixed_small", "fixed_small_log", "fixed_large", "learned",
                                                       "learned_range"])
            case "clip_sample": c.clipSample = try flag(key, value)
            case "clip_sample_range": c.clipSampleRange = try number(key, value)
            case "thresholding": c.thresholding = try flag(key, value)
            case "dynamic_thresholding_ratio": c.dynamicThresholdingRatio = try number(key, value)
            case "sample_max_value": c.sampleMaxValue = try number(key, value)
            case "timestep_spacing":
                c.timestepSpacing = try text(key, value, TimestepSpacing.allCases.map(\.rawValue))
            case "steps_offset": c.stepsOffset = try integer(key, value)
            case "set_alpha_to_one": c.setAlphaToOne = try flag(key, value)
            case "rescale_betas_zero_snr": c.rescaleBetasZeroSNR = try flag(key, value)
            case "use_karras_sigmas": c.useKarrasSigmas = try flag(key, value)
            case "use_exponential_sigmas": c.useExponentialSigmas = try flag(key, value)
            case "skip_prk_steps": c.skipPRKSteps = try flag(key, value)
            case "disable_corrector":
                guard case .array(let list) = value else { throw fail(key, "expected a list of step numbers") }
                c.disableCorrector = try list.map { try integer(key, $0) }
            case "predict_x0":
                if try !flag(key, value) { throw fail(key, "false (UniPC on ε) is not supported") }
            case "solver_order":
                c.solverOrder = try integer(key, value)
                guard (1...3).contains(c.solverOrder!) else { throw fail(key, "\(value) is not supported (1, 2, 3)") }
            case "algorithm_type": c.algorithmType = try text(key, value, ["dpmsolver++", "sde-dpmsolver++", "deis"])
            case "solver_type": c.solverType = try text(key, value, ["midpoint", "heun", "bh1", "bh2", "logrho"])
            case "lower_order_final": c.lowerOrderFinal = try flag(key, value)
            case "euler_at_final": c.eulerAtFinal = try flag(key, value)
            case "final_sigmas_type": c.finalSigmasType = try text(key, value, ["zero", "sigma_min"])
            case "lambda_min_clipped": c.lambdaMinClipped = try number(key, value)
            case "interpolation_type": c.interpolationType = try text(key, value, ["linear", "log_linear"])
            case "timestep_type": c.timestepType = try text(key, value, ["discrete"])
            case _ where unsupportedWhenTrue.contains(key):
                if try flag(key, value) { throw fail(key, "true is not supported") }
            case _ where key.hasPrefix("_") || inert.contains(key): break
            default: unknown.append(key)
            }
        }
        return (c, unknown)
    }
}

/// A JSON value, read with the distinctions JSONSerialization loses on Linux (1 and true).
public enum JSONValue: Codable, Equatable, Sendable, CustomStringConvertible {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Reads a file holding a JSON object.
    public static func object(at path: String) throws -> [String: JSONValue] {
        guard let data = fileContents(path) else {
            throw DiffuseError.scheduler(path: path, key: "", problem: "missing or unreadable")
        }
        guard case .object(let o)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw DiffuseError.scheduler(path: path, key: "", problem: "not a JSON object")
        }
        return o
    }

    public var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .number(let d): d == d.rounded() && abs(d) < 1e15 ? "\(Int(d))" : "\(d)"
        case .string(let s): "\"\(s)\""
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o): "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}
