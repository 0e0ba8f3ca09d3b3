// The new input formats end to end: `segd batch` on a folder mixing JPEG, PNG, WebP, TIFF
// (one multi-page), HEIC and AVIF writes a result per image (per page), PNG annotations
// for the non-JPEG inputs unless JPEG is asked for, and a COCO file naming every page;
// `segd watch` takes each format when dropped into its inbox with the default include.
import Foundation
import Imaging
import MaskRCNN
import XCTest

/// A baseline TIFF of RGB8 pages, uncompressed, one strip per page: enough to hand the
/// pipeline a multi-page file of real pictures (Imaging decodes TIFF but writes none).
func tiffFile(_ pages: [Imaging.Image]) -> [UInt8] {
    var out: [UInt8] = [0x49, 0x49, 42, 0, 0, 0, 0, 0]
    func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: Int) -> [UInt8] { u16(v & 0xFFFF) + u16(v >> 16) }
    var linkAt = 4
    for page in pages {
        let data = out.count
        out += page.pixels
        let bits = out.count
        out += u16(8) + u16(8) + u16(8)
        let ifd = out.count
        out.replaceSubrange(linkAt..<(linkAt + 4), with: u32(ifd))
        // (tag, type, count, value): SHORT 3, LONG 4.
        let entries: [(Int, Int, Int, Int)] = [
            (256, 4, 1, page.width), (257, 4, 1, page.height), (258, 3, 3, bits), (259, 3, 1, 1),
            (262, 3, 1, 2), (273, 4, 1, data), (277, 3, 1, 3), (278, 4, 1, page.height),
            (279, 4, 1, page.pixels.count), (284, 3, 1, 1),
        ]
        out += u16(entries.count)
        for (tag, type, count, value) in entries {
            out += u16(tag) + u16(type) + u32(count) + (type == 3 && count == 1 ? u16(value) + u16(0) : u32(value))
        }
        linkAt = out.count
        out += u32(0)
    }
    return out
}

final class FormatPipelineTests: XCTestCase {
    static let formats = Repo.path("Tests/ImagingTests/Fixtures/formats")

    /// The reference fixture images of the tiny model (dozens of detections), as BatchTests uses them.
    static func fixtureImages() throws -> [Imaging.Image] {
        let stages = try WeightsFile.load(Repo.path("Tests/MaskRCNNTests/Fixtures/tiny/stages.safetensors"))
        return (0..<2).map { i in
            let t = stages["image.\(i)"]!
            return Imaging.Image(width: t.shape[1], height: t.shape[0], pixels: t.values.map { UInt8($0) })
        }
    }

