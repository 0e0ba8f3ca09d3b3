// torchvision's other layouts against torchvision (Fixtures/v2, faster, faster_v2, tutorial,
// made by tools/reference/make_family_fixtures.py): the v2 Mask R-CNN (BatchNorm2d folded in
// the ResNet, FPN and heads, two-conv RPN head, FastRCNNConvFCHead), Faster R-CNN v1 and v2
// (no mask head), and the detection tutorial's fine-tuned shape (v1, 3-class predictors).
// As in MaskRCNNTests, each stage is fed torchvision's output of the stage before it, except
// the backbone, which is fed segd's own preprocessing (checked to 1e-5 on the v1 fixtures;
// transform.images is not stored here to keep the files small).
//
// Tolerances are the v1 tests': features and head outputs ≤ 1e-4 relative to the tensor's
// max; boxes 0.01 px; scores 1e-4; same labels in the same order; pasted masks IoU ≥ 0.99.
import MaskRCNN
import Tensor
import XCTest

final class FamilyTests: XCTestCase {
    static let all = ["v2", "faster", "faster_v2", "tutorial"]
    static let v2Layouts = ["v2", "faster_v2"]

    /// The fixture's .pth with torchvision's min_size / max_size of the model it was saved
    /// from (a .pth does not carry them; stages.safetensors' metadata does).
    func config(_ r: ReferenceCase) throws -> ModelConfig {
        var c = ModelConfig()
        c.minSize = Int(try XCTUnwrap(r.stages.metadata["min_size"]))!
        c.maxSize = Int(try XCTUnwrap(r.stages.metadata["max_size"]))!
        return c
    }

    func model(_ r: ReferenceCase) throws -> MaskRCNN { try MaskRCNN(contentsOf: r.weightsPath, config: config(r)) }

    func features(_ r: ReferenceCase) throws -> FeatureMaps {
        FeatureMaps(try ["0", "1", "2", "3", "pool"].map { try r.tensor("features.\($0)").tensor })
    }

    /// segd's preprocessing of the images, with the reference's resized sizes checked.
    func batch(_ r: ReferenceCase, _ m: MaskRCNN) throws -> ImageBatch {
        let b = try m.preprocess(r.images())
        XCTAssertEqual(b.imageSizes.flatMap { [$0.0, $0.1] }, try r.tensor("transform.image_sizes").values.map { Int($0) })
        return b
    }

    func proposals(_ r: ReferenceCase) throws -> [Proposals] {
        try (0..<r.imageCount).map { Proposals(boxes: try r.tensor("proposals.\($0)").values, scores: try r.tensor("proposal_scores.\($0)").values) }
    }

    func testArchitecturesReadFromWeights() throws {
        let v2 = try model(ReferenceCase("v2")).architecture
        XCTAssertEqual(v2.layout, .v2)
        XCTAssertEqual(v2.rpnConvs, 2)
        XCTAssertEqual(v2.boxConvLayers, [8, 8, 8, 8])
        XCTAssertEqual(v2.boxFCLayers, [32])
        XCTAssertTrue(v2.hasMasks)
        XCTAssertEqual(v2.maskLayers, [8, 8, 8, 8])
        XCTAssertEqual(v2.numClasses, 4)
        XCTAssertEqual(v2.name, "maskrcnn_resnet14_fpn_v2")
        let faster = try model(ReferenceCase("faster")).architecture
        XCTAssertEqual(faster.layout, .v1)
        XCTAssertFalse(faster.hasMasks)
        XCTAssertEqual(faster.boxConvLayers, [])
        XCTAssertEqual(faster.boxFCLayers, [32, 32])
        XCTAssertEqual(faster.name, "fasterrcnn_resnet10_fpn")
        let fasterV2 = try model(ReferenceCase("faster_v2")).architecture
        XCTAssertEqual(fasterV2.layout, .v2)
        XCTAssertFalse(fasterV2.hasMasks)
        XCTAssertEqual(fasterV2.name, "fasterrcnn_resnet14_fpn_v2")
        let tutorial = try model(ReferenceCase("tutorial"))
        XCTAssertEqual(tutorial.architecture.layout, .v1)
        XCTAssertEqual(tutorial.architecture.numClasses, 3)
        // A .pth has no names: numbered ones until --labels gives them.
        XCTAssertEqual(tutorial.config.classNames, ["__background__", "class1", "class2"])
    }

