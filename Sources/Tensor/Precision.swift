// Element types, the CPU's instruction set as oneDNN reports it, and the precision a model
// runs in (`--precision auto|fp32|bf16`).
import CDNNL

/// A tensor's element type. bf16 holds activations and weights of bf16 models; every
/// accumulation is f32 inside oneDNN, and everything Swift code reads is f32 (`host()`).
public enum DType: String, Sendable, CaseIterable {
    case f32, bf16

    var dnnl: dnnl_data_type_t { self == .f32 ? dnnl_f32 : dnnl_bf16 }
    public var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// oneDNN's effective CPU instruction set (what it dispatches its kernels for here).
public struct CPUISA: Sendable, Equatable, CustomStringConvertible {
    public let raw: UInt32
    init(_ isa: dnnl_cpu_isa_t) { raw = isa.rawValue }
    public init(raw: UInt32) { self.raw = raw }

    static let avx2 = dnnl_cpu_isa_avx2.rawValue
    static let avx512Core = dnnl_cpu_isa_avx512_core.rawValue
    static let avx512CoreBF16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
    static let avx512CoreAMX = dnnl_cpu_isa_avx512_core_amx.rawValue

    /// oneDNN's ISA flags are cumulative bit masks: an ISA includes every one whose bits it has.
    func has(_ isa: UInt32) -> Bool { raw & isa == isa }

    /// AMX tiles (Sapphire Rapids and later): bf16 matrix multiply at about 8× the f32 rate.
    public var hasAMX: Bool { has(Self.avx512CoreAMX) }
    /// AVX512_BF16 (vdpbf16ps): bf16 dot products with f32 accumulation.
    public var hasAVX512BF16: Bool { has(Self.avx512CoreBF16) }
    public var hasAVX512: Bool { has(Self.avx512Core) }
    /// Whether bf16 convolutions run on native instructions. Without them oneDNN emulates
    /// bf16 through f32 and is 3–4× slower than plain f32.
    public var nativeBF16: Bool { hasAMX || hasAVX512BF16 }

    public var description: String {
        if hasAMX { return "avx512_core_amx" }
        if hasAVX512BF16 { return "avx512_core_bf16" }
        if has(dnnl_cpu_isa_avx512_core_vnni.rawValue) { return "avx512_core_vnni" }
        if hasAVX512 { return "avx512_core" }
        if has(dnnl_cpu_isa_avx2_vnni.rawValue) { return "avx2_vnni" }
        if has(Self.avx2) { return "avx2" }
        return "isa 0x\(String(raw, radix: 16))"
    }
}

/// The precision a user asks for.
public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The faster of bf16 and fp32 on this CPU, measured on the model itself, where the CPU
    /// computes bf16 natively; fp32 elsewhere. Native bf16 is not always faster: on a 2-core
    /// Zen 4 EPYC (AVX512_BF16) bf16 ran W1 at 2.0× fp32, on a 2-core Emerald Rapids guest
    /// without AMX (same oneDNN ISA) at 0.70×, so no rule read off the ISA fits both.
    case auto
    /// torchvision's results: f32 everywhere.
    case fp32
    /// bf16 convolutions and FC layers (f32 accumulation); an error without native bf16.
    case bf16

    public var description: String { rawValue }

    /// What may run on a CPU with this ISA, and why (for the start-up line and every JSON):
    /// one precision, or for `auto` on a CPU with native bf16 both, bf16 first, for the
    /// caller to measure.
    public func candidates(on isa: CPUISA) throws -> [ResolvedPrecision] {
        switch self {
        case .fp32:
            return [ResolvedPrecision(dtype: .f32, reason: "fp32 requested")]
        case .bf16:
            guard isa.nativeBF16 else { throw TensorError.unsupportedPrecision(requested: rawValue, isa: isa.description, missing: "avx512_bf16 or amx_bf16") }
            return [ResolvedPrecision(dtype: .bf16, reason: "bf16 requested; oneDNN ISA \(isa)")]
        case .auto:
            guard isa.nativeBF16 else {
                return [ResolvedPrecision(dtype: .f32, reason: "auto: oneDNN ISA \(isa) has no native bf16 (needs avx512_bf16 or amx_bf16)")]
            }
            let why = "auto: oneDNN ISA \(isa) computes bf16 natively; to be measured against fp32"
            return [ResolvedPrecision(dtype: .bf16, reason: why), ResolvedPrecision(dtype: .f32, reason: why)]
        }
    }
}

public struct ResolvedPrecision: Sendable, Equatable, CustomStringConvertible {
    public let dtype: DType
    public let reason: String
    public init(dtype: DType, reason: String) {
        self.dtype = dtype
        self.reason = reason
    }
    /// fp32 without a request: what a model built with no precision given runs in.
    public static let fp32 = ResolvedPrecision(dtype: .f32, reason: "fp32 (the default)")
    /// "fp32" or "bf16", the name a user passes and the JSON states.
    public var name: String { dtype == .f32 ? "fp32" : "bf16" }
    public var description: String { "\(name) (\(reason))" }
}
