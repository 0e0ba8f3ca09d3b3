// Weight readers against files written by torch itself (tools/reference/make_weight_fixtures.py:
// every dtype, shared-storage views with offsets and strides, zip, zip64, legacy,
// safetensors), and against broken and hostile files built here byte by byte.
import Foundation
import MaskRCNN
import XCTest

final class WeightsTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        // tmpfs when there is one: the prefix and corruption tests write thousands of small
        // files, 2 ms each on a disk-backed /tmp, 0.05 ms on tmpfs.
        let shm = URL(fileURLWithPath: "/dev/shm")
        let base = FileManager.default.isWritableFile(atPath: shm.path) ? shm : FileManager.default.temporaryDirectory
        scratch = base.appendingPathComponent("segd-weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: helpers

    private static var fixtures: URL { Bundle.module.url(forResource: "Fixtures", withExtension: nil)! }
    private func fixture(_ name: String) -> String { Self.fixtures.appendingPathComponent("weights/\(name)").path }

    private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    private func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    private struct Expected {
        let shape: [Int]
        let dtype: String
        let bits: [UInt32]
    }

    private func expected() throws -> (tensors: [String: Expected], pth: [String: String], safetensors: [String: String]) {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("expected.json")))) as! [String: Any]
        var tensors: [String: Expected] = [:]
        for (key, value) in json["tensors"] as! [String: [String: Any]] {
            tensors[key] = Expected(shape: (value["shape"] as! [NSNumber]).map(\.intValue),
                                    dtype: value["dtype"] as! String,
                                    bits: (value["bits"] as! [NSNumber]).map(\.uint32Value))
        }
        return (tensors, json["metadata_pth"] as! [String: String], json["metadata_safetensors"] as! [String: String])
    }

    /// Loading must throw a WeightsError that `matches`, whose message names the file and
    /// contains every phrase of `mentions`.
    private func assertFails(_ path: String, mentions: [String] = [], file: StaticString = #filePath, line: UInt = #line,
                             _ matches: (WeightsError) -> Bool) {
        do {
            _ = try WeightsFile.load(path)
            XCTFail("\(path) loaded but should have failed", file: file, line: line)
        } catch let error as WeightsError {
            XCTAssertTrue(matches(error), "unexpected error: \(error)", file: file, line: line)
            XCTAssertEqual(error.path, path, file: file, line: line)
            XCTAssertTrue(error.description.contains(path), "message does not name the file: \(error)", file: file, line: line)
            for m in mentions {
                XCTAssertTrue(error.description.contains(m), "message lacks '\(m)': \(error)", file: file, line: line)
            }
        } catch {
            XCTFail("not a WeightsError: \(error)", file: file, line: line)
        }
    }

    private func bits(_ t: HostTensor) -> [UInt32] { t.values.map(\.bitPattern) }

    // MARK: torch-written fixtures

    func testEveryFormatMatchesTorch() throws {
        let exp = try expected()
        for name in ["small.pth", "small_legacy.pth", "small_p4.pth", "small_legacy_p5.pth", "small_zip64.pth", "small.safetensors"] {
            let sd = try WeightsFile.load(fixture(name))
            XCTAssertEqual(sd.path, fixture(name))
            XCTAssertEqual(Set(sd.tensors.keys), Set(exp.tensors.keys), name)
            for (key, e) in exp.tensors {
                guard let t = sd[key] else { continue }
                XCTAssertEqual(t.shape, e.shape, "\(name) \(key) shape")
                XCTAssertEqual(t.sourceDType, e.dtype, "\(name) \(key) dtype")
                XCTAssertEqual(bits(t), e.bits, "\(name) \(key) values")
            }
            XCTAssertEqual(sd.metadata, name.hasSuffix(".safetensors") ? exp.safetensors : exp.pth, name)
        }
    }

    func testSpotValuesOfViewsAndConversions() throws {
        // Independent of expected.json: the arithmetic of the views written by the script.
        let sd = try WeightsFile.load(fixture("small.pth"))
        XCTAssertEqual(sd["view.slice"]?.values, [10, 11, 12, 13, 14, 18, 19, 20, 21, 22, 26, 27, 28, 29, 30, 34, 35, 36, 37, 38])
        XCTAssertEqual(sd["view.t"]?.shape, [8, 6])
        XCTAssertEqual(Array(sd["view.t"]!.values.prefix(7)), [0, 8, 16, 24, 32, 40, 1])
        XCTAssertEqual(sd["view.step"]?.values, [1, 4, 7, 17, 20, 23, 33, 36, 39])
        XCTAssertEqual(sd["view.expand"]?.values, [16, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 32])
        XCTAssertEqual(sd["bn.num_batches_tracked"], HostTensor(shape: [], values: [7], sourceDType: "I64"))
        XCTAssertEqual(sd["empty"], HostTensor(shape: [0, 3], values: [], sourceDType: "F32"))
        XCTAssertEqual(sd["u8"]?.values, [0, 255, 128])
        XCTAssertEqual(sd["bool"]?.values, [1, 0, 1])
        let half = sd["f16"]!.values
        XCTAssertEqual(Array(half.prefix(3)), [1.5, -2, 65504])
        XCTAssertEqual(half[3], 0x1p-24, "6e-8 rounds to the smallest half subnormal")
        XCTAssertEqual(half[4], .infinity)
        XCTAssertEqual(half[5].bitPattern, (-Float(0)).bitPattern)
        XCTAssertTrue(half[6].isNaN)
    }

    func testFormatsLoadIdenticalTensors() throws {
        let reference = try WeightsFile.load(fixture("small.safetensors"))
        for name in ["small.pth", "small_legacy.pth", "small_p4.pth", "small_legacy_p5.pth", "small_zip64.pth"] {
            let sd = try WeightsFile.load(fixture(name))
            XCTAssertEqual(sd.keys, reference.keys, name)
            for key in reference.keys {
                XCTAssertEqual(sd[key]?.shape, reference[key]?.shape, "\(name) \(key)")
                XCTAssertEqual(sd[key].map(bits), reference[key].map(bits), "\(name) \(key)")
            }
        }
    }

    /// The other engineer's tiny Mask R-CNN in three formats; the legacy file uses
    /// torchvision's 2019 key names, so this also checks the key mapping on a real model.
    func testTinyModelFormatsAgreeAfterNormalization() throws {
        let dir = Self.fixtures.appendingPathComponent("tiny")
        let names = ["weights.pth", "weights_legacy.pth", "weights.safetensors"]
        let paths = names.map { dir.appendingPathComponent($0).path }
        guard paths.allSatisfy({ FileManager.default.fileExists(atPath: $0) }) else {
            throw XCTSkip("Fixtures/tiny is not generated (tools/reference/make_fixtures.py)")
        }
        let raw = try paths.map { try WeightsFile.load($0) }
        let normalized = raw.map { $0.normalizedTorchvisionKeys() }
        let keys = normalized[0].keys
        XCTAssertTrue(keys.contains("rpn.head.conv.0.0.weight"))
        XCTAssertTrue(keys.contains("backbone.fpn.inner_blocks.0.0.weight"))
        XCTAssertTrue(keys.contains("roi_heads.mask_head.0.0.weight"))
        XCTAssertFalse(keys.contains { $0.hasSuffix("num_batches_tracked") })
        for (name, sd) in zip(names, normalized) {
            XCTAssertEqual(sd.keys, keys, name)
            for key in keys {
                XCTAssertEqual(sd[key]?.shape, normalized[0][key]?.shape, "\(name) \(key)")
                XCTAssertEqual(sd[key].map(bits), normalized[0][key].map(bits), "\(name) \(key)")
            }
        }
    }

    // MARK: key normalization

    func testNormalizationMapsOld2019TorchvisionNames() {
        let t = HostTensor(shape: [1], values: [1], sourceDType: "F32")
        func tensor(_ v: Float) -> HostTensor { HostTensor(shape: [1], values: [v], sourceDType: "F32") }
        let old = StateDict(tensors: [
            "backbone.fpn.inner_blocks.3.weight": tensor(1),
            "backbone.fpn.layer_blocks.0.bias": tensor(2),
            "rpn.head.conv.weight": tensor(3),
            "rpn.head.conv.bias": tensor(4),
            "roi_heads.mask_head.mask_fcn1.weight": tensor(5),
            "roi_heads.mask_head.mask_fcn4.bias": tensor(6),
            // already current, or not a renamed module: unchanged
            "backbone.fpn.inner_blocks.0.0.weight": t,
            "rpn.head.cls_logits.weight": t,
            "roi_heads.mask_predictor.conv5_mask.weight": t,
            "roi_heads.mask_head.mask_fcn0.weight": t,      // torchvision counts from 1
            "roi_heads.mask_head.mask_fcn01.weight": t,     // not str(int)
            "backbone.body.layer1.0.conv1.weight": t,
            "backbone.body.bn1.running_mean": t,
            // kept: the loader takes it with its BatchNorm (a stray one is an unused key)
            "backbone.body.bn1.num_batches_tracked": HostTensor(shape: [], values: [0], sourceDType: "I64"),
        ], metadata: ["_metadata/backbone.fpn/version": "1"], path: "old.pth")
        let new = old.normalizedTorchvisionKeys()
        XCTAssertEqual(new.keys, [
            "backbone.body.bn1.num_batches_tracked",
            "backbone.body.bn1.running_mean",
            "backbone.body.layer1.0.conv1.weight",
            "backbone.fpn.inner_blocks.0.0.weight",
            "backbone.fpn.inner_blocks.3.0.weight",
            "backbone.fpn.layer_blocks.0.0.bias",
            "roi_heads.mask_head.0.0.weight",
            "roi_heads.mask_head.3.0.bias",
            "roi_heads.mask_head.mask_fcn0.weight",
            "roi_heads.mask_head.mask_fcn01.weight",
            "roi_heads.mask_predictor.conv5_mask.weight",
            "rpn.head.cls_logits.weight",
            "rpn.head.conv.0.0.bias",
            "rpn.head.conv.0.0.weight",
        ])
        XCTAssertEqual(new["backbone.fpn.inner_blocks.3.0.weight"]?.values, [1])
        XCTAssertEqual(new["backbone.fpn.layer_blocks.0.0.bias"]?.values, [2])
        XCTAssertEqual(new["rpn.head.conv.0.0.weight"]?.values, [3])
        XCTAssertEqual(new["rpn.head.conv.0.0.bias"]?.values, [4])
        XCTAssertEqual(new["roi_heads.mask_head.0.0.weight"]?.values, [5])
        XCTAssertEqual(new["roi_heads.mask_head.3.0.bias"]?.values, [6])
        XCTAssertEqual(new.metadata, old.metadata)
        XCTAssertEqual(new.path, "old.pth")
        // Idempotent: current names map to themselves.
        XCTAssertEqual(new.normalizedTorchvisionKeys().keys, new.keys)
    }

    // MARK: not a weights file

    func testEmptyTextImageMissingAndDirectory() throws {
        let empty = try write("empty.pth", [])
        assertFails(empty, mentions: ["empty"]) { if case .emptyFile = $0 { true } else { false } }

        let text = try write("notes.pth", Array("hello, these are not weights\nsecond line\n".utf8))
        assertFails(text, mentions: ["text file", "hello, these are not weights"]) {
            if case .unrecognizedFormat = $0 { true } else { false }
        }
        let lfs = try write("lfs.safetensors", Array("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n".utf8))
        assertFails(lfs, mentions: ["Git LFS pointer"]) { if case .unrecognizedFormat = $0 { true } else { false } }

        let jpeg = try write("photo.pth", [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01])
        assertFails(jpeg, mentions: ["JPEG"]) { if case .unrecognizedFormat = $0 { true } else { false } }

        let missing = scratch.appendingPathComponent("nope.pth").path
        assertFails(missing, mentions: ["No such file"]) { if case .cannotOpen = $0 { true } else { false } }
        assertFails(scratch.path, mentions: ["directory"]) { if case .cannotOpen = $0 { true } else { false } }

        // A pickle, but not torch.save's: a plain pickled dict.
        let pickle = try write("plain.pkl", [0x80, 0x02, 0x7D, 0x2E])
        assertFails(pickle, mentions: ["not a torch.save checkpoint"]) { if case .unrecognizedFormat = $0 { true } else { false } }
    }

    // MARK: truncation and corruption

    func testTruncatedZip() throws {
        let full = try bytes(fixture("small.pth"))
        let half = try write("half.pth", Array(full.prefix(full.count / 2)))
        assertFails(half, mentions: ["truncated", "end-of-central-directory"]) { if case .truncated = $0 { true } else { false } }
    }

    func testTruncatedLegacy() throws {
        let full = try bytes(fixture("small_legacy.pth"))
        // Inside the main pickle: an opcode or STOP is missing.
        let inPickle = try write("in_pickle.pth", Array(full.prefix(200)))
        assertFails(inPickle, mentions: ["truncated", "pickle"]) { if case .truncated = $0 { true } else { false } }
        // Inside the storage data that follows the pickles.
        let inData = try write("in_data.pth", Array(full.dropLast(5)))
        assertFails(inData, mentions: ["truncated", "storage", "file ends at \(full.count - 5)"]) {
            if case .truncated = $0 { true } else { false }
        }
    }

    /// Every prefix of every fixture fails cleanly (a WeightsError naming the file, never a
    /// crash or an out-of-bounds read), whatever structure the cut lands in.
    func testEveryPrefixFailsCleanly() throws {
        for (name, step) in [("small_legacy.pth", 1), ("small_legacy_p5.pth", 3), ("small.safetensors", 1),
                             ("small.pth", 11), ("small_zip64.pth", 11)] {
            let full = try bytes(fixture(name))
            let path = scratch.appendingPathComponent("prefix-\(name)").path
            for n in stride(from: 0, to: full.count, by: step) {
                try Data(full.prefix(n)).write(to: URL(fileURLWithPath: path))
                do {
                    _ = try WeightsFile.load(path)
                    // safetensors tolerates a cut inside trailing padding only; there is none.
                    XCTFail("\(name) cut to \(n) bytes loaded")
                } catch let e as WeightsError {
                    XCTAssertEqual(e.path, path)
                } catch {
                    XCTFail("\(name) cut to \(n): \(error)")
                }
            }
        }
    }

    /// Random byte corruption of each fixture either still loads or fails with a
    /// WeightsError; it must never crash.
    func testCorruptedBytesNeverCrash() throws {
        var rng = SplitMix64(seed: 0x5E6D)
        for name in ["small_legacy.pth", "small_legacy_p5.pth", "small.pth", "small_p4.pth", "small_zip64.pth", "small.safetensors"] {
            let full = try bytes(fixture(name))
            let path = scratch.appendingPathComponent("corrupt-\(name)").path
            for _ in 0 ..< 300 {
                var b = full
                for _ in 0 ..< 1 + Int(rng.next() % 3) {
                    b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                try Data(b).write(to: URL(fileURLWithPath: path))
                do {
                    _ = try WeightsFile.load(path)
                } catch is WeightsError {
                } catch {
                    XCTFail("\(name): \(error)")
                }
            }
        }
    }

    func testCompressedZipEntryIsRefused() throws {
        let path = fixture("deflated.pth")
        assertFails(path, mentions: ["compressed (deflate)", "data.pkl"]) {
            if case let .invalidZip(_, entry, _) = $0 { entry?.hasSuffix("data.pkl") == true } else { false }
        }
    }

    func testZipWithoutDataPkl() throws {
        // An empty archive: just the end record.
        let path = try write("empty.zip", [0x50, 0x4B, 0x05, 0x06] + [UInt8](repeating: 0, count: 18))
        assertFails(path, mentions: ["data.pkl"]) { if case .invalidZip = $0 { true } else { false } }
    }

    // MARK: hostile pickles

    func testForbiddenGlobalInZipCheckpoint() throws {
        let path = fixture("evil_global.pth")
        let file = try bytes(path)
        assertFails(path, mentions: ["os.system", "evil_global/data.pkl", "never runs code"]) {
            guard case let .forbiddenGlobal(_, stream, offset, global) = $0 else { return false }
            // The offset is the file byte of the GLOBAL opcode ('c').
            return global == "os.system" && stream == "evil_global/data.pkl" && file[offset] == UInt8(ascii: "c")
        }
    }

    func testForbiddenGlobalsInLegacyCheckpoint() throws {
        // GLOBAL posix.system in the main pickle, after a valid header.
        let p = PickleBuilder.legacyHeader()
        let at = p.bytes.count + 2
        p.proto().global("posix", "system").unicode("rm -rf /").op(0x85).op(0x52).stop()
        let path = try write("evil.pth", p.bytes)
        assertFails(path, mentions: ["posix.system", "byte \(at)"]) {
            if case let .forbiddenGlobal(_, _, offset, global) = $0 { global == "posix.system" && offset == at } else { false }
        }

        // STACK_GLOBAL (protocol 4) builtins.eval, in the first pickle.
        let q = PickleBuilder()
        q.proto(4).shortUnicode("builtins").shortUnicode("eval").op(0x93).unicode("1").op(0x85).op(0x52).stop()
        let path2 = try write("eval.pth", q.bytes)
        assertFails(path2, mentions: ["builtins.eval"]) {
            if case let .forbiddenGlobal(_, _, _, global) = $0 { global == "builtins.eval" } else { false }
        }

        // torch.* is whitelisted only for storage types.
        let r = PickleBuilder.legacyHeader()
        r.proto().global("torch", "load").unicode("x").op(0x85).op(0x52).stop()
        let path3 = try write("torchload.pth", r.bytes)
        assertFails(path3, mentions: ["torch.load"]) { if case .forbiddenGlobal = $0 { true } else { false } }
    }

    func testUnsupportedOpcodeIsNamed() throws {
        let p = PickleBuilder.legacyHeader()
        let at = p.bytes.count + 2
        p.proto().op(0x82).op(0x01).stop() // EXT1 (copyreg extension registry)
        let path = try write("ext.pth", p.bytes)
        assertFails(path, mentions: ["0x82", "byte \(at)"]) { if case .invalidPickle = $0 { true } else { false } }
    }

    // MARK: hand-built legacy checkpoints: view bounds

    /// A legacy checkpoint with one tensor 'w' viewing a 4-float storage [1, 2, 3, 4].
    private func legacy(offset: Int, size: [Int], stride: [Int], storedCount: Int64 = 4,
                        value: ((PickleBuilder) -> Void)? = nil) -> [UInt8] {
        let p = PickleBuilder.legacyHeader()
        p.proto().op(0x7D).unicode("w")
        if let value {
            value(p)
        } else {
            p.global("torch._utils", "_rebuild_tensor_v2").op(0x28)
            p.op(0x28).unicode("storage").global("torch", "FloatStorage").unicode("k0").unicode("cpu").int(4).op(0x4E).op(0x74)
            p.op(0x51).int(offset)
            p.op(0x28); size.forEach { p.int($0) }; p.op(0x74)
            p.op(0x28); stride.forEach { p.int($0) }; p.op(0x74)
            p.op(0x89).global("collections", "OrderedDict").op(0x29).op(0x52).op(0x74).op(0x52)
        }
        p.op(0x73).stop()
        p.proto().op(0x5D).op(0x28).unicode("k0").op(0x65).stop()
        p.bytes += withUnsafeBytes(of: storedCount.littleEndian, Array.init)
        for v: Float in [1, 2, 3, 4] { p.bytes += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
        return p.bytes
    }

    func testHandBuiltLegacyCheckpointLoads() throws {
        // Validates the builder: a transposed 2×2 view.
        let sd = try WeightsFile.load(write("ok.pth", legacy(offset: 0, size: [2, 2], stride: [1, 2])))
        XCTAssertEqual(sd["w"], HostTensor(shape: [2, 2], values: [1, 3, 2, 4], sourceDType: "F32"))
        let tail = try WeightsFile.load(write("tail.pth", legacy(offset: 3, size: [1], stride: [1])))
        XCTAssertEqual(tail["w"]?.values, [4])
    }

    func testViewsOutsideTheirStorageAreRefused() throws {
        let past = try write("past.pth", legacy(offset: 1, size: [2, 2], stride: [2, 1]))
        assertFails(past, mentions: ["tensor 'w'", "reaches element 4", "has 4"]) {
            if case let .invalidTensor(_, key, _) = $0 { key == "w" } else { false }
        }
        let huge = try write("huge.pth", legacy(offset: 0, size: [2, 2], stride: [Int(Int32.max), 1]))
        assertFails(huge, mentions: ["tensor 'w'"]) { if case .invalidTensor = $0 { true } else { false } }
        let rank = try write("rank.pth", legacy(offset: 0, size: [2, 2], stride: [1]))
        assertFails(rank, mentions: ["different ranks"]) { if case .invalidTensor = $0 { true } else { false } }
        let short = try write("short.pth", legacy(offset: 0, size: [4], stride: [1], storedCount: 3))
        assertFails(short, mentions: ["3 elements"]) { if case .invalidTensor = $0 { true } else { false } }
    }

    func testNonTensorValueIsNotAStateDict() throws {
        let path = try write("int.pth", legacy(offset: 0, size: [1], stride: [1]) { $0.int(5) })
        // The value is an int, so the listed storage 'k0' is referenced by nothing: also an error.
        assertFails(path, mentions: ["storage 'k0'"]) { if case .invalidPickle = $0 { true } else { false } }
        let p = PickleBuilder.legacyHeader()
        p.proto().op(0x7D).unicode("w").int(5).op(0x73).stop()
        p.proto().op(0x5D).stop()
        let path2 = try write("int2.pth", p.bytes)
        assertFails(path2, mentions: ["'w'", "int, not a tensor"]) { if case .notAStateDict = $0 { true } else { false } }
    }

    // MARK: safetensors

    private func safetensors(_ header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian, Array.init) + h + data
    }

    func testSafeTensorsHeaderChecks() throws {
        let eight = [UInt8](repeating: 0, count: 8)
        let ok = try write("ok.safetensors", safetensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#,
                                                          data: withUnsafeBytes(of: Float(2.5).bitPattern, Array.init) + [0, 0, 0x80, 0xBF]))
        let sd = try WeightsFile.load(ok)
        XCTAssertEqual(sd["a"]?.values, [2.5, -1])
        XCTAssertEqual(sd.metadata, ["k": "v"])

        let beyond = try write("beyond.safetensors", safetensors(#"{"a":{}}"#, data: [], declaredLength: 1000))
        assertFails(beyond, mentions: ["header length is 1000"]) { if case .truncated = $0 { true } else { false } }

        let outOfRange = try write("range.safetensors",
                                   safetensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, data: eight))
        assertFails(outOfRange, mentions: ["'a'", "past the 8-byte data area"]) {
            if case let .invalidSafeTensors(_, key, _) = $0 { key == "a" } else { false }
        }
        let mismatch = try write("mismatch.safetensors",
                                 safetensors(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight))
        assertFails(mismatch, mentions: ["needs 12 bytes"]) { if case .invalidSafeTensors = $0 { true } else { false } }
        let overlap = try write("overlap.safetensors", safetensors(
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}}"#, data: eight))
        assertFails(overlap, mentions: ["overlap"]) { if case .invalidSafeTensors = $0 { true } else { false } }
        let dtype = try write("dtype.safetensors",
                              safetensors(#"{"a":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}"#, data: eight))
        assertFails(dtype, mentions: ["F8_E4M3", "not supported"]) { if case .invalidSafeTensors = $0 { true } else { false } }
        let negative = try write("negative.safetensors",
                                 safetensors(#"{"a":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}}"#, data: eight))
        assertFails(negative, mentions: ["shape"]) { if case .invalidSafeTensors = $0 { true } else { false } }
        let json = try write("json.safetensors", safetensors(#"{"a": nope}"#, data: eight))
        assertFails(json, mentions: ["not valid JSON"]) { if case .invalidSafeTensors = $0 { true } else { false } }
        let meta = try write("meta.safetensors", safetensors(#"{"__metadata__":{"n":1}}"#, data: []))
        assertFails(meta, mentions: ["__metadata__"]) { if case .invalidSafeTensors = $0 { true } else { false } }
    }

    // MARK: performance

    /// A checkpoint the size of torchvision's Mask R-CNN (170 MB of float32) must load in
    /// well under a few seconds: tensors are converted in bulk from the mapping.
    func testLoadsAModelSizedFileQuickly() throws {
        // 43.2M floats (173 MB), in tensors of the sizes the real model has (fc6 is 12.8M).
        let shapes: [[Int]] = [[1024, 12544]] + Array(repeating: [256, 256, 3, 3], count: 20) + [[2048, 1024, 1, 1]]
            + Array(repeating: [512, 2048, 1, 1], count: 10) + [[4, 1_500_000]]
        var header = "{", offset = 0
        for (i, s) in shapes.enumerated() {
            let n = s.reduce(1, *) * 4
            header += "\(i == 0 ? "" : ",")\"t\(i)\":{\"dtype\":\"F32\",\"shape\":\(s),\"data_offsets\":[\(offset),\(offset + n)]}"
            offset += n
        }
        header += "}"
        let url = scratch.appendingPathComponent("big.safetensors")
        var values = [Float](repeating: 0, count: offset / 4)
        for i in stride(from: 0, to: values.count, by: 4096) { values[i] = Float(i) }
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(safetensors(header, data: []))))
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try values.withUnsafeMutableBytes {
            try handle.write(contentsOf: Data(bytesNoCopy: $0.baseAddress!, count: $0.count, deallocator: .none))
        }
        try handle.close()
        values = []
        XCTAssertGreaterThan(offset, 170_000_000)

        let start = Date()
        let sd = try WeightsFile.load(url.path)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(sd.tensors.count, shapes.count)
        XCTAssertEqual(sd["t0"]?.values[4096], 4096)
        XCTAssertEqual(sd["t\(shapes.count - 1)"]?.values.count, 6_000_000)
        print("loaded \(offset / 1_000_000) MB in \(String(format: "%.2f", seconds)) s")
        XCTAssertLessThan(seconds, 3, "loading \(offset / 1_000_000) MB took \(seconds) s")
    }
}

/// Writes pickle opcodes by hand (protocol 2 unless told), for files torch would never write.
/// A class so that calls chain.
private final class PickleBuilder {
    var bytes: [UInt8] = []

    /// The three pickles before a legacy checkpoint's state dict: magic number, format
    /// version 1001, and sys info {little_endian: True}.
    static func legacyHeader() -> PickleBuilder {
        let p = PickleBuilder()
        p.proto().op(0x8A).bytes += [10, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
        p.stop()
        p.proto().op(0x4D).bytes += [0xE9, 0x03]
        p.stop()
        p.proto().op(0x7D).unicode("little_endian").op(0x88).op(0x73).stop()
        return p
    }

    @discardableResult func op(_ code: UInt8) -> PickleBuilder { bytes.append(code); return self }
    @discardableResult func proto(_ v: UInt8 = 2) -> PickleBuilder { bytes += [0x80, v]; return self }
    @discardableResult func stop() -> PickleBuilder { op(0x2E) }
    @discardableResult func global(_ module: String, _ name: String) -> PickleBuilder {
        bytes += [0x63] + Array("\(module)\n\(name)\n".utf8); return self
    }
    @discardableResult func unicode(_ s: String) -> PickleBuilder {
        let u = Array(s.utf8)
        bytes += [0x58] + withUnsafeBytes(of: UInt32(u.count).littleEndian, Array.init) + u; return self
    }
    @discardableResult func shortUnicode(_ s: String) -> PickleBuilder {
        let u = Array(s.utf8)
        bytes += [0x8C, UInt8(u.count)] + u; return self
    }
    @discardableResult func int(_ v: Int) -> PickleBuilder {
        bytes += [0x4A] + withUnsafeBytes(of: Int32(v).littleEndian, Array.init); return self
    }
}

/// A small deterministic generator for the corruption test.
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