    /// `model info`'s parameter count is torchvision's `sum(p.numel() for p in model.parameters())`
    /// (printed by make_family_fixtures.py): BatchNorm2d's γ, β count in v2, FrozenBatchNorm2d's
    /// buffers do not in v1.
    func testParameterCountsAreTorchvisions() throws {
        for (name, count) in [("v2", 38079), ("faster", 49851), ("faster_v2", 35411), ("tutorial", 35097)] {
            XCTAssertEqual(try model(ReferenceCase(name)).summary(height: 128, width: 128).totalParameters, count, name)
        }
    }

    /// The full-size R50 builders (keys and shapes from torchvision, Fixtures/shapes/
    /// torchvision_r50.json by make_r50_shapes.py; zero weights): the architecture segd reads
    /// is the builder's, and `model info`'s count is torchvision's published num_params
    /// (44,401,393 / 46,359,409 / 41,755,286 / 43,712,278).
    func testFullSizeR50BuildersHaveTorchvisionsParameterCounts() throws {
        struct Builder: Decodable { var num_params: Int; var shapes: [String: [Int]] }
        let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("shapes/torchvision_r50.json")
        let builders = try JSONDecoder().decode([String: Builder].self, from: Data(contentsOf: url))
        XCTAssertEqual(builders.mapValues(\.num_params), ["maskrcnn_resnet50_fpn": 44_401_393, "maskrcnn_resnet50_fpn_v2": 46_359_409,
                                                        "fasterrcnn_resnet50_fpn": 41_755_286, "fasterrcnn_resnet50_fpn_v2": 43_712_278])
        for (name, b) in builders.sorted(by: { $0.key < $1.key }) {
            var tensors: [String: HostTensor] = [:]
            for (key, shape) in b.shapes {
                // σ² = 1 so that folding stays finite; the values do not matter here.
                let v: Float = key.hasSuffix("running_var") ? 1 : 0
                tensors[key] = HostTensor(shape: shape, values: [Float](repeating: v, count: shape.reduce(1, *)), sourceDType: "F32")
            }
            let m = try MaskRCNN(stateDict: StateDict(tensors: tensors, metadata: [:], path: name))
            XCTAssertEqual(m.architecture.name, name)
            XCTAssertEqual(m.summary().totalParameters, b.num_params, name)
        }
    }

    func testBackbone() throws {
        for name in Self.all {
            let r = try ReferenceCase(name), m = try model(r)
            let f = try m.backbone(batch(r, m))
            for (l, key) in ["0", "1", "2", "3", "pool"].enumerated() {
                let ref = try r.tensor("features.\(key)")
                XCTAssertEqual(f.levels[l].shape, ref.shape, "\(name) features.\(key)")
                assertClose(try f.levels[l].toArray(), ref.values, relative: 1e-4, "\(name) features.\(key)")
            }
        }
    }

    func testTwoConvRPNHead() throws {
        for name in Self.v2Layouts {
            let r = try ReferenceCase(name), m = try model(r)
            for (l, o) in try m.rpnHeadOutputs(features(r)).enumerated() {
                assertClose(try o.objectness.toArray(), try r.tensor("rpn.objectness.\(l)").values, relative: 1e-4, "\(name) rpn.objectness.\(l)")
                assertClose(try o.deltas.toArray(), try r.tensor("rpn.deltas.\(l)").values, relative: 1e-4, "\(name) rpn.deltas.\(l)")
            }
        }
    }

    func testProposals() throws {
        for name in Self.all {
            let r = try ReferenceCase(name), m = try model(r)
            for (i, p) in try m.proposals(features(r), batch(r, m)).enumerated() {
                let ref = try r.tensor("proposals.\(i)")
                XCTAssertEqual(p.count, ref.shape[0], "\(name) proposals.\(i) count")
                guard p.count == ref.shape[0] else { continue }
                XCTAssertLessThanOrEqual(maxAbsDiff(p.boxes, ref.values), 0.01, "\(name) proposals.\(i) boxes")
                XCTAssertLessThanOrEqual(maxAbsDiff(p.scores, try r.tensor("proposal_scores.\(i)").values), 1e-4, "\(name) proposal_scores.\(i)")
            }
        }
    }

    func testConvFCBoxHead() throws {
        for name in Self.v2Layouts {
            let r = try ReferenceCase(name), m = try model(r)
            let (cls, reg) = try m.boxHeadLogits(features(r), batch(r, m), proposals: proposals(r))
            assertClose(cls, try r.tensor("box_head.class_logits").values, relative: 1e-4, "\(name) box_head.class_logits")
            assertClose(reg, try r.tensor("box_head.box_regression").values, relative: 1e-4, "\(name) box_head.box_regression")
        }
    }

