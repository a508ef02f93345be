import Foundation

/// A request to end long work early, shared by whoever asks (a server's cancel button) and the work, which looks at
/// it between steps: a trainer saves a checkpoint and stops, a sampler's denoiser stops calling its network, a
/// generation loop starts no further image. The work in scope sees the request bound by
/// `StopRequest.$current.withValue(request) { … }`; work outside any scope is never asked to stop.
public final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false

    public init() {}

    /// Asks the work to stop (it may take until its next step).
    public func request() { lock.withLock { requested = true } }

    public var isRequested: Bool { lock.withLock { requested } }

    /// The request of the work in scope.
    @TaskLocal public static var current: StopRequest?

    /// Whether the work in scope has been asked to stop.
    public static var isRequested: Bool { current?.isRequested ?? false }
}
