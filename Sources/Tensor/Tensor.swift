// Tensor: an n-d array of f32 or bf16 on a device, in a oneDNN memory layout (plain
// row-major, or a blocked layout such as nChw16c chosen by a convolution), in 64-byte
// aligned memory it owns. Swift code reads values only from host tensors (plain f32),
// which `host()` makes: the one transfer a second backend would implement.
import CDNNL
import Foundation

public final class Tensor: @unchecked Sendable {
    /// Logical dimensions, NCHW order for 4-D activations.
    public let shape: [Int]
    /// Element type (f32 or bf16).
    public let dtype: DType
    /// The device whose memory holds the values.
    public let device: Device
    /// Physical layout as oneDNN describes it.
    let desc: dnnl_memory_desc_t
    /// The storage; its size is that of `desc` (a blocked layout pads channels). Only the
    /// Tensor module touches it: host code goes through `host()` and `floats`.
    let data: UnsafeMutableRawPointer
    let byteCount: Int
    /// Set when this tensor is a view of another's storage, which it keeps alive.
    private let base: Tensor?

    init(desc: dnnl_memory_desc_t, shape: [Int], device: Device = .cpu) {
        self.shape = shape
        self.desc = desc
        self.device = device
        dtype = MD.dtype(of: desc)
        base = nil
        byteCount = max(MD.size(desc), 4)
        guard let p = HostMemory.allocate(byteCount) else {
            fatalError("Tensor: cannot allocate \(byteCount) bytes for shape \(shape)")
        }
        data = p
    }

    /// A zero-filled host tensor (plain row-major f32).
    public convenience init(zeros shape: [Int]) {
        let md = try! MD.make(shape, MD.plainTag(shape.count))
        self.init(desc: md, shape: shape)
        memset(data, 0, byteCount)
    }

    /// A host tensor (plain row-major f32) holding `values`.
    public convenience init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        let md = try! MD.make(shape, MD.plainTag(shape.count))
        self.init(desc: md, shape: shape)
        values.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// An uninitialized host tensor (plain f32; callers fill every element).
    public static func uninitialized(_ shape: [Int]) -> Tensor {
        Tensor(desc: try! MD.make(shape, MD.plainTag(shape.count)), shape: shape)
    }

    /// A plain view of the first elements of `base`'s storage (`shape` no larger than it).
    init(viewOf base: Tensor, shape: [Int]) {
        precondition(shape.reduce(1, *) <= base.count, "Tensor view \(shape) larger than \(base.shape)")
        self.shape = shape
        dtype = base.dtype
        device = base.device
        desc = try! MD.make(shape, MD.plainTag(shape.count), base.dtype)
        self.base = base
        data = base.data
        byteCount = base.byteCount
    }

    deinit { if base == nil { HostMemory.free(data, byteCount: byteCount) } }

    public var count: Int { shape.reduce(1, *) }

    /// Whether the layout is the plain row-major one (in this tensor's dtype).
    public var isPlain: Bool { MD.equal(desc, try! MD.make(shape, MD.plainTag(shape.count), dtype)) }

    /// Whether Swift code may index the values directly: plain f32 in host memory.
    public var isHost: Bool { dtype == .f32 && isPlain }

    /// Elements of a host tensor.
    public var floats: UnsafeMutableBufferPointer<Float> {
        precondition(isHost, "Tensor.floats needs a host tensor (plain f32); call host() first")
        return UnsafeMutableBufferPointer(start: data.assumingMemoryBound(to: Float.self), count: count)
    }

    /// The one transfer to host memory: these values as plain row-major f32 (itself when
    /// already so; otherwise a reorder, which also widens bf16 exactly).
    public func host() throws -> Tensor {
        if isHost { return self }
        return try copy(to: MD.make(shape, MD.plainTag(shape.count), .f32))
    }

    /// A 4-D tensor's values as f32 host memory with each pixel's channels in contiguous
    /// blocks (`ChannelBlockedLayout`: channels-last, or oneDNN's nChw8c / nChw16c): itself
    /// when already so, which every f32 convolution output is on x86 (brgconv writes
    /// channels-last on AVX-512, jit:avx2 nChw8c); otherwise a copy to channels-last. RoIAlign
    /// and the mask logits read this instead of `host()`'s transpose (P2 of an 800×1216
    /// image: 62 MB, 150–215 ms on 2 cores; on AVX2 a channels-last copy of P2–P5 cost 76 MB
    /// of peak RSS).
    public func hostChannelBlocked() throws -> Tensor {
        precondition(shape.count == 4, "hostChannelBlocked needs a 4-D tensor, not \(shape)")
        if channelBlockedLayout != nil { return self }
        return try copy(to: MD.make(shape, dnnl_acdb, .f32))
    }

