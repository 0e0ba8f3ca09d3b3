import Foundation
import MaskRCNN
@testable import Results
import XCTest

final class COCOResultsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-coco-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func read(_ name: String) throws -> JSONValue {
        try JSONValue.parse(try Data(contentsOf: dir.appendingPathComponent(name)))
    }

    func result(_ path: String, instances: Int? = nil) throws -> ImageResult {
        var r = try Sample.result()
        r.source = .init(path: path)
        if let instances { r.instances = Array(r.instances.prefix(instances)) }
        return r
    }

    func testSequentialIDsAndFileStructure() throws {
        let w = try COCOResultsWriter(directory: dir.path)
        XCTAssertEqual(try w.add(try result("in/a.jpg")), 1)
        XCTAssertEqual(try w.add(try result("in/b.png", instances: 0)), 2)
        XCTAssertEqual(try w.add(try result("in/sub/c.jpg", instances: 1), fileName: "sub/c.jpg"), 3)
        // Nothing under the final names before finish().
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.resultsPath))
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.imageIDsPath))
        XCTAssertEqual(w.imageCount, 3)
        XCTAssertEqual(w.detectionCount, 4)
        try w.finish()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(),
                       ["coco_image_ids.json", "coco_results.json"])

        let dets = try XCTUnwrap(try read("coco_results.json").array)
        XCTAssertEqual(dets.count, 4)
        let sample = try Sample.result()
        for (k, d) in dets.enumerated() {
            XCTAssertEqual(Set(try XCTUnwrap(d.object).keys), ["image_id", "category_id", "bbox", "score", "segmentation"])
            let inst = sample.instances[k < 3 ? k : 0]
            XCTAssertEqual(d["image_id"], .number(k < 3 ? 1 : 3))
            XCTAssertEqual(d["category_id"], .number(Double(inst.categoryID)))
            XCTAssertEqual(d["bbox"], .array(inst.box.map { .number(Double($0)) }))
            XCTAssertEqual(d["score"]?.number.map(Float.init), inst.score)
            XCTAssertEqual(d["segmentation"]?["size"], .array([.number(30), .number(40)]))
            XCTAssertEqual(d["segmentation"]?["counts"], .string(try XCTUnwrap(inst.mask).counts))
        }
        let images = try XCTUnwrap(try read("coco_image_ids.json").array)
        XCTAssertEqual(images, [
            .object(["id": .number(1), "file_name": .string("a.jpg"), "width": .number(40), "height": .number(30)]),
            .object(["id": .number(2), "file_name": .string("b.png"), "width": .number(40), "height": .number(30)]),
            .object(["id": .number(3), "file_name": .string("sub/c.jpg"), "width": .number(40), "height": .number(30)]),
        ])
        // Decoding with the public record types gives the same.
        let decoded = try JSONDecoder().decode([COCODetection].self,
                                               from: Data(contentsOf: URL(fileURLWithPath: w.resultsPath)))
        XCTAssertEqual(decoded[3], COCODetection(imageID: 3, categoryID: 2, bbox: sample.instances[0].box,
                                                 score: 0.98, segmentation: sample.instances[0].mask))
        XCTAssertThrowsError(try w.add(try result("in/d.jpg"))) { error in
            guard case .writerFinished? = error as? ResultsError else { return XCTFail("\(error)") }
        }
    }

    func testEmptyBatchIsTwoEmptyArrays() throws {
        let w = try COCOResultsWriter(directory: dir.path)
        try w.finish()
        XCTAssertEqual(try read("coco_results.json"), .array([]))
        XCTAssertEqual(try read("coco_image_ids.json"), .array([]))
    }

    func testGroundTruthIDs() throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let gt = dir.appendingPathComponent("instances_val.json")
        try Data("""
        {"info": {}, "images": [{"id": 397133, "file_name": "a.jpg", "width": 40, "height": 30},
                                {"id": 37777, "file_name": "b.png", "width": 40, "height": 30}],
         "annotations": [], "categories": [{"id": 1, "name": "circle"}]}
        """.utf8).write(to: gt)
        let ids = try COCOResultsWriter.loadGroundTruthImageIDs(from: gt.path)
        XCTAssertEqual(ids, ["a.jpg": 397133, "b.png": 37777])
        let out = dir.appendingPathComponent("out")
        let w = try COCOResultsWriter(directory: out.path, groundTruthImageIDs: ids)
        XCTAssertEqual(try w.add(try result("x/b.png", instances: 1)), 37777)
        XCTAssertThrowsError(try w.add(try result("x/c.jpg"))) { error in
            XCTAssertEqual(error as? ResultsError, .unknownImage(fileName: "c.jpg"))
        }
        XCTAssertThrowsError(try w.add(try result("y/b.png"))) { error in
            XCTAssertEqual(error as? ResultsError, .duplicateImage(fileName: "b.png", imageID: 37777))
        }
        XCTAssertEqual(try w.add(try result("x/a.jpg", instances: 2)), 397133)
        try w.finish()
        let dets = try XCTUnwrap(try JSONValue.parse(Data(contentsOf: out.appendingPathComponent("coco_results.json"))).array)
        XCTAssertEqual(dets.map { $0["image_id"] }, [.number(37777), .number(397133), .number(397133)])

        XCTAssertThrowsError(try COCOResultsWriter.loadGroundTruthImageIDs(from: dir.appendingPathComponent("none.json").path))
        try Data(#"{"images": [{"id": "1", "file_name": "a.jpg"}]}"#.utf8).write(to: gt)
        XCTAssertThrowsError(try COCOResultsWriter.loadGroundTruthImageIDs(from: gt.path)) { error in
            guard case .json(path: gt.path, _)? = error as? ResultsError else { return XCTFail("\(error)") }
        }
    }

    /// Many images from several threads: every record lands once, the files stay valid JSON.
    func testConcurrentAdds() throws {
        let w = try COCOResultsWriter(directory: dir.path)
        let r = try Sample.result()
        DispatchQueue.concurrentPerform(iterations: 200) { i in
            var ri = r
            ri.source = .init(path: "img\(i).jpg")
            do { try w.add(ri) } catch { XCTFail("\(error)") }
        }
        try w.finish()
        let dets = try XCTUnwrap(try read("coco_results.json").array)
        XCTAssertEqual(dets.count, 600)
        let images = try XCTUnwrap(try read("coco_image_ids.json").array)
        XCTAssertEqual(Set(images.compactMap { $0["id"]?.number }), Set((1...200).map(Double.init)))
        XCTAssertEqual(Set(images.compactMap { $0["file_name"]?.string }).count, 200)
    }

    func testAbandonedWriterLeavesNothing() throws {
        do {
            let w = try COCOResultsWriter(directory: dir.path)
            try w.add(try Sample.result())
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }
}
