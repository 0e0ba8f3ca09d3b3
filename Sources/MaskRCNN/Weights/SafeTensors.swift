// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data area, to which the offsets are relative. The file is untrusted: every number in the
// header is checked against the file before a byte of tensor data is read.
import Foundation

enum SafeTensorsReader {
    private struct Entry {
        let key: String
        let dtype: WeightDType
        let shape: [Int]
        let begin: Int
        let end: Int
    }

    static func read(_ bytes: UnsafeRawBufferPointer, path: String) throws -> StateDict {
        let reader = LittleEndianReader(bytes: bytes)
        func invalid(_ key: String?, _ reason: String) -> WeightsError {
            .invalidSafeTensors(path: path, key: key, reason: reason)
        }
        guard let rawLength = reader.u64(0) else {
            throw WeightsError.truncated(path: path, reason: "\(bytes.count) bytes is too short for the 8-byte safetensors header length")
        }
        guard rawLength <= UInt64(bytes.count - 8) else {
            throw WeightsError.truncated(path: path, reason:
                "the safetensors header length is \(rawLength) bytes but only \(bytes.count - 8) bytes follow it")
        }
        let headerLength = Int(rawLength)
        let dataStart = 8 + headerLength
        let dataSize = bytes.count - dataStart

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8 ..< dataStart]), options: [])
        } catch {
            throw invalid(nil, "the \(headerLength)-byte header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else { throw invalid(nil, "the header is not a JSON object") }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        entries.reserveCapacity(header.count)
        for (key, value) in header {
            if key == "__metadata__" {
                guard let map = value as? [String: Any] else { throw invalid(nil, "__metadata__ is not an object") }
                for (k, v) in map {
                    guard let s = v as? String else { throw invalid(nil, "__metadata__ value of '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let fields = value as? [String: Any] else { throw invalid(key, "the entry is not an object") }
            guard let dtypeName = fields["dtype"] as? String else { throw invalid(key, "missing or non-string 'dtype'") }
            guard let dtype = WeightDType(rawValue: dtypeName) else {
                let known = WeightDType.allCases.map(\.rawValue).joined(separator: ", ")
                throw invalid(key, "dtype '\(dtypeName)' is not supported (supported: \(known))")
            }
            guard let shapeArray = fields["shape"] as? [Any], let shape = intArray(shapeArray) else {
                throw invalid(key, "'shape' is not an array of non-negative integers")
            }
            guard let offsetArray = fields["data_offsets"] as? [Any], let offsets = intArray(offsetArray),
                  offsets.count == 2 else {
                throw invalid(key, "'data_offsets' is not a pair of non-negative integers")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else { throw invalid(key, "data_offsets [\(begin), \(end)] are reversed") }
            guard end <= dataSize else {
                throw invalid(key, "data_offsets [\(begin), \(end)] reach past the \(dataSize)-byte data area")
            }
            let byteCount = WeightsLayout.elementCount(shape).flatMap {
                let (n, overflow) = $0.multipliedReportingOverflow(by: dtype.size)
                return overflow ? nil : n
            }
            guard let byteCount, byteCount == end - begin else {
                throw invalid(key, "shape \(shape) of \(dtypeName) needs \(byteCount.map(String.init) ?? "too many") bytes, "
                    + "data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append(Entry(key: key, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // Two tensors sharing bytes would mean a corrupt or crafted header; the format
        // does not allow it (gaps are tolerated: readers need not check coverage).
        let ordered = entries.filter { $0.end > $0.begin }.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.begin < a.end {
            throw invalid(b.key, "data_offsets [\(b.begin), \(b.end)] overlap those of '\(a.key)' [\(a.begin), \(a.end)]")
        }

        var tensors: [String: HostTensor] = [:]
        tensors.reserveCapacity(entries.count)
        let data = bytes.baseAddress.map { UnsafeRawPointer($0) + dataStart }
        for e in entries {
            let values: [Float]
            if let data, e.end > e.begin {
                values = e.dtype.gather(from: data + e.begin, offset: 0, shape: e.shape,
                                        strides: WeightsLayout.rowMajorStrides(e.shape))
            } else {
                values = []
            }
            tensors[e.key] = HostTensor(shape: e.shape, values: values, sourceDType: e.dtype.rawValue)
        }
        return StateDict(tensors: tensors, metadata: metadata, path: path)
    }

    /// JSON numbers arrive as NSNumber; accept only exact non-negative integers.
    private static func intArray(_ array: [Any]) -> [Int]? {
        var out: [Int] = []
        out.reserveCapacity(array.count)
        for v in array {
            guard let i = v as? Int, i >= 0 else { return nil }
            out.append(i)
        }
        return out
    }
}
