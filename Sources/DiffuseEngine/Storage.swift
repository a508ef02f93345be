import Foundation

/// A cache of Float32 buffers. A training step asks for the same sizes every step, so after the first step every
/// buffer comes from here and the step allocates no new tensor memory. A request takes the smallest cached buffer
/// that holds it, if that is at most twice its size: a model of many tensor sizes (a large U-Net, its weights widened
/// from 16 bits as they are used) then reuses a few buffers across sizes instead of keeping one of every size.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()
    /// Floats allocated past the end of every buffer, so that a kernel may read a whole 16-lane vector where a row
    /// ends (the values read there are never used); and as many before its start, so that a kernel may read a row
    /// from its column −1 (Winograd's input transform).
    public static let slack = 16

    /// The cached buffers by capacity, smallest first.
    private var free: [(capacity: Int, pointer: UnsafeMutablePointer<Float>)] = []
    private let lock = NSLock()
    /// Buffers obtained from the system allocator since the process started (misses of the cache).
    public private(set) var freshAllocations = 0
    /// Bytes currently held by live tensors or waiting in the cache.
    public private(set) var bytesHeld = 0
    /// Bytes waiting in the cache.
    public private(set) var bytesCached = 0

    /// The capacity allocated for `count` floats: above 64 Ki floats, `count` rounded up to 4 significant bits (at
    /// most 1/8 more), so that buffers come in fewer sizes.
    static func sizeClass(_ count: Int) -> Int {
        guard count > 1 << 16 else { return count }
        let shift = (Int.bitWidth - count.leadingZeroBitCount) - 4
        return ((count - 1) >> shift + 1) << shift
    }

    /// A buffer of at least `count` floats, and its capacity.
    func take(_ count: Int) -> (pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        let wanted = Self.sizeClass(count)
        lock.lock()
        defer { lock.unlock() }
        let i = firstIndex(atLeast: wanted)
        if i < free.count && free[i].capacity <= 2 * wanted {
            let found = free.remove(at: i)
            bytesCached -= Self.bytes(found.capacity)
            return (found.pointer, found.capacity)
        }
        freshAllocations += 1
        bytesHeld += Self.bytes(wanted)
        // 64-byte aligned: a 16-lane load from the start of a row then touches one cache line, not two.
        let base = UnsafeMutableRawPointer.allocate(byteCount: Self.bytes(wanted), alignment: 64)
        return (base.bindMemory(to: Float.self, capacity: wanted + 2 * BufferPool.slack) + BufferPool.slack, wanted)
    }

    func give(_ p: UnsafeMutablePointer<Float>, capacity: Int) {
        lock.lock()
        defer { lock.unlock() }
        free.insert((capacity, p), at: firstIndex(atLeast: capacity))
        bytesCached += Self.bytes(capacity)
    }

    /// The index of the first cached buffer of at least `capacity` floats (binary search).
    private func firstIndex(atLeast capacity: Int) -> Int {
        var (low, high) = (0, free.count)
        while low < high {
            let mid = (low + high) / 2
            if free[mid].capacity < capacity { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The bytes of a buffer of `capacity` floats with its slack.
    private static func bytes(_ capacity: Int) -> Int { (capacity + 2 * BufferPool.slack) * MemoryLayout<Float>.stride }

    /// Returns every cached buffer to the system.
    public func trim() {
        lock.lock()
        for (capacity, p) in free {
            (p - BufferPool.slack).deallocate()
            bytesHeld -= Self.bytes(capacity)
        }
        free.removeAll()
        bytesCached = 0
        lock.unlock()
        #if os(Linux)
        _ = mallocTrim(0)  // and the free pages of glibc's heaps to the system
        #endif
    }
}

#if os(Linux)
/// glibc's malloc_trim, which its Swift module does not import.
@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32
#endif

/// Reference-counted Float32 memory behind one or more tensors (a reshape shares it).
public final class TensorStorage: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    /// The floats of the pool's buffer (at least `count`).
    private let capacity: Int

    /// Uninitialised memory for `count` floats.
    public init(uninitializedCount count: Int) {
        self.count = count
        (pointer, capacity) = BufferPool.shared.take(count)
    }

    public convenience init(zeros count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: 0, count: count)
    }

    deinit { BufferPool.shared.give(pointer, capacity: capacity) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

/// Runs `body` with `count` uninitialised floats from the pool, kept alive until `body` returns (a storage held
/// only through its pointer could be given back to the pool, and handed out again, after its last use).
@inlinable
func withBuffer<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
    let storage = TensorStorage(uninitializedCount: count)
    return try withExtendedLifetime(storage) { try body(storage.pointer) }
}
