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
    static func allocate(_ byteCount: Int) -> UnsafeMutableRawPointer? {
        _ = configured
        let large = byteCount >= ownMappingBytes
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, large ? hugePageBytes : 64, byteCount) == 0, let p else { return nil }
        if large { _ = madvise(p, byteCount & ~(hugePageBytes - 1), MADV_HUGEPAGE) }
        return p
    }

    static func free(_ p: UnsafeMutableRawPointer?) { Foundation.free(p) }
}
