import MaskRCNN
@testable import Results
import XCTest

/// Pixels whose centres lie inside any of the polygons (even-odd per polygon, union over
/// polygons). Vertices sit on pixel corners, so no centre lies on an edge.
func rasterize(_ polygons: [[Float]], width: Int, height: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: width * height)
    for poly in polygons {
        let n = poly.count / 2
        for y in 0..<height { for x in 0..<width {
            let px = Float(x) + 0.5, py = Float(y) + 0.5
            var inside = false
            var j = n - 1
            for i in 0..<n {
                let xi = poly[2 * i], yi = poly[2 * i + 1], xj = poly[2 * j], yj = poly[2 * j + 1]
                if (yi > py) != (yj > py), px < (xj - xi) * (py - yi) / (yj - yi) + xi { inside.toggle() }
                j = i
            }
            if inside { out[y * width + x] = 1 }
        } }
    }
    return out
}

/// Fills the holes of a mask: background pixels not 8-connected to the image border (the
/// set pixels are taken as 4-connected, so the background is 8-connected).
func filledHoles(_ m: [UInt8], width: Int, height: Int) -> [UInt8] {
    var outside = [Bool](repeating: false, count: width * height)
    var stack: [(Int, Int)] = []
    for x in 0..<width { stack.append((x, 0)); stack.append((x, height - 1)) }
    for y in 0..<height { stack.append((0, y)); stack.append((width - 1, y)) }
    while let (x, y) = stack.popLast() {
        guard x >= 0, y >= 0, x < width, y < height, !outside[y * width + x], m[y * width + x] == 0 else { continue }
        outside[y * width + x] = true
        for dy in -1...1 { for dx in -1...1 where dx != 0 || dy != 0 { stack.append((x + dx, y + dy)) } }
    }
    return (0..<(width * height)).map { outside[$0] ? 0 : 1 }
}

final class ContourTests: XCTestCase {
    func testSquareAndLShape() {
        // 6×6 image, pixels (1,1),(2,1),(3,1),(1,2),(1,3),(1,4): an L.
        var full = [UInt8](repeating: 0, count: 36)
        for (x, y) in [(1, 1), (2, 1), (3, 1), (1, 2), (1, 3), (1, 4)] { full[y * 6 + x] = 1 }
        let m = instanceMask(full, height: 6, width: 6, x0: 1, y0: 1, w: 3, h: 4)
        XCTAssertEqual(outerContours(m), [[1, 1, 4, 1, 4, 2, 2, 2, 2, 5, 1, 5]])
        let one = InstanceMask(imageWidth: 4, imageHeight: 4, x0: 3, y0: 3, width: 1, height: 1, pixels: [1])
        XCTAssertEqual(outerContours(one), [[3, 3, 4, 3, 4, 4, 3, 4]])
        let empty = InstanceMask(imageWidth: 4, imageHeight: 4, x0: 0, y0: 0, width: 0, height: 0, pixels: [])
        XCTAssertEqual(outerContours(empty), [])
    }

    /// Diagonal neighbours are separate components; a ring gives one polygon (its hole cannot
    /// be a COCO polygon).
    func testSaddlesAndHoles() {
        let diag = InstanceMask(imageWidth: 2, imageHeight: 2, x0: 0, y0: 0, width: 2, height: 2, pixels: [1, 0, 0, 1])
        XCTAssertEqual(outerContours(diag), [[0, 0, 1, 0, 1, 1, 0, 1], [1, 1, 2, 1, 2, 2, 1, 2]])
        let anti = InstanceMask(imageWidth: 2, imageHeight: 2, x0: 0, y0: 0, width: 2, height: 2, pixels: [0, 1, 1, 0])
        XCTAssertEqual(outerContours(anti), [[1, 0, 2, 0, 2, 1, 1, 1], [0, 1, 1, 1, 1, 2, 0, 2]])
        let ring = InstanceMask(imageWidth: 3, imageHeight: 3, x0: 0, y0: 0, width: 3, height: 3,
                                pixels: [1, 1, 1, 1, 0, 1, 1, 1, 1])
        XCTAssertEqual(outerContours(ring), [[0, 0, 3, 0, 3, 3, 0, 3]])
    }

    /// Every fixture mask and random masks: the polygons enclose exactly the mask with its
    /// holes filled, and each is a closed clockwise ring of axis-parallel edges.
    func testPolygonsRasterizeBackToTheMask() {
        var cases: [(String, [UInt8], Int, Int)] = RLEFixture.all.filter { $0.height * $0.width <= 2000 }
            .map { ($0.name, $0.pixels, $0.height, $0.width) }
        var rng = SplitMix64(seed: 11)
        for i in 0..<60 {
            let w = Int(rng.next() % 20) + 1, h = Int(rng.next() % 20) + 1
            cases.append(("random \(i)", (0..<(w * h)).map { _ in UInt8(rng.next() % 100 < 45 ? 1 : 0) }, h, w))
        }
        for (name, full, h, w) in cases {
            let m = instanceMask(full, height: h, width: w, x0: 0, y0: 0, w: w, h: h)
            let polys = outerContours(m)
            XCTAssertEqual(rasterize(polys, width: w, height: h), filledHoles(full, width: w, height: h), name)
            for p in polys {
                XCTAssertEqual(p.count % 2, 0)
                XCTAssertGreaterThanOrEqual(p.count, 8, name)
                let n = p.count / 2
                for i in 0..<n {
                    let j = (i + 1) % n
                    XCTAssertTrue(p[2 * i] == p[2 * j] || p[2 * i + 1] == p[2 * j + 1], "\(name): diagonal edge")
                }
            }
        }
    }
}
