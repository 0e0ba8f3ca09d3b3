// Issue 7, file-system faults, with a real segd: the output file system filling up and
// becoming read-only (a small tmpfs: needs mount(2), i.e. root or CAP_SYS_ADMIN, else the
// test is skipped with the reason), the watched folder deleted and recreated, and fsync or
// rename failing (injected with strace; skipped without strace or ptrace).
import Foundation
import Imaging
import Pipeline
import XCTest

final class FilesystemFaultTests: XCTestCase {
    /// Mounts a tmpfs of `size` at `dir` (created) and unmounts it after the test.
    func mountTmpfs(_ dir: String, size: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try shell("mount -t tmpfs -o size=\(size) tmpfs '\(dir)'")
        guard r.status == 0 else { throw XCTSkip("cannot mount a tmpfs here (\(r.output.trimmingCharacters(in: .whitespacesAndNewlines))): needs root or CAP_SYS_ADMIN") }
        addTeardownBlock { _ = try? self.shell("umount -l '\(dir)'") }
    }

    @discardableResult
    func shell(_ command: String) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Fills the file system holding `dir` with one file; returns its path.
    func fill(_ dir: String) -> String {
        let path = dir + "/filler"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        let chunk = [UInt8](repeating: 0x55, count: 65536)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress!, chunk.count) }) > 0 {}
        close(fd)
        return path
    }

    /// Every visible file under `dir` is a complete result (JSON that parses, an image
    /// that decodes), and no temporary file is left.
    func assertOnlyCompleteOutputs(_ dir: String, file: StaticString = #filePath, line: UInt = #line) {
        for (path, _) in HostileCorpus.tree(dir) where !path.hasSuffix("/filler") {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { continue }
            let name = (path as NSString).lastPathComponent
            XCTAssertFalse(name.hasPrefix("."), "temporary file visible: \(path)", file: file, line: line)
            if name.hasSuffix(".json") {
                let data = FileManager.default.contents(atPath: path) ?? Data()
                XCTAssertNotNil(try? JSONSerialization.jsonObject(with: data), "truncated JSON: \(path)", file: file, line: line)
            } else if name.hasSuffix(".jpg") || name.hasSuffix(".png") {
                XCTAssertNoThrow(try ImageDecoder().decode(contentsOf: path), "truncated image: \(path)", file: file, line: line)
            }
        }
    }

    func testFullThenReadOnlyOutputFileSystemKeepsInputsQueuedAndRetries() throws {
        let ws = try DaemonWorkspace(self)
        try mountTmpfs(ws.out, size: "1m")
        try ws.writeConfig()
        let filler = fill(ws.out)
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let names = ["full-1.jpg", "full-2.png", "full-3.jpg"]
        for (i, n) in names.enumerated() {
            try ws.put(n.hasSuffix(".png") ? DaemonFixture.png(seed: 300 + i) : DaemonFixture.jpeg(seed: 300 + i), n, in: ws.staging)
            XCTAssertEqual(rename(ws.staging + "/" + n, ws.inbox + "/" + n), 0)
        }
        // Each job fails to write, says why, and its input stays queued in the inbox.
        XCTAssertTrue(waitUntil(timeout: 30) {
            names.allSatisfy { n in d.log.split(separator: "\n").contains { $0.contains("cannot write outputs") && $0.contains(n) } }
        }, d.log.suffix(3000).description)
        XCTAssertTrue(d.log.contains("No space left on device"), d.log.suffix(3000).description)
        for n in names { XCTAssertTrue(FileManager.default.fileExists(atPath: ws.inbox + "/" + n), "\(n) left the inbox") }
        XCTAssertEqual(ws.files(ws.failed), [], "a full disk is not the input's fault")
        assertOnlyCompleteOutputs(ws.out)

        // Space returns: every input is done, once.
        XCTAssertEqual(unlink(filler), 0)
        XCTAssertTrue(waitUntil(timeout: 60) { ws.files(ws.done).count == names.count }, "done: \(ws.files(ws.done))\n\(d.log.suffix(3000))")
        XCTAssertEqual(Set(ws.files(ws.out).filter { $0.hasSuffix(".json") }), Set(names.map { ($0 as NSString).deletingPathExtension + ".json" }))
        assertOnlyCompleteOutputs(ws.out)
        let rows = try ws.journal().filter { names.contains(($0.path as NSString).lastPathComponent) }
        XCTAssertEqual(rows.count, names.count, "one journal row per input, retried in place")
        XCTAssertTrue(rows.allSatisfy { $0.status == .done }, "\(rows.map(\.status))")

        // Read-only output folder: the same, EROFS instead of ENOSPC.
        XCTAssertEqual(try shell("mount -o remount,ro '\(ws.out)'").status, 0)
        try ws.put(DaemonFixture.jpeg(seed: 333), "readonly.jpg", in: ws.staging)
        XCTAssertEqual(rename(ws.staging + "/readonly.jpg", ws.inbox + "/readonly.jpg"), 0)
        XCTAssertTrue(waitUntil(timeout: 30) {
            d.log.split(separator: "\n").contains { $0.contains("cannot write outputs") && $0.contains("readonly.jpg") && $0.contains("Read-only file system") }
        }, d.log.suffix(3000).description)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.inbox + "/readonly.jpg"))
        XCTAssertEqual(try shell("mount -o remount,rw '\(ws.out)'").status, 0)
        XCTAssertTrue(waitUntil(timeout: 70) { FileManager.default.fileExists(atPath: ws.done + "/readonly.jpg") }, d.log.suffix(3000).description)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.out + "/readonly.json"))
        XCTAssertEqual(ws.files(ws.failed), [])
        assertOnlyCompleteOutputs(ws.out)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    func testWatchedFolderDeletedAndRecreatedIsWatchedAgain() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        try ws.put(DaemonFixture.jpeg(seed: 401), "before.jpg", in: ws.staging)
        XCTAssertEqual(rename(ws.staging + "/before.jpg", ws.inbox + "/before.jpg"), 0)
        XCTAssertTrue(waitUntil(timeout: 20) { FileManager.default.fileExists(atPath: ws.done + "/before.jpg") }, d.log)
        try FileManager.default.removeItem(atPath: ws.inbox)
        usleep(700_000)
        try FileManager.default.createDirectory(atPath: ws.inbox, withIntermediateDirectories: false)
        usleep(200_000)
        try ws.put(DaemonFixture.jpeg(seed: 402), "after.jpg", in: ws.staging)
        XCTAssertEqual(rename(ws.staging + "/after.jpg", ws.inbox + "/after.jpg"), 0)
        XCTAssertTrue(waitUntil(timeout: 20) { FileManager.default.fileExists(atPath: ws.done + "/after.jpg") },
                      "a file in the recreated folder was not processed\n\(d.log.suffix(3000))")
        XCTAssertTrue(d.isRunning)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    /// A watched folder that exists but cannot be watched (EACCES, faked by a test hook: the
    /// tests run as root): said once, retried with a back-off (1, 2, 4 … 60 s) instead of
    /// every second, and its files are still found by the rescan.
    func testUnwatchableFolderIsReportedOnceAndRetriedWithBackOff() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(inputs: "rescan_interval_s: 2")
        let d = try SegdDaemon(ws, environment: ["SEGD_TEST_UNWATCHABLE": ws.inbox])
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        try ws.put(DaemonFixture.jpeg(seed: 403), "unwatched.jpg")
        XCTAssertTrue(waitUntil(timeout: 30) { FileManager.default.fileExists(atPath: ws.done + "/unwatched.jpg") }, d.log)
        sleep(6)
        let said = d.log.components(separatedBy: "cannot watch folder").count - 1
        XCTAssertEqual(said, 1, d.log)
        XCTAssertTrue(d.isRunning)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    /// fsync, then rename, made to fail in segd batch (strace fault injection): the jobs
    /// fail naming the call, and nothing that looks like a result is left.
    func testInjectedFsyncAndRenameFailuresLeaveNoResultThatLooksComplete() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else { throw XCTSkip("strace is not installed (apt-get install strace)") }
        guard try shell("strace -qq -o /dev/null true").status == 0 else { throw XCTSkip("ptrace is not permitted here") }
        let dir = try scratchDirectory(self).path
        let input = dir + "/in"
        try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: true)
        for i in 0..<3 { try DaemonFixture.jpeg(seed: 600 + i).write(to: URL(fileURLWithPath: input + "/f\(i).jpg")) }
        for (call, calls) in [("fsync", "fsync"), ("rename", "rename,renameat,renameat2")] {
            let out = dir + "/out-" + call
            let r = try shell("strace -f -qq -o /dev/null -e trace=\(calls) -e inject=\(calls):error=EIO '\(Segd.binary)' batch '\(input)' --out '\(out)' --weights '\(DaemonFixture.fastWeights)' 2>&1")
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains("\(call) failed") && r.output.contains("Input/output error"), r.output)
            let left = HostileCorpus.tree(out).keys.filter { !$0.hasSuffix("/out-" + call) }
            XCTAssertEqual(left, [], "\(call) failing left files behind: \(left)")
        }
    }
}
