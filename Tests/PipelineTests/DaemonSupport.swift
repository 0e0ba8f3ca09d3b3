// Helpers for the daemon tests: a workspace of real folders, a real `segd watch` process
// (the binary built next to the test bundle), a fast model, unique tiny images, the
// journal read back, and an sd_notify listener.
import Foundation
import Imaging
import Pipeline
import XCTest

enum DaemonFixture {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for c in [dir.appendingPathComponent("segd"), dir.deletingLastPathComponent().appendingPathComponent("segd")]
        where FileManager.default.isExecutableFile(atPath: c.path) {
            return c.path
        }
        return dir.appendingPathComponent("segd").path
    }

    /// The tiny reference model with fewer proposals and detections in its metadata, so a
    /// debug build segments a small image in tens of milliseconds (the box and mask heads
    /// scale with proposals: 1000 → 20 cuts them ~50×).
    static let fastWeights: String = weights(metadata: ["rpn_pre_nms_top_n_test": "100", "rpn_post_nms_top_n_test": "20",
                                                        "box_detections_per_img": "5"], as: "fast.safetensors")

    /// The tiny reference model with `metadata` merged into its safetensors header, written
    /// to `name` in this process's temporary folder.
    static func weights(metadata: [String: String], as name: String) -> String {
        let src = repoRoot + "/Tests/MaskRCNNTests/Fixtures/tiny/weights.safetensors"
        let data = try! Data(contentsOf: URL(fileURLWithPath: src))
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var header = try! JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        var meta = header["__metadata__"] as? [String: String] ?? [:]
        meta.merge(metadata) { $1 }
        header["__metadata__"] = meta
        var h = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while h.count % 8 != 0 { h.append(0x20) }
        var out = Data((0..<8).map { UInt8(truncatingIfNeeded: h.count >> (8 * $0)) })
        out.append(h)
        out.append(data.subdata(in: (8 + n)..<data.count))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-daemon-tests-\(getpid())")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        try! out.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A small image whose pixels depend on `seed`: every seed is different content (the
    /// journal would otherwise recognize duplicates and skip them).
    static func image(seed: Int, width: Int = 24, height: Int = 16) -> Imaging.Image {
        var state = UInt64(truncatingIfNeeded: seed) &* 6364136223846793005 &+ 1442695040888963407
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in pixels.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            pixels[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        // A bright square so there is something object-like.
        for y in 4..<min(height, 12) { for x in 6..<min(width, 16) { for c in 0..<3 { pixels[(y * width + x) * 3 + c] = 250 } } }
        return Imaging.Image(width: width, height: height, pixels: pixels)
    }

    static func png(seed: Int, width: Int = 24, height: Int = 16) -> Data { Data(try! image(seed: seed, width: width, height: height).encodePNG()) }
    static func jpeg(seed: Int, width: Int = 24, height: Int = 16) -> Data { Data(try! image(seed: seed, width: width, height: height).encodeJPEG()) }
}

/// Real folders for one test: in/, out/, done/, failed/, state/, and staging/ on the same
/// file system (so `mv` from it is a rename).
final class DaemonWorkspace: @unchecked Sendable {
    let root: String
    var inbox: String { root + "/in" }
    var out: String { root + "/out" }
    var done: String { root + "/done" }
    var failed: String { root + "/failed" }
    var state: String { root + "/state" }
    var staging: String { root + "/staging" }
    var configPath: String { root + "/pipeline.yml" }

    init(_ test: XCTestCase) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("segd-daemon-\(UUID().uuidString.prefix(8))").path
        for d in [inbox, staging] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let r = root
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: r) }
    }

    /// Writes pipeline.yml: the fast model at 32–48 px, short stability and status
    /// intervals; `extra` sections replace the defaults given here.
    func writeConfig(batching: String = "max_batch: 1\n  max_delay_ms: 20", queues: String = "bound: 2",
                     outputs: String? = nil, after: String? = nil,
                     service: String = "status_interval_s: 1\n  drain_timeout_s: 20", inputs: String = "") throws {
        let text = """
        model:
          weights: \(DaemonFixture.fastWeights)
          min_size: 32
          max_size: 48
        inputs:
          directories: [\(inbox)]
          stable_ms: 500
          poll_interval_ms: 300
        \(inputs.isEmpty ? "" : "  " + inputs)
        outputs:
          \(outputs ?? "directory: \(out)")
        after:
          \(after ?? "success: move\n  done_directory: \(done)\n  failed_directory: \(failed)")
        state_directory: \(state)
        batching:
          \(batching)
        queues:
          \(queues)
        log_level: debug
        service:
          \(service)
        """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func put(_ data: Data, _ name: String, in dir: String? = nil, oldMtime: Bool = false) throws {
        let path = (dir ?? inbox) + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
        if oldMtime {
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -600)], ofItemAtPath: path)
        }
    }

    func journal() throws -> [JournalEntry] {
        guard FileManager.default.fileExists(atPath: state + "/" + Journal.fileName) else { return [] }
        return try Journal(directory: state, readOnly: true).all()
    }

    /// Files below `dir`, relative, sorted.
    func files(_ dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
        }
        return out.sorted()
    }

    func resultJSON(_ stem: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/" + stem + ".json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

/// A running `segd watch`.
final class SegdDaemon {
    let process = Process()
    let logPath: String
    let started = Date()

    init(_ ws: DaemonWorkspace, environment: [String: String] = [:], logName: String = "segd") throws {
        logPath = ws.root + "/\(logName)-\(UUID().uuidString.prefix(4)).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: DaemonFixture.binary)
        process.arguments = ["watch", "--config", ws.configPath]
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = nil
        env["WATCHDOG_USEC"] = nil
        env["JOURNAL_STREAM"] = nil
        for (k, v) in environment { env[k] = v }
        if env["JOURNAL_STREAM"] == "auto" {
            // As systemd sets it: device and inode of the stream stderr is connected to.
            var st = stat()
            stat(logPath, &st)
            env["JOURNAL_STREAM"] = "\(st.st_dev):\(st.st_ino)"
        }
        process.environment = env
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardError = log
        process.standardOutput = log
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    func send(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the process to end; nil on timeout.
    func waitForExit(timeout: TimeInterval) -> (reason: Process.TerminationReason, status: Int32)? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else { return nil }
        process.waitUntilExit()
        return (process.terminationReason, process.terminationStatus)
    }

    /// Resident set size in KiB (from /proc).
    func rssKiB() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    /// Waits until the log contains `text`.
    @discardableResult
    func waitForLog(_ text: String, timeout: TimeInterval = 30) -> Bool {
        waitUntil(timeout: timeout) { self.log.contains(text) || !self.isRunning && self.log.contains(text) }
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
@discardableResult
func waitUntil(timeout: TimeInterval, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

/// A Unix datagram socket standing in for systemd's notify socket; records every message
/// with the time it arrived.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [(time: Date, text: String)] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)
    /// Called on the listener's thread for each message (before it is recorded).
    var onMessage: (@Sendable (String) -> Void)?

    init(directory: String) throws {
        path = directory + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in for (i, b) in bytes.enumerated() { buf[i] = b } }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { throw POSIXError(.EADDRINUSE) }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        Thread.detachNewThread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while !lock.withLock({ stopped }) {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 {
                    let text = String(decoding: buf[0..<n], as: UTF8.self)
                    onMessage?(text)
                    lock.withLock { received.append((Date(), text)) }
                }
            }
            done.signal()
        }
    }

    func stop() {
        lock.withLock { stopped = true }
        done.wait()
        close(fd)
    }

    var messages: [(time: Date, text: String)] { lock.withLock { received } }

    /// Messages containing the line `line` (e.g. "READY=1").
    func times(of line: String) -> [Date] {
        messages.filter { $0.text.split(separator: "\n").contains(Substring(line)) }.map(\.time)
    }
}
