import Foundation

/// A cache of Float32 buffers by element count. A training step asks for the same sizes every step, so after
/// the first step every buffer comes from here and the step allocates no new tensor memory.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()
    /// Floats allocated past the end of every buffer, so that a kernel may read a whole 16-lane vector where a row
    /// ends (the values read there are never used); and as many before its start, so that a kernel may read a row
    /// from its column −1 (Winograd's input transform).
    public static let slack = 16

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private let lock = NSLock()
    /// Buffers obtained from the system allocator since the process started (misses of the cache).
    public private(set) var freshAllocations = 0
    /// Bytes currently held by live tensors or waiting in the cache.
    public private(set) var bytesHeld = 0

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock()
        defer { lock.unlock() }
        // Popped in place: a copy of the list taken out of the dictionary would be copied again on write.
        if let p = free[count]?.popLast() { return p }
        freshAllocations += 1
        bytesHeld += (count + 2 * BufferPool.slack) * MemoryLayout<Float>.stride
        // 64-byte aligned: a 16-lane load from the start of a row then touches one cache line, not two.
        let base = UnsafeMutableRawPointer.allocate(byteCount: (count + 2 * BufferPool.slack) * MemoryLayout<Float>.stride,
                                                    alignment: 64)
        return base.bindMemory(to: Float.self, capacity: count + 2 * BufferPool.slack) + BufferPool.slack
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        lock.lock()
        free[count, default: []].append(p)
        lock.unlock()
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        lock.lock()
        for (count, list) in free {
            for p in list { (p - BufferPool.slack).deallocate() }
            bytesHeld -= list.count * (count + 2 * BufferPool.slack) * MemoryLayout<Float>.stride
        }
        free.removeAll()
        lock.unlock()
    }
}

/// Reference-counted Float32 memory behind one or more tensors (a reshape shares it).
public final class TensorStorage: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Uninitialised memory for `count` floats.
    public init(uninitializedCount count: Int) {
        self.count = count
        pointer = BufferPool.shared.take(count)
    }

    public convenience init(zeros count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: 0, count: count)
    }

    deinit { BufferPool.shared.give(pointer, count) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

/// Runs `body` with `count` uninitialised floats from the pool, kept alive until `body` returns (a storage held
/// only through its pointer could be given back to the pool, and handed out again, after its last use).
@inlinable
func withBuffer<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
    let storage = TensorStorage(uninitializedCount: count)
    return try withExtendedLifetime(storage) { try body(storage.pointer) }
}
