import CTurboJPEG
import XCTest
@testable import Imaging

final class EncodeTests: XCTestCase {
    /// A smooth scene (gradients and a disc), what JPEG is made for.
    func scene(width: Int = 64, height: Int = 48) -> Image {
        var image = Image(width: width, height: height)
        for y in 0..<height {
            for x in 0..<width {
                let inDisc = (x - 40) * (x - 40) + (y - 20) * (y - 20) < 100
                image[x, y] = inDisc ? RGB(230, 200, 40) : RGB(UInt8(x * 3), UInt8(y * 4), 120)
            }
        }
        return image
    }

    func testJPEGRoundTrip() throws {
        let image = scene()
        let bytes = try image.encodeJPEG(quality: 95)
        XCTAssertEqual(Array(bytes.prefix(3)), [0xFF, 0xD8, 0xFF])
        let decoded = try ImageDecoder().decode(bytes, name: "roundtrip.jpg").image
        XCTAssertEqual(decoded.width, image.width)
        XCTAssertEqual(decoded.height, image.height)
        let diffs = zip(decoded.pixels, image.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 3, "mean absolute error")
        // Away from edges (where 4:2:0 chroma bleeds) colours hold closely.
        assertColor(decoded, 40, 20, image[40, 20], tolerance: 6, "disc centre")
        assertColor(decoded, 10, 40, image[10, 40], tolerance: 6, "gradient")
    }

    func testJPEGIs420AndQualityMatters() throws {
        let image = scene()
        let high = try image.encodeJPEG(quality: 95), low = try image.encodeJPEG(quality: 40)
        XCTAssertLessThan(low.count, high.count)
        let handle = try XCTUnwrap(tjInitDecompress())
        defer { tjDestroy(handle) }
        var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = -1, colorspace: Int32 = -1
        XCTAssertEqual(tjDecompressHeader3(handle, high, UInt(high.count), &w, &h, &subsampling, &colorspace), 0)
        XCTAssertEqual(subsampling, Int32(TJSAMP_420.rawValue))
        XCTAssertEqual(colorspace, Int32(TJCS_YCbCr.rawValue))
    }

    func testJPEGRejectsBadArguments() {
        XCTAssertEqual(assertImagingError(try scene().encodeJPEG(quality: 0)),
                       .encodingFailed(format: .jpeg, reason: "quality 0 is outside 1...100"))
        XCTAssertNotNil(assertImagingError(try Image(width: 0, height: 0).encodeJPEG()))
    }

    func testPNGRoundTripIsExact() throws {
        var image = Image(width: 37, height: 23)
        var state: UInt32 = 12345  // a fixed LCG: noise defeats filters, the worst case
        for i in image.pixels.indices {
            state = state &* 1_664_525 &+ 1_013_904_223
            image.pixels[i] = UInt8(state >> 24)
        }
        let bytes = try image.encodePNG()
        XCTAssertEqual(ImageDecoder.detectFormat(bytes), .png)
        XCTAssertEqual(try ImageDecoder().decode(bytes, name: "roundtrip.png").image, image)
        XCTAssertEqual(try ImageDecoder().decode(try image.encodePNG(compressionLevel: 0), name: "l0.png").image, image)
    }

    func testEncodedAsFormat() throws {
        let image = scene()
        for format in ImageFormat.allCases where format.isWritable {
            let bytes = try image.encoded(as: format)
            XCTAssertEqual(ImageDecoder.detectFormat(bytes), format)
            XCTAssertEqual(try ImageDecoder().decode(bytes, name: "x").format, format)
        }
        // Input-only formats are an error naming the format, not a silent PNG.
        XCTAssertEqual(assertImagingError(try image.encoded(as: .webp)),
                       .encodingFailed(format: .webp, reason: "segd writes only JPEG and PNG"))
        XCTAssertLessThan(try image.encoded(as: .jpeg, jpegQuality: 30).count, try image.encoded(as: .jpeg).count)
    }

    func testPNGRejectsEmptyImage() {
        XCTAssertNotNil(assertImagingError(try Image(width: 0, height: 5).encodePNG()))
    }
}
