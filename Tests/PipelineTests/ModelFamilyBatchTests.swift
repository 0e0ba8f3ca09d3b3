// `segd batch` on torchvision's other model layouts, end to end through the real binary
// (PNG decode, model, paste, JSON, COCO file, annotated image), against torchvision's
// detections of each image run alone (Tests/MaskRCNNTests/Fixtures/<model>/stages.safetensors,
// `alone.I.*`, made by tools/reference/make_family_fixtures.py):
// - tutorial: the detection tutorial's fine-tuned shape (v1 COCO layout, predictors
//   replaced by 3-class ones), saved as .pth, class names from --labels;
// - v2: maskrcnn_resnet50_fpn_v2's layout, .pth, names from pipeline.yml model.labels (JSON list);
// - faster: fasterrcnn_resnet50_fpn's layout: boxes only.
// The models are small-width random-weight variants (a full-size .pth is 170 MB), saved
// from torchvision with min_size 96 / max_size 160, which a .pth does not record: the
// runs pass them (--min-size/--max-size, model.min_size/max_size), and --precision fp32:
// torchvision's arithmetic (auto computes in bf16 on an AVX512_BF16 or AMX CPU).
//
// Tolerances: the stage tests' (PNG is lossless, so the input pixels are torchvision's):
// same labels in the same order, boxes within 0.01 px, scores within 1e-4, mask IoU ≥ 0.99.
import Foundation
import MaskRCNN
import Results
import XCTest

final class ModelFamilyBatchTests: XCTestCase {
    static func fixture(_ model: String, _ file: String) -> String { Repo.path("Tests/MaskRCNNTests/Fixtures/\(model)/\(file)") }

    func run(_ args: [String]) throws {
        let r = try Segd.run(args)
        XCTAssertEqual(r.status, 0, "segd \(args.joined(separator: " ")): \(r.stderr)")
    }

    /// Copies the fixture's two PNGs into a scratch input folder.
    func inputs(_ model: String, in dir: URL) throws -> URL {
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        for i in 0..<2 {
            try FileManager.default.copyItem(atPath: Self.fixture(model, "image\(i).png"), toPath: input.appendingPathComponent("image\(i).png").path)
        }
        return input
    }

    /// Each image's JSON against torchvision's `alone.I` detections.
    func assertMatchesTorchvision(_ model: String, out: URL, classes: [String], masks: Bool,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let stages = try WeightsFile.load(Self.fixture(model, "stages.safetensors"))
        for i in 0..<2 {
            let result = try ImageResult.read(from: out.appendingPathComponent("image\(i).json").path)
            XCTAssertEqual(result.model.classes, classes, file: file, line: line)
            let boxes = try XCTUnwrap(stages["alone.\(i).boxes"]).values, scores = try XCTUnwrap(stages["alone.\(i).scores"]).values
            let labels = try XCTUnwrap(stages["alone.\(i).labels"]).values.map { Int($0) }
            XCTAssertEqual(result.instances.count, scores.count, "\(model) image \(i): detections", file: file, line: line)
            guard result.instances.count == scores.count else { continue }
            XCTAssertEqual(result.instances.map(\.categoryID), labels, "\(model) image \(i): labels in order", file: file, line: line)
            XCTAssertEqual(result.instances.map(\.label), labels.map { classes[$0] }, "\(model) image \(i): names", file: file, line: line)
            var boxDiff: Float = 0, scoreDiff: Float = 0
            for (j, inst) in result.instances.enumerated() {
                let b = inst.box, xyxy = [b[0], b[1], b[0] + b[2], b[1] + b[3]]
                for k in 0..<4 { boxDiff = max(boxDiff, abs(xyxy[k] - boxes[4 * j + k])) }
                scoreDiff = max(scoreDiff, abs(inst.score - scores[j]))
                XCTAssertEqual(inst.mask != nil, masks, "\(model) image \(i) instance \(j): mask present iff the model has a mask head", file: file, line: line)
                XCTAssertEqual(inst.area != nil, masks, file: file, line: line)
            }
            XCTAssertLessThanOrEqual(boxDiff, 0.01, "\(model) image \(i): boxes (px)", file: file, line: line)
            XCTAssertLessThanOrEqual(scoreDiff, 1e-4, "\(model) image \(i): scores", file: file, line: line)
            guard masks, let ref = stages["alone.\(i).masks"] else { continue }
            let (n, h, w) = (ref.shape[0], ref.shape[1], ref.shape[2])
            for j in 0..<n {
                let mine = rleDecode(try XCTUnwrap(result.instances[j].mask).rle())  // row-major, y·w + x
                var inter = 0, union = 0
                for y in 0..<h {
                    for x in 0..<w {
                        let a = mine[y * w + x] != 0, b = ref.values[(j * h + y) * w + x] != 0
                        if a && b { inter += 1 }
                        if a || b { union += 1 }
                    }
                }
                XCTAssertGreaterThanOrEqual(union == 0 ? 1 : Double(inter) / Double(union), 0.99, "\(model) image \(i) mask \(j) IoU", file: file, line: line)
            }
        }
    }

