// The hostile-input corpus of issue 7, built in Swift so that `make test` needs no
// Python: byte surgery on images from Imaging's own encoder and on the small committed
// fixtures of Tests/ImagingTests/Fixtures. tools/hostile/make_corpus.py writes a larger
// set of the same kinds for manual runs.
//
// Names are raw bytes ([UInt8]), created with open(2)/mkfifo(2)/symlink(2) directly, so
// that invalid UTF-8 reaches the file system unchanged.
import Foundation
import Imaging
import XCTest

struct HostileEntry {
    enum Kind: Equatable { case file, fifo, socket, directory, symlink }
    /// What segd must do with it; `either` for byte flips whose effect is not known.
    enum Expect: Equatable { case ok, fail, either }
    var name: [UInt8]
    var kind: Kind
    var expect: Expect
    var nameText: String { String(decoding: name, as: UTF8.self) }
    var isValidUTF8: Bool { String(validating: name, as: UTF8.self) != nil }
}

enum HostileCorpus {
    static let fixtures = Repo.path("Tests/ImagingTests/Fixtures")

    static func fixture(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name)))
    }

    /// A deterministic LCG: the same corpus every run.
    struct LCG {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    // MARK: JPEG surgery

    /// Offset of the FF of the first SOFn marker.
    static func sofOffset(_ b: [UInt8]) -> Int? {
        var i = 2
        while i + 4 <= b.count, b[i] == 0xFF {
            let m = b[i + 1]
            if (0xC0...0xCF).contains(m) && ![0xC4, 0xC8, 0xCC].contains(m) { return i }
            i += 2 + (Int(b[i + 2]) << 8 | Int(b[i + 3]))
        }
        return nil
    }

    /// Offset of the first entropy-coded byte (past the first SOS segment).
    static func scanStart(_ b: [UInt8]) -> Int {
        var i = 2
        while i + 4 <= b.count, b[i] == 0xFF {
            let len = Int(b[i + 2]) << 8 | Int(b[i + 3])
            if b[i + 1] == 0xDA { return i + 2 + len }
            i += 2 + len
        }
        return b.count / 2
    }

    static func patchSOF(_ b: [UInt8], width: Int, height: Int) -> [UInt8] {
        var b = b
        let o = sofOffset(b)!
        b[o + 5] = UInt8(height >> 8); b[o + 6] = UInt8(height & 0xFF)
        b[o + 7] = UInt8(width >> 8); b[o + 8] = UInt8(width & 0xFF)
        return b
    }

    static func patchPrecision(_ b: [UInt8], bits: UInt8) -> [UInt8] {
        var b = b
        b[sofOffset(b)! + 4] = bits
        return b
    }

    /// Sets the Adobe APP14 transform byte (2: YCCK).
    static func patchAdobeTransform(_ b: [UInt8], _ t: UInt8) -> [UInt8]? {
        var b = b
        var i = 2
        while i + 16 <= b.count, b[i] == 0xFF {
            let len = Int(b[i + 2]) << 8 | Int(b[i + 3])
            if b[i + 1] == 0xEE, Array(b[(i + 4)..<(i + 9)]) == Array("Adobe".utf8) {
                b[i + 15] = t
                return b
            }
            i += 2 + len
        }
        return nil
    }

    /// A progressive JPEG whose last scan is repeated `count` more times before EOI
    /// (an FF DA pair cannot occur inside entropy-coded data, so the last one starts the
    /// last scan).
    static func manyScans(_ b: [UInt8], count: Int) -> [UInt8] {
        var last = 0
        for i in 0..<(b.count - 1) where b[i] == 0xFF && b[i + 1] == 0xDA { last = i }
        let end = b.count - 2  // FF D9
        let scan = b[last..<end]
        var out = Array(b[..<end])
        out.reserveCapacity(b.count + scan.count * count)
        for _ in 0..<count { out += scan }
        return out + [0xFF, 0xD9]
    }

    // MARK: PNG surgery

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    /// IHDR width/height replaced, CRC recomputed (so the decoder, not the CRC, judges them).
    static func patchIHDR(_ b: [UInt8], width: UInt32, height: UInt32) -> [UInt8] {
        var b = b
        b.replaceSubrange(16..<20, with: be32(width))
        b.replaceSubrange(20..<24, with: be32(height))
        b.replaceSubrange(29..<33, with: be32(crc32(b[12..<29])))
        return b
    }

    /// The CRC of the first chunk of type `kind` inverted.
    static func flipCRC(_ b: [UInt8], _ kind: String) -> [UInt8] {
        var b = b
        var i = 8
        while i + 12 <= b.count {
            let n = Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
            if Array(b[(i + 4)..<(i + 8)]) == Array(kind.utf8) {
                b[i + 8 + n + 3] ^= 0xFF
                return b
            }
            i += 12 + n
        }
        return b
    }

    /// A chunk declaring 2 GB right after IHDR.
    static func oversizedChunk(_ b: [UInt8]) -> [UInt8] {
        Array(b[..<33]) + be32(0x7FFF_FFF0) + Array("tEXt".utf8) + [UInt8](repeating: 0x41, count: 64) + Array(b[33...])
    }

    // MARK: WebP, TIFF, HEIF surgery

    static func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }

    /// A lossless WebP whose VP8L header claims 16384×16384 (the format's largest).
    static func patchVP8L(_ b: [UInt8]) -> [UInt8] {
        precondition(Array(b[12..<16]) == Array("VP8L".utf8) && b[20] == 0x2F, "not a simple lossless WebP")
        var out = b
        // 14 bits width − 1, 14 bits height − 1, then alpha and version bits (kept).
        out[21] = 0xFF; out[22] = 0xFF; out[23] = 0xFF; out[24] = (b[24] & 0xF0) | 0x0F
        return out
    }

    /// A VP8X (extended) WebP around `inner`'s image chunk, claiming a width × height canvas.
    static func vp8x(_ inner: [UInt8], width: Int, height: Int, animated: Bool = false) -> [UInt8] {
        var body = Array("WEBP".utf8) + Array("VP8X".utf8) + le32(10)
        body += [animated ? 0x02 : 0x00, 0, 0, 0] + Array(le32(width - 1).prefix(3)) + Array(le32(height - 1).prefix(3))
        body += inner[12...]
        return Array("RIFF".utf8) + le32(body.count) + body
    }

    /// Offsets of the directories of a little-endian classic TIFF, in chain order.
    static func tiffDirectories(_ b: [UInt8]) -> [Int] {
        func u16(_ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        var out: [Int] = []
        var at = u32(4)
        while at != 0 && out.count < 1000 {
            out.append(at)
            at = u32(at + 2 + 12 * u16(at))
        }
        return out
    }

    /// The last directory's next-directory offset pointed back at the first: a loop.
    static func tiffLoop(_ b: [UInt8]) -> [UInt8] {
        let dirs = tiffDirectories(b)
        let last = dirs.last!
        let link = last + 2 + 12 * (Int(b[last]) | Int(b[last + 1]) << 8)
        var out = b
        out.replaceSubrange(link..<(link + 4), with: le32(dirs[0]))
        return out
    }

    /// A little-endian TIFF of `pages` directories (1×1 RGB pages sharing one strip).
    static func tiff(width: Int, height: Int, pages: Int = 1) -> [UInt8] {
        var out: [UInt8] = [0x49, 0x49, 42, 0] + le32(12) + [200, 100, 50, 0]  // header, then the strip at 8
        for page in 0..<pages {
            let entries: [(Int, Int, Int)] = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 2),
                                              (273, 4, 8), (277, 3, 3), (278, 4, height), (279, 4, 3), (284, 3, 1)]
            out += [UInt8(entries.count), 0]
            for (tag, type, value) in entries {
                // BitsPerSample 8 for all three samples as one value: libtiff accepts a count of 1.
                out += [UInt8(tag & 0xFF), UInt8(tag >> 8), UInt8(type), 0] + le32(1) + le32(value)
            }
            out += le32(page == pages - 1 ? 0 : out.count + 4)
        }
        return out
    }

    /// A byte of every tile of the tiled fixture inverted, inside its Deflate stream.
    static func corruptTiles(_ b: [UInt8]) -> [UInt8] {
        var out = b
        // The hand-written fixture stores its tiles from offset 8; each is a zlib stream.
        for at in [8 + 6, 8 + 17, 8 + 40] { out[at] ^= 0xFF }
        return out
    }

    /// Every ispe (image spatial extents) property set to width × height.
    static func patchISPE(_ b: [UInt8], width: UInt32, height: UInt32) -> [UInt8] {
        var out = b
        let tag = Array("ispe".utf8)
        var i = 0
        while i + 16 <= out.count {
            if Array(out[i..<(i + 4)]) == tag {
                out.replaceSubrange((i + 8)..<(i + 12), with: be32(width))
                out.replaceSubrange((i + 12)..<(i + 16), with: be32(height))
            }
            i += 1
        }
        return out
    }

    // MARK: The corpus

    /// Writes the corpus into `dir` (created); `outside` is a folder outside it that the
    /// symlink points into. Returns one entry per top-level name.
    static func write(into dir: String, outside: String) throws -> [HostileEntry] {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        var entries: [HostileEntry] = []
        var rng = LCG(state: 7)
        func put(_ name: String, _ bytes: [UInt8], _ expect: HostileEntry.Expect) throws {
            try createFile(dir, Array(name.utf8), bytes)
            entries.append(HostileEntry(name: Array(name.utf8), kind: .file, expect: expect))
        }

        let image = DaemonFixture.image(seed: 4242, width: 48, height: 32)
        let jpg = try image.encodeJPEG(quality: 85)
        let png = try image.encodePNG()
        try put("good.jpg", jpg, .ok)
        try put("good.png", png, .ok)
        try put("png-named.jpg", png, .ok)  // the signature decides, not the extension

        // Truncations at many offsets.
        for off in Set([1, 2, 3, 4, 8, 20, jpg.count / 4, jpg.count / 2, 3 * jpg.count / 4, jpg.count - 2, jpg.count - 1]).sorted() {
            try put("trunc-\(off).jpg", Array(jpg.prefix(off)), .fail)
        }
        for off in Set([1, 8, 16, 33, png.count / 2, png.count - 12, png.count - 1]).sorted() {
            try put("trunc-\(off).png", Array(png.prefix(off)), .fail)
        }
        // Flipped bytes in headers and scan data (deterministic positions).
        let sos = scanStart(jpg)
        for k in 0..<4 {
            var h = jpg; h[2 + rng.next(sos - 2)] ^= UInt8(1 << rng.next(8))
            try put("flip-header-\(k).jpg", h, .either)
            var s = jpg; s[sos + rng.next(jpg.count - 2 - sos)] ^= 0xFF
            try put("flip-scan-\(k).jpg", s, .either)
            var p = png; p[8 + rng.next(png.count - 8)] ^= UInt8(1 << rng.next(8))
            try put("flip-\(k).png", p, .either)
        }
        // Dimension patches.
        for (w, h) in [(0, 0), (1, 65535), (65535, 65535)] {
            try put("sof-\(w)x\(h).jpg", patchSOF(jpg, width: w, height: h), .fail)
            try put("ihdr-\(w)x\(h).png", patchIHDR(png, width: UInt32(w), height: UInt32(h)), .fail)
        }
        try put("ihdr-4294967295x4294967295.png", patchIHDR(png, width: .max, height: .max), .fail)
        // Progressive with thousands of scans; 12-bit; CMYK and YCCK; every orientation.
        let progressive = try fixture("progressive.jpg")
        try put("progressive.jpg", progressive, .ok)
        try put("progressive-3000-scans.jpg", manyScans(progressive, count: 3000), .fail)
        try put("precision-12.jpg", patchPrecision(jpg, bits: 12), .fail)
        let cmyk = try fixture("cmyk_adobe.jpg")
        try put("cmyk.jpg", cmyk, .ok)
        try put("ycck.jpg", try XCTUnwrap(patchAdobeTransform(cmyk, 2)), .either)
        for o in 1...8 { try put("orientation-\(o).jpg", try fixture("orient_\(o).jpg"), .ok) }
        // PNG: bad CRCs, oversized chunks, a zTXt zlib bomb (47 KB → 48 MB).
        try put("bad-crc.png", try fixture("bad_crc.png"), .fail)
        try put("bad-crc-idat.png", flipCRC(png, "IDAT"), .fail)
        try put("oversized-chunk.png", oversizedChunk(png), .fail)
        try put("huge-chunk.png", try fixture("huge_chunk.png"), .fail)
        try put("ztxt-bomb.png", try fixture("ztxt_bomb.png"), .fail)
        // WebP, TIFF, HEIC, AVIF (issue 20): good files, truncations, zero-length, headers
        // claiming 100,000 × 100,000 pixels, a page-offset loop, corrupt tiles, wrong
        // magic under a right extension and the right magic under a wrong one.
        let webp = try fixture("formats/lossless.webp"), tif = try fixture("formats/multipage.tif")
        let heic = try fixture("formats/irot.heic"), avif = try fixture("formats/plain.avif")
        let tiled = try fixture("formats/tiled_deflate.tif")
        try put("good-still.webp", webp, .ok)
        try put("good-animated.webp", try fixture("formats/animated.webp"), .ok)
        try put("good-pages.tif", tif, .ok)
        try put("good-tiled.tiff", tiled, .ok)
        try put("good-photo.heic", heic, .ok)
        try put("good-photo.avif", avif, .ok)
        for (stem, ext, bytes) in [("webp", "webp", webp), ("tif", "tif", tif), ("heic", "heic", heic), ("avif", "avif", avif)] {
            for off in Set([1, 4, 12, 16, 40, bytes.count / 2, bytes.count - 8]).sorted() {
                try put("\(stem)-trunc-\(off).\(ext)", Array(bytes.prefix(off)), .fail)
            }
            try put("\(stem)-empty.\(ext)", [], .fail)
            try put("\(stem)-text.\(ext)", Array("this is not an image either\n".utf8), .fail)
        }
        try put("vp8l-16384x16384.webp", patchVP8L(webp), .fail)
        try put("vp8x-100000x100000.webp", vp8x(webp, width: 100_000, height: 100_000), .fail)
        try put("vp8x-anim-60000x60000.webp", vp8x(webp, width: 60_000, height: 60_000, animated: true), .fail)
        try put("tiff-100000x100000.tif", tiff(width: 100_000, height: 100_000), .fail)
        try put("tiff-1x1.tif", tiff(width: 1, height: 1), .ok)
        try put("tiff-150-pages.tif", tiff(width: 1, height: 1, pages: 150), .fail)
        try put("tiff-page-loop.tif", tiffLoop(tif), .fail)
        try put("tiff-corrupt-tiles.tif", corruptTiles(tiled), .fail)
        try put("heic-100000x100000.heic", patchISPE(heic, width: 100_000, height: 100_000), .fail)
        try put("avif-100000x100000.avif", patchISPE(avif, width: 100_000, height: 100_000), .fail)
        try put("heic-overlay-canvas.heic", try fixture("formats/overlay_canvas.heic"), .fail)
        try put("wave.webp", Array("RIFF".utf8) + le32(36) + Array("WAVEfmt ".utf8) + [UInt8](repeating: 0, count: 28), .fail)
        try put("mp4.heic", [0, 0, 0, 24] + Array("ftypisom".utf8) + [0, 0, 2, 0] + Array("isommp41".utf8) + [UInt8](repeating: 0, count: 64), .fail)
        try put("webp-named.jpg", webp, .ok)
        try put("tiff-named.png", tif, .ok)
        try put("heic-named.avif", heic, .ok)
        try put("avif-named.tif", avif, .ok)

        // Empty, text and binary files with image extensions.
        try put("empty.jpg", [], .fail)
        try put("text.jpg", Array("this is not an image\n".utf8), .fail)
        try put("binary.png", (0..<2048).map { _ in UInt8(rng.next(256)) }, .fail)

        // Not regular files.
        func special(_ name: String, _ kind: HostileEntry.Kind, expect: HostileEntry.Expect = .fail, _ make: (String) throws -> Void) throws {
            try make(dir + "/" + name)
            entries.append(HostileEntry(name: Array(name.utf8), kind: kind, expect: expect))
        }
        try special("fifo.jpg", .fifo) { XCTAssertEqual(mkfifo($0, 0o644), 0) }
        try special("socket.jpg", .socket) { try bindSocket($0) }
        try special("directory.jpg", .directory) { try FileManager.default.createDirectory(atPath: $0, withIntermediateDirectories: false) }
        try special("devzero.jpg", .symlink) { XCTAssertEqual(symlink("/dev/zero", $0), 0) }
        try special("loop.jpg", .symlink) { XCTAssertEqual(symlink("loop.jpg", $0), 0) }
        try FileManager.default.createFile(atPath: outside + "/secret.jpg", contents: Data(try DaemonFixture.image(seed: 99).encodeJPEG()))
        // `segd batch` follows links (the user named the folder: its links are theirs);
        // the daemon does not (anyone may drop a link into a watched folder).
        try special("outside.jpg", .symlink, expect: .ok) { XCTAssertEqual(symlink(outside + "/secret.jpg", $0), 0) }

        // Awkward names, each holding a distinct good image.
        let names: [[UInt8]] = [Array("new\nline.jpg".utf8), Array("-leading-dash.jpg".utf8),
                                Array("invalid-".utf8) + [0xFF, 0xFE] + Array(".jpg".utf8),
                                [UInt8](repeating: 0x78, count: 251) + Array(".jpg".utf8)]
        for (i, n) in names.enumerated() {
            try createFile(dir, n, try DaemonFixture.image(seed: 500 + i, width: 40, height: 28).encodeJPEG())
            entries.append(HostileEntry(name: n, kind: .file, expect: .ok))
        }
        return entries
    }

    // MARK: Raw-byte file operations

    static func withPath<R>(_ dir: String, _ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        let bytes = Array(dir.utf8) + [0x2F] + name + [0]
        return try bytes.withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    static func createFile(_ dir: String, _ name: [UInt8], _ contents: [UInt8]) throws {
        try withPath(dir, name) { p in
            let fd = open(p, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            defer { close(fd) }
            var done = 0
            while done < contents.count {
                let n = contents.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, contents.count - done) }
                guard n > 0 else { throw POSIXError(.EIO) }
                done += n
            }
        }
    }

    /// rename(2) of a raw name from one folder to another.
    static func rename(_ name: [UInt8], from: String, to: String) -> Bool {
        withPath(from, name) { a in withPath(to, name) { b in Glibc.rename(a, b) == 0 } }
    }

    static func exists(_ dir: String, _ name: [UInt8]) -> Bool {
        withPath(dir, name) { var st = stat(); return lstat($0, &st) == 0 }
    }

    static func bindSocket(_ path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw XCTSkip("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in for (i, b) in bytes.enumerated() { buf[i] = b } }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(ok, 0, "bind \(path)")
    }

    /// Every entry below `root` (raw names, links not followed) with type, size and
    /// mtime, except below the folders in `excluding`: what "nothing written outside the
    /// output folder" is checked against.
    /// A name as `tree` keys it: bytes outside printable ASCII as \xNN.
    static func escaped(_ name: String) -> String {
        name.utf8.map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
    }

    static func tree(_ root: String, excluding: Set<String> = []) -> [String: String] {
        var out: [String: String] = [:]
        func visit(_ dir: String) {
            guard let h = opendir(dir) else { return }
            defer { closedir(h) }
            while let e = readdir(h) {
                let name = withUnsafePointer(to: &e.pointee.d_name) { p in
                    p.withMemoryRebound(to: UInt8.self, capacity: 256) { Array(UnsafeBufferPointer(start: $0, count: strlen(UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)))) }
                }
                if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                let path = dir + "/" + String(decoding: name, as: UTF8.self)
                let key = dir + "/" + name.map { $0 >= 0x20 && $0 < 0x7F ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
                var st = stat()
                let ok = withPath(dir, name) { lstat($0, &st) == 0 }
                guard ok else { out[key] = "vanished"; continue }
                out[key] = "mode \(String(st.st_mode, radix: 8)) size \(st.st_size) mtime \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
                if st.st_mode & S_IFMT == S_IFDIR, !excluding.contains(path) { visit(path) }
            }
        }
        visit(root)
        return out
    }
}

/// A child process's exit status, output, wall time and peak resident memory (VmHWM,
/// read from /proc while it runs; the last reading before exit is its peak).
struct MeasuredRun {
    var status: Int32
    var output: String
    var seconds: Double
    var peakKiB: Int
    var timedOut: Bool

    static func run(_ executable: String, _ args: [String], timeout: TimeInterval, logPath: String) throws -> MeasuredRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        p.standardOutput = log
        p.standardError = log
        let start = Date()
        try p.run()
        var peak = 0
        let deadline = start.addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline {
            if let hwm = vmHWM(p.processIdentifier) { peak = max(peak, hwm) }
            usleep(20_000)
        }
        let timedOut = p.isRunning
        if timedOut { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        try log.close()
        return MeasuredRun(status: p.terminationStatus, output: (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "",
                           seconds: Date().timeIntervalSince(start), peakKiB: peak, timedOut: timedOut)
    }
}

func vmHWM(_ pid: Int32) -> Int? {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }
    return nil
}
