// Issue 15: when the daemon takes a file, and what it names the outputs. Real segd
// processes, real inotify, writers that behave as uploaders, shells and FTP clients do.
import Foundation
import Pipeline
import XCTest

final class IntakeTests: XCTestCase {
    func rows(_ ws: DaemonWorkspace, _ name: String) throws -> [JournalEntry] {
        try ws.journal().filter { $0.path == ws.inbox + "/" + name }
    }

    func writeAll(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }

    /// stable_ms 500, segd killed and restarted; the writer opened its file while segd was
    /// not watching yet (before its watches were set: the scan finds the file, no IN_OPEN is
    /// ever seen), wrote half a JPEG and paused 1.2 s with the file open. It must not be
    /// taken before the close.
    func testWriterHoldingTheFileOpenAcrossARestartIsTakenAtItsClose() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let first = try SegdDaemon(ws, logName: "first")
        XCTAssertTrue(first.waitForLog("ready"), first.log)
        first.send(SIGKILL)
        XCTAssertEqual(first.waitForExit(timeout: 10)?.reason, .uncaughtSignal)

        let jpeg = DaemonFixture.jpeg(seed: 150_000, width: 64, height: 48)
        let path = ws.inbox + "/open.jpg"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let half = jpeg.count / 2
        writeAll(fd, jpeg.prefix(half))
        let second = try SegdDaemon(ws, logName: "second")
        XCTAssertTrue(second.waitForLog("ready"), second.log)
        Thread.sleep(forTimeInterval: 1.2)
        XCTAssertEqual(try rows(ws, "open.jpg").map(\.status), [], "taken while its writer held it open:\n\(second.log)")
        writeAll(fd, jpeg.suffix(from: half))
        close(fd)

        XCTAssertTrue(waitUntil(timeout: 30) { ws.files(ws.done) == ["open.jpg"] || !ws.files(ws.failed).isEmpty }, second.log)
        XCTAssertEqual(ws.files(ws.failed), [], second.log)
        XCTAssertEqual(try rows(ws, "open.jpg").map(\.status), [.done], second.log)
        let image = try XCTUnwrap(try ws.resultJSON("open")["image"] as? [String: Any])
        XCTAssertEqual(image["width"] as? Int, 64)
        second.send(SIGTERM)
        XCTAssertEqual(second.waitForExit(timeout: 20)?.status, 0)
    }

    /// Half a JPEG written and closed, the file opened again 0.2 s later in append mode
    /// (`>>`, FTP/Samba clients, camera uploaders) and the rest written: one image, done.
    func testWriterThatClosesAndReopensToAppendGivesOneImage() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let jpeg = DaemonFixture.jpeg(seed: 150_001, width: 64, height: 48)
        let path = ws.inbox + "/append.jpg"
        let half = jpeg.count / 2
        var fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        writeAll(fd, jpeg.prefix(half))
        close(fd)
        Thread.sleep(forTimeInterval: 0.2)
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)  // as `>>` opens it
        XCTAssertGreaterThanOrEqual(fd, 0)
        writeAll(fd, jpeg.suffix(from: half))
        close(fd)

        XCTAssertTrue(waitUntil(timeout: 30) { !ws.files(ws.done).isEmpty || !ws.files(ws.failed).isEmpty }, d.log)
        Thread.sleep(forTimeInterval: 1.5)  // a second, split-off file would be failed by now
        XCTAssertEqual(ws.files(ws.failed), [], d.log)
        XCTAssertEqual(ws.files(ws.done), ["append.jpg"], d.log)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: ws.done + "/append.jpg")), jpeg)
        XCTAssertEqual(try rows(ws, "append.jpg").map(\.status), [.done], d.log)
        let image = try XCTUnwrap(try ws.resultJSON("append")["image"] as? [String: Any])
        XCTAssertEqual(image["width"] as? Int, 64)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    /// The retry of a young truncated file is bounded: one that stays truncated fails, with
    /// the decoder's reason, once it has been still for stable_ms.
    func testFileThatStaysTruncatedFailsWithTheDecodersReason() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let jpeg = DaemonFixture.jpeg(seed: 150_002, width: 64, height: 48)
        try ws.put(jpeg.prefix(jpeg.count / 2), "cut.jpg")
        XCTAssertTrue(waitUntil(timeout: 30) { ws.files(ws.failed) == ["cut.jpg", "cut.jpg.error.json"] }, "\(ws.files(ws.failed))\n\(d.log)")
        let row = try XCTUnwrap(try rows(ws, "cut.jpg").last)
        XCTAssertEqual(row.status, .failed)
        XCTAssertTrue(row.error?.contains("data ends early") == true, row.error ?? "")
        XCTAssertEqual(try rows(ws, "cut.jpg").count, 1, "one job, retried in place")
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    /// Outputs mirror the input's relative path exactly when the file system can hold it.
    func testOutputNamesMirrorInputNames() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let names = ["-leading-dash.jpg", "with space (1) & more.png", "ünïcödé 名前.png", "semi;colon'quote\"s.png",
                     "#hash%percent+plus=eq.png", "sub dir/-x.png"]
        for (i, name) in names.enumerated() {
            try ws.put(i % 2 == 0 ? DaemonFixture.jpeg(seed: 150_100 + i) : DaemonFixture.png(seed: 150_100 + i), name, in: ws.staging)
            try FileManager.default.createDirectory(atPath: ((ws.inbox + "/" + name) as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            XCTAssertEqual(rename(ws.staging + "/" + name, ws.inbox + "/" + name), 0, name)
        }
        XCTAssertTrue(waitUntil(timeout: 60) { ws.files(ws.done).count == names.count }, d.log)
        let stems = names.map { ($0 as NSString).deletingPathExtension }
        XCTAssertEqual(Set(ws.files(ws.out).filter { $0.hasSuffix(".json") }), Set(stems.map { $0 + ".json" }), d.log)
        XCTAssertEqual(Set(ws.files(ws.done)), Set(names))
        // float32 settings print as the shortest decimal that reads back to the same float32.
        let text = try String(contentsOfFile: ws.out + "/-leading-dash.json", encoding: .utf8)
        XCTAssertTrue(text.contains("\"score_threshold\": 0.05\n"), text)
        XCTAssertTrue(text.contains("\"mask_threshold\": 0.5,\n"), text)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }
}
