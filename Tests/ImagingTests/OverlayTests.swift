import Foundation
import XCTest
@testable import Imaging

final class OverlayTests: XCTestCase {
    static let gray = RGB(128, 128, 128)
    var font: Font!

    override func setUpWithError() throws {
        font = try Font()
    }

    /// A disc of radius r centred in a w×h region at (x0, y0).
    func disc(x0: Int, y0: Int, width: Int, height: Int) -> OverlayMask {
        let r = min(width, height) / 2
        var pixels = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height {
            for x in 0..<width {
                let dx = x - width / 2, dy = y - height / 2
                if dx * dx + dy * dy <= r * r { pixels[y * width + x] = 1 }
            }
        }
        return OverlayMask(x0: x0, y0: y0, width: width, height: height, pixels: pixels)
    }

    func instance(_ box: (Float, Float, Float, Float), label: String = "circle 97%", classIndex: Int = 0,
                  mask: OverlayMask? = nil) -> OverlayInstance {
        OverlayInstance(mask: mask, box: OverlayBox(x1: box.0, y1: box.1, x2: box.2, y2: box.3),
                        label: label, classIndex: classIndex)
    }

    func draw(_ instances: [OverlayInstance], width: Int = 200, height: Int = 150,
              style: OverlayStyle = OverlayStyle()) throws -> Image {
        var image = Image(width: width, height: height, fill: Self.gray)
        try image.drawOverlay(instances, font: font, style: style)
        return image
    }

    func count(_ image: Image, rows: Range<Int>? = nil, cols: Range<Int>? = nil,
               where predicate: (RGB) -> Bool) -> Int {
        var n = 0
        for y in rows ?? 0..<image.height {
            for x in cols ?? 0..<image.width where predicate(image[x, y]) { n += 1 }
        }
        return n
    }

    let nearWhite = { (p: RGB) in p.r > 200 && p.g > 200 && p.b > 200 }
    let nearBlack = { (p: RGB) in p.r < 60 && p.g < 60 && p.b < 60 }

    func testMaskFillChangesInsideAndKeepsOutside() throws {
        let mask = disc(x0: 50, y0: 60, width: 40, height: 30)
        let style = OverlayStyle(drawContours: false, drawBoxes: false, drawLabels: false)
        let image = try draw([instance((50, 60, 90, 90), mask: mask)], style: style)
        let c = Palette.color(forClass: 0)
        let blended = RGB(UInt8((Int(c.r) + 128) / 2), UInt8((Int(c.g) + 128) / 2), UInt8((Int(c.b) + 128) / 2))
        var inside = 0
        for y in 0..<image.height {
            for x in 0..<image.width {
                if mask.contains(x, y) {
                    inside += 1
                    assertColor(image, x, y, blended, tolerance: 1)
                } else {
                    XCTAssertEqual(image[x, y], Self.gray, "outside the mask at (\(x), \(y))")
                }
            }
        }
        XCTAssertEqual(inside, mask.area)
        XCTAssertGreaterThan(inside, 600)
    }

    func testContourIsDarkerAndInsideTheMask() throws {
        let mask = disc(x0: 50, y0: 60, width: 40, height: 30)
        let image = try draw([instance((50, 60, 90, 90), mask: mask)],
                             style: OverlayStyle(drawBoxes: false, drawLabels: false))
        let edge = Palette.color(forClass: 0).adjustingBrightness(-0.5)
        XCTAssertEqual(image[55, 75], edge, "leftmost mask pixel of the middle row")
        XCTAssertNotEqual(image[70, 75], edge, "the centre is fill, not contour")
        XCTAssertEqual(image[54, 75], Self.gray, "the contour does not spill outside the mask")
        // The contour is closed: every row of the disc has an edge pixel at both ends.
        for y in 61..<90 {
            let row = (50..<90).filter { mask.contains($0, y) }
            guard let first = row.first, let last = row.last else { continue }
            XCTAssertEqual(image[first, y], edge, "row \(y)")
            XCTAssertEqual(image[last, y], edge, "row \(y)")
        }
    }

    func testBoxOutline() throws {
        let image = try draw([instance((50, 60, 90, 90))], style: OverlayStyle(drawLabels: false))
        let c = Palette.color(forClass: 0)
        XCTAssertEqual(image[50, 75], c, "left edge")
        XCTAssertEqual(image[89, 75], c, "right edge")
        XCTAssertEqual(image[70, 60], c, "top edge")
        XCTAssertEqual(image[70, 89], c, "bottom edge")
        XCTAssertEqual(image[49, 75], Self.gray)
        XCTAssertEqual(image[90, 75], Self.gray)
        XCTAssertEqual(image[70, 75], Self.gray, "no mask: the inside stays")
    }

