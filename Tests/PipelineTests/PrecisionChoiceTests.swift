// `precision: auto`: measured once on the model where the CPU has native bf16, the decision
// kept in a file and obeyed after; nothing measured or kept where one precision is all
// there is. The shipped sample model at a small input size keeps each probe short.
import Foundation
import Pipeline
import Tensor
import XCTest

final class PrecisionChoiceTests: XCTestCase {
    var dir = ""
    var decisionsPath: String { dir + "/state/precision.json" }

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "segd-precision-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func segmenter(_ precision: Precision, minSize: Int = 96) throws -> Segmenter {
        var s = InferenceSettings()
        s.precision = precision
        s.minSize = minSize
        s.maxSize = 128
        s.precisionDecisions = decisionsPath
        return try Segmenter(weights: Repo.path("samples/model/shapes_r18.safetensors"), settings: s)
    }

    /// The file's decisions, by key.
    func decisions() throws -> [String: [String: Any]] {
        let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: decisionsPath))) as? [String: Any])
        XCTAssertEqual(doc["schema"] as? String, "segd.precision/1")
        return try XCTUnwrap(doc["decisions"] as? [String: [String: Any]])
    }

    func testOnePrecisionIsNeitherMeasuredNorKept() throws {
        let fp32 = try segmenter(.fp32)
        XCTAssertEqual(fp32.model.precision, ResolvedPrecision(dtype: .f32, reason: "fp32 requested"))
        if !Device.cpu.isa.nativeBF16 {
            let auto = try segmenter(.auto)
            XCTAssertEqual(auto.model.precision.dtype, .f32)
            XCTAssertTrue(auto.model.precision.reason.contains("no native bf16"), auto.model.precision.reason)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: decisionsPath), "nothing to decide, nothing kept")
    }

    func testAutoMeasuresOnceKeepsTheDecisionAndObeysIt() throws {
        guard Device.cpu.isa.nativeBF16 else {
            throw XCTSkip("auto measures only where bf16 is native: needs the CPU flag avx512_bf16 or amx_bf16; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        // First start: measured, the faster kept and recorded with both timings.
        let first = try segmenter(.auto)
        XCTAssertTrue(first.model.precision.reason.contains("measured on this CPU just now"), first.model.precision.reason)
        var file = try decisions()
        XCTAssertEqual(file.count, 1)
        let (key, d) = try XCTUnwrap(file.first)
        let seconds = try XCTUnwrap(d["seconds"] as? [String: Double])
        XCTAssertEqual(Set(seconds.keys), ["bf16", "fp32"])
        XCTAssertTrue(seconds.values.allSatisfy { $0 > 0 }, "\(seconds)")
        let faster = seconds["bf16"]! <= seconds["fp32"]! ? "bf16" : "fp32"
        XCTAssertEqual(d["choice"] as? String, faster, "the faster precision is the one chosen: \(seconds)")
        XCTAssertEqual(first.model.precision.name, faster)
        XCTAssertEqual(first.settings.precision, faster, "every result records what ran")
        XCTAssertEqual(d["input_size"] as? [Int], [96, 128])
        XCTAssertTrue(key.contains("model=\(first.modelInfo.sha256)") && key.contains("isa=\(Device.cpu.isa)"), key)

        // Second start: not measured again; the kept decision, and where it is kept, stated.
        let second = try segmenter(.auto)
        XCTAssertEqual(second.model.precision.name, faster)
        XCTAssertTrue(second.model.precision.reason.contains("kept in \(decisionsPath)"), second.model.precision.reason)

        // The file is obeyed: a decision turned the other way is what runs next.
        let other = faster == "bf16" ? "fp32" : "bf16"
        var turned = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: decisionsPath))) as? [String: Any])
        var entries = try XCTUnwrap(turned["decisions"] as? [String: [String: Any]])
        entries[key]!["choice"] = other
        turned["decisions"] = entries
        try JSONSerialization.data(withJSONObject: turned).write(to: URL(fileURLWithPath: decisionsPath))
        XCTAssertEqual(try segmenter(.auto).model.precision.name, other)

        // Another input size is another decision; the first one stays.
        _ = try segmenter(.auto, minSize: 64)
        file = try decisions()
        XCTAssertEqual(file.count, 2)
        XCTAssertEqual(file[key]?["choice"] as? String, other)

        // A damaged file costs a measurement, never the start.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: decisionsPath))
        let remeasured = try segmenter(.auto)
        XCTAssertTrue(remeasured.model.precision.reason.contains("measured on this CPU just now"), remeasured.model.precision.reason)
        XCTAssertEqual(try decisions().count, 1)
    }

    func testAnUnwritableDecisionFileIsSaidNotFatal() throws {
        guard Device.cpu.isa.nativeBF16 else {
            throw XCTSkip("auto measures only where bf16 is native: needs the CPU flag avx512_bf16 or amx_bf16; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        // The decision file's folder is a regular file: it cannot be created.
        try Data().write(to: URL(fileURLWithPath: dir + "/state"))
        let s = try segmenter(.auto)
        XCTAssertTrue(s.model.precision.reason.contains("not kept"), s.model.precision.reason)
    }
}
