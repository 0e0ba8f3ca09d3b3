// WebP, TIFF, HEIC and AVIF against the reference pixels that
// tools/fixtures/make_format_fixtures.py made with Pillow (pillow-heif for HEIC): exact
// for lossless files, within the manifest's stated tolerance for lossy ones.

import Foundation
import XCTest
@testable import Imaging

final class FormatDecodeTests: XCTestCase {
    struct Entry: Decodable {
        let references: [String]
        let tolerance: Int
        let pages: Int?
        let frames: Int?
        let orientation: Int?
    }

    static func manifest() throws -> [String: Entry] {
        try JSONDecoder().decode([String: Entry].self,
                                 from: Data(contentsOf: URL(fileURLWithPath: Fixture.path("formats/manifest.json"))))
    }

    static func maxDifference(_ a: Image, _ b: Image) -> Int {
        zip(a.pixels, b.pixels).reduce(0) { max($0, abs(Int($1.0) - Int($1.1))) }
    }

    func testEveryFixtureMatchesItsReference() throws {
        let manifest = try Self.manifest()
        XCTAssertGreaterThanOrEqual(manifest.count, 20)
        let decoder = ImageDecoder()
        let expectedFormat: [String: ImageFormat] = ["webp": .webp, "tif": .tiff, "heic": .heic, "avif": .avif]
        for (name, entry) in manifest.sorted(by: { $0.key < $1.key }) {
            let bytes = try Fixture.bytes("formats/" + name)
            for (i, refName) in entry.references.enumerated() {
                let got = try decoder.decode(bytes, name: name, page: i + 1)
                let ref = try decoder.decode(contentsOf: Fixture.path("formats/" + refName)).image
                XCTAssertEqual(got.format, expectedFormat[(name as NSString).pathExtension], name)
                XCTAssertEqual(got.page, i + 1, name)
                XCTAssertEqual(got.pageCount, entry.pages ?? 1, name)
                XCTAssertEqual(got.frameCount, entry.frames ?? 1, name)
                XCTAssertEqual(got.appliedOrientation.rawValue, entry.orientation ?? 1, name)
                XCTAssertEqual(got.image.width, ref.width, "\(name) page \(i + 1) width")
                XCTAssertEqual(got.image.height, ref.height, "\(name) page \(i + 1) height")
                guard got.image.width == ref.width, got.image.height == ref.height else { continue }
                let diff = Self.maxDifference(got.image, ref)
                print("\(name) page \(i + 1): max |segd − Pillow| = \(diff) (tolerance \(entry.tolerance))")
                XCTAssertLessThanOrEqual(diff, entry.tolerance, "\(name) page \(i + 1)")
            }
        }
    }

    func testLosslessFilesAreExact() throws {
        // The manifest's 0 tolerances are the claim; this keeps it from drifting upwards.
        let exact = try Self.manifest().filter { $0.value.tolerance == 0 }.map(\.key).sorted()
        for name in ["lossless.webp", "lossless_alpha.webp", "animated.webp", "rgb8_raw.tif", "rgb8_lzw.tif",
                     "rgb8_adobe_deflate.tif", "rgb8_packbits.tif", "grey8.tif", "palette.tif", "orient6.tif",
                     "multipage.tif", "tiled_deflate.tif"] {
            XCTAssertTrue(exact.contains(name), name)
        }
    }

    func testOrientationIsAppliedAndCanBeSwitchedOff() throws {
        for name in ["orient6.tif", "irot.heic", "irot.avif"] {
            let bytes = try Fixture.bytes("formats/" + name)
            let upright = try ImageDecoder().decode(bytes, name: name)
            XCTAssertEqual(upright.exifOrientation, .rotate90, name)
            XCTAssertEqual(upright.appliedOrientation, .rotate90, name)
            XCTAssertEqual(upright.storedWidth, 32, name)
            XCTAssertEqual(upright.storedHeight, 24, name)
            XCTAssertEqual(upright.image.width, 24, name)
            XCTAssertEqual(upright.image.height, 32, name)
            let stored = try ImageDecoder(options: DecodeOptions(applyOrientation: false)).decode(bytes, name: name)
            XCTAssertEqual(stored.appliedOrientation, .identity, name)
            XCTAssertEqual(stored.image.width, 32, name)
            XCTAssertEqual(stored.image.applying(.rotate90), upright.image, name)
        }
    }

    func testAlphaOntoBlack() throws {
        // The white-background references are checked above; black must differ where α < 255
        // and equal α·c there.
        for name in ["lossless_alpha.webp", "rgba8.tif"] {
            let bytes = try Fixture.bytes("formats/" + name)
            let black = try ImageDecoder(options: DecodeOptions(alphaBackground: .black)).decode(bytes, name: name).image
            let white = try ImageDecoder().decode(bytes, name: name).image
            // Pixel (0, 0) has α = 0: pure background.
            XCTAssertEqual(black[0, 0], .black, name)
            XCTAssertEqual(white[0, 0], .white, name)
            // The last pixel has α = 255: the colour itself on both.
            XCTAssertEqual(black[31, 23], white[31, 23], name)
        }
    }

