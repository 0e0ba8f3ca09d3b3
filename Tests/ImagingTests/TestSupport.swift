// Shared helpers: fixture access and assertions on pixels and errors.

import Foundation
import XCTest
@testable import Imaging

enum Fixture {
    /// Path of a file made by tools/fixtures/make_image_fixtures.py.
    static func path(_ name: String) -> String {
        guard let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("ImagingTests: Fixtures directory missing from the test bundle")
        }
        return dir.appendingPathComponent(name).path
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path(name))))
    }

    /// The quadrant colours the fixture script paints (top-left, top-right, bottom-left,
    /// bottom-right).
    static let quadrants = [RGB(255, 0, 0), RGB(0, 255, 0), RGB(0, 0, 255), RGB(255, 255, 255)]
}

/// A fresh temporary directory, removed at the end of the test.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-imaging-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

func assertColor(_ image: Image, _ x: Int, _ y: Int, _ expected: RGB, tolerance: Int,
                 _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    let got = image[x, y]
    let diff = max(abs(Int(got.r) - Int(expected.r)), abs(Int(got.g) - Int(expected.g)),
                   abs(Int(got.b) - Int(expected.b)))
    XCTAssertLessThanOrEqual(diff, tolerance, "pixel (\(x), \(y)) is \(got), expected \(expected) ±\(tolerance) \(message)",
                             file: file, line: line)
}

/// Checks the quadrant centres of the fixture test image (upright, any size).
func assertQuadrants(_ image: Image, tolerance: Int, _ message: String = "",
                     file: StaticString = #filePath, line: UInt = #line) {
    let xs = [image.width / 4, 3 * image.width / 4], ys = [image.height / 4, 3 * image.height / 4]
    for (i, (x, y)) in [(xs[0], ys[0]), (xs[1], ys[0]), (xs[0], ys[1]), (xs[1], ys[1])].enumerated() {
        assertColor(image, x, y, Fixture.quadrants[i], tolerance: tolerance, message, file: file, line: line)
    }
}

/// Asserts that `body` throws an ImagingError and returns it for further checks.
@discardableResult
func assertImagingError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath,
                           line: UInt = #line) -> ImagingError? {
    do {
        let value = try body()
        XCTFail("expected an ImagingError, got \(value)", file: file, line: line)
    } catch let error as ImagingError {
        return error
    } catch {
        XCTFail("expected an ImagingError, got \(error)", file: file, line: line)
    }
    return nil
}
