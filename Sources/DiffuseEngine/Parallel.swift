import COpenBLAS
import Dispatch
import Foundation

/// How many threads the engine's own kernels use. Results never depend on it: work is cut into pieces whose
/// boundaries depend only on the problem size, and partial results are combined in a fixed order.
public enum Engine {
    nonisolated(unsafe) public static var threads = start()

    /// The engine's threads, set up on first use. OpenBLAS starts a pool of worker threads when it is loaded, and an
    /// idle worker spins (sched_yield) until a timeout that, on some virtual machines, never comes: it then takes a
    /// core's time from the engine's own threads for the life of the process, and convolutions take up to twice as
    /// long. The engine's kernels never call OpenBLAS; the metrics' few Float64 products run single-threaded.
    private static func start() -> Int {
        openblas_set_num_threads(1)
        stopBLASThreads()
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Stops OpenBLAS's worker threads (a later multi-threaded call starts them again), through the symbol that its
    /// pthread build exports; other builds have no such pool to stop.
    public static func stopBLASThreads() {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "blas_thread_shutdown_") else { return }
        _ = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)()
    }

    /// How convolutions cut their work into register tiles: `automatic` takes channel tiles where the output
    /// channels come in blocks of 64, else picks, per layer, the cheaper of reading the inputs in place (`flat`, junk
    /// positions between images computed and dropped) and copying each tile's inputs into a panel (`packed`). The
    /// others force one of those two (never channel tiles), for tests and benchmarks; results agree to rounding.
    public enum ConvolutionTiles: Sendable { case automatic, flat, packed }
    nonisolated(unsafe) public static var convolutionTiles = ConvolutionTiles.automatic
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
    let run = { (i: Int) in
        flushDenormals()
        let lo = i * size
        let hi = min(n, lo + size)
        if lo < hi { body(lo..<hi) }
    }
    withoutActuallyEscaping(run) { run in
        DispatchQueue.concurrentPerform(iterations: pieces) { run($0) }
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
