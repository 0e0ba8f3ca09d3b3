// Host memory (Sources/Tensor/HostMemory.swift): freed large buffers are reused for the
// next allocation of the same size, and what is kept plus what is in use never exceeds the
// most ever in use at once, so reuse cannot raise the peak.
@testable import Tensor
import XCTest

final class HostMemoryTests: XCTestCase {
    let mib = 1 << 20

    func testAFreedBufferIsHandedToTheNextAllocationOfItsSize() {
        let cache = BufferCache()
        XCTAssertNil(cache.take(8 * mib), "nothing kept yet")
        let p = malloc(8 * mib)!
        cache.keep(p, 8 * mib)
        XCTAssertEqual(cache.take(8 * mib), p)
        cache.keep(p, 8 * mib)
        cache.releaseAll()
        XCTAssertEqual(cache.counts.held, 0)
        XCTAssertNil(cache.take(8 * mib), "released buffers are gone")
    }

    func testKeptAndInUseStayWithinTheHighWaterMark() {
        let cache = BufferCache()
        func allocate(_ bytes: Int) -> UnsafeMutableRawPointer { cache.take(bytes) ?? malloc(bytes)! }
        let a = allocate(8 * mib), b = allocate(16 * mib)
        XCTAssertEqual(cache.counts.highWater, 24 * mib)
        cache.keep(a, 8 * mib)
        cache.keep(b, 16 * mib)
        XCTAssertEqual(cache.counts.held, 24 * mib)
        // A size not kept: 12 in use + 24 kept would pass the mark, so the oldest go.
        let c = allocate(12 * mib)
        let n = cache.counts
        XCTAssertLessThanOrEqual(n.held + n.live, n.highWater)
        XCTAssertEqual(n.held, 0, "both kept buffers dropped: 12 + 16 > 24")
        XCTAssertEqual(n.live, 12 * mib)
        cache.keep(c, 12 * mib)
        cache.releaseAll()
        XCTAssertEqual(cache.counts.highWater, 0, "the mark restarts from what is in use")
    }

    func testTensorsReuseTheStorageOfFreedOnes() throws {
        let shape = [1, 64, 128, 160]  // 5 MiB: a buffer with its own mapping
        var first: Tensor? = Tensor.uninitialized(shape)
        let address = first!.data
        first = nil
        let second = Tensor(zeros: shape)
        XCTAssertEqual(second.data, address, "the freed feature map's memory is reused")
        XCTAssertTrue(try second.toArray().allSatisfy { $0 == 0 }, "zeros are still zeros")
        XCTAssertEqual(Int(bitPattern: second.data) % HostMemory.hugePageBytes, 0, "huge-page aligned")
    }
}
