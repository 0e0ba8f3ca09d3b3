import Foundation
import MaskRCNN
@testable import Results
import XCTest

/// One mask of Fixtures/rle_fixtures.json, written by tools/reference/make_rle_fixtures.py
/// with pycocotools 2.0.11.
struct RLEFixture: Decodable {
    let name: String
    let height: Int
    let width: Int
    let bits: String
    let counts: String
    let area: Int
    let bbox: [Double]

    /// The mask row-major (y*width + x), 0 or 1.
    var pixels: [UInt8] {
        let bytes = [UInt8](Data(base64Encoded: bits)!)
        return (0..<(height * width)).map { i in (bytes[i >> 3] >> (7 - UInt8(i & 7))) & 1 }
    }

    static let all: [RLEFixture] = {
        struct File: Decodable { let cases: [RLEFixture] }
        let url = Bundle.module.url(forResource: "rle_fixtures", withExtension: "json", subdirectory: "Fixtures")!
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }()
}

/// An InstanceMask over the region [x0, x0+w) × [y0, y0+h) of a full row-major mask; the
/// caller makes sure no set pixel lies outside it.
func instanceMask(_ full: [UInt8], height: Int, width: Int, x0: Int, y0: Int, w: Int, h: Int) -> InstanceMask {
    var px = [UInt8](repeating: 0, count: w * h)
    for y in 0..<h { for x in 0..<w { px[y * w + x] = full[(y + y0) * width + x + x0] } }
    return InstanceMask(imageWidth: width, imageHeight: height, x0: x0, y0: y0, width: w, height: h, pixels: px)
}

/// Column-major runs the slow, obvious way, independent of the encoder under test.
func naiveCounts(_ full: [UInt8], height: Int, width: Int) -> [UInt32] {
    var counts: [UInt32] = []
    var value: UInt8 = 0, run: UInt32 = 0
    for x in 0..<width { for y in 0..<height {
        let v: UInt8 = full[y * width + x] != 0 ? 1 : 0
        if v != value { counts.append(run); run = 0; value = v }
        run += 1
    } }
    counts.append(run)
    return counts
}

final class RLETests: XCTestCase {
    func testFixturesLoaded() {
        XCTAssertGreaterThanOrEqual(RLEFixture.all.count, 30)
        XCTAssertTrue(RLEFixture.all.contains { $0.name == "blobs_noise_300x400" })
    }

    func testEncodeMatchesPycocotools() {
        for f in RLEFixture.all {
            let rle = rleEncode(rowMajor: f.pixels, height: f.height, width: f.width)
            XCTAssertEqual(rleToString(rle), f.counts, f.name)
            XCTAssertEqual(rle.counts, naiveCounts(f.pixels, height: f.height, width: f.width), f.name)
            XCTAssertEqual(rleArea(rle), f.area, f.name)
            XCTAssertEqual(rleToBbox(rle).xywh, f.bbox, f.name)
        }
    }

    /// The region-only encoder gives the same string whatever region holds the mask: the
    /// whole image, the tight box, the box padded by a margin, or an empty region.
    func testInstanceMaskEncodeMatchesPycocotoolsForEveryRegion() {
        for f in RLEFixture.all {
            let full = f.pixels
            let bb = f.bbox.map { Int($0) }
            var regions: [(Int, Int, Int, Int)] = [(0, 0, f.width, f.height)]
            if f.area > 0 {
                regions.append((bb[0], bb[1], bb[2], bb[3]))
                let x0 = max(bb[0] - 2, 0), y0 = max(bb[1] - 1, 0)
                regions.append((x0, y0, min(bb[0] + bb[2] + 3, f.width) - x0, min(bb[1] + bb[3] + 1, f.height) - y0))
            } else {
                regions.append((0, 0, 0, 0))
                regions.append((f.width / 2, f.height / 2, 0, 0))
            }
            for (x0, y0, w, h) in regions {
                let m = instanceMask(full, height: f.height, width: f.width, x0: x0, y0: y0, w: w, h: h)
                XCTAssertEqual(m.area, f.area, "\(f.name) region \(x0),\(y0) \(w)×\(h) lost pixels")
                let rle = rleEncode(m)
                XCTAssertEqual(rle.string, f.counts, "\(f.name) region \(x0),\(y0) \(w)×\(h)")
                XCTAssertEqual(rle, RLE(m))
            }
        }
    }

