// Host memory for tensors and oneDNN scratchpads: one owner for how big buffers are
// allocated, returned and paged in.
import Foundation

enum HostMemory {
    /// Buffers of this size and more get their own mapping (glibc's mmap threshold, fixed
    /// here) and go back to the system when freed. glibc's default threshold adapts upwards
    /// after the first large free and then serves them from a heap that never shrinks: RSS
    /// grew image after image in long batch runs.
    static let ownMappingBytes = 4 << 20
    /// x86-64's transparent huge page.
    static let hugePageBytes = 2 << 20

    /// Sets glibc's mmap threshold, once (the device calls it before weights are loaded).
    static func configure() { _ = configured }
    private static let configured: Void = {
        // (mallopt is not in Swift's Glibc module; M_MMAP_THRESHOLD is -3 in malloc.h.)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        if let sym = dlsym(nil, "mallopt") { _ = unsafeBitCast(sym, to: Mallopt.self)(-3, Int32(ownMappingBytes)) }
    }()

    private static let cache = BufferCache()

    /// `byteCount` bytes, 64-byte aligned; nil when the system refuses.
    ///
    /// A buffer with its own mapping is page-faulted in on first touch, 4 KiB at a time,
    /// every time (each image's feature maps are new mappings): on a 2-core AVX2 EPYC
    /// (Zen 3) R50 W1 fp32 spent 12% of its time in the kernel's fault path. Such buffers
    /// are 2 MiB-aligned and asked for as transparent huge pages (MADV_HUGEPAGE: Debian's
    /// THP mode is `madvise`), 512× fewer faults and fewer TLB misses in the convolutions:
    /// 2.43 → 2.13 s/image there, peak RSS 560 → 570 MB (only whole huge pages inside the
    /// buffer are advised, so the tail stays in small pages). Where THP is `never` the
    /// advice is a no-op.
    ///
    /// Freed large buffers are kept and handed to the next allocation of the same size
    /// (`BufferCache`; R50 allocates about 1 GB a image in 15 distinct sizes), which also
    /// saves the kernel's zeroing of fresh pages: clear_page was 6.4% of perf's samples, and
    /// system time fell from 3.1 s to 1.7 s for 8 inferences (same CPU), peak RSS unchanged.
    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer? {
        _ = configured
        let large = byteCount >= ownMappingBytes
        if large, let p = cache.take(byteCount) { return p }
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, large ? hugePageBytes : 64, byteCount) == 0, let p else { return nil }
        if large { _ = madvise(p, byteCount & ~(hugePageBytes - 1), MADV_HUGEPAGE) }
        return p
    }

    /// Frees a buffer `allocate` returned; `byteCount` is what it was asked for.
    static func free(_ p: UnsafeMutableRawPointer?, byteCount: Int) {
        guard let p else { return }
        if byteCount >= ownMappingBytes { cache.keep(p, byteCount) } else { Foundation.free(p) }
    }

    /// Frees every kept buffer.
    static func releaseCached() { cache.releaseAll() }

    /// Bytes kept for reuse, and bytes in use (large buffers only).
    static var cached: (held: Int, live: Int, highWater: Int) { cache.counts }
}

/// Large buffers freed and kept for reuse by the next allocation of the same size. What it
/// keeps plus what is in use never exceeds the most that was ever in use at once (a miss
/// drops kept buffers, oldest first, to stay within it), so reuse adds nothing to the peak.
final class BufferCache: @unchecked Sendable {
    private var entries: [(bytes: Int, pointer: UnsafeMutableRawPointer)] = []
    /// Bytes kept, bytes handed out and not yet returned, and the most ever handed out.
    private var held = 0, live = 0, highWater = 0
    private let lock = NSLock()

    /// A kept buffer of exactly `bytes`, or nil: the caller allocates one, counted as in use.
    func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let (hit, evicted): (UnsafeMutableRawPointer?, [UnsafeMutableRawPointer]) = lock.withLock {
            live += bytes
            if let i = entries.lastIndex(where: { $0.bytes == bytes }) {
                held -= bytes
                return (entries.remove(at: i).pointer, [])
            }
            highWater = max(highWater, live)
            var out: [UnsafeMutableRawPointer] = []
            while live + held > highWater, !entries.isEmpty {
                let e = entries.removeFirst()
                held -= e.bytes
                out.append(e.pointer)
            }
            return (nil, out)
        }
        for p in evicted { free(p) }
        return hit
    }

    /// Keeps a returned buffer (within the high-water mark by construction).
    func keep(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        lock.withLock {
            live -= bytes
            entries.append((bytes, p))
            held += bytes
        }
    }

    var counts: (held: Int, live: Int, highWater: Int) { lock.withLock { (held, live, highWater) } }

    /// Frees every kept buffer; the high-water mark starts again from what is in use.
    func releaseAll() {
        let all = lock.withLock { () -> [UnsafeMutableRawPointer] in
            defer { entries = []; held = 0; highWater = live }
            return entries.map(\.pointer)
        }
        for p in all { free(p) }
    }
}