    /// The label sits on a tag above the box; its text is white on the dark blue of class 0.
    func testLabelTextAppearsAboveTheBox() throws {
        let box = (Float(50), Float(60), Float(90), Float(90))
        let labelled = try draw([instance(box)])
        let plain = try draw([instance(box)], style: OverlayStyle(drawLabels: false))
        let c = Palette.color(forClass: 0)
        let above = 35..<60, cols = 50..<130
        XCTAssertGreaterThan(count(labelled, rows: above, cols: cols) { $0 == c }, 100, "tag background")
        XCTAssertGreaterThan(count(labelled, rows: above, cols: cols, where: nearWhite), 20, "text pixels")
        XCTAssertEqual(count(plain, rows: above, cols: cols) { $0 != Self.gray }, 0)
        // Nothing of the label below the box's top edge or far above it.
        XCTAssertEqual(count(labelled, rows: 64..<86, cols: 54..<86) { $0 != Self.gray }, 0)
        XCTAssertEqual(count(labelled, rows: 0..<30) { $0 != Self.gray }, 0)
    }

    func testTextColourFollowsLuminance() throws {
        // Class 2 is detectron2's yellow (237, 177, 32): black text reads better on it.
        let image = try draw([instance((50, 60, 90, 90), classIndex: 2)])
        XCTAssertGreaterThan(count(image, rows: 35..<60, cols: 50..<130, where: nearBlack), 20)
        XCTAssertEqual(count(image, where: nearWhite), 0)
        XCTAssertEqual(RGB(237, 177, 32).contrastingTextColor, .black)
        XCTAssertEqual(RGB(0, 114, 189).contrastingTextColor, .white)
    }

    /// At the top-left corner there is no room above the box: the label goes inside it,
    /// whole — as many text pixels as the same label drawn in free space.
    func testLabelAtTopLeftCornerStaysInsideTheImage() throws {
        let free = count(try draw([instance((80, 60, 120, 90))]), where: nearWhite)
        let corner = try draw([instance((0, 0, 40, 30))])
        XCTAssertGreaterThan(free, 20)
        XCTAssertEqual(count(corner, where: nearWhite), free)
        XCTAssertGreaterThan(count(corner, rows: 0..<20, cols: 0..<80) { $0 == Palette.color(forClass: 0) }, 100)
    }

    func testLabelAtRightEdgeIsShiftedLeftWhole() throws {
        let label = "a rather long label 100%"
        let free = count(try draw([instance((20, 60, 60, 90), label: label)]), where: nearWhite)
        let edge = try draw([instance((185, 60, 200, 90), label: label)])
        XCTAssertEqual(count(edge, where: nearWhite), free)
        XCTAssertEqual(edge[199, 55], Palette.color(forClass: 0), "the tag reaches the right edge")
    }

    /// A label that cannot fit at all (wider than the image) is clipped, not a crash.
    func testLabelWiderThanImage() throws {
        let image = try draw([instance((0, 0, 10, 10), label: "an extremely long label for a tiny image")],
                             width: 30, height: 12)
        XCTAssertGreaterThan(count(image, where: nearWhite), 0)
    }

    /// Two labels for boxes with the same top-left corner must not be drawn over each other.
    func testSecondLabelAvoidsTheFirst() throws {
        let one = count(try draw([instance((50, 60, 120, 120), label: "first 99%")]), where: nearWhite)
        let two = count(try draw([instance((50, 60, 120, 120), label: "second 98%", classIndex: 1)]), where: nearWhite)
        let both = try draw([instance((50, 60, 120, 120), label: "first 99%"),
                             instance((50, 60, 110, 110), label: "second 98%", classIndex: 1)])
        XCTAssertEqual(count(both, where: nearWhite), one + two)
    }

    /// Small instances are drawn after large ones whatever the input order.
    func testSmallInstanceDrawnOverLargeOne() throws {
        let big = OverlayMask(x0: 0, y0: 0, width: 200, height: 150, pixels: [UInt8](repeating: 1, count: 200 * 150))
        let small = disc(x0: 80, y0: 60, width: 20, height: 20)
        let style = OverlayStyle(drawContours: false, drawBoxes: false, drawLabels: false)
        let image = try draw([instance((80, 60, 100, 80), classIndex: 2, mask: small),
                              instance((0, 0, 200, 150), classIndex: 0, mask: big)], style: style)
        // Yellow last at 50% over blue-over-grey: red channel (237+ (0+128)/2)/2 ≈ 150.
        assertColor(image, 90, 70, RGB(150, 148, 95), tolerance: 2)
    }

    func testPalette() {
        XCTAssertEqual(Palette.colors.count, 74)
        XCTAssertEqual(Palette.color(forClass: 0), RGB(0, 114, 189))
        XCTAssertEqual(Palette.color(forClass: 1), RGB(217, 83, 25))
        XCTAssertEqual(Palette.color(forClass: 74), Palette.color(forClass: 0))
        XCTAssertEqual(Palette.color(forClass: -1), Palette.colors[73])
        // HLS lightness: −0.5 halves it and keeps the hue.
        let darker = RGB(0, 114, 189).adjustingBrightness(-0.5)  // exactly (0, 57, 94.5)
        XCTAssertEqual(darker.r, 0)
        XCTAssertEqual(darker.g, 57)
        XCTAssertTrue((94...95).contains(darker.b), "\(darker)")
        XCTAssertEqual(RGB(200, 200, 200).adjustingBrightness(0.1), RGB(220, 220, 220))
    }

