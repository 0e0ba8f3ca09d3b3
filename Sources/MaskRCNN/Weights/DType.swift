// Element types of weights files and their conversion to Float, in bulk.

/// The element types segd reads. Raw values are the safetensors spellings, which are also
/// what `HostTensor.sourceDType` reports for PyTorch files.
enum WeightDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    /// The legacy typed-storage class torch.save names in its pickles
    /// (`torch.FloatStorage` …), as `normal_storage_type` in torch/serialization.py spells it.
    init?(torchStorage name: String) {
        switch name {
        case "DoubleStorage": self = .f64
        case "FloatStorage": self = .f32
        case "HalfStorage": self = .f16
        case "BFloat16Storage": self = .bf16
        case "LongStorage": self = .i64
        case "IntStorage": self = .i32
        case "ShortStorage": self = .i16
        case "CharStorage": self = .i8
        case "ByteStorage": self = .u8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }
}

/// IEEE half to float, exact (every half is a float). Written out instead of using
/// `Float16`, which the Swift standard library lacks on macOS/x86_64.
@inline(__always)
func floatFromHalf(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F {
        // Inf or NaN; the payload moves to the top of the float mantissa, as a C cast does.
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
        // Zero or subnormal: mantissa × 2⁻²⁴, exact in Float.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }
    // Rebias the exponent from 15 to 127.
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

extension WeightDType {
    /// Converts `count` elements, the first at `source`, `sourceStride` elements apart, to
    /// Float at `destination`. The switch is outside the loops so that each loop is a tight
    /// unaligned-load-and-convert (file data has no alignment guarantee: safetensors data
    /// starts wherever its JSON header ends). Host byte order must be little-endian, which
    /// the readers check before calling.
    func convert(_ source: UnsafeRawPointer, count: Int, sourceStride: Int,
                 to destination: UnsafeMutablePointer<Float>) {
        let step = sourceStride * size
        switch self {
        case .f32:
            if sourceStride == 1 {
                // The common case, nearly all of a checkpoint: one memcpy.
                UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
            } else {
                for i in 0 ..< count { destination[i] = source.loadUnaligned(fromByteOffset: i * step, as: Float.self) }
            }
        case .f64:
            for i in 0 ..< count { destination[i] = Float(source.loadUnaligned(fromByteOffset: i * step, as: Double.self)) }
        case .f16:
            for i in 0 ..< count {
                destination[i] = floatFromHalf(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * step, as: UInt16.self)))
            }
        case .bf16:
            // bfloat16 is the top half of a float32.
            for i in 0 ..< count {
                let b = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * step, as: UInt16.self))
                destination[i] = Float(bitPattern: UInt32(b) << 16)
            }
        case .i64:
            for i in 0 ..< count { destination[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: i * step, as: Int64.self))) }
        case .i32:
            for i in 0 ..< count { destination[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: i * step, as: Int32.self))) }
        case .i16:
            for i in 0 ..< count { destination[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: i * step, as: Int16.self))) }
        case .i8:
            for i in 0 ..< count { destination[i] = Float(source.load(fromByteOffset: i * step, as: Int8.self)) }
        case .u8:
            for i in 0 ..< count { destination[i] = Float(source.load(fromByteOffset: i * step, as: UInt8.self)) }
        case .bool:
            // Any non-zero byte is true, as numpy and torch read it.
            for i in 0 ..< count { destination[i] = source.load(fromByteOffset: i * step, as: UInt8.self) != 0 ? 1 : 0 }
        }
    }

    /// Gathers a strided view (shape, element strides, element offset into `storage`) into
    /// a new row-major Float array. The caller has checked that every index the view can
    /// reach lies inside `storage`.
    func gather(from storage: UnsafeRawPointer, offset: Int, shape: [Int], strides: [Int]) -> [Float] {
        let total = shape.reduce(1, *)
        guard total > 0 else { return [] }
        return [Float](unsafeUninitializedCapacity: total) { buffer, initialized in
            let destination = buffer.baseAddress!
            let first = storage + offset * size
            if isRowMajor(shape: shape, strides: strides) {
                convert(first, count: total, sourceStride: 1, to: destination)
            } else {
                // Odometer over all dimensions but the last; each step converts one row.
                let rank = shape.count
                let rowLength = shape[rank - 1], rowStride = strides[rank - 1]
                var index = [Int](repeating: 0, count: rank - 1)
                var written = 0
                var elementOffset = 0
                while written < total {
                    convert(first + elementOffset * size, count: rowLength, sourceStride: rowStride,
                            to: destination + written)
                    written += rowLength
                    var d = rank - 2
                    while d >= 0 {
                        index[d] += 1
                        elementOffset += strides[d]
                        if index[d] < shape[d] { break }
                        elementOffset -= strides[d] * shape[d]
                        index[d] = 0
                        d -= 1
                    }
                }
            }
            initialized = total
        }
    }

    /// Whether a view's elements are laid out one after the other in row-major order
    /// (dimensions of size 1 may carry any stride; PyTorch does not normalize them).
    private func isRowMajor(shape: [Int], strides: [Int]) -> Bool {
        var expected = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
            if strides[d] != expected { return false }
            expected *= shape[d]
        }
        return true
    }
}

/// Shape arithmetic shared by the readers (namespaced: the module has other shape helpers).
enum WeightsLayout {
    /// Product of `shape`, nil on a negative dimension or overflow.
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    /// Element strides of a contiguous row-major tensor.
    static func rowMajorStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = s
            s *= shape[d]
        }
        return strides
    }
}
