// The oneDNN engine, streams and the one place where oneDNN status codes are checked.
import CDNNL
import Foundation

/// Errors of the Tensor module, with the operation and shapes a user needs to report a bug.
public enum TensorError: Error, CustomStringConvertible {
    case dnnl(status: dnnl_status_t, call: String, context: String)
    case shapeMismatch(op: String, expected: [Int], got: [Int])
    case invalidArgument(op: String, reason: String)
    case unsupportedPrecision(requested: String, isa: String, missing: String)

    public var description: String {
        switch self {
        case let .dnnl(status, call, context):
            return "oneDNN \(call) failed (\(Self.name(status)))\(context.isEmpty ? "" : " for \(context)")"
        case let .shapeMismatch(op, expected, got):
            return "\(op): expected shape \(expected), got \(got)"
        case let .invalidArgument(op, reason):
            return "\(op): \(reason)"
        case let .unsupportedPrecision(requested, isa, missing):
            return "precision \(requested) needs native bf16 (\(missing)); this CPU's oneDNN ISA is \(isa) (emulated bf16 is 3–4× slower than fp32: use fp32 or auto)"
        }
    }

    static func name(_ s: dnnl_status_t) -> String {
        switch s {
        case dnnl_out_of_memory: return "out of memory"
        case dnnl_invalid_arguments: return "invalid arguments"
        case dnnl_unimplemented: return "unimplemented"
        case dnnl_iterator_ends: return "iterator ends"
        case dnnl_runtime_error: return "runtime error"
        case dnnl_not_required: return "not required"
        default: return "status \(s.rawValue)"
        }
    }
}

/// Checks a oneDNN return code; every oneDNN call in segd goes through here.
@inline(__always)
func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String, _ context: @autoclosure () -> String = "") throws {
    if status != dnnl_success {
        throw TensorError.dnnl(status: status, call: call(), context: context())
    }
}

/// A compute device: the oneDNN CPU engine, its pool of streams and the primitive cache of
/// stateless ops (reorders, pooling, resampling). Every tensor and layer belongs to one;
/// host code reaches a tensor's values only through `Tensor.host()`, so a second backend
/// (CUDA) is a second `Device` kind, not an edit across the model.
///
/// oneDNN streams must not be used by two threads at once, while pipeline stages run on
/// their own queues, so each execution borrows a stream from the pool (there are at most
/// as many as threads that ever ran a primitive).
public final class Device: @unchecked Sendable, CustomStringConvertible {
    /// The CPU, as oneDNN sees it.
    public static let cpu: Device = {
        do { return try Device() } catch { fatalError("cannot create the oneDNN CPU engine: \(error)") }
    }()

    let handle: dnnl_engine_t
    /// The instruction set oneDNN dispatches its kernels for on this machine.
    public let isa: CPUISA
    let primitives = PrimitiveCache<Primitive>()
    /// Where 3×3 stride-1 f32 convolutions may use winograd (Conv2d); `.measured` unless a
    /// caller needs the direct method's exact arithmetic.
    public var winograd: WinogradPolicy {
        get { lock.withLock { winogradPolicy } }
        set { lock.withLock { winogradPolicy = newValue } }
    }
    private var winogradPolicy: WinogradPolicy = .measured
    private var freeStreams: [dnnl_stream_t] = []
    private let lock = NSLock()

    private init() throws {
        HostMemory.configure()
        var e: dnnl_engine_t?
        try check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create")
        handle = e!
        isa = CPUISA(dnnl_get_effective_cpu_isa())
    }

    deinit {
        for s in freeStreams { dnnl_stream_destroy(s) }
        dnnl_engine_destroy(handle)
    }

    /// Gives back the memory kept for reuse (freed feature maps): an idle daemon's RSS falls
    /// to what its model holds.
    public func releaseCachedMemory() { HostMemory.releaseCached() }

    public var description: String { "cpu (oneDNN \(Self.oneDNNVersion), \(isa))" }

