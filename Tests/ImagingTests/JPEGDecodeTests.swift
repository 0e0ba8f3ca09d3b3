import CTurboJPEG
import XCTest
@testable import Imaging

final class JPEGDecodeTests: XCTestCase {
    let decoder = ImageDecoder()

    func testBaseline() throws {
        let decoded = try decoder.decode(contentsOf: Fixture.path("baseline.jpg"))
        XCTAssertEqual(decoded.format, .jpeg)
        XCTAssertEqual(decoded.image.width, 32)
        XCTAssertEqual(decoded.image.height, 16)
        XCTAssertNil(decoded.exifOrientation)
        XCTAssertEqual(decoded.appliedOrientation, .identity)
        assertQuadrants(decoded.image, tolerance: 16)
    }

    func testProgressive() throws {
        let bytes = try Fixture.bytes("progressive.jpg")
        XCTAssertTrue(zip(bytes, bytes.dropFirst()).contains { $0 == (0xFF, 0xC2) }, "fixture is not progressive")
        let decoded = try decoder.decode(bytes, name: "progressive.jpg")
        XCTAssertEqual(decoded.image.width, 32)
        assertQuadrants(decoded.image, tolerance: 16)
    }

    func testGrayscaleBecomesRGB() throws {
        let image = try decoder.decode(contentsOf: Fixture.path("gray.jpg")).image
        XCTAssertEqual(image.pixels.count, 32 * 16 * 3)
        for (x, level) in [(4, 50), (28, 200)] {
            let p = image[x, 8]
            XCTAssertEqual(p.r, p.g)
            XCTAssertEqual(p.g, p.b)
            assertColor(image, x, 8, RGB(UInt8(level), UInt8(level), UInt8(level)), tolerance: 4)
        }
    }

    /// Pillow writes CMYK JPEGs inverted with an Adobe APP14 marker (as Photoshop does);
    /// reading them as plain CMYK would give the complementary colours.
    func testAdobeCMYK() throws {
        let bytes = try Fixture.bytes("cmyk_adobe.jpg")
        let header = try JPEGHeader.parse(bytes, name: "cmyk_adobe.jpg", limits: DecodeLimits())
        XCTAssertEqual(header.components, 4)
        XCTAssertEqual(header.adobeTransform, 0, "Pillow writes CMYK untransformed")
        let image = try decoder.decode(bytes, name: "cmyk_adobe.jpg").image
        assertColor(image, 8, 4, RGB(0, 255, 255), tolerance: 10, "cyan")
        assertColor(image, 24, 4, RGB(255, 0, 255), tolerance: 10, "magenta")
        assertColor(image, 8, 12, RGB(255, 255, 0), tolerance: 10, "yellow")
        assertColor(image, 24, 12, RGB(127, 127, 127), tolerance: 10, "K = 50%")
    }

    /// YCCK: TurboJPEG compresses CMYK (Adobe convention, inverted) to YCCK with APP14
    /// transform 2; decoding must undo both the YCC transform and the inversion.
    func testYCCK() throws {
        let (w, h) = (16, 16)
        // Stored (inverted) values: 255 − ink. Left half pure cyan ink, right half 25% black.
        var cmyk = [UInt8](repeating: 255, count: w * h * 4)
        for y in 0..<h {
            for x in 0..<w {
                let i = 4 * (y * w + x)
                if x < w / 2 { cmyk[i] = 0 } else { cmyk[i + 3] = 191 }
            }
        }
        let handle = try XCTUnwrap(tjInitCompress())
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        XCTAssertEqual(tjCompress2(handle, cmyk, Int32(w), 0, Int32(h), Int32(TJPF_CMYK.rawValue), &out, &size,
                                   Int32(TJSAMP_444.rawValue), 95, 0), 0)
        let bytes = Array(UnsafeBufferPointer(start: try XCTUnwrap(out), count: Int(size)))
        tjFree(out)

        XCTAssertEqual(try JPEGHeader.parse(bytes, name: "ycck.jpg", limits: DecodeLimits()).adobeTransform, 2)
        let image = try decoder.decode(bytes, name: "ycck.jpg").image
        assertColor(image, 3, 8, RGB(0, 255, 255), tolerance: 8, "cyan")
        assertColor(image, 12, 8, RGB(191, 191, 191), tolerance: 8, "25% black")
    }