    /// This tensor's layout when it is f32 and channel-blocked. Tried tag by tag: one layout
    /// can carry several tags (channels-last is also plain when C = 1 or H·W = 1, as for P6
    /// of a small image), so the first tag that matches need not be a blocked one.
    var channelBlockedLayout: ChannelBlockedLayout? {
        guard shape.count == 4, dtype == .f32 else { return nil }
        for tag in ChannelBlockedLayout.tags {
            if let md = try? MD.make(shape, tag, .f32), MD.equal(md, desc) {
                return ChannelBlockedLayout(tag: tag, channels: shape[1], height: shape[2], width: shape[3])
            }
        }
        return nil
    }

    /// The values and layout of a `hostChannelBlocked()` tensor.
    public var channelBlocked: (values: UnsafeBufferPointer<Float>, layout: ChannelBlockedLayout) {
        guard let layout = channelBlockedLayout else { preconditionFailure("Tensor.channelBlocked needs hostChannelBlocked() first") }
        return (UnsafeBufferPointer(start: data.assumingMemoryBound(to: Float.self), count: byteCount / 4), layout)
    }

    /// These values in element type `dtype`, in oneDNN's layout for it (the same layout
    /// when only the type changes). f32 → bf16 rounds to nearest even.
    public func converted(to dtype: DType) throws -> Tensor {
        if dtype == self.dtype { return self }
        var md = desc
        md.data_type = dtype.dnnl
        if md.format_kind == dnnl_blocked {
            // Strides stay in elements, so the same blocked layout describes the new type.
            return try copy(to: md)
        }
        return try copy(to: MD.make(shape, MD.plainTag(shape.count), dtype))
    }

    /// This tensor in its dtype's plain layout.
    func plain() throws -> Tensor {
        if isPlain { return self }
        return try reordered(to: MD.make(shape, MD.plainTag(shape.count), dtype))
    }

    /// A copy in layout `md` (same logical shape).
    func reordered(to md: dnnl_memory_desc_t) throws -> Tensor {
        if MD.equal(md, desc) { return self }
        return try copy(to: md)
    }

    /// A new tensor with these values in layout `md`.
    func copy(to md: dnnl_memory_desc_t) throws -> Tensor {
        let out = Tensor(desc: md, shape: shape, device: device)
        try Reorder.run(from: self, to: out)
        return out
    }

    /// The values in row-major order, as f32.
    public func toArray() throws -> [Float] {
        try host().withFloats { Array($0) }
    }

    /// Calls body with the elements of a host tensor, keeping the storage alive meanwhile
    /// (a bare `.floats` on a temporary can outlive the tensor that owns the memory).
    public func withFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(floats) }
    }

    /// The same values seen with another shape of equal element count: a view sharing
    /// storage when the layout is plain (no copy), else a plain copy; the dtype is kept.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.reduce(1, *) == count else {
            throw TensorError.invalidArgument(op: "reshape", reason: "\(shape) has \(count) elements, \(newShape) has \(newShape.reduce(1, *))")
        }
        return Tensor(viewOf: try plain(), shape: newShape)
    }
}

/// A 4-D f32 layout in which each pixel's channels lie in contiguous blocks: channels-last
/// (one block of all C), or oneDNN's nChw8c / nChw16c (channels padded to the block).
/// Element (n, c, y, x) is at n·imageStride + (c / block)·blockStride + (y·W + x)·block + c % block.
public struct ChannelBlockedLayout: Sendable, Equatable {
    let tag: dnnl_format_tag_t
    public let block: Int
    public let blockStride: Int
    public let imageStride: Int
    public let width: Int

    static let tags = [dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b]

    init?(tag: dnnl_format_tag_t, channels c: Int, height h: Int, width w: Int) {
        self.tag = tag
        width = w
        switch tag {
        case dnnl_acdb:
            (block, blockStride, imageStride) = (c, 0, h * w * c)
        case dnnl_aBcd8b, dnnl_aBcd16b:
            let b = tag == dnnl_aBcd8b ? 8 : 16
            (block, blockStride, imageStride) = (b, h * w * b, (c + b - 1) / b * b * h * w)
        default:
            return nil
        }
    }

