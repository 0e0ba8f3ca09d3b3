import Foundation
import MaskRCNN
@testable import Results
import XCTest

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func loadSchema() throws -> JSONSchemaSubset {
    let data = try Data(contentsOf: repositoryRoot.appendingPathComponent("docs/results-schema.json"))
    return JSONSchemaSubset(root: try JSONValue.parse(data))
}

/// A 40×30 image with three detections: a box with a rectangular mask, one with a mask
/// clipped at the image's right edge, one whose mask pasted empty.
enum Sample {
    static let width = 40, height = 30
    static let classes = ["__background__", "circle", "square", "triangle"]
    static let model = ImageResult.ModelInfo(name: "shapes-r50-fpn", sha256: String(repeating: "ab", count: 32),
                                             classes: classes)
    static let settings = ImageResult.Settings(scoreThreshold: 0.05, maskThreshold: 0.5, maxDetections: 100,
                                               minSize: 800, maxSize: 1333, precision: "fp32")
    static let detections = Detections(
        boxes: [2.5, 3.25, 12.75, 9.5,  30.0, 0.0, 40.0, 10.5,  5.0, 20.0, 6.0, 21.0],
        scores: [0.98, 0.5, 0.0625], labels: [2, 1, 3],
        maskProbabilities: [Float](repeating: 0.7, count: 3 * 28 * 28), maskSize: 28,
        imageHeight: height, imageWidth: width)
    static var masks: [InstanceMask] {
        let a = InstanceMask(imageWidth: width, imageHeight: height, x0: 2, y0: 3, width: 11, height: 7,
                             pixels: (0..<77).map { $0 % 11 == 0 ? 0 : 1 })
        let b = InstanceMask(imageWidth: width, imageHeight: height, x0: 30, y0: 0, width: 10, height: 11,
                             pixels: (0..<110).map { ($0 / 10 + $0 % 10) % 3 == 0 ? 1 : 0 })
        let c = InstanceMask(imageWidth: width, imageHeight: height, x0: 0, y0: 0, width: 0, height: 0, pixels: [])
        return [a, b, c]
    }
    static func result(polygons: Bool = false) throws -> ImageResult {
        try ImageResult(detections: detections, masks: masks, source: .init(path: "in/photos/IMG_0001.jpg"),
                        image: .init(width: width, height: height, orientation: 6),
                        model: model, settings: settings,
                        timingsMs: ["decode": 3.5, "backbone": 120.25, "mask": 8], batchSize: 2,
                        options: .init(polygons: polygons))
    }
}

final class ImageResultTests: XCTestCase {
    func testConversionFromDetections() throws {
        let r = try Sample.result()
        XCTAssertEqual(r.schema, "segd.result/1")
        XCTAssertEqual(r.source, .init(path: "in/photos/IMG_0001.jpg", fileName: "IMG_0001.jpg"))
        XCTAssertEqual(r.instances.map(\.label), ["square", "circle", "triangle"])
        XCTAssertEqual(r.instances.map(\.categoryID), [2, 1, 3])
        XCTAssertEqual(r.instances.map(\.score), [0.98, 0.5, 0.0625])
        // (x1, y1, x2, y2) → [x, y, w, h].
        XCTAssertEqual(r.instances[0].box, [2.5, 3.25, 10.25, 6.25])
        XCTAssertEqual(r.instances[1].box, [30, 0, 10, 10.5])
        XCTAssertEqual(r.instances[2].box, [5, 20, 1, 1])
        let masks = Sample.masks
        for (inst, m) in zip(r.instances, masks) {
            XCTAssertEqual(inst.area, m.area)
            XCTAssertEqual(inst.mask?.size, [Sample.height, Sample.width])
            let rle = try XCTUnwrap(inst.mask).rle()
            let full = rleDecode(rle)
            for y in 0..<Sample.height { for x in 0..<Sample.width {
                XCTAssertEqual(full[y * Sample.width + x], m[x, y])
            } }
            XCTAssertNil(inst.polygons)
        }
        XCTAssertEqual(r.instances[0].area, 70)
        XCTAssertEqual(r.instances[2].area, 0)
        XCTAssertEqual(r.instances[2].mask?.counts, rleToString(try RLE(height: 30, width: 40, counts: [1200])))
    }