    func testMultiPageTIFFPages() throws {
        let bytes = try Fixture.bytes("formats/multipage.tif")
        let decoder = ImageDecoder()
        XCTAssertEqual(try decoder.decode(bytes, name: "m.tif", page: 3).image.width, 20)
        let error = assertImagingError(try decoder.decode(bytes, name: "m.tif", page: 4))
        XCTAssertEqual(error, .noSuchPage(file: "m.tif", page: 4, pageCount: 3))
        let limited = ImageDecoder(options: DecodeOptions(limits: DecodeLimits(maxPages: 2)))
        XCTAssertEqual(assertImagingError(try limited.decode(bytes, name: "m.tif")), .tooManyPages(file: "m.tif", limit: 2))
        XCTAssertEqual(ImagingError.tooManyPages(file: "m.tif", limit: 2).description, "m.tif: more than 2 pages, the page limit")
        // Other formats have one page.
        XCTAssertEqual(assertImagingError(try decoder.decode(Fixture.bytes("formats/plain.heic"), name: "a.heic", page: 2)),
                       .noSuchPage(file: "a.heic", page: 2, pageCount: 1))
    }

    func testLibraryReasonsBecomeTheError() throws {
        // A byte of the first Deflate tile inverted: libtiff's message, once, without the
        // file name twice (libtiff reports the name as its "module").
        var tiled = try Fixture.bytes("formats/tiled_deflate.tif")
        for at in [14, 25, 48] { tiled[at] ^= 0xFF }
        guard case let .corrupt(file, format, reason)? = assertImagingError(try ImageDecoder().decode(tiled, name: "t.tif")) else {
            return XCTFail("expected corrupt")
        }
        XCTAssertEqual(file, "t.tif")
        XCTAssertEqual(format, .tiff)
        XCTAssertTrue(reason.contains("ZIPDecode") || reason.contains("Decoding error"), reason)
        XCTAssertFalse(reason.contains("t.tif"), reason)
        // Truncations are named so per format.
        for name in ["plain.heic", "multipage.tif", "lossy.webp"] {
            let bytes = try Fixture.bytes("formats/" + name)
            let cut = Array(bytes.prefix(bytes.count * 2 / 3))
            guard case .truncated? = assertImagingError(try ImageDecoder().decode(cut, name: name)) else {
                return XCTFail("\(name): expected truncated")
            }
        }
    }

    func testOverlayCanvasIsCheckedBeforeLibheifAllocatesIt() throws {
        // fuzz-heif's find: 1065 bytes whose primary item is an overlay ('iovl') declaring a
        // 33971 × 51280 canvas while its ispe is small; libheif 1.15 allocated it (over
        // 10 GB) before decoding anything.
        let bytes = try Fixture.bytes("formats/overlay_canvas.heic")
        XCTAssertEqual(assertImagingError(try ImageDecoder().decode(bytes, name: "o.heic")),
                       .tooManyPixels(file: "o.heic", width: 33971, height: 51280, limit: 100_000_000))
        let canvases = bytes.withUnsafeBufferPointer { BMFF.derivedCanvases($0) }
        XCTAssertEqual(canvases, [.derived(type: "iovl", width: 33971, height: 51280)])
        // The third: the primary is a coded image, a second item an overlay with a huge
        // canvas that libheif decoded along with it.
        let second = try Fixture.bytes("formats/overlay_secondary.heic")
        guard case .tooManyPixels? = assertImagingError(try ImageDecoder().decode(second, name: "o.heic")) else {
            return XCTFail("expected the pixel limit")
        }
        // fuzz-heif's second find: 32-bit canvas sides whose product overflows Int64 (it
        // trapped in the limit check).
        let crash = try Fixture.bytes("formats/overlay_overflow.heic")
        guard case let .tooManyPixels(_, w, h, _)? = assertImagingError(try ImageDecoder().decode(crash, name: "o.heic")) else {
            return XCTFail("expected the pixel limit")
        }
        XCTAssertTrue(w.multipliedReportingOverflow(by: h).overflow, "\(w)×\(h)")
        XCTAssertTrue(ImagingError.tooManyPixels(file: "o", width: w, height: h, limit: 1).description.contains("megapixels"))
        // Coded primary images: nothing derived.
        for name in ["plain.heic", "alpha.heic", "plain.avif"] {
            XCTAssertEqual(try Fixture.bytes("formats/" + name).withUnsafeBufferPointer { BMFF.derivedCanvases($0) }, [], name)
        }
    }

    func testFormatIsChosenByContentNotName() throws {
        for (name, format) in [("lossless.webp", ImageFormat.webp), ("rgb8_lzw.tif", .tiff), ("rgb16_be.tif", .tiff),
                               ("plain.heic", .heic), ("plain.avif", .avif)] {
            let bytes = try Fixture.bytes("formats/" + name)
            XCTAssertEqual(ImageDecoder.detectFormat(bytes), format, name)
            XCTAssertEqual(try ImageDecoder().decode(bytes, name: "misnamed.jpg").format, format, name)
        }
        // An MP4's ftyp is not an image.
        var mp4: [UInt8] = [0, 0, 0, 24] + Array("ftypisom".utf8) + [0, 0, 2, 0] + Array("isommp41".utf8)
        mp4 += [UInt8](repeating: 0, count: 16)
        XCTAssertNil(ImageDecoder.detectFormat(mp4))
        // RIFF of another kind (WAVE) is not WebP.
        XCTAssertNil(ImageDecoder.detectFormat(Array("RIFF\u{24}\0\0\0WAVEfmt ".utf8)))
    }
}
