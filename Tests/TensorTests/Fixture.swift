// Reading Fixtures/ops.safetensors (written by tools/reference/make_op_fixtures.py from
// torch) and the comparisons the op tests share. TensorTests depends on Tensor only, so
// the safetensors format is parsed here: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw bytes.
import Foundation
import Tensor
import XCTest

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

struct Fixture {
    private struct Entry { let dtype: String; let shape: [Int]; let range: Range<Int> }
    private let bytes: [UInt8]
    private let entries: [String: Entry]

    init(_ name: String) throws {
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
        bytes = [UInt8](try Data(contentsOf: url))
        let n = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        var entries: [String: Entry] = [:]
        for (key, value) in json where key != "__metadata__" {
            let e = value as! [String: Any], offsets = e["data_offsets"] as! [Int]
            entries[key] = Entry(dtype: e["dtype"] as! String, shape: e["shape"] as! [Int],
                                 range: (8 + n + offsets[0])..<(8 + n + offsets[1]))
        }
        self.entries = entries
    }

    private func entry(_ key: String) throws -> Entry {
        guard let e = entries[key] else { throw FixtureError(description: "ops.safetensors has no tensor \(key)") }
        return e
    }

    func has(_ key: String) -> Bool { entries[key] != nil }
    func shape(_ key: String) throws -> [Int] { try entry(key).shape }

    /// F32 values, or I64 values converted.
    func floats(_ key: String) throws -> [Float] {
        let e = try entry(key)
        return try bytes[e.range].withUnsafeBytes { raw in
            switch e.dtype {
            case "F32": return Array(raw.bindMemory(to: Float.self))
            case "I64": return raw.bindMemory(to: Int64.self).map { Float($0) }
            default: throw FixtureError(description: "\(key): dtype \(e.dtype) not supported")
            }
        }
    }

    func ints(_ key: String) throws -> [Int] {
        let e = try entry(key)
        guard e.dtype == "I64" else { throw FixtureError(description: "\(key): \(e.dtype), expected I64") }
        return bytes[e.range].withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map { Int($0) } }
    }

    /// A plain Tensor holding the fixture tensor.
    func tensor(_ key: String) throws -> Tensor { Tensor(shape: try shape(key), values: try floats(key)) }
}

/// max|a − b| / max|b|: the error relative to the tensor's scale (an elementwise relative
/// error is meaningless for activations that cross zero). Also returns the worst index.
func scaledError(_ a: [Float], _ b: [Float]) -> (error: Float, index: Int) {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = 0, worst = 0
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if !(d <= diff) { diff = d; worst = i }  // NaN counts as worst
        scale = max(scale, abs(b[i]))
    }
    return (scale == 0 ? diff : diff / scale, worst)
}

func assertClose(_ a: [Float], _ b: [Float], scaled tol: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        return XCTFail("\(what): \(a.count) values, expected \(b.count)", file: file, line: line)
    }
    let (e, i) = scaledError(a, b)
    XCTAssert(e <= tol, "\(what): error \(e) relative to max|expected| > \(tol) (worst at \(i): \(a[i]) vs \(b[i]))",
              file: file, line: line)
}

/// Bit-for-bit equality, for ops with no rounding of their own (max, copy, one add).
func assertIdentical(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else {
        return XCTFail("\(what): \(a.count) values, expected \(b.count)", file: file, line: line)
    }
    if let i = a.indices.first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        let n = a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }.count
        XCTFail("\(what): \(n) of \(a.count) values differ, first at \(i): \(a[i]) vs \(b[i])", file: file, line: line)
    }
}

/// Distance in units in the last place between two finite floats of the same sign
/// region (adjacent floats are 1 apart; +0 and −0 are 0 apart).
func ulpDistance(_ a: Float, _ b: Float) -> Int {
    func key(_ x: Float) -> Int { let b = Int(Int32(bitPattern: x.bitPattern)); return b < 0 ? Int(Int32.min) - b : b }
    return abs(key(a) - key(b))
}

extension Fixture {
    /// Conv2d from a fixture case: geometry from `geom`, weights in PyTorch's layout.
    func conv(_ name: String) throws -> Conv2d {
        let p = "conv.\(name)."
        let g = try ints(p + "geom")
        let geometry = ConvGeometry(inChannels: g[0], outChannels: g[1], kernel: g[2], stride: g[3], padding: g[4],
                                    dilation: g[5], groups: g[6])
        return try Conv2d(geometry, weight: floats(p + "w"), bias: g[9] == 1 ? floats(p + "b") : nil,
                          relu: g[8] == 1, transposed: g[7] == 1)
    }
}