    func testDetections() throws {
        for name in Self.all {
            let r = try ReferenceCase(name), m = try model(r)
            for (i, d) in try m.detect(features(r), batch(r, m), proposals: proposals(r)).enumerated() {
                assertSameDetections(boxes: d.boxes, scores: d.scores, labels: d.labels,
                                     reference: (try r.tensor("detections.\(i).boxes"), try r.tensor("detections.\(i).scores"), try r.tensor("detections.\(i).labels")),
                                     "\(name) detections.\(i)")
            }
        }
    }

    func testMaskHeads() throws {
        for name in ["v2", "tutorial"] {
            let r = try ReferenceCase(name), m = try model(r)
            let dets = try (0..<r.imageCount).map { i in
                ROIDetections(boxes: try r.tensor("detections.\(i).boxes").values, scores: try r.tensor("detections.\(i).scores").values,
                              labels: try r.tensor("detections.\(i).labels").values.map { Int($0) })
            }
            for (i, p) in try m.masks(features(r), batch(r, m), detections: dets).enumerated() {
                let ref = try r.tensor("detections.\(i).mask_probs")
                XCTAssertLessThanOrEqual(maxAbsDiff(Array(p.prefix(ref.count)), ref.values), 1e-4, "\(name) detections.\(i).mask_probs")
            }
        }
        // Faster R-CNN: no mask head, so no masks, and no paste.
        let r = try ReferenceCase("faster"), m = try model(r)
        XCTAssertEqual(try m.masks(features(r), batch(r, m), detections: [ROIDetections(boxes: [0, 0, 4, 4], scores: [0.9], labels: [1])]), [[]])
    }

    /// All stages chained, for the batch of both images and for each image alone.
    func testEndToEnd() throws {
        for name in Self.all {
            let r = try ReferenceCase(name), m = try model(r)
            let images = try r.images()
            var runs: [(String, [Detections])] = [("final", try m(images))]
            for (i, image) in images.enumerated() { runs.append(("alone.\(i)", try m([image]))) }
            for (prefix, results) in runs {
                for (i, d) in results.enumerated() {
                    let key = prefix == "final" ? "final.\(i)" : prefix
                    assertSameDetections(boxes: d.boxes, scores: d.scores, labels: d.labels,
                                         reference: (try r.tensor("\(key).boxes"), try r.tensor("\(key).scores"), try r.tensor("\(key).labels")), "\(name) \(key)")
                    if let refMasks = r.stages["\(key).masks"] {
                        assertMasks(d, refMasks, "\(name) \(key)")
                    } else {
                        XCTAssertTrue(d.maskProbabilities.isEmpty, "\(name) \(key): a model without a mask head gives no masks")
                    }
                }
            }
        }
    }

    // MARK: strict loading of the v2 layout

    func v2State() throws -> StateDict { try WeightsFile.load(ReferenceCase("v2").weightsPath) }

    func testV2MissingBatchNormKeyIsNamed() throws {
        var sd = try v2State()
        sd.tensors["roi_heads.box_head.2.1.running_var"] = nil
        XCTAssertThrowsError(try MaskRCNN(stateDict: sd)) { e in
            XCTAssertEqual("\(e)", "\(sd.path): missing weight roi_heads.box_head.2.1.running_var (expected shape [8])")
        }
    }

    func testV2MisShapedKeyNamesBothShapes() throws {
        var sd = try v2State()
        sd.tensors["backbone.fpn.layer_blocks.1.1.weight"] = HostTensor(shape: [9], values: [Float](repeating: 1, count: 9), sourceDType: "F32")
        XCTAssertThrowsError(try MaskRCNN(stateDict: sd)) { e in
            XCTAssertEqual("\(e)", "\(sd.path): weight backbone.fpn.layer_blocks.1.1.weight has shape [9], the model needs [8]")
        }
    }

    func testV2UnusedKeysAreErrorsButBatchNormCountersAreTaken() throws {
        var sd = try v2State()
        // The file has every BatchNorm2d's num_batches_tracked (make_family_fixtures.py sets 1000).
        let counters = sd.keys.filter { $0.hasSuffix(".num_batches_tracked") }
        XCTAssertEqual(counters.count, 33)  // stem, 4 blocks × 4, FPN 8, box head 4, mask head 4
        XCTAssertNoThrow(try MaskRCNN(stateDict: sd))
        // A counter of no BatchNorm the model has, and a stray weight, are not silently dropped.
        sd.tensors["roi_heads.box_head.7.num_batches_tracked"] = HostTensor(shape: [], values: [3], sourceDType: "I64")
        sd.tensors["roi_heads.box_head.9.weight"] = HostTensor(shape: [1], values: [1], sourceDType: "F32")
        XCTAssertThrowsError(try MaskRCNN(stateDict: sd)) { e in
            XCTAssertEqual("\(e)", "\(sd.path): 2 weight(s) not used by the model: roi_heads.box_head.7.num_batches_tracked, roi_heads.box_head.9.weight")
        }
    }