    func testStringParsesBackAndDecodesBitExact() throws {
        for f in RLEFixture.all {
            let rle = try rleFromString(f.counts, height: f.height, width: f.width)
            XCTAssertEqual(rle.counts, naiveCounts(f.pixels, height: f.height, width: f.width), f.name)
            XCTAssertEqual(rleDecode(rle), f.pixels, f.name)
            XCTAssertEqual(rle.area, f.area, f.name)
            XCTAssertEqual(rle.bbox.xywh, f.bbox, f.name)
            // Back to an InstanceMask over the tight box, and to the same string again.
            let m = rleDecodeInstanceMask(rle)
            XCTAssertEqual([m.x0, m.y0, m.width, m.height].map(Double.init), f.area > 0 ? f.bbox : [0, 0, 0, 0], f.name)
            XCTAssertEqual(m.area, f.area, f.name)
            XCTAssertEqual(rleEncode(m).string, f.counts, f.name)
        }
    }

    /// Random masks in random regions of random images against the naive encoder; covers
    /// counts well past one 5-bit group and negative deltas.
    func testRandomRegionsAgainstNaiveEncoder() throws {
        var rng = SplitMix64(seed: 7)
        for trial in 0..<300 {
            let W = Int(rng.next() % 60) + 1, H = Int(rng.next() % 60) + 1
            let w = Int(rng.next() % UInt64(W + 1)), h = Int(rng.next() % UInt64(H + 1))
            let x0 = Int(rng.next() % UInt64(W - w + 1)), y0 = Int(rng.next() % UInt64(H - h + 1))
            let density = Double(rng.next() % 100) / 100
            let px = (0..<(w * h)).map { _ in UInt8(Double(rng.next() % 1000) / 1000 < density ? 1 : 0) }
            let m = InstanceMask(imageWidth: W, imageHeight: H, x0: x0, y0: y0, width: w, height: h, pixels: px)
            var full = [UInt8](repeating: 0, count: W * H)
            for y in 0..<H { for x in 0..<W { full[y * W + x] = m[x, y] } }
            let rle = rleEncode(m)
            XCTAssertEqual(rle.counts, naiveCounts(full, height: H, width: W), "trial \(trial)")
            XCTAssertEqual(rle.counts.reduce(0) { $0 + Int($1) }, W * H)
            let back = try rleFromString(rle.string, height: H, width: W)
            XCTAssertEqual(back, rle, "trial \(trial)")
            XCTAssertEqual(rleDecode(back), full, "trial \(trial)")
            XCTAssertEqual(rle.area, m.area, "trial \(trial)")
        }
    }

    /// Known values of the string form, worked by hand from maskApi.c: 25 needs two groups
    /// because its bit 4 would read as a sign; counts from the fourth on are deltas.
    func testStringFormHandWorked() throws {
        let full = try RLE(height: 5, width: 5, counts: [0, 25])
        XCTAssertEqual(full.string, "0i0")
        let r = try RLE(height: 1, width: 100, counts: [10, 20, 30, 15, 25])
        // 10 → ":"; 20 → "d0" (0x14 has bit 4 set, so a 0 group follows); 30 → "n0";
        // 15 - 20 = -5 → 0x1b → "K";
        // 25 - 30 = -5 → "K".
        XCTAssertEqual(r.string, ":d0n0KK")
        XCTAssertEqual(try rleFromString(":d0n0KK", height: 1, width: 100), r)
        let big = try RLE(height: 1 << 12, width: 1 << 12, counts: [0, 1 << 24])
        XCTAssertEqual(try rleFromString(big.string, height: 1 << 12, width: 1 << 12), big)
    }

    func testMalformedStringsAreRejected() {
        func reason(_ s: String, _ h: Int, _ w: Int) -> ResultsError? {
            do { _ = try rleFromString(s, height: h, width: w); return nil } catch { return error as? ResultsError }
        }
        guard case .invalidRLEString(_, offset: 1)? = reason("0p", 1, 1) else { return XCTFail("byte 'p' accepted") }
        guard case .invalidRLEString(_, offset: 0)? = reason("i", 5, 5) else { return XCTFail("cut-off value accepted") }
        guard case .invalidRLEString? = reason(String(repeating: "o", count: 13) + "0", 1, 1) else {
            return XCTFail("overlong value accepted")
        }
        guard case .invalidRLECounts? = reason("0i0", 4, 5) else { return XCTFail("counts not matching the size accepted") }
        // A delta that takes a count below zero.
        guard case .invalidRLEString? = reason("12K", 1, 1) else { return XCTFail("negative count accepted") }
        XCTAssertThrowsError(try RLE(height: 2, width: 2, counts: [1, 2]))
        XCTAssertNoThrow(try RLE(height: 2, width: 2, counts: [1, 2, 1]))
    }

    func testErrorsDescribeThemselves() {
        let e = ResultsError.invalidRLEString(reason: "byte 0x70 outside '0'...'o'", offset: 3)
        XCTAssertEqual(e.description, "invalid COCO RLE string at byte 3: byte 0x70 outside '0'...'o'")
        XCTAssertTrue(ResultsError.io(path: "/x", operation: "open", errno: ENOENT).description.contains("/x: open failed"))
    }
}

/// Deterministic random numbers for tests (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