    func testPolygonsOption() throws {
        let r = try Sample.result(polygons: true)
        for (inst, m) in zip(r.instances, Sample.masks) {
            let polys = try XCTUnwrap(inst.polygons)
            var full = [UInt8](repeating: 0, count: Sample.width * Sample.height)
            for y in 0..<Sample.height { for x in 0..<Sample.width { full[y * Sample.width + x] = m[x, y] } }
            XCTAssertEqual(rasterize(polys, width: Sample.width, height: Sample.height),
                           filledHoles(full, width: Sample.width, height: Sample.height))
        }
        XCTAssertEqual(r.instances[2].polygons, [])
    }

    func testJSONValidatesAgainstSchemaAndIsStable() throws {
        let schema = try loadSchema()
        for polygons in [false, true] {
            let data = try Sample.result(polygons: polygons).jsonData()
            let json = try JSONValue.parse(data)
            XCTAssertEqual(schema.errors(json), [])
            XCTAssertEqual(try Sample.result(polygons: polygons).jsonData(), data, "same result, same bytes")
            XCTAssertEqual(data.last, 0x0A)
            // Spot checks of the wire form.
            XCTAssertEqual(json["instances"]?.array?.first?["box"], .array([2.5, 3.25, 10.25, 6.25].map { .number($0) }))
            XCTAssertEqual(json["image"]?["orientation"], .number(6))
            XCTAssertEqual(json["timings_ms"]?["backbone"], .number(120.25))
            XCTAssertEqual(json["batch_size"], .number(2))
            XCTAssertEqual(json["source"]?["path"], .string("in/photos/IMG_0001.jpg"))
            let text = String(decoding: data, as: UTF8.self)
            XCTAssertTrue(text.contains("\"path\": \"in/photos/IMG_0001.jpg\""), "slashes must not be escaped")
        }
    }

    /// The validator is not a rubber stamp: each kind of violation is reported.
    func testSchemaRejectsWrongDocuments() throws {
        let schema = try loadSchema()
        let good = try JSONValue.parse(try Sample.result().jsonData())
        func mutated(_ f: (inout [String: JSONValue]) -> Void) -> JSONValue {
            var o = good.object!
            f(&o)
            return .object(o)
        }
        func instance0(_ f: @escaping (inout [String: JSONValue]) -> Void) -> JSONValue {
            mutated { o in
                var list = o["instances"]!.array!
                var i = list[0].object!
                f(&i)
                list[0] = .object(i)
                o["instances"] = .array(list)
            }
        }
        let bad: [(String, JSONValue)] = [
            ("extra key", mutated { $0["extra"] = .null }),
            ("missing key", mutated { $0["model"] = nil }),
            ("wrong schema", mutated { $0["schema"] = .string("segd.result/2") }),
            ("bad hash", mutated { o in var m = o["model"]!.object!; m["sha256"] = .string("XYZ"); o["model"] = .object(m) }),
            ("bad precision", mutated { o in var s = o["settings"]!.object!; s["precision"] = .string("fp16"); o["settings"] = .object(s) }),
            ("negative timing", mutated { $0["timings_ms"] = .object(["decode": .number(-1)]) }),
            ("fractional batch", mutated { $0["batch_size"] = .number(1.5) }),
            ("short box", instance0 { $0["box"] = .array([.number(1)]) }),
            ("background id", instance0 { $0["category_id"] = .number(0) }),
            ("mask extra key", instance0 { i in var m = i["mask"]!.object!; m["foo"] = .number(1); i["mask"] = .object(m) }),
            ("counts outside alphabet", instance0 { i in var m = i["mask"]!.object!; m["counts"] = .string("0p~"); i["mask"] = .object(m) }),
            ("score above 1", instance0 { $0["score"] = .number(1.5) }),
            ("score as string", instance0 { $0["score"] = .string("0.9") }),
        ]
        for (what, doc) in bad { XCTAssertFalse(schema.errors(doc).isEmpty, what) }
        XCTAssertEqual(schema.errors(good), [])
    }

