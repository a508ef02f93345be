import Foundation

/// Every error Diffuse throws, by what was wrong: each message says what, where (the file or folder, the key), and
/// what to do where there is something to do. Commands print the message and exit non-zero; a server answers with
/// it. (Programming errors are preconditions, not errors.)
public enum DiffuseError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// A setting, option or configuration that cannot work.
    case config(String)
    /// A data file or folder that cannot be used.
    case data(path: String, problem: String)
    /// A malformed or unreadable safetensors file.
    case safetensors(path: String, problem: String)
    /// A checkpoint of Diffuse that cannot be used.
    case checkpoint(path: String, problem: String)
    /// A diffusers model folder (or a file in one) that cannot be read or written.
    case diffusers(String, String)
    /// A scheduler_config.json key (empty: the file itself) whose value cannot be used.
    case scheduler(path: String, key: String, problem: String)
    /// A sampler setting that does not work.
    case sampling(message: String)
    /// A model's tensors that do not fit it: one missing, of another shape, or of no parameter.
    case missingTensor(key: String, shape: [Int])
    case tensorShape(key: String, found: [Int], expected: [Int])
    case unexpectedTensor(key: String)
    /// The loss stopped being a number: training stopped; the last good checkpoint stays.
    case divergence(step: Int, loss: Float, checkpoint: String)
    /// A metric that cannot be computed.
    case metric(String)
    /// A report that cannot be written.
    case report(String)
    /// The processes of an MPI job could not be set up.
    case processes(String)
    /// A file that could not be written (a full disk, no permission); what was there before is kept.
    case write(path: String, problem: String)

    public var description: String {
        switch self {
        case let .config(message), let .sampling(message), let .metric(message), let .report(message), let .processes(message):
            message
        case let .data(path, problem), let .diffusers(path, problem): "\(path): \(problem)"
        case let .safetensors(path, problem): "safetensors \(path): \(problem)"
        case let .checkpoint(path, problem): "checkpoint \(path): \(problem)"
        case let .write(path, problem): "cannot write \(path): \(problem)"
        case let .scheduler(path, key, problem): key.isEmpty ? "\(path): \(problem)" : "\(path): '\(key)': \(problem)"
        case let .missingTensor(key, shape): "tensor '\(key)' (shape \(shape)) is missing: was it saved from another model?"
        case let .tensorShape(key, found, expected):
            "tensor '\(key)' has shape \(found), the model expects \(expected) (was it trained with other sizes?)"
        case let .unexpectedTensor(key): "tensor '\(key)' belongs to no parameter of this model: was it saved from another model?"
        case let .divergence(step, loss, checkpoint):
            "the loss became \(loss) at step \(step); training stopped. The last good checkpoint is \(checkpoint) "
                + "(try a lower --learning-rate or --grad-clip)."
        }
    }

    public var errorDescription: String? { description }

    /// The file or folder the error is about, if any.
    public var path: String? {
        switch self {
        case let .data(path, _), let .safetensors(path, _), let .checkpoint(path, _), let .diffusers(path, _),
             let .scheduler(path, _, _), let .write(path, _): path
        default: nil
        }
    }

    /// What is wrong, without the path.
    public var problem: String {
        switch self {
        case let .data(_, problem), let .safetensors(_, problem), let .checkpoint(_, problem), let .diffusers(_, problem),
             let .scheduler(_, _, problem): problem
        default: description
        }
    }
}
