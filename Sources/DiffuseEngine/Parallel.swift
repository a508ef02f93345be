import COpenBLAS
import Dispatch
import Foundation

/// How many threads the engine's own kernels use: by default, the cores the process may run on. Results never
/// depend on it: work is cut into pieces whose boundaries depend only on the problem size, and partial results are
/// combined in a fixed order.
public enum Engine {
    /// The threads of the engine's kernels in this task (or thread): `withThreads`'s count, else all the cores the
    /// process may use.
    public static var threads: Int { scopedThreads ?? defaultThreads }
    @TaskLocal private static var scopedThreads: Int?
    private static let defaultThreads = start()

    /// Runs `body` with the engine's kernels on `count` threads (results do not depend on it), in this task alone.
    public static func withThreads<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        precondition(count >= 1, "\(count) threads")
        _ = defaultThreads  // OpenBLAS set up first
        return try $scopedThreads.withValue(count) { try body() }
    }

    /// The engine's threads, set up on first use. OpenBLAS starts a pool of worker threads when it is loaded, and an
    /// idle worker spins (sched_yield) until a timeout that, on some virtual machines, never comes: it then takes a
    /// core's time from the engine's own threads for the life of the process, and convolutions take up to twice as
    /// long. The engine's kernels never call OpenBLAS; the metrics' few Float64 products run single-threaded.
    private static func start() -> Int {
        openblas_set_num_threads(1)
        stopBLASThreads()
        return coresAvailable
    }

    /// Stops OpenBLAS's worker threads (a later multi-threaded call starts them again), through the symbol that its
    /// pthread build exports; other builds have no such pool to stop.
    public static func stopBLASThreads() {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") else { return }
        _ = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)()
    }
}

/// Runs `body` over `0..<n` cut into contiguous pieces of at least `grain` items, on `Engine.threads` threads.
/// The pieces are fixed by `n` and `grain` alone.
@inlinable
public func parallelFor(_ n: Int, grain: Int = 4096, _ body: (Range<Int>) -> Void) {
    if n <= 0 { return }
    let pieces = min((n + grain - 1) / grain, 64)
    if pieces <= 1 || Engine.threads <= 1 {
        flushDenormals()
        body(0..<n)
        return
    }
    let size = (n + pieces - 1) / pieces
    withoutActuallyEscaping(body) { body in
        let run = { (i: Int) in
            let lo = i * size
            let hi = min(n, lo + size)
            if lo < hi { body(lo..<hi) }
        }
        if !WorkerPool.shared.run(pieces: pieces, threads: Engine.threads, run) {
            flushDenormals()
            for i in 0..<pieces { run(i) }
        }
    }
}

/// The engine's worker threads. The calling thread and Engine.threads − 1 workers take the pieces of one
/// parallelFor at a time. Between jobs a worker spins for up to 2 ms before it sleeps, so that the next job of a
/// burst (the ops of a training step) starts on it at once: on the virtual machines this project runs on, waking a
/// sleeping thread (as DispatchQueue.concurrentPerform does for every call) took 25–85 µs, a tenth of a 0.5 ms
/// convolution.
@usableFromInline
final class WorkerPool: @unchecked Sendable {
    @usableFromInline static let shared = WorkerPool()

    /// The job, (generation << 40) | (pieces << 20) | next piece to take: a piece is taken by a compare-and-swap of
    /// the whole word, so that it belongs to the job that was read.
    private let ticket = UnsafeMutablePointer<CLong>.allocate(capacity: 1)
    /// Pieces of the current job done, workers asleep, and workers that take part (threads − 1).
    private let finished = UnsafeMutablePointer<CLong>.allocate(capacity: 1)
    private let sleepers = UnsafeMutablePointer<CLong>.allocate(capacity: 1)
    private let active = UnsafeMutablePointer<CLong>.allocate(capacity: 1)
    /// 1 while a job runs: a parallelFor inside one (or from another thread meanwhile) runs on its caller alone.
    private let busy = UnsafeMutablePointer<CLong>.allocate(capacity: 1)
    private let condition = NSCondition()
    /// Set by the thread that runs a job, before the job is published.
    private nonisolated(unsafe) var body: UnsafePointer<(Int) -> Void>?
    /// Worker threads started (by the thread that runs a job).
    private nonisolated(unsafe) var workers = 0
    private static let mask = (1 << 20) - 1

    private init() {
        for p in [ticket, finished, sleepers, active, busy] { p.initialize(to: 0) }
    }