    func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any], path)
    }

    /// The mixed folder: file name in the folder → fixture it is a copy of.
    static let mixed = [
        "still.webp": "lossless.webp", "alpha.webp": "lossless_alpha.webp", "anim.webp": "animated.webp",
        "scan.tif": "multipage.tif", "cmyk.tiff": "cmyk8.tif", "photo.heic": "irot.heic", "photo.avif": "plain.avif",
        "alpha.heif": "alpha.heic",
    ]

    func makeMixedFolder(_ input: URL) throws {
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        for (name, fixture) in Self.mixed {
            try FileManager.default.copyItem(atPath: Self.formats + "/" + fixture, toPath: input.appendingPathComponent(name).path)
        }
        let images = try Self.fixtureImages()
        try Data(images[0].encodeJPEG()).write(to: input.appendingPathComponent("a.jpg"))
        try Data(images[1].encodePNG()).write(to: input.appendingPathComponent("b.png"))
        try Data(tiffFile(images)).write(to: input.appendingPathComponent("two.tif"))
    }

    func testBatchOnAFolderMixingAllSixFormats() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        try makeMixedFolder(input)
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights])
        XCTAssertEqual(r.status, 0, r.stderr)
        let fm = FileManager.default
        // One result per image, per page for the multi-page TIFFs.
        let stems = ["still", "alpha", "anim", "scan", "scan_p2", "scan_p3", "cmyk", "photo", "a", "b", "two", "two_p2"]
        for stem in stems {
            XCTAssertTrue(fm.fileExists(atPath: out.path + "/\(stem).json"), "\(stem).json\n\(r.stderr)")
            // Annotations: JPEG for the JPEG input, PNG (lossless) for all others.
            let ext = stem == "a" ? "jpg" : "png"
            XCTAssertTrue(fm.fileExists(atPath: out.path + "/\(stem).\(ext)"), "\(stem).\(ext)")
        }
        // photo.heic and photo.avif share a stem: the second is kept under its extension.
        let photos = try fm.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("photo") && $0.hasSuffix(".json") }
        XCTAssertEqual(photos.count, 2, "\(photos)")
        // The JSON says which page, and that an animation's first frame was used.
        let p2 = try json(out.path + "/scan_p2.json")
        let source = try XCTUnwrap(p2["source"] as? [String: Any])
        XCTAssertEqual(source["page"] as? Int, 2)
        XCTAssertEqual(source["page_count"] as? Int, 3)
        XCTAssertEqual((try json(out.path + "/scan_p3.json")["image"] as? [String: Any])?["width"] as? Int, 20)
        XCTAssertNil((try json(out.path + "/still.json")["source"] as? [String: Any])?["page"])
        XCTAssertEqual((try json(out.path + "/anim.json")["image"] as? [String: Any])?["frame_count"] as? Int, 3)
        XCTAssertNil((try json(out.path + "/still.json")["image"] as? [String: Any])?["frame_count"])
        // The HEIC's irot (EXIF 6 equivalent) was applied: 32×24 stored, 24×32 upright.
        let heic = try XCTUnwrap(try photos.map { try json(out.path + "/" + $0) }
            .first { ($0["source"] as? [String: Any])?["file_name"] as? String == "photo.heic" })
        XCTAssertEqual((heic["image"] as? [String: Any])?["orientation"] as? Int, 6)
        XCTAssertEqual((heic["image"] as? [String: Any])?["width"] as? Int, 24)
        // The fixture pictures in two.tif give the tiny model detections on both pages.
        for stem in ["two", "two_p2"] {
            XCTAssertFalse(try XCTUnwrap(try json(out.path + "/\(stem).json")["instances"] as? [Any]).isEmpty, stem)
        }
        // COCO: one image entry per page, page 2... named <file>#p<page>; every detection's
        // image id is one of them.
        let ids = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_image_ids.json"))) as? [[String: Any]])
        let names = Set(ids.compactMap { $0["file_name"] as? String })
        XCTAssertEqual(names, Set(Self.mixed.keys).union(["a.jpg", "b.png", "two.tif", "scan.tif#p2", "scan.tif#p3", "two.tif#p2"]))
        XCTAssertEqual(ids.count, names.count)
        let coco = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_results.json"))) as? [[String: Any]])
        XCTAssertTrue(Set(coco.compactMap { $0["image_id"] as? Int }).isSubset(of: Set(ids.compactMap { $0["id"] as? Int })))

        // Asked for JPEG: every annotation is a JPEG.
        let outJPEG = dir.appendingPathComponent("out-jpeg")
        let j = try Segd.run(["batch", input.path, "--out", outJPEG.path, "--weights", Repo.tinyWeights, "--annotated-format", "jpeg"])
        XCTAssertEqual(j.status, 0, j.stderr)
        for stem in stems { XCTAssertTrue(fm.fileExists(atPath: outJPEG.path + "/\(stem).jpg"), "\(stem).jpg") }
        XCTAssertFalse(try fm.contentsOfDirectory(atPath: outJPEG.path).contains { $0.hasSuffix(".png") })
        // --skip-existing reads every page back into the COCO file.
        let again = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights, "--skip-existing"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let idsAgain = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("coco_image_ids.json"))) as? [[String: Any]])
        XCTAssertEqual(Set(idsAgain.compactMap { $0["file_name"] as? String }), names)
    }

    func testAPageThatFailsFailsTheInputAndLeavesNoPages() throws {
        let dir = try scratchDirectory(self)
        let input = dir.appendingPathComponent("in"), out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        // Page 2's strip offset points past the end of the file.
        let images = try Self.fixtureImages()
        var bytes = tiffFile(images)
        // Find page 2's StripOffsets entry (tag 273) in the last IFD and break it.
        let lastIFD = bytes.count - 4 - 10 * 12 - 2
        for e in 0..<10 {
            let at = lastIFD + 2 + 12 * e
            if bytes[at] == 0x11, bytes[at + 1] == 0x01 { bytes.replaceSubrange((at + 8)..<(at + 12), with: [0xF0, 0xFF, 0xFF, 0x7F]) }
        }
        try Data(bytes).write(to: input.appendingPathComponent("broken.tif"))
        try Data(images[0].encodePNG()).write(to: input.appendingPathComponent("fine.png"))
        let r = try Segd.run(["batch", input.path, "--out", out.path, "--weights", Repo.tinyWeights])
        XCTAssertEqual(r.status, 3, r.stderr)
        let line = r.stderr.split(separator: "\n").first { $0.hasPrefix("failed: ") && $0.contains("broken.tif") }
        XCTAssertNotNil(line, r.stderr)
        XCTAssertTrue(line?.contains("page 2 of 2") ?? false, r.stderr)
        let left = try FileManager.default.contentsOfDirectory(atPath: out.path)
        XCTAssertFalse(left.contains { $0.hasPrefix("broken") }, "\(left)")
        XCTAssertTrue(left.contains("fine.json"))
    }

    func testDaemonTakesEachFormatWhenDropped() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()  // inputs.include: the default
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let drops = ["w.webp": "lossless.webp", "t.tif": "multipage.tif", "t2.tiff": "rgb8_lzw.tif",
                     "h.heic": "irot.heic", "f.heif": "plain.heic", "v.avif": "plain.avif"]
        for (name, fixture) in drops {
            try ws.put(Data(contentsOf: URL(fileURLWithPath: Self.formats + "/" + fixture)), name, in: ws.staging)
            XCTAssertEqual(rename(ws.staging + "/" + name, ws.inbox + "/" + name), 0)
        }
        try ws.put(DaemonFixture.jpeg(seed: 1), "j.jpg")
        try ws.put(DaemonFixture.png(seed: 2), "p.png")
        XCTAssertTrue(waitUntil(timeout: 90) {
            ((try? ws.journal()) ?? []).filter { $0.status == .done || $0.status == .failed }.count == 8
        }, d.log)
        let entries = try ws.journal()
        XCTAssertEqual(entries.filter { $0.status == .done }.count, 8, "\(entries.map { "\($0.path) \($0.status) \($0.error ?? "")" })")
        let outs = ws.files(ws.out)
        // One result per image and per page; PNG annotations except for the JPEG.
        let expected = ["w", "t", "t_p2", "t_p3", "t2", "h", "f", "v", "p"].flatMap { [$0 + ".json", $0 + ".png"] }
        XCTAssertEqual(Set(outs), Set(expected + ["j.json", "j.jpg"]))
        XCTAssertEqual(Set(ws.files(ws.done)), Set(drops.keys).union(["j.jpg", "p.png"]))
    }
}