    /// Channel blocks per pixel.
    public func blocks(channels c: Int) -> Int { (c + block - 1) / block }

    @inline(__always) public func offset(n: Int, c: Int, y: Int, x: Int) -> Int {
        n * imageStride + (c / block) * blockStride + (y * width + x) * block + c % block
    }
}

/// A thread-safe map from a key (op, parameters, layouts) to what was built for it, so
/// that each primitive is created once per shape and reused on every later call.
final class PrimitiveCache<Value>: @unchecked Sendable {
    private var entries: [[Int]: Value] = [:]
    private let lock = NSLock()

    func peek(_ key: [Int]) -> Value? { lock.withLock { entries[key] } }

    var values: [Value] { lock.withLock { Array(entries.values) } }

    func get(_ key: [Int], create: () throws -> Value) rethrows -> Value {
        lock.lock()
        if let v = entries[key] { lock.unlock(); return v }
        lock.unlock()
        let v = try create()
        lock.lock()
        defer { lock.unlock() }
        if let existing = entries[key] { return existing }
        entries[key] = v
        return v
    }
}

/// Layout conversions (oneDNN reorders), cached by both layouts.
enum Reorder {
    static func run(from src: Tensor, to dst: Tensor) throws {
        let device = src.device
        let prim = try device.primitives.get([0] + MD.key(src.desc) + [-1] + MD.key(dst.desc)) {
            var pd: dnnl_primitive_desc_t?
            var s = src.desc, d = dst.desc
            let attr = try Attr()  // user-managed scratchpad, as every primitive (DNNL.swift)
            try withExtendedLifetime(attr) {
                try check(dnnl_reorder_primitive_desc_create(&pd, &s, device.handle, &d, device.handle, attr.handle),
                          "dnnl_reorder_primitive_desc_create", "shape \(src.shape)")
            }
            return try Primitive(pd: pd!, device: device, what: "reorder \(src.shape)")
        }
        try prim.execute([(DNNL_ARG_FROM, src), (DNNL_ARG_TO, dst)])
    }
}

/// A layer's weights, kept as one copy: PyTorch's layout until the first primitive asks for
/// its own, then that layout (and type); a primitive for another input size reorders from
/// there. (R50: keeping one copy instead of one per input size saved 170 MB; a bf16 model
/// keeps only bf16 weights, 85 MB.) A model runs in one precision, so once narrowed to bf16
/// the weights refuse to serve an f32 primitive rather than widen rounded values silently.
///
/// Winograd's weights are a transform (oneDNN's `wino` format), which oneDNN reorders only
/// from the plain layout and never back: each is derived through a temporary plain copy and
/// kept beside the working copy, once per distinct format.
final class WeightCopy: @unchecked Sendable {
    private var tensor: Tensor
    private var transformed: [Tensor] = []
    private let lock = NSLock()

    init(_ tensor: Tensor) { self.tensor = tensor }

    var shape: [Int] { lock.withLock { tensor.shape } }

    /// The weights in the layout a new primitive wants; that becomes the kept copy (a
    /// winograd transform is kept beside it instead).
    func reordered(to md: dnnl_memory_desc_t, what: @autoclosure () -> String) throws -> Tensor {
        try lock.withLock {
            if md.format_kind == dnnl_format_kind_wino {
                if let t = transformed.first(where: { MD.equal($0.desc, md) }) { return t }
                let t = try plainF32().copy(to: md)
                transformed.append(t)
                return t
            }
            if tensor.dtype == .bf16, MD.dtype(of: md) == .f32 {
                throw TensorError.invalidArgument(op: what(), reason: "weights were narrowed to bf16 by an earlier bf16 call; an fp32 run needs a model loaded for fp32")
            }
            tensor = try tensor.reordered(to: md)
            return tensor
        }
    }

    /// A temporary f32 copy in the plain layout `tag` (the source of a transform segd
    /// computes itself).
    func copy(tag: dnnl_format_tag_t) throws -> Tensor {
        try lock.withLock { try tensor.copy(to: MD.make(tensor.shape, tag, .f32)) }
    }

    private func plainF32() throws -> Tensor {
        try tensor.copy(to: MD.make(tensor.shape, MD.plainTag(tensor.shape.count), .f32))
    }
}