    /// Runs body(i) for i < pieces on the calling thread and threads − 1 workers; false, having run nothing, when a
    /// job is running already. The workers reach `body` through a pointer, never keeping it past the call.
    @usableFromInline
    func run(pieces: Int, threads: Int, _ body: @escaping (Int) -> Void) -> Bool {
        var idle: CLong = 0
        guard pieces <= WorkerPool.mask, diffuse_atomic_compare_exchange(busy, &idle, 1) else { return false }
        defer { diffuse_atomic_store(busy, 0) }
        while workers < threads - 1 {
            let index = workers
            let thread = Thread { [self] in work(as: index) }
            thread.stackSize = 8 << 20
            thread.start()
            workers += 1
        }
        diffuse_atomic_store(active, threads - 1)
        withUnsafePointer(to: body) { pointer in
            self.body = pointer
            diffuse_atomic_store(finished, 0)
            let generation = (diffuse_atomic_load(ticket) >> 40) + 1
            diffuse_atomic_store(ticket, generation << 40 | pieces << 20)
            if diffuse_atomic_load(sleepers) > 0 {
                condition.lock()
                condition.broadcast()
                condition.unlock()
            }
            takePieces()
            while diffuse_atomic_load(finished) < pieces { diffuse_spin_pause() }
            self.body = nil
        }
        return true
    }

    /// Whether a job in `ticket` has pieces left.
    private static func hasPieces(_ ticket: CLong) -> Bool { ticket & mask < (ticket >> 20) & mask }

    /// Takes the current job's pieces and runs them, until none is left.
    private func takePieces() {
        flushDenormals()
        var seen = diffuse_atomic_load(ticket)
        while WorkerPool.hasPieces(seen) {
            if diffuse_atomic_compare_exchange(ticket, &seen, seen + 1) {
                runPiece(seen & WorkerPool.mask)
                _ = diffuse_atomic_add(finished, 1)
                seen = diffuse_atomic_load(ticket)
            }
        }
    }

    /// Runs piece i. Not inlined, so that whatever reference to the job's closure the call takes is dropped before
    /// the piece counts as finished: the caller's withoutActuallyEscaping checks, once all pieces are, that none is
    /// left.
    @inline(never)
    private func runPiece(_ i: Int) { body!.pointee(i) }

    /// Worker `index`: takes pieces of the jobs that run more than index + 1 threads; spins for 2 ms after each,
    /// then sleeps until the next.
    private func work(as index: Int) {
        let ready = { WorkerPool.hasPieces(diffuse_atomic_load(self.ticket)) && index < diffuse_atomic_load(self.active) }
        while true {
            var spins = 0
            var deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000
            while !ready() {
                diffuse_spin_pause()
                spins += 1
                guard spins % 256 == 0, DispatchTime.now().uptimeNanoseconds > deadline else { continue }
                // Counted as asleep before the last look at the job: a job published after that look sees the
                // count and wakes it.
                condition.lock()
                _ = diffuse_atomic_add(sleepers, 1)
                while !ready() { condition.wait() }
                _ = diffuse_atomic_add(sleepers, -1)
                condition.unlock()
                deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000
            }
            takePieces()
        }
    }
}

/// parallelFor whose pieces each get `scratch` floats of their own, all taken from the pool before the work starts:
/// the pool's peak then depends on the sizes alone, not on how the threads interleave (a buffer taken inside a piece
/// could be live in one thread while another takes its own, or not, from one run to the next).
func parallelFor(_ n: Int, grain: Int, scratch: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
    if n <= 0 { return }
    let pieces = min((n + grain - 1) / grain, 64), size = (n + pieces - 1) / pieces
    withBuffer(pieces * scratch) { base in
        parallelFor(n, grain: grain) { range in body(range, base + range.lowerBound / size * scratch) }
    }
}

/// Sums `value(piece)` over the fixed pieces of `0..<n`, adding the partial sums in piece order, so that the
/// result is the same bits for any thread count.
@inlinable
public func parallelSum(_ n: Int, grain: Int = 16384, _ value: (Range<Int>) -> Double) -> Double {
    let pieces = max(1, (n + grain - 1) / grain)
    var partial = [Double](repeating: 0, count: pieces)
    partial.withUnsafeMutableBufferPointer { partial in
        parallelFor(pieces, grain: 1) { r in
            for i in r { partial[i] = value(i * grain..<min(n, (i + 1) * grain)) }
        }
    }
    return partial.reduce(0, +)
}

/// Sets flush-to-zero for denormal floats on the calling thread (a few cycles; every kernel piece calls it, since
/// the pieces run on pool threads).
@inlinable
public func flushDenormals() { diffuse_flush_denormals() }