    func testPixelLimitFromPatchedHeader() throws {
        // 60000×60000 RGB would be 10.8 GB: the check must come from the header alone.
        let bytes = try Fixture.bytes("huge_dims.jpg")
        let error = assertImagingError(try decoder.decode(bytes, name: "big.jpg"))
        XCTAssertEqual(error, .tooManyPixels(file: "big.jpg", width: 60000, height: 60000, limit: 100_000_000))
        XCTAssertEqual(error?.description, "big.jpg: 60000×60000 = 3600 megapixels exceeds the 100-megapixel limit")
    }

    func testPixelLimitIsConfigurable() throws {
        let bytes = try Fixture.bytes("baseline.jpg")  // 32×16 = 512 pixels
        var options = DecodeOptions()
        options.limits.maxPixels = 511
        XCTAssertEqual(assertImagingError(try ImageDecoder(options: options).decode(bytes, name: "b.jpg")),
                       .tooManyPixels(file: "b.jpg", width: 32, height: 16, limit: 511))
        options.limits.maxPixels = 512
        XCTAssertEqual(try ImageDecoder(options: options).decode(bytes, name: "b.jpg").image.width, 32)
    }

    func testTruncated() throws {
        let bytes = try Fixture.bytes("baseline.jpg")
        let cut = Array(bytes.prefix(bytes.count * 3 / 4))
        let error = assertImagingError(try decoder.decode(cut, name: "photo.jpg"))
        XCTAssertEqual(error, .truncated(file: "photo.jpg", format: .jpeg, byteCount: cut.count))
        XCTAssertEqual(error?.description, "photo.jpg: JPEG data ends early (truncated at byte \(cut.count))")
    }

    /// No prefix of a JPEG is an image: every cut is an error, never a crash or a picture
    /// padded with grey.
    func testEveryPrefixIsAnError() throws {
        for name in ["baseline.jpg", "progressive.jpg", "gray.jpg", "cmyk_adobe.jpg", "orient_6.jpg"] {
            let bytes = try Fixture.bytes(name)
            for n in 1..<bytes.count {
                XCTAssertThrowsError(try decoder.decode(Array(bytes.prefix(n)), name: name),
                                     "\(name) cut to \(n) of \(bytes.count) bytes decoded")
            }
        }
    }

    func testMarkerInsideScanIsAnError() throws {
        var bytes = try Fixture.bytes("baseline.jpg")
        let scan = try JPEGHeader.parse(bytes, name: "x.jpg", limits: DecodeLimits()).scanStart
        bytes[scan + 20] = 0xFF
        bytes[scan + 21] = 0xD9  // EOI in the middle of the entropy-coded data
        let error = assertImagingError(try decoder.decode(bytes, name: "x.jpg"))
        guard case .corrupt = error else { return XCTFail("expected .corrupt, got \(String(describing: error))") }
    }

    /// Stray bytes between segments (some camera firmware writes them) are harmless: libjpeg
    /// warns and skips them, and so must segd, with the same pixels as without them.
    func testExtraneousBytesBetweenSegmentsAreTolerated() throws {
        let bytes = try Fixture.bytes("baseline.jpg")
        let app0Length = Int(bytes[4]) << 8 | Int(bytes[5])  // SOI, then APP0 (JFIF)
        let after = 4 + app0Length
        let padded = Array(bytes[..<after]) + [0x00, 0x13, 0x37] + Array(bytes[after...])
        let expected = try decoder.decode(bytes, name: "a.jpg").image
        XCTAssertEqual(try decoder.decode(padded, name: "b.jpg").image, expected)

        // ...but not when the scan is then cut short: the tolerant retry must not let that by.
        let cut = Array(padded.prefix(padded.count - 40))
        XCTAssertEqual(assertImagingError(try decoder.decode(cut, name: "c.jpg")),
                       .truncated(file: "c.jpg", format: .jpeg, byteCount: cut.count))
    }

    func testLosslessAndHighPrecisionAreUnsupported() throws {
        var bytes = try Fixture.bytes("baseline.jpg")
        let sof = try XCTUnwrap(zip(bytes.indices, bytes.dropFirst()).first { bytes[$0.0] == 0xFF && $0.1 == 0xC0 }?.0)
        bytes[sof + 4] = 12  // sample precision
        let error = assertImagingError(try decoder.decode(bytes, name: "deep.jpg"))
        XCTAssertEqual(error, .unsupported(file: "deep.jpg", format: .jpeg, reason: "12-bit samples"))
    }
}
