import XCTest
@testable import Imaging

final class OrientationTests: XCTestCase {
    /// Each fixture stores the upright 32×16 quadrant image transformed by the inverse of
    /// its EXIF orientation (odd ones in a little-endian TIFF block, even ones big-endian),
    /// so applying the tag must give the upright image back.
    func testAllEightEXIFOrientationsJPEG() throws {
        let decoder = ImageDecoder()
        for value in 1...8 {
            let decoded = try decoder.decode(contentsOf: Fixture.path("orient_\(value).jpg"))
            let orientation = try XCTUnwrap(Orientation(rawValue: value))
            XCTAssertEqual(decoded.exifOrientation, orientation)
            XCTAssertEqual(decoded.appliedOrientation, orientation)
            XCTAssertEqual(decoded.storedWidth, value >= 5 ? 16 : 32, "orientation \(value)")
            XCTAssertEqual(decoded.image.width, 32, "orientation \(value)")
            XCTAssertEqual(decoded.image.height, 16, "orientation \(value)")
            assertQuadrants(decoded.image, tolerance: 24, "orientation \(value)")
        }
    }

    func testOrientationCanBeLeftUnapplied() throws {
        let decoder = ImageDecoder(options: DecodeOptions(applyOrientation: false))
        let decoded = try decoder.decode(contentsOf: Fixture.path("orient_8.jpg"))
        XCTAssertEqual(decoded.exifOrientation, .rotate270)
        XCTAssertEqual(decoded.appliedOrientation, .identity)
        XCTAssertEqual(decoded.image.width, 16)
        XCTAssertEqual(decoded.image.height, 32)
    }

    /// The transforms on a 3×2 image whose pixel values are their own source coordinates.
    func testTransformsMoveEveryPixel() {
        let (w, h) = (3, 2)
        var source = Image(width: w, height: h)
        for y in 0..<h { for x in 0..<w { source[x, y] = RGB(UInt8(x), UInt8(y), 0) } }
        // Where output (x, y) comes from, straight from the EXIF definitions.
        let expected: [Orientation: (Int, Int) -> (Int, Int)] = [
            .identity: { x, y in (x, y) },
            .mirrorHorizontal: { x, y in (w - 1 - x, y) },
            .rotate180: { x, y in (w - 1 - x, h - 1 - y) },
            .mirrorVertical: { x, y in (x, h - 1 - y) },
            .transpose: { x, y in (y, x) },
            .rotate90: { x, y in (y, h - 1 - x) },
            .transverse: { x, y in (w - 1 - y, h - 1 - x) },
            .rotate270: { x, y in (w - 1 - y, x) },
        ]
        for orientation in Orientation.allCases {
            let out = source.applying(orientation)
            XCTAssertEqual(out.width, orientation.swapsDimensions ? h : w)
            for y in 0..<out.height {
                for x in 0..<out.width {
                    let (sx, sy) = expected[orientation]!(x, y)
                    XCTAssertEqual(out[x, y], RGB(UInt8(sx), UInt8(sy), 0), "\(orientation) at (\(x), \(y))")
                }
            }
        }
    }

    func testEXIFParserBothByteOrders() {
        XCTAssertEqual(EXIF.orientation(tiff: tiff(orientation: 6, bigEndian: false)[...]), .rotate90)
        XCTAssertEqual(EXIF.orientation(tiff: tiff(orientation: 6, bigEndian: true)[...]), .rotate90)
        XCTAssertEqual(EXIF.orientation(tiff: tiff(orientation: 3, bigEndian: true)[...]), .rotate180)
    }

    func testEXIFParserRejectsMalformedBlocks() {
        let good = tiff(orientation: 6, bigEndian: false)
        XCTAssertNil(EXIF.orientation(tiff: tiff(orientation: 9, bigEndian: false)[...]), "value out of range")
        XCTAssertNil(EXIF.orientation(tiff: tiff(orientation: 0, bigEndian: true)[...]), "value out of range")
        var badMagic = good
        badMagic[2] = 43
        XCTAssertNil(EXIF.orientation(tiff: badMagic[...]))
        var farIFD = good
        farIFD[4] = 0xF0  // IFD0 offset beyond the block
        XCTAssertNil(EXIF.orientation(tiff: farIFD[...]))
        // Cut anywhere before the end of the orientation value (bytes 30–31): never a crash,
        // never a value.
        for n in 0..<32 {
            XCTAssertNil(EXIF.orientation(tiff: good.prefix(n)), "cut at \(n)")
        }
        // A slice that does not start at index 0 (as the JPEG APP1 payload is).
        let padded = [0xAA, 0xBB] + good
        XCTAssertEqual(EXIF.orientation(tiff: padded[2...]), .rotate90)
    }

    /// A TIFF block with an ImageWidth entry before Orientation.
    private func tiff(orientation: Int, bigEndian: Bool) -> [UInt8] {
        func u16(_ v: Int) -> [UInt8] { bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func u32(_ v: Int) -> [UInt8] { bigEndian ? u16(v >> 16) + u16(v & 0xFFFF) : u16(v & 0xFFFF) + u16(v >> 16) }
        var bytes: [UInt8] = bigEndian ? [0x4D, 0x4D] : [0x49, 0x49]
        bytes += u16(42) + u32(8) + u16(2)
        bytes += u16(0x0100) + u16(3) + u32(1) + u16(640) + u16(0)
        bytes += u16(0x0112) + u16(3) + u32(1) + u16(orientation) + u16(0)
        bytes += u32(0)
        return bytes
    }
}