    // MARK: class names

    func testLabelsFileNamesTheClasses() throws {
        let r = try ReferenceCase("tutorial")
        let dir = URL(fileURLWithPath: r.weightsPath).deletingLastPathComponent()
        let names = try ClassNames(contentsOf: dir.appendingPathComponent("labels.txt").path)
        XCTAssertEqual(names.names, ["__background__", "pedestrian", "cyclist"])
        XCTAssertEqual(try MaskRCNN(contentsOf: r.weightsPath, classNames: names).config.classNames, names.names)
        let json = try ClassNames(parsing: " [\"__background__\", \"pedestrian\", \"cyclist\"]\n", source: "l.json")
        XCTAssertEqual(json.names, names.names)
        let crlf = try ClassNames(parsing: "__background__\r\npedestrian\r\ncyclist\r\n\r\n", source: "l.txt")
        XCTAssertEqual(crlf.names, names.names)
        let four = ClassNames(names: ["__background__", "a", "b", "c"], source: "four.txt")
        XCTAssertThrowsError(try MaskRCNN(contentsOf: r.weightsPath, classNames: four)) { e in
            XCTAssertEqual("\(e)", "\(r.weightsPath): the model has 3 classes (background included), the labels file four.txt names 4")
        }
    }

    func testBadLabelsFilesAreErrors() {
        func reason(_ text: String) -> String {
            do { _ = try ClassNames(parsing: text, source: "l"); return "parsed" } catch { return "\(error)" }
        }
        XCTAssertEqual(reason("__background__\n\npedestrian\n"), "labels file l: name 2 is empty")
        XCTAssertEqual(reason("[\"__background__\", 3]"), "labels file l: item 1 of the JSON list is not a string")
        XCTAssertEqual(reason("[\"__background__\""), "labels file l: starts with '[' but is not a JSON list")
        XCTAssertEqual(reason("__background__\n"), "labels file l: 1 name(s); it needs the background class first, then at least one class")
        XCTAssertThrowsError(try ClassNames(contentsOf: "/nonexistent/labels.txt")) { e in
            XCTAssertEqual("\(e)", "labels file /nonexistent/labels.txt: cannot read it")
        }
    }

    // MARK: model convert

    func testConvertWritesSafetensorsThatLoadToTheSameDetections() throws {
        for name in ["v2", "tutorial", "faster"] {
            let r = try ReferenceCase(name)
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("segd-convert-\(UUID().uuidString).safetensors").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            let names = ClassNames(names: ["__background__"] + (1..<(try model(r).architecture.numClasses)).map { "n\($0)" }, source: "test")
            let c = try config(r)
            let report = try ModelConverter.convert(input: r.weightsPath, output: out, classNames: names, minSize: c.minSize, maxSize: c.maxSize)
            let sd = try WeightsFile.load(out)
            XCTAssertEqual(sd.metadata["arch"], try model(r).architecture.name, name)
            XCTAssertEqual(sd.metadata["classes"].map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String] } ?? nil, names.names)
            XCTAssertEqual(sd.metadata["frozen_bn_eps"], "0.0", name)
            XCTAssertEqual(sd.metadata["batch_norm_eps"], "1e-05", name)
            XCTAssertFalse(sd.keys.contains { $0.hasSuffix("num_batches_tracked") }, name)
            XCTAssertEqual(report.droppedCounters, name == "v2" ? 33 : 0, name)
            let converted = try MaskRCNN(contentsOf: out)
            XCTAssertEqual(converted.config.classNames, names.names)
            XCTAssertEqual([converted.config.minSize, converted.config.maxSize], [96, 160], "sizes recorded")
            let a = try model(r)(r.images()), b = try converted(r.images())
            for (x, y) in zip(a, b) {
                XCTAssertEqual(x.boxes, y.boxes, name)
                XCTAssertEqual(x.scores, y.scores, name)
                XCTAssertEqual(x.labels, y.labels, name)
                XCTAssertEqual(x.maskProbabilities, y.maskProbabilities, name)
            }
        }
    }
}