    public static var oneDNNVersion: String {
        guard let v = dnnl_version()?.pointee else { return "?" }
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    func withStream<R>(_ body: (dnnl_stream_t) throws -> R) throws -> R {
        lock.lock()
        var stream = freeStreams.popLast()
        lock.unlock()
        if stream == nil {
            var s: dnnl_stream_t?
            try check(dnnl_stream_create(&s, handle, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
            stream = s
        }
        defer {
            lock.lock()
            freeStreams.append(stream!)
            lock.unlock()
        }
        return try body(stream!)
    }
}

/// A created primitive and its descriptor (both freed together).
final class Primitive: @unchecked Sendable {
    let device: Device
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t
    /// Scratchpad the primitive needs per execution (user-managed; 0 when none).
    let scratchpadBytes: Int

    /// Takes ownership of `pd`.
    init(pd: dnnl_primitive_desc_t, device: Device, what: String) throws {
        self.device = device
        var p: dnnl_primitive_t?
        let status = dnnl_primitive_create(&p, pd)
        if status != dnnl_success {
            dnnl_primitive_desc_destroy(pd)
            throw TensorError.dnnl(status: status, call: "dnnl_primitive_create", context: what)
        }
        self.pd = pd
        self.primitive = p!
        var md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)!.pointee
        scratchpadBytes = dnnl_memory_desc_get_size(&md)
    }

    /// Creates the descriptor from an op descriptor (any `dnnl_*_desc_t`), then the primitive.
    static func make<D>(_ desc: D, attr: Attr?, on device: Device, what: String) throws -> Primitive {
        var desc = desc
        var pd: dnnl_primitive_desc_t?
        let attr = try attr ?? Attr()
        try withExtendedLifetime(attr) {
            try withUnsafePointer(to: &desc) { p in
                try check(dnnl_primitive_desc_create(&pd, p, attr.handle, device.handle, nil),
                          "dnnl_primitive_desc_create", what)
            }
        }
        return try Primitive(pd: pd!, device: device, what: what)
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(pd)
    }

    /// oneDNN's name for the implementation it chose, e.g. `brgconv:avx512_core_bf16`.
    var implementation: String {
        var p: UnsafePointer<CChar>?
        guard dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &p) == dnnl_success, let p else { return "?" }
        return String(cString: p)
    }

    func md(_ what: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        dnnl_primitive_desc_query_md(pd, what, index)!.pointee
    }

    /// Runs the primitive on (argument, tensor) pairs and waits for it.
    func execute(_ args: [(Int32, Tensor)]) throws {
        var memories: [dnnl_memory_t?] = []
        memories.reserveCapacity(args.count)
        defer { for m in memories { dnnl_memory_destroy(m) } }
        var execArgs: [dnnl_exec_arg_t] = []
        for (arg, t) in args {
            var m: dnnl_memory_t?
            var d = t.desc
            try check(dnnl_memory_create(&m, &d, device.handle, t.data), "dnnl_memory_create")
            memories.append(m)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: m))
        }
        // User-managed scratchpad, one per execution. oneDNN's library-managed one is a
        // thread_local of the thread that created the primitive (this Debian build has
        // DNNL_ENABLE_CONCURRENT_EXEC off); pipeline stages run on dispatch queues whose
        // threads change between calls, and a primitive executed on another thread found a
        // null scratchpad (memset(NULL) in convolutions, segd batch, OMP_NUM_THREADS=1).
        var scratchpad: UnsafeMutableRawPointer?
        defer { HostMemory.free(scratchpad, byteCount: scratchpadBytes) }
        if scratchpadBytes > 0 {
            scratchpad = HostMemory.allocate(scratchpadBytes)
            guard scratchpad != nil else {
                throw TensorError.dnnl(status: dnnl_out_of_memory, call: "scratchpad", context: "\(scratchpadBytes) bytes")
            }
            var m: dnnl_memory_t?
            var d = md(dnnl_query_scratchpad_md)
            try check(dnnl_memory_create(&m, &d, device.handle, scratchpad), "dnnl_memory_create")
            memories.append(m)
            execArgs.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: m))
        }
        try device.withStream { stream in
            try check(dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs), "dnnl_primitive_execute")
            try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
        }
    }
}

/// Memory descriptor helpers.
enum MD {
    static func dims(_ shape: [Int]) -> [dnnl_dim_t] {
        var d = [dnnl_dim_t](repeating: 0, count: Int(DNNL_MAX_NDIMS))
        for (i, v) in shape.enumerated() { d[i] = dnnl_dim_t(v) }
        return d
    }

