// Output names mirror input names; the only changes are the cases docs/results.md lists.
import Foundation
import Pipeline
import XCTest

final class OutputLayoutTests: XCTestCase {
    func stem(_ s: String) throws -> String { try OutputLayout.stem(forRelativePath: s) }

    func testNamesTheFileSystemCanHoldAreMirroredExactly() throws {
        for (input, expected) in [("-leading-dash.jpg", "-leading-dash"), ("a/b.jpg", "a/b"), ("with space (1) & more.png", "with space (1) & more"),
                                  ("ünïcödé 名前.png", "ünïcödé 名前"), ("semi;colon'quote\"s.jpeg", "semi;colon'quote\"s"),
                                  ("line\nbreak.png", "line\nbreak"), (".hidden.jpg", ".hidden"), ("-d/-x.tar.png", "-d/-x.tar"),
                                  ("noext", "noext"), ("./a/./b.png", "a/b"), ("#%+=~.png", "#%+=~")] {
            XCTAssertEqual(try stem(input), expected, input)
        }
        let longest = String(repeating: "x", count: 242)
        XCTAssertEqual(try stem(longest + ".jpg"), longest, "242 bytes + .json + temporary name fit NAME_MAX")
    }

    func testOnlyNamesThatCannotBeWrittenChange() throws {
        // ".." would climb out of the output folder.
        let up = try stem("../../etc/passwd.jpg")
        XCTAssertTrue(up.hasPrefix("__~") && !up.contains(".."), up)
        XCTAssertEqual(up.split(separator: "/").map(String.init), ["__~" + up.dropFirst(3).prefix(8), "__~" + up.dropFirst(3).prefix(8), "etc", "passwd"])
        // U+FFFD stands for a byte of an invalid encoding.
        let bad = try stem("caf\u{FFFD}.jpg")
        XCTAssertTrue(bad.hasPrefix("caf_~") && bad.utf8.count == 4 + 9, bad)
        XCTAssertNotEqual(bad, try stem("caf\u{FFFD}\u{FFFD}.jpg"))
        // Too long for NAME_MAX once ".json" and the temporary name are added: cut, hashed.
        let long = String(repeating: "é", count: 125)  // 250 bytes
        let cut = try stem(long + ".jpg")
        XCTAssertLessThanOrEqual(cut.utf8.count, 242)
        XCTAssertTrue(cut.hasPrefix("ééé") && cut.contains("~"), cut)
        XCTAssertNotEqual(cut, try stem(long + "x.jpg"), "distinct inputs keep distinct outputs")
        XCTAssertThrowsError(try stem("/"))
    }
}