    func testRoundTripThroughFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-results-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("a/b/IMG_0001.json").path
        let r = try Sample.result(polygons: true)
        try r.write(to: path)
        XCTAssertEqual(try ImageResult.read(from: path), r)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("a/b").path),
                       ["IMG_0001.json"], "no temporary file left behind")
        // Overwriting replaces the file whole.
        var r2 = r
        r2.instances = []
        try r2.write(to: path)
        XCTAssertEqual(try ImageResult.read(from: path), r2)
    }

    func testInconsistentInputsAreErrors() throws {
        func attempt(detections: Detections = Sample.detections, masks: [InstanceMask] = Sample.masks,
                     image: ImageResult.ImageInfo = .init(width: Sample.width, height: Sample.height),
                     model: ImageResult.ModelInfo = Sample.model, settings: ImageResult.Settings = Sample.settings,
                     timings: [String: Double] = [:]) -> ResultsError? {
            do {
                _ = try ImageResult(detections: detections, masks: masks, source: .init(path: "x.jpg"), image: image,
                                    model: model, settings: settings, timingsMs: timings, batchSize: 1)
                return nil
            } catch { return error as? ResultsError }
        }
        XCTAssertNil(attempt())
        guard case .inconsistentDetections? = attempt(masks: Array(Sample.masks.prefix(2))) else { return XCTFail("mask count") }
        guard case .inconsistentDetections? = attempt(image: .init(width: 41, height: 30)) else { return XCTFail("image size") }
        var d = Sample.detections
        d.labels[1] = 4
        guard case .invalidValue(field: "instances[1].category_id", _)? = attempt(detections: d) else { return XCTFail("label") }
        d = Sample.detections
        d.scores[0] = .nan
        guard case .invalidValue(field: "instances[0].score", _)? = attempt(detections: d) else { return XCTFail("NaN score") }
        var m = Sample.model
        m.sha256 = "ABC"
        guard case .invalidValue(field: "model.sha256", _)? = attempt(model: m) else { return XCTFail("hash") }
        guard case .invalidValue(field: "image.orientation", _)? = attempt(image: .init(width: 40, height: 30, orientation: 9))
        else { return XCTFail("orientation") }
        guard case .invalidValue(field: "timings_ms.decode", _)? = attempt(timings: ["decode": -.infinity]) else {
            return XCTFail("timing")
        }
        let wrongImage = InstanceMask(imageWidth: 30, imageHeight: 40, x0: 0, y0: 0, width: 0, height: 0, pixels: [])
        guard case .inconsistentDetections? = attempt(masks: [Sample.masks[0], wrongImage, Sample.masks[2]]) else {
            return XCTFail("mask image size")
        }
    }

    /// Issue 15: float32 values print as the shortest decimal that reads back to the same
    /// float32 ("score_threshold": 0.05, not 0.05000000074505806), and read back equal.
    func testFloat32ValuesPrintAsTheirShortestDecimal() throws {
        var settings = Sample.settings
        settings.scoreThreshold = 0.05
        settings.maskThreshold = 0.4
        let r = try ImageResult(detections: Sample.detections, masks: Sample.masks, source: .init(path: "x.jpg"),
                                image: .init(width: Sample.width, height: Sample.height), model: Sample.model,
                                settings: settings, timingsMs: [:], batchSize: 1)
        let text = String(decoding: try r.jsonData(), as: UTF8.self)
        XCTAssertTrue(text.contains("\"score_threshold\": 0.05\n"), text)
        XCTAssertTrue(text.contains("\"mask_threshold\": 0.4,\n"), text)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("segd-float-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try r.write(to: path)
        XCTAssertEqual(try ImageResult.read(from: path).settings, settings)
    }

    /// A model without a mask head: no masks, no area, still valid.
    func testDetectionsWithoutMasks() throws {
        var d = Sample.detections
        d.maskProbabilities = []
        let r = try ImageResult(detections: d, masks: [], source: .init(path: "x.jpg"),
                                image: .init(width: Sample.width, height: Sample.height), model: Sample.model,
                                settings: Sample.settings, timingsMs: [:], batchSize: 1)
        XCTAssertEqual(r.instances.count, 3)
        XCTAssertTrue(r.instances.allSatisfy { $0.mask == nil && $0.area == nil })
        let json = try JSONValue.parse(try r.jsonData())
        XCTAssertEqual(try loadSchema().errors(json), [])
        XCTAssertNil(json["instances"]?.array?[0]["mask"])
        // Masks were expected (probabilities exist) but none were pasted.
        XCTAssertThrowsError(try ImageResult(detections: Sample.detections, masks: [], source: .init(path: "x.jpg"),
                                             image: .init(width: Sample.width, height: Sample.height),
                                             model: Sample.model, settings: Sample.settings, timingsMs: [:], batchSize: 1))
    }
}
