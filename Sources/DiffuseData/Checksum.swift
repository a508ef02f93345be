import CZlib
import DiffuseEngine

/// CRC-32 (zlib's) of the tensors' values, in the order of their names: what a checkpoint records of itself, so that
/// bytes damaged on disk are found when it is read, not trained on.
public func checksum(_ tensors: [String: Tensor]) -> UInt32 {
    var crc = crc32(0, nil, 0)
    for name in tensors.keys.sorted() {
        let buffer = UnsafeRawBufferPointer(tensors[name]!.storage.buffer)
        crc = crc32(crc, buffer.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(buffer.count))
    }
    return UInt32(crc)
}
