// `segd batch` end to end, with the real binary and the tiny reference model: outputs per
// image mirroring the input tree, the COCO files, every kind of bad input failing with its
// own reason while the run goes on, safe output names, and --skip-existing.
import Foundation
import Imaging
import MaskRCNN
import XCTest

final class BatchTests: XCTestCase {
    /// The reference fixture images (they give the tiny model dozens of detections).
    func fixtureImages() throws -> [Imaging.Image] {
        let stages = try WeightsFile.load(Repo.path("Tests/MaskRCNNTests/Fixtures/tiny/stages.safetensors"))
        return (0..<2).map { i in
            let t = stages["image.\(i)"]!
            return Imaging.Image(width: t.shape[1], height: t.shape[0], pixels: t.values.map { UInt8($0) })
        }
    }

    func write(_ bytes: [UInt8], to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    func json(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], url.path)
    }

    func testBatchMirrorsTreeAndWritesCOCO() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        let images = try fixtureImages()
        try write(images[0].encodeJPEG(), to: input.appendingPathComponent("a/x.jpg"))
        try write(images[1].encodePNG(), to: input.appendingPathComponent("b.png"))
        try write(images[1].encodeJPEG(), to: input.appendingPathComponent("a/deeper/y.jpeg"))
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights])
        XCTAssertEqual(r.status, 0, r.stderr)
        for stem in ["a/x", "b", "a/deeper/y"] {
            let doc = try json(out.appendingPathComponent(stem + ".json"))
            XCTAssertEqual(doc["schema"] as? String, "segd.result/1")
            let instances = try XCTUnwrap(doc["instances"] as? [[String: Any]])
            XCTAssertFalse(instances.isEmpty, "\(stem): the tiny model detects dozens of boxes on these images")
            let first = instances[0]
            XCTAssertEqual((first["box"] as? [Double])?.count, 4)
            let mask = try XCTUnwrap(first["mask"] as? [String: Any])
            XCTAssertNotNil(mask["counts"] as? String)
            let image = try XCTUnwrap(doc["image"] as? [String: Any])
            XCTAssertEqual(mask["size"] as? [Int], [image["height"] as! Int, image["width"] as! Int])
        }
        // Annotated images keep the input's format family.
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("a/x.jpg").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("b.png").path))
        let annotated = try ImageDecoder().decode(contentsOf: out.appendingPathComponent("b.png").path).image
        XCTAssertEqual(annotated.width, images[1].width)
        XCTAssertNotEqual(annotated.pixels, images[1].pixels, "the annotation draws on the image")
        // COCO results: a list of records loadRes accepts, ids mapped to file names.
        let coco = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_results.json"))) as? [[String: Any]])
        XCTAssertFalse(coco.isEmpty)
        for rec in coco.prefix(50) {
            XCTAssertEqual(Set(rec.keys), ["image_id", "category_id", "bbox", "score", "segmentation"])
        }
        let ids = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_image_ids.json"))) as? [[String: Any]])
        XCTAssertEqual(Set(ids.compactMap { $0["file_name"] as? String }), ["a/x.jpg", "b.png", "a/deeper/y.jpeg"])
        XCTAssertEqual(Set(coco.compactMap { $0["image_id"] as? Int }), Set(ids.compactMap { $0["id"] as? Int }))
    }

    /// libgomp reads its settings when it loads: segd restarts itself with a passive wait
    /// policy (docs/design.md, Threads) unless the user chose one, and says which ran.
    func testOpenMPWaitsPassivelyUnlessTheUserChoseAPolicy() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in")
        try write(try fixtureImages()[0].encodePNG(), to: input.appendingPathComponent("a.png"))
        let env = ProcessInfo.processInfo.environment
        guard env["OMP_WAIT_POLICY"] == nil, env["GOMP_SPINCOUNT"] == nil else {
            throw XCTSkip("the test runner's environment sets OMP_WAIT_POLICY or GOMP_SPINCOUNT")
        }
        let chosen = try Segd.run(["batch", input.path, "--out", dir.appendingPathComponent("o1").path, "--weights", Repo.tinyWeights])
        XCTAssertEqual(chosen.status, 0, chosen.stderr)
        XCTAssertTrue(chosen.stderr.contains("OMP_WAIT_POLICY=passive"), chosen.stderr)
        let user = try Segd.run(["batch", input.path, "--out", dir.appendingPathComponent("o2").path, "--weights", Repo.tinyWeights],
                                environment: ["OMP_WAIT_POLICY": "active"])
        XCTAssertEqual(user.status, 0, user.stderr)
        XCTAssertTrue(user.stderr.contains("OMP_WAIT_POLICY=active"), user.stderr)
        XCTAssertFalse(user.stderr.contains("passive"), user.stderr)
    }

    func testEachBadInputFailsWithItsOwnReasonAndTheRunGoesOn() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        let good = try fixtureImages()[0].encodeJPEG()
        try write(good, to: input.appendingPathComponent("good.jpg"))
        try write(Array(good.prefix(good.count / 2)), to: input.appendingPathComponent("truncated.jpg"))
        try write([], to: input.appendingPathComponent("empty.jpg"))
        try write(Array("this is not an image\n".utf8), to: input.appendingPathComponent("text.jpg"))
        let fixtures = URL(fileURLWithPath: Repo.path("Tests/ImagingTests/Fixtures"))
        for name in ["huge_dims.jpg", "cmyk_adobe.jpg", "rgb16.png"] {
            try FileManager.default.copyItem(at: fixtures.appendingPathComponent(name), to: input.appendingPathComponent(name))
        }
        try FileManager.default.createDirectory(at: input.appendingPathComponent("folder.jpg"), withIntermediateDirectories: true)
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights, "--json-only"])
        XCTAssertEqual(r.status, 3, "some inputs failed: distinct exit code\n\(r.stderr)")
        func reason(_ name: String) -> String? {
            r.stderr.split(separator: "\n").first { $0.hasPrefix("failed: ") && $0.contains(name + ":") }.map(String.init)
        }
        XCTAssertTrue(reason("truncated.jpg")?.lowercased().contains("truncat") ?? false, r.stderr)
        XCTAssertTrue(reason("empty.jpg")?.lowercased().contains("empty") ?? false, r.stderr)
        XCTAssertTrue(reason("text.jpg")?.contains("not a JPEG, PNG, WebP, TIFF, HEIC or AVIF image") ?? false, r.stderr)
        XCTAssertTrue(reason("huge_dims.jpg")?.contains("megapixel") ?? false, r.stderr)
        XCTAssertTrue(reason("folder.jpg")?.contains("directory") ?? false, r.stderr)
        // Distinct reasons, one per failure.
        let reasons = ["truncated.jpg", "empty.jpg", "text.jpg", "huge_dims.jpg", "folder.jpg"].compactMap { reason($0)?.split(separator: ":").dropFirst(2).joined() }
        XCTAssertEqual(Set(reasons).count, 5, r.stderr)
        // The good ones were written; the bad ones left nothing.
        for ok in ["good", "cmyk_adobe", "rgb16"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(ok + ".json").path), ok)
        }
        for bad in ["truncated", "empty", "text", "huge_dims", "folder"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(bad + ".json").path), bad)
        }
    }

    /// Names are mirrored exactly (issue 15), never escaping the output directory, and cut
    /// (with a hash) only where NAME_MAX would refuse them.
    func testOutputNamesMirrorInputsAndNeverEscapeTheOutputDirectory() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("nested/out")
        let good = try fixtureImages()[1].encodeJPEG()
        let long = String(repeating: "é", count: 125)  // 250 bytes: with ".json" over NAME_MAX
        let names = ["-leading-dash.jpg", "new\nline.jpg", "..jpg", String(repeating: "é", count: 120) + ".jpg", "sp ace.jpg", long + ".jpg"]
        for n in names { try write(good, to: input.appendingPathComponent(n)) }
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights, "--json-only"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let written = try FileManager.default.subpathsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".json") && !$0.hasPrefix("coco_") }
        XCTAssertEqual(written.count, names.count, "\(written)")
        let cut = try XCTUnwrap(written.first { $0.contains("~") }, "\(written)")
        XCTAssertTrue(cut.hasPrefix(String(repeating: "é", count: 116)), cut)
        XCTAssertEqual(Set(written).subtracting([cut]),
                       Set(["-leading-dash.json", "new\nline.json", "..json", String(repeating: "é", count: 120) + ".json", "sp ace.json"]))
        for w in written {
            XCTAssertFalse(w.contains("/"), w)
            XCTAssertLessThanOrEqual(w.utf8.count + 8, 255, w)
        }
        // Nothing appeared beside the output directory.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("nested").path), ["out"])
    }

    func testSkipExistingContinuesAnInterruptedRun() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        let images = try fixtureImages()
        try write(images[0].encodeJPEG(), to: input.appendingPathComponent("one.jpg"))
        try write(images[1].encodeJPEG(), to: input.appendingPathComponent("two.jpg"))
        XCTAssertEqual(try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights]).status, 0)
        let before = try Data(contentsOf: out.appendingPathComponent("one.json"))
        try FileManager.default.removeItem(at: out.appendingPathComponent("two.json"))
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights, "--skip-existing"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("1 done") && r.stderr.contains("1 skipped"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("one.json")), before, "skipped output untouched")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("two.json").path))
        let ids = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_image_ids.json"))) as? [Any])
        XCTAssertEqual(ids.count, 2, "the COCO file covers skipped images too")
    }

    func testConfigFileSettingsApplyAndFlagsOverrideThem() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("from-config")
        try write(try fixtureImages()[0].encodeJPEG(), to: input.appendingPathComponent("one.jpg"))
        let config = dir.appendingPathComponent("pipeline.yml")
        try """
        model:
          weights: \(Repo.tinyWeights)
          max_detections: 5
        outputs:
          directory: \(out.path)
          annotated: false
        """.write(to: config, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Segd.run(["batch", input.path, "--config", config.path]).status, 0)
        let doc = try json(out.appendingPathComponent("one.json"))
        XCTAssertEqual((doc["instances"] as? [Any])?.count, 5, "model.max_detections from the file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("one.jpg").path), "outputs.annotated: false")
        let flagged = dir.appendingPathComponent("flagged")
        XCTAssertEqual(try Segd.run(["batch", input.path, "--config", config.path, "--max-detections", "3", "--out", flagged.path]).status, 0)
        XCTAssertEqual((try json(flagged.appendingPathComponent("one.json"))["instances"] as? [Any])?.count, 3, "the flag wins")
        try "model:\n  wieghts: x.pth\n".write(to: config, atomically: true, encoding: .utf8)
        let bad = try Segd.run(["batch", input.path, "--config", config.path])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("wieghts") && bad.stderr.contains(":2"), bad.stderr)
    }

    func testUsageErrorsHaveTheirOwnExitCode() throws {
        let r = try Segd.run(["batch", "/nonexistent/dir", "--weights", Repo.tinyWeights])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("/nonexistent/dir"), r.stderr)
        XCTAssertEqual(try Segd.run(["batch", "--no-such-flag"]).status, 64)
        let m = try Segd.run(["batch", Repo.path("Tests/ImagingTests/Fixtures/baseline.jpg"), "--weights", "/nonexistent.pth", "--out", try scratchDirectory(self).path])
        XCTAssertEqual(m.status, 1)
        XCTAssertTrue(m.stderr.contains("/nonexistent.pth"), m.stderr)
    }
}
