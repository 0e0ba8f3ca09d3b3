// Tensor: an f32 n-d array in a oneDNN memory layout (plain row-major, or a blocked
// layout such as nChw8c chosen by a convolution), in 64-byte aligned memory it owns.
import CDNNL
import Foundation

public final class Tensor: @unchecked Sendable {
    /// Logical dimensions, NCHW order for 4-D activations.
    public let shape: [Int]
    /// Physical layout as oneDNN describes it.
    let desc: dnnl_memory_desc_t
    /// The storage; its size is that of `desc` (a blocked layout pads channels).
    public let data: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Set when this tensor is a view of another's storage, which it keeps alive.
    private let base: Tensor?

    init(desc: dnnl_memory_desc_t, shape: [Int]) {
        self.shape = shape
        self.desc = desc
        base = nil
        byteCount = max(MD.size(desc), 4)
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, byteCount) == 0, let p else {
            fatalError("Tensor: cannot allocate \(byteCount) bytes for shape \(shape)")
        }
        data = p
    }

    /// A zero-filled tensor in the plain row-major layout.
    public convenience init(zeros shape: [Int]) {
        let md = try! MD.make(shape, MD.plainTag(shape.count))
        self.init(desc: md, shape: shape)
        memset(data, 0, byteCount)
    }

    /// A plain row-major tensor holding `values`.
    public convenience init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        let md = try! MD.make(shape, MD.plainTag(shape.count))
        self.init(desc: md, shape: shape)
        values.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// Uninitialized plain tensor (callers fill every element).
    public static func uninitialized(_ shape: [Int]) -> Tensor {
        Tensor(desc: try! MD.make(shape, MD.plainTag(shape.count)), shape: shape)
    }

    private init(viewOf base: Tensor, shape: [Int]) {
        self.shape = shape
        desc = try! MD.make(shape, MD.plainTag(shape.count))
        self.base = base
        data = base.data
        byteCount = base.byteCount
    }

    deinit { if base == nil { free(data) } }

    public var count: Int { shape.reduce(1, *) }

    /// Whether the layout is the plain row-major one that Swift kernels index directly.
    public var isPlain: Bool { MD.equal(desc, try! MD.make(shape, MD.plainTag(shape.count))) }

    /// Elements of a plain tensor.
    public var floats: UnsafeMutableBufferPointer<Float> {
        precondition(isPlain, "Tensor.floats needs the plain layout; call plain() first")
        return UnsafeMutableBufferPointer(start: data.assumingMemoryBound(to: Float.self), count: count)
    }

    /// This tensor in the plain layout: itself when already plain, else a reordered copy.
    public func plain() throws -> Tensor {
        if isPlain { return self }
        return try reordered(to: MD.make(shape, MD.plainTag(shape.count)))
    }

    /// A copy in layout `md` (same logical shape).
    func reordered(to md: dnnl_memory_desc_t) throws -> Tensor {
        if MD.equal(md, desc) { return self }
        return try copy(to: md)
    }

    /// A new tensor with these values in layout `md`.
    func copy(to md: dnnl_memory_desc_t) throws -> Tensor {
        let out = Tensor(desc: md, shape: shape)
        try Reorder.run(from: self, to: out)
        return out
    }

    /// The values in row-major order.
    public func toArray() throws -> [Float] {
        try plain().withFloats { Array($0) }
    }

    /// Calls body with the elements of a plain tensor, keeping the storage alive meanwhile
    /// (a bare `.floats` on a temporary can outlive the tensor that owns the memory).
    public func withFloats<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(floats) }
    }

    /// The same values seen with another shape of equal element count: a view sharing
    /// storage when the layout is plain (no copy), else a plain copy.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.reduce(1, *) == count else {
            throw TensorError.invalidArgument(op: "reshape", reason: "\(shape) has \(count) elements, \(newShape) has \(newShape.reduce(1, *))")
        }
        return Tensor(viewOf: try plain(), shape: newShape)
    }
}

/// A thread-safe map from a key (op, parameters, layouts) to what was built for it, so
/// that each primitive is created once per shape and reused on every later call.
final class PrimitiveCache<Value>: @unchecked Sendable {
    private var entries: [[Int]: Value] = [:]
    private let lock = NSLock()

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
    private static let cache = PrimitiveCache<Primitive>()

    static func run(from src: Tensor, to dst: Tensor) throws {
        let prim = try cache.get(MD.key(src.desc) + [-1] + MD.key(dst.desc)) {
            var pd: dnnl_primitive_desc_t?
            var s = src.desc, d = dst.desc
            let attr = try Attr()  // user-managed scratchpad, as every primitive (DNNL.swift)
            try withExtendedLifetime(attr) {
                try check(dnnl_reorder_primitive_desc_create(&pd, &s, Engine.shared.handle, &d, Engine.shared.handle, attr.handle),
                          "dnnl_reorder_primitive_desc_create", "shape \(src.shape)")
            }
            return try Primitive(pd: pd!, what: "reorder \(src.shape)")
        }
        try prim.execute([(DNNL_ARG_FROM, src), (DNNL_ARG_TO, dst)])
    }
}

/// A layer's weights, kept as one copy: PyTorch's layout until the first primitive asks for
/// its own, then that layout; a primitive for another input size reorders from there.
/// (R50: keeping one copy instead of one per input size saved 170 MB.)
final class WeightCopy: @unchecked Sendable {
    private var tensor: Tensor
    private let lock = NSLock()

    init(_ tensor: Tensor) { self.tensor = tensor }

    var shape: [Int] { lock.withLock { tensor.shape } }

    /// The weights in the layout a new primitive wants; that becomes the kept copy.
    func reordered(to md: dnnl_memory_desc_t) throws -> Tensor {
        try lock.withLock {
            tensor = try tensor.reordered(to: md)
            return tensor
        }
    }
}
