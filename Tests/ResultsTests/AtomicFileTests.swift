import Foundation
@testable import Results
import XCTest

final class AtomicFileTests: XCTestCase {
    func testWriteReplaceAndErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-atomic-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x/y/z.bin").path
        try AtomicFile.write(Data([1, 2, 3]), to: path)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data([1, 2, 3]))
        try AtomicFile.write(Data([9]), to: path)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data([9]))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("x/y").path), ["z.bin"])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o644)
        // A parent that is a file: mkdir fails and says where.
        XCTAssertThrowsError(try AtomicFile.write(Data(), to: path + "/under-a-file.json")) { error in
            guard case let .io(p, op, _)? = error as? ResultsError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
            XCTAssertEqual(op, "mkdir")
        }
    }
}
