// A read-only memory mapping of a weights file, and bounds-checked little-endian reads.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The whole file mapped read-only. Checkpoints are hundreds of MB: mapping them lets the
/// conversion read straight from the page cache instead of first copying the file into a
/// buffer, and the zip and safetensors readers need random access anyway. The mapping lives
/// exactly as long as this object; use `withBytes`, which keeps it alive for the closure
/// (ARC may otherwise release it right after its last visible use).
final class MappedFile {
    let path: String
    let count: Int
    /// nil for an empty file: mmap rejects a length of 0.
    private let base: UnsafeMutableRawPointer?

    init(path: String) throws {
        self.path = path
        let fd = try Self.retryingEINTR(path, "open") { open(path, O_RDONLY | O_CLOEXEC) }
        // The mapping stays valid after the descriptor is closed.
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.error(path, "fstat") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            let kind = (info.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
            throw WeightsError.cannotOpen(path: path, reason: "it is \(kind)")
        }
        count = Int(info.st_size)
        guard count > 0 else { base = nil; return }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else { throw Self.error(path, "mmap") }
        // Tensors are converted front to back; let the kernel read ahead.
        _ = madvise(p, count, MADV_SEQUENTIAL)
        base = p
    }

    deinit {
        if let base { munmap(base, count) }
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) {
            try body(UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: count))
        }
    }

    /// The one place errno is turned into an error for this module's system calls.
    private static func error(_ path: String, _ call: String) -> WeightsError {
        .cannotOpen(path: path, reason: "\(call): \(String(cString: strerror(errno)))")
    }

    private static func retryingEINTR(_ path: String, _ call: String, _ body: () -> Int32) throws -> Int32 {
        while true {
            let r = body()
            if r >= 0 { return r }
            if errno != EINTR { throw error(path, call) }
        }
    }
}

/// Little-endian integer reads that return nil instead of reading past the buffer, so
/// that every format reader turns a short file into an error that says what was missing.
struct LittleEndianReader {
    let bytes: UnsafeRawBufferPointer

    var count: Int { bytes.count }

    /// Whether [offset, offset + length) lies inside the buffer, without overflowing.
    func contains(_ offset: Int, _ length: Int) -> Bool {
        offset >= 0 && length >= 0 && offset <= bytes.count && length <= bytes.count - offset
    }

    func u8(_ offset: Int) -> UInt8? { contains(offset, 1) ? bytes[offset] : nil }

    func u16(_ offset: Int) -> UInt16? { load(offset) }
    func u32(_ offset: Int) -> UInt32? { load(offset) }
    func u64(_ offset: Int) -> UInt64? { load(offset) }

    private func load<T: FixedWidthInteger>(_ offset: Int) -> T? {
        guard contains(offset, MemoryLayout<T>.size) else { return nil }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer? {
        guard contains(offset, length) else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + length])
    }
}
