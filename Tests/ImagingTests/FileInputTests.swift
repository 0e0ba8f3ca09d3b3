import Foundation
import XCTest
@testable import Imaging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What arrives in a watched folder is not always an image, or even a file.
final class FileInputTests: XCTestCase {
    let decoder = ImageDecoder()

    func testZeroByteFile() throws {
        let path = try makeTemporaryDirectory(self).appendingPathComponent("empty.jpg").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        let error = assertImagingError(try decoder.decode(contentsOf: path))
        XCTAssertEqual(error, .emptyFile(file: path))
        XCTAssertEqual(error?.description, "\(path): file is empty (0 bytes)")
        XCTAssertEqual(assertImagingError(try decoder.decode([], name: "x.png")), .emptyFile(file: "x.png"))
    }

    func testTextNamedJPG() throws {
        let path = try makeTemporaryDirectory(self).appendingPathComponent("notes.jpg").path
        try "hello world\n".write(toFile: path, atomically: false, encoding: .utf8)
        let error = assertImagingError(try decoder.decode(contentsOf: path))
        XCTAssertEqual(error, .unknownFormat(file: path, leadingBytes: Array("hello wo".utf8)))
        XCTAssertEqual(error?.description, "\(path): not a JPEG, PNG, WebP, TIFF, HEIC or AVIF image (starts with \"hello wo\")")
    }

    func testBinaryOfAnotherFormat() throws {
        let gif: [UInt8] = Array("GIF89a".utf8) + [0x01, 0x00, 0x01, 0x00]
        XCTAssertEqual(assertImagingError(try decoder.decode(gif, name: "a.jpg"))?.description,
                       "a.jpg: not a JPEG, PNG, WebP, TIFF, HEIC or AVIF image (starts with 47 49 46 38 39 61 01 00)")
    }

    func testDirectoryNamedJPG() throws {
        let dir = try makeTemporaryDirectory(self).appendingPathComponent("x.jpg")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        let error = assertImagingError(try decoder.decode(contentsOf: dir.path))
        XCTAssertEqual(error, .notARegularFile(file: dir.path, kind: "a directory"))
        XCTAssertEqual(error?.description, "\(dir.path): not a regular file (a directory)")
    }

    /// Opening a FIFO for reading blocks until a writer appears; decode must return at once.
    func testFIFO() throws {
        let path = try makeTemporaryDirectory(self).appendingPathComponent("pipe.jpg").path
        XCTAssertEqual(mkfifo(path, 0o644), 0)
        XCTAssertEqual(assertImagingError(try decoder.decode(contentsOf: path)),
                       .notARegularFile(file: path, kind: "a FIFO"))
    }

    func testCharacterDevice() {
        XCTAssertEqual(assertImagingError(try decoder.decode(contentsOf: "/dev/zero")),
                       .notARegularFile(file: "/dev/zero", kind: "a character device"))
    }

    func testMissingFile() throws {
        let path = try makeTemporaryDirectory(self).appendingPathComponent("gone.jpg").path
        let error = assertImagingError(try decoder.decode(contentsOf: path))
        XCTAssertEqual(error, .cannotOpen(file: path, reason: String(cString: strerror(ENOENT))))
    }

    func testSymlinkIsFollowed() throws {
        let link = try makeTemporaryDirectory(self).appendingPathComponent("link.jpg").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Fixture.path("baseline.jpg"))
        XCTAssertEqual(try decoder.decode(contentsOf: link).image.width, 32)
    }

    func testFileSizeLimit() throws {
        var options = DecodeOptions()
        options.limits.maxFileBytes = 100
        let path = Fixture.path("baseline.jpg")
        let size = try Fixture.bytes("baseline.jpg").count
        let error = assertImagingError(try ImageDecoder(options: options).decode(contentsOf: path))
        XCTAssertEqual(error, .fileTooLarge(file: path, bytes: size, limit: 100))
        XCTAssertEqual(error?.description, "\(path): file is \(size) bytes, over the 100 bytes limit")
    }

    /// The format comes from the signature, not the name.
    func testPNGNamedJPG() throws {
        let decoded = try decoder.decode(try Fixture.bytes("rgb8.png"), name: "really-a-png.jpg")
        XCTAssertEqual(decoded.format, .png)
    }

    func testMegapixelFormatting() {
        XCTAssertEqual(formatMegapixels(3_600_000_000), "3600")
        XCTAssertEqual(formatMegapixels(100_010_000), "100.01")
        XCTAssertEqual(formatMegapixels(12_500_000), "12.5")
        XCTAssertEqual(formatBytes(256 << 20), "256 MiB")
        XCTAssertEqual(formatBytes(3 << 29), "1.5 GiB")
    }
}