    static func make(_ shape: [Int], _ tag: dnnl_format_tag_t, _ dtype: DType = .f32) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        try check(dnnl_memory_desc_init_by_tag(&md, Int32(shape.count), dims(shape), dtype.dnnl, tag),
                  "dnnl_memory_desc_init_by_tag", "shape \(shape)")
        return md
    }

    static func plainTag(_ rank: Int) -> dnnl_format_tag_t {
        switch rank {
        case 1: return dnnl_a
        case 2: return dnnl_ab
        case 3: return dnnl_abc
        case 4: return dnnl_abcd
        case 5: return dnnl_abcde
        default: return dnnl_a
        }
    }

    static func any(_ shape: [Int], _ dtype: DType = .f32) throws -> dnnl_memory_desc_t { try make(shape, dnnl_format_tag_any, dtype) }

    static func dtype(of md: dnnl_memory_desc_t) -> DType { md.data_type == dnnl_bf16 ? .bf16 : .f32 }

    /// The 4-D layouts oneDNN picks for activations on CPUs (plain, channels-last, blocked).
    static let activationTags: [dnnl_format_tag_t] = [dnnl_abcd, dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b, dnnl_aBcd4b, dnnl_aBcd32b]

    /// The format tag of a 4-D descriptor, when it is one of `activationTags`.
    static func tag(of md: dnnl_memory_desc_t) -> dnnl_format_tag_t? {
        guard md.ndims == 4 else { return nil }
        let shape = withUnsafeBytes(of: md.dims) { Array($0.bindMemory(to: dnnl_dim_t.self).prefix(4)).map { Int($0) } }
        return activationTags.first { (try? make(shape, $0, dtype(of: md))).map { equal($0, md) } ?? false }
    }

    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func size(_ md: dnnl_memory_desc_t) -> Int {
        var m = md
        return dnnl_memory_desc_get_size(&m)
    }

    /// A hashable identity of a memory descriptor (dims + layout), for primitive caches.
    static func key(_ md: dnnl_memory_desc_t) -> [Int] {
        var k: [Int] = [Int(md.ndims), Int(md.format_kind.rawValue), Int(md.data_type.rawValue)]
        withUnsafeBytes(of: md.dims) { b in
            let p = b.bindMemory(to: dnnl_dim_t.self)
            for i in 0..<Int(md.ndims) { k.append(Int(p[i])) }
        }
        if md.format_kind != dnnl_blocked {
            // Winograd's (and RNN's) formats carry their parameters outside the dims: two
            // wino formats of one weight shape differ there (the 2×3 and 4×3 kernels'), and a
            // reorder cached for one wrote garbage into the other.
            withUnsafeBytes(of: md.format_desc) { b in
                for i in stride(from: 0, to: b.count - 7, by: 8) { k.append(Int(b.loadUnaligned(fromByteOffset: i, as: Int64.self))) }
            }
            return k
        }
        if md.format_kind == dnnl_blocked {
            let blk = md.format_desc.blocking
            withUnsafeBytes(of: blk.strides) { b in
                let p = b.bindMemory(to: dnnl_dim_t.self)
                for i in 0..<Int(md.ndims) { k.append(Int(p[i])) }
            }
            k.append(Int(blk.inner_nblks))
            withUnsafeBytes(of: blk.inner_blks) { b in
                let p = b.bindMemory(to: dnnl_dim_t.self)
                for i in 0..<Int(blk.inner_nblks) { k.append(Int(p[i])) }
            }
            withUnsafeBytes(of: blk.inner_idxs) { b in
                let p = b.bindMemory(to: dnnl_dim_t.self)
                for i in 0..<Int(blk.inner_nblks) { k.append(Int(p[i])) }
            }
        }
        return k
    }
}

/// Owns a primitive attribute (post-ops), freed on deinit.
final class Attr {
    let handle: dnnl_primitive_attr_t

    init(sum: Bool = false, relu: Bool = false) throws {
        var a: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&a), "dnnl_primitive_attr_create")
        handle = a!
        // Scratchpad passed at execution (Primitive.execute): see the note there.
        try check(dnnl_primitive_attr_set_scratchpad_mode(handle, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")
        if sum || relu {
            var po: dnnl_post_ops_t?
            try check(dnnl_post_ops_create(&po), "dnnl_post_ops_create")
            defer { dnnl_post_ops_destroy(po) }
            if sum { try check(dnnl_post_ops_append_sum(po, 1.0), "dnnl_post_ops_append_sum") }
            if relu { try check(dnnl_post_ops_append_eltwise(po, 1.0, dnnl_eltwise_relu, 0, 0), "dnnl_post_ops_append_eltwise") }
            try check(dnnl_primitive_attr_set_post_ops(handle, po), "dnnl_primitive_attr_set_post_ops")
        }
    }

    deinit { dnnl_primitive_attr_destroy(handle) }
}

/// Calls `body` with a pointer to `value`, or nil when there is none (optional C arguments).
func withOptionalPointer<T, R>(to value: T?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard var v = value else { return try body(nil) }
    return try withUnsafePointer(to: &v) { try body($0) }
}
