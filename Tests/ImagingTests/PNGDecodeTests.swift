import XCTest
@testable import Imaging

final class PNGDecodeTests: XCTestCase {
    let decoder = ImageDecoder()

    func decode(_ name: String, background: AlphaBackground = .white) throws -> DecodedImage {
        try ImageDecoder(options: DecodeOptions(alphaBackground: background)).decode(contentsOf: Fixture.path(name))
    }

    func testRGB8() throws {
        let decoded = try decode("rgb8.png")
        XCTAssertEqual(decoded.format, .png)
        XCTAssertEqual(decoded.image.width, 16)
        XCTAssertEqual(decoded.image.height, 8)
        assertQuadrants(decoded.image, tolerance: 0)
    }

    /// Samples are v·257, so the 8-bit result must be exactly v for any correct reduction.
    func testRGB16() throws {
        let image = try decode("rgb16.png").image
        for y in 0..<8 {
            for x in 0..<16 {
                assertColor(image, x, y, RGB(UInt8(x * 16), UInt8(y * 32), UInt8((x + y) * 8)), tolerance: 0)
            }
        }
    }

    /// 2-bit palette; entry 3 is fully transparent through tRNS.
    func testPaletteWithTransparency() throws {
        let palette = [RGB(200, 30, 30), RGB(30, 200, 30), RGB(30, 30, 200)]
        for (background, value) in [(AlphaBackground.black, UInt8(0)), (.white, 255)] {
            let image = try decode("palette.png", background: background).image
            XCTAssertEqual(image.width, 8)
            for x in 0..<8 {
                let expected = x % 4 == 3 ? RGB(value, value, value) : palette[x % 4]
                assertColor(image, x, 1, expected, tolerance: 0, "on \(background)")
            }
        }
    }

    /// Grey 200 with alpha 255, 128, 0, 64 by column.
    func testGrayAlphaOntoBlackAndWhite() throws {
        let alphas = [255, 128, 0, 64]
        for (background, bg) in [(AlphaBackground.black, 0), (.white, 255)] {
            let image = try decode("gray_alpha.png", background: background).image
            for (x, a) in alphas.enumerated() {
                let v = UInt8((200 * a + bg * (255 - a) + 127) / 255)
                assertColor(image, x, 0, RGB(v, v, v), tolerance: 1, "alpha \(a) on \(background)")
            }
        }
        // The default is white.
        XCTAssertEqual(try decode("gray_alpha.png").image[2, 0], RGB(255, 255, 255))
    }

    func testInterlaced() throws {
        let image = try decode("interlaced.png").image
        XCTAssertEqual(image.width, 33)
        XCTAssertEqual(image.height, 17)
        for y in 0..<17 {
            for x in 0..<33 {
                assertColor(image, x, y, RGB(UInt8(x * 7 % 256), UInt8(y * 13 % 256), UInt8((x + y) * 3 % 256)),
                            tolerance: 0)
            }
        }
    }

    func testBadCRCIsReported() throws {
        let error = assertImagingError(try decoder.decode(try Fixture.bytes("bad_crc.png"), name: "bad.png"))
        XCTAssertEqual(error, .corrupt(file: "bad.png", format: .png, reason: "chunk checksum (CRC) mismatch"))
        XCTAssertEqual(error?.description, "bad.png: corrupt PNG data (chunk checksum (CRC) mismatch)")
    }

    func testPixelLimitFromPatchedHeader() throws {
        let error = assertImagingError(try decoder.decode(try Fixture.bytes("huge_dims.png"), name: "big.png"))
        XCTAssertEqual(error, .tooManyPixels(file: "big.png", width: 60000, height: 60000, limit: 100_000_000))
    }

    /// 47 KB of zTXt inflating to 48 MB: over the 16 MB decompressed-chunk limit, a clean
    /// error once inflating passes it, not 48 MB of RAM.
    func testCompressedTextBombIsRejected() throws {
        let error = assertImagingError(try decoder.decode(try Fixture.bytes("ztxt_bomb.png"), name: "bomb.png"))
        guard case .limitExceeded(file: "bomb.png", format: .png, _) = error else {
            return XCTFail("expected .limitExceeded, got \(String(describing: error))")
        }
    }

    /// A chunk header declaring 256 MB that the file does not hold: an error before any
    /// 256 MB buffer exists.
    func testChunkLongerThanFileIsTruncation() throws {
        let bytes = try Fixture.bytes("huge_chunk.png")
        XCTAssertEqual(assertImagingError(try decoder.decode(bytes, name: "chunk.png")),
                       .truncated(file: "chunk.png", format: .png, byteCount: bytes.count))
    }

    /// A 3000-byte tEXt chunk against a 1000-byte ancillary chunk cache.
    func testChunkCacheLimit() throws {
        var bytes = try Fixture.bytes("rgb8.png")
        bytes.insert(contentsOf: pngChunk("tEXt", Array("Comment".utf8) + [0] + [UInt8](repeating: 0x78, count: 2992)),
                     at: 33)  // after the signature and IHDR
        XCTAssertEqual(try decoder.decode(bytes, name: "text.png").image.width, 16, "fine by default")
        var options = DecodeOptions()
        options.limits.maxPNGChunkCacheBytes = 1000
        let error = assertImagingError(try ImageDecoder(options: options).decode(bytes, name: "text.png"))
        guard case .limitExceeded(file: "text.png", format: .png, _) = error else {
            return XCTFail("expected .limitExceeded, got \(String(describing: error))")
        }
    }

    /// length, type, data, CRC-32 of type and data.
    private func pngChunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc ^= 0xFFFF_FFFF
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        return be32(UInt32(data.count)) + body + be32(crc)
    }

    func testTruncated() throws {
        let bytes = try Fixture.bytes("interlaced.png")
        let cut = Array(bytes.prefix(bytes.count / 2))
        let error = assertImagingError(try decoder.decode(cut, name: "cut.png"))
        XCTAssertEqual(error, .truncated(file: "cut.png", format: .png, byteCount: cut.count))
        XCTAssertEqual(error?.description, "cut.png: PNG data ends early (truncated at byte \(cut.count))")
    }

    /// Every strict prefix is an error, including one missing only the IEND chunk.
    func testEveryPrefixIsAnError() throws {
        for name in ["rgb8.png", "interlaced.png", "palette.png", "rgb16.png"] {
            let bytes = try Fixture.bytes(name)
            for n in 1..<bytes.count {
                XCTAssertThrowsError(try decoder.decode(Array(bytes.prefix(n)), name: name),
                                     "\(name) cut to \(n) of \(bytes.count) bytes decoded")
            }
        }
    }

    /// Orientation 6 in an eXIf chunk: stored 8×16, shown 16×8.
    func testEXIFOrientationInPNG() throws {
        let decoded = try decode("orient_6.png")
        XCTAssertEqual(decoded.exifOrientation, .rotate90)
        XCTAssertEqual(decoded.appliedOrientation, .rotate90)
        XCTAssertEqual(decoded.storedWidth, 8)
        XCTAssertEqual(decoded.image.width, 16)
        assertQuadrants(decoded.image, tolerance: 0)
    }
}