    func testFineTunedTutorialModelWithLabels() throws {
        let dir = try scratchDirectory(self)
        let input = try inputs("tutorial", in: dir)
        let out = dir.appendingPathComponent("out"), plain = dir.appendingPathComponent("plain")
        let common = ["--precision", "fp32", "--weights", Self.fixture("tutorial", "weights.pth"), "--min-size", "96", "--max-size", "160", "--annotate-score", "0.2"]
        try run(["batch", input.path, "--out", out.path, "--labels", Self.fixture("tutorial", "labels.txt")] + common)
        try assertMatchesTorchvision("tutorial", out: out, classes: ["__background__", "pedestrian", "cyclist"], masks: true)
        // The annotated image is drawn with the names: without --labels it says class1/class2,
        // and the pixels differ (only the label text can: boxes and masks are the same).
        try run(["batch", input.path, "--out", plain.path] + common)
        XCTAssertEqual(try ImageResult.read(from: plain.appendingPathComponent("image1.json").path).instances.first?.label, "class2")
        let named = try Data(contentsOf: out.appendingPathComponent("image1.png"))
        let numbered = try Data(contentsOf: plain.appendingPathComponent("image1.png"))
        XCTAssertNotEqual(named, numbered, "the annotated image shows the class names")
        // A labels file with the wrong count is an error naming both counts.
        let four = dir.appendingPathComponent("four.txt")
        try "__background__\na\nb\nc\n".write(to: four, atomically: true, encoding: .utf8)
        let bad = try Segd.run(["batch", input.path, "--out", dir.appendingPathComponent("bad").path, "--labels", four.path] + common)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("the model has 3 classes") && bad.stderr.contains("\(four.path) names 4"), bad.stderr)
    }

    func testV2ModelWithLabelsFromPipelineConfig() throws {
        let dir = try scratchDirectory(self)
        let input = try inputs("v2", in: dir)
        let out = dir.appendingPathComponent("out")
        let labels = dir.appendingPathComponent("labels.json")
        try #"["__background__", "cat", "dog", "bird"]"#.write(to: labels, atomically: true, encoding: .utf8)
        let config = dir.appendingPathComponent("pipeline.yml")
        try """
        model:
          weights: \(Self.fixture("v2", "weights.pth"))
          labels: labels.json
          min_size: 96
          max_size: 160
        outputs:
          directory: \(out.path)
        """.write(to: config, atomically: true, encoding: .utf8)
        try run(["batch", input.path, "--config", config.path, "--precision", "fp32"])
        try assertMatchesTorchvision("v2", out: out, classes: ["__background__", "cat", "dog", "bird"], masks: true)
    }

    func testFasterRCNNWritesBoxesOnly() throws {
        let dir = try scratchDirectory(self)
        let input = try inputs("faster", in: dir)
        let out = dir.appendingPathComponent("out")
        try run(["batch", input.path, "--out", out.path, "--precision", "fp32", "--weights", Self.fixture("faster", "weights.pth"),
                 "--min-size", "96", "--max-size", "160", "--annotate-score", "0.2"])
        try assertMatchesTorchvision("faster", out: out, classes: ["__background__", "class1", "class2", "class3"], masks: false)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("image0.png").path), "annotated with boxes and labels")
        // A bbox results file: every record has a bbox and no segmentation (pycocotools'
        // loadRes then takes the bbox branch).
        let coco = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_results.json"))) as? [[String: Any]])
        XCTAssertGreaterThan(coco.count, 0)
        XCTAssertTrue(coco.allSatisfy { ($0["bbox"] as? [Any])?.count == 4 && $0["segmentation"] == nil })
    }

    /// `segd model info` prints torchvision's parameter count; `segd model convert` records the
    /// names (and min/max size) so that the converted file needs no flags, and states both load times.
    func testModelInfoAndConvert() throws {
        for (model, arch, count) in [("v2", "maskrcnn_resnet14_fpn_v2", "38,079"), ("faster", "fasterrcnn_resnet10_fpn", "49,851"),
                                     ("faster_v2", "fasterrcnn_resnet14_fpn_v2", "35,411"), ("tutorial", "maskrcnn_resnet14_fpn", "35,097")] {
            let info = try Segd.run(["model", "info", Self.fixture(model, "weights.pth"), "--input", "128x128"])
            XCTAssertEqual(info.status, 0, info.stderr)
            XCTAssertTrue(info.stdout.contains("architecture: \(arch) "), info.stdout)
            XCTAssertTrue(info.stdout.split(separator: "\n").contains { $0.hasPrefix("total parameters") && $0.hasSuffix(" \(count)") },
                          "\(model): \(info.stdout.split(separator: "\n").last ?? "")")
        }
        let dir = try scratchDirectory(self)
        let converted = dir.appendingPathComponent("tuned.safetensors").path
        let r = try Segd.run(["model", "convert", Self.fixture("tutorial", "weights.pth"), "--labels", Self.fixture("tutorial", "labels.txt"),
                              "--min-size", "96", "--max-size", "160", "--out", converted])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("maskrcnn_resnet14_fpn, 3 classes"), r.stdout)
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { $0.hasPrefix("load time ") }.count, 2, r.stdout)
        let input = try inputs("tutorial", in: dir), out = dir.appendingPathComponent("out")
        try run(["batch", input.path, "--out", out.path, "--precision", "fp32", "--weights", converted, "--no-annotate"])
        try assertMatchesTorchvision("tutorial", out: out, classes: ["__background__", "pedestrian", "cyclist"], masks: true)
    }
}
