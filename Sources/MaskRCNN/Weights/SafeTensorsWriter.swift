// Writing safetensors (the format SafeTensorsReader reads): an 8-byte little-endian header
// length, the JSON header padded with spaces to a multiple of 8 bytes (so the data area,
// and every F32 tensor in it, is aligned for mmap), then the tensors back to back in
// sorted key order, as the safetensors library lays them out.
import Foundation

public enum SafeTensorsWriter {
    /// The file's bytes: every tensor as F32 (what segd computes in), `metadata` as
    /// `__metadata__`. Keys are sorted, so equal inputs give equal bytes.
    public static func encode(_ tensors: [String: HostTensor], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        let keys = tensors.keys.sorted()
        for key in keys {
            let t = tensors[key]!
            header[key] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]] as [String: Any]
            offset += 4 * t.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        json.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - json.count % 8) % 8))
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for key in keys {
            tensors[key]!.values.withUnsafeBufferPointer { v in
                // Float is IEEE-754 binary32 in the host's (little-endian, on every target) order.
                out.append(UnsafeBufferPointer(start: UnsafeRawPointer(v.baseAddress!).assumingMemoryBound(to: UInt8.self), count: 4 * v.count))
            }
        }
        return out
    }
}