    /// One Font shared by concurrent drawers gives every one of them the same pixels.
    func testFontSharedAcrossThreads() throws {
        let font = try XCTUnwrap(self.font)
        @Sendable func render(_ i: Int) throws -> Image {
            let labels = ["circle 97%", "square 12%", "triangle 55%", "star 100%"]
            var image = Image(width: 160, height: 120, fill: OverlayTests.gray)
            let box = OverlayBox(x1: 20, y1: 40, x2: 100, y2: 100)
            try image.drawOverlay([OverlayInstance(mask: nil, box: box, label: labels[i % 4], classIndex: i % 4)],
                                  font: font, style: OverlayStyle(fontPixelSize: 10 + i % 4 * 4))
            return image
        }
        let expected = try (0..<4).map(render)
        final class Results: @unchecked Sendable {  // written under `lock` only
            let lock = NSLock()
            var images: [Int: Image] = [:]
        }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let image = try? render(i)
            results.lock.lock()
            results.images[i] = image
            results.lock.unlock()
        }
        for i in 0..<64 { XCTAssertEqual(results.images[i], expected[i % 4], "render \(i)") }
    }

    func testMissingFontIsAnError() {
        let error = assertImagingError(try Font(path: "/nonexistent/font.ttf"))
        XCTAssertEqual(error, .fontUnavailable(path: "/nonexistent/font.ttf", reason: "cannot open the file"))
    }

    /// A photo-like scene at two sizes; with SEGD_PREVIEW_DIR set, written there as PNG to
    /// look at (the check no assertion makes: does it look clean?).
    func testPreviewScene() throws {
        for (width, height) in [(640, 480), (1600, 1200)] {
            var image = Image(width: width, height: height)
            for y in 0..<height {
                for x in 0..<width {
                    let sky = y < height * 3 / 5
                    let t = Float(y) / Float(height)
                    image[x, y] = sky ? RGB(UInt8(120 + 80 * t), UInt8(170 + 60 * t), 235)
                        : RGB(UInt8(90 + (x * 7 + y * 3) % 23), UInt8(140 + (x * 5 + y * 11) % 19), 70)
                }
            }
            let s = Float(width) / 640
            func scaled(_ x: Float, _ y: Float, _ w: Float, _ h: Float) -> (Float, Float, Float, Float) {
                (x * s, y * s, (x + w) * s, (y + h) * s)
            }
            func discMask(_ b: (Float, Float, Float, Float)) -> OverlayMask {
                disc(x0: Int(b.0), y0: Int(b.1), width: Int(b.2 - b.0), height: Int(b.3 - b.1))
            }
            func rectMask(_ b: (Float, Float, Float, Float), inset: Int) -> OverlayMask {
                let (w, h) = (Int(b.2 - b.0), Int(b.3 - b.1))
                var pixels = [UInt8](repeating: 0, count: w * h)
                for y in inset..<(h - inset) { for x in inset..<(w - inset) { pixels[y * w + x] = 1 } }
                return OverlayMask(x0: Int(b.0), y0: Int(b.1), width: w, height: h, pixels: pixels)
            }
            let b1 = scaled(0, 0, 120, 110), b2 = scaled(200, 150, 180, 180), b3 = scaled(330, 250, 90, 90)
            let b4 = scaled(560, 300, 80, 120), b5 = scaled(60, 300, 200, 120), b6 = scaled(250, 40, 60, 60)
            let instances = [
                instance(b1, label: "circle 99%", classIndex: 0, mask: discMask(b1)),
                instance(b2, label: "square 97%", classIndex: 1, mask: rectMask(b2, inset: Int(8 * s))),
                instance(b3, label: "circle 88%", classIndex: 0, mask: discMask(b3)),
                instance(b4, label: "triangle 76%", classIndex: 2, mask: rectMask(b4, inset: Int(4 * s))),
                instance(b5, label: "square 64%", classIndex: 1, mask: rectMask(b5, inset: Int(10 * s))),
                instance(b6, label: "star 51%", classIndex: 3, mask: discMask(b6)),
            ]
            try image.drawOverlay(instances, font: font)
            XCTAssertGreaterThan(count(image, where: nearWhite), 100)
            if let dir = ProcessInfo.processInfo.environment["SEGD_PREVIEW_DIR"] {
                let url = URL(fileURLWithPath: dir).appendingPathComponent("overlay-\(width)x\(height).png")
                try Data(try image.encodePNG()).write(to: url)
                try Data(try image.encodeJPEG(quality: 90)).write(to: url.deletingPathExtension().appendingPathExtension("jpg"))
            }
        }
    }
}
