@testable import Results
import XCTest

final class JSONLayoutTests: XCTestCase {
    func testLayout() {
        let compact = #"{"a":[1,2.5,-3e-07],"b":{"c":"x\"y{[,:]}\\","d":[]},"e":[[0,1],[2,3]],"f":[{"g":{}}],"h":"\u0001"}"#
        let expected = """
        {
          "a": [1, 2.5, -3e-07],
          "b": {
            "c": "x\\"y{[,:]}\\\\",
            "d": []
          },
          "e": [
            [0, 1],
            [2, 3]
          ],
          "f": [
            {
              "g": {}
            }
          ],
          "h": "\\u0001"
        }
        """
        XCTAssertEqual(String(decoding: JSONLayout.pretty(Array(compact.utf8)), as: UTF8.self), expected)
        XCTAssertEqual(String(decoding: JSONLayout.pretty(Array("[]".utf8)), as: UTF8.self), "[]")
        XCTAssertEqual(String(decoding: JSONLayout.pretty(Array(#""a,b""#.utf8)), as: UTF8.self), #""a,b""#)
    }

    func testResultLayout() throws {
        let text = String(decoding: try Sample.result(polygons: true).jsonData(), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\n  \"batch_size\": 2,\n  \"image\": {\n    \"height\": 30,\n"), text)
        XCTAssertTrue(text.contains("\n      \"box\": [2.5, 3.25, 10.25, 6.25],\n"), text)
        XCTAssertTrue(text.contains("\"size\": [30, 40]"), text)
        XCTAssertTrue(text.contains("\n      \"polygons\": [\n        [3, 3, 13, 3, 13, 10, 3, 10]\n      ],\n"), text)
    }
}
