// `segd watch` end to end: real folders, real inotify, a real segd process, the journal
// read back. Each test drives the daemon the way people and systemd do (cp, mv, a slow
// writer, kill -9, SIGTERM, SIGHUP, the notify socket).
import Foundation
import MaskRCNN
import Pipeline
import XCTest

final class DaemonTests: XCTestCase {
    /// Rows per input path; every input must have exactly one.
    func rowsByPath(_ ws: DaemonWorkspace) throws -> [String: [JournalEntry]] {
        Dictionary(grouping: try ws.journal(), by: \.path)
    }

    func finishedCount(_ ws: DaemonWorkspace) -> Int {
        ((try? ws.journal()) ?? []).filter { $0.status == .done || $0.status == .failed }.count
    }

    func testFilesArrivingEveryWayAreProcessedOnceAndOnlyWhenComplete() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        // Already there before the start (old mtime: complete).
        try ws.put(DaemonFixture.png(seed: 1), "pre1.png", oldMtime: true)
        try ws.put(DaemonFixture.jpeg(seed: 2), "sub/pre2.jpg", oldMtime: true)
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)

        // cp from elsewhere: IN_CREATE, writes, IN_CLOSE_WRITE.
        try ws.put(DaemonFixture.jpeg(seed: 3), "cp.jpg", in: ws.staging)
        let cp = Process()
        cp.executableURL = URL(fileURLWithPath: "/bin/cp")
        cp.arguments = [ws.staging + "/cp.jpg", ws.inbox + "/cp.jpg"]
        try cp.run()
        cp.waitUntilExit()
        // mv within the file system: one IN_MOVED_TO, the file whole.
        try ws.put(DaemonFixture.png(seed: 4), "mv.png", in: ws.staging)
        XCTAssertEqual(rename(ws.staging + "/mv.png", ws.inbox + "/mv.png"), 0)
        // A hard link: IN_CREATE with no open, taken once its size held still.
        try ws.put(DaemonFixture.png(seed: 5), "linked.png", in: ws.staging)
        XCTAssertEqual(link(ws.staging + "/linked.png", ws.inbox + "/linked.png"), 0)
        // A new folder tree with a file written at once (before segd can watch the new
        // folders: the scan of a new folder finds it), and a folder moved in whole.
        try FileManager.default.createDirectory(atPath: ws.inbox + "/new/deeper", withIntermediateDirectories: true)
        try ws.put(DaemonFixture.png(seed: 7), "new/deeper/n.png")
        try ws.put(DaemonFixture.png(seed: 8), "moved-dir/m.png", in: ws.staging)
        XCTAssertEqual(rename(ws.staging + "/moved-dir", ws.inbox + "/moved-dir"), 0)
        // A slow writer: half the file, a pause three times stable_ms, the rest.
        let slow = DaemonFixture.png(seed: 6, width: 40, height: 30)
        let fd = open(ws.inbox + "/slow.png", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let half = slow.count / 2
        _ = slow.prefix(half).withUnsafeBytes { write(fd, $0.baseAddress, half) }
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertNil(try rowsByPath(ws)[ws.inbox + "/slow.png"], "nothing may take a file that is still open for writing")
        _ = slow.suffix(from: half).withUnsafeBytes { write(fd, $0.baseAddress, slow.count - half) }
        close(fd)

        XCTAssertTrue(waitUntil(timeout: 60) { finishedCount(ws) == 8 }, d.log)
        Thread.sleep(forTimeInterval: 1)  // anything processed twice would show up now
        let rows = try rowsByPath(ws)
        XCTAssertEqual(Set(rows.keys), Set(["pre1.png", "sub/pre2.jpg", "cp.jpg", "mv.png", "linked.png", "slow.png", "new/deeper/n.png",
                                            "moved-dir/m.png"].map { ws.inbox + "/" + $0 }))
        for (path, entries) in rows {
            XCTAssertEqual(entries.count, 1, "\(path) has \(entries.count) journal rows")
            XCTAssertEqual(entries.first?.status, .done, "\(path): \(entries.first?.error ?? "")")
            XCTAssertEqual(entries.first?.attempts, 1, path)
        }
        // Outputs mirror the tree; the slow file was read whole (its full size).
        for stem in ["pre1", "sub/pre2", "cp", "mv", "linked", "slow", "new/deeper/n", "moved-dir/m"] {
            let json = try ws.resultJSON(stem)
            XCTAssertEqual(json["schema"] as? String, "segd.result/1")
        }
        let slowImage = try XCTUnwrap(try ws.resultJSON("slow")["image"] as? [String: Any])
        XCTAssertEqual(slowImage["width"] as? Int, 40)
        XCTAssertEqual(slowImage["height"] as? Int, 30)
        // Inputs moved to done/, same relative paths; the inbox is empty.
        let expectedDone = ["cp.jpg", "linked.png", "moved-dir/m.png", "mv.png", "new/deeper/n.png", "pre1.png", "slow.png", "sub/pre2.jpg"]
        XCTAssertTrue(waitUntil(timeout: 10) { ws.files(ws.done) == expectedDone }, "\(ws.files(ws.done))")
        XCTAssertEqual(ws.files(ws.inbox), [])
        XCTAssertTrue(d.log.contains("via=close_write") && d.log.contains("via=moved_in") && d.log.contains("via=stable")
                      && d.log.contains("via=scan"), d.log)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    func testThousandFilesAtOnceWithSmallQueuesStayInBoundedMemory() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(batching: "max_batch: 2\n  max_delay_ms: 20", queues: "bound: 1",
                           outputs: "directory: \(ws.root)/out\n  annotated: false")
        let n = 1000
        for i in 0..<n { try ws.put(DaemonFixture.png(seed: 10_000 + i), String(format: "f%04d.png", i), in: ws.staging) }
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let baseline = try XCTUnwrap(d.rssKiB())
        let start = Date()
        for i in 0..<n {
            let name = String(format: "f%04d.png", i)
            XCTAssertEqual(rename(ws.staging + "/" + name, ws.inbox + "/" + name), 0)
        }
        var peak = baseline
        var samples: [Int] = []
        let finished = waitUntil(timeout: 150) {
            if let r = d.rssKiB() {
                peak = max(peak, r)
                samples.append(r)
            }
            return ws.files(ws.done).count == n
        }
        XCTAssertTrue(finished, "done \(ws.files(ws.done).count) of \(n)")
        let seconds = Date().timeIntervalSince(start)
        let rows = try ws.journal()
        XCTAssertEqual(rows.count, n)
        XCTAssertEqual(rows.filter { $0.status == .done }.count, n)
        XCTAssertEqual(ws.files(ws.out).filter { $0.hasSuffix(".json") }.count, n)
        // Bounded: the queues hold a few images, not the backlog. 1000 decoded images with
        // their model tensors would be hundreds of MiB; allow 64 MiB over the idle process
        // (allocator slack, the journal's page cache), and no growth over the second half.
        let growthMiB = Double(peak - baseline) / 1024
        print("1000 files: \(String(format: "%.1f", seconds)) s, RSS idle \(baseline / 1024) MiB, peak \(peak / 1024) MiB, "
              + "halves \(samples.prefix(samples.count / 2).max() ?? 0) / \(samples.suffix(samples.count / 2).max() ?? 0) KiB")
        XCTAssertLessThan(growthMiB, 64, "RSS grew from \(baseline) KiB to \(peak) KiB")
        if samples.count > 10 {
            let firstHalfPeak = samples.prefix(samples.count / 2).max()!, secondHalfPeak = samples.suffix(samples.count / 2).max()!
            XCTAssertLessThan(Double(secondHalfPeak - firstHalfPeak) / 1024, 16, "memory keeps growing with the backlog")
        }
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    func testKill9MidProcessingThenRestartFinishesEverythingOnce() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(batching: "max_batch: 2\n  max_delay_ms: 20")
        let n = 40
        for i in 0..<n { try ws.put(DaemonFixture.png(seed: 20_000 + i, width: 64, height: 48), "k\(i).png", oldMtime: true) }
        let first = try SegdDaemon(ws, logName: "first")
        XCTAssertTrue(waitUntil(timeout: 60) { ws.files(ws.done).count >= 5 }, first.log)
        first.send(SIGKILL)
        XCTAssertEqual(first.waitForExit(timeout: 10)?.reason, .uncaughtSignal)
        let interrupted = try ws.journal().filter { $0.status == .processing }.count
        XCTAssertLessThan(ws.files(ws.done).count, n, "killed before the end")

        let second = try SegdDaemon(ws, logName: "second")
        XCTAssertTrue(waitUntil(timeout: 90) { finishedCount(ws) == n }, second.log)
        Thread.sleep(forTimeInterval: 0.5)
        let rows = try rowsByPath(ws)
        XCTAssertEqual(rows.count, n)
        for (path, entries) in rows {
            XCTAssertEqual(entries.count, 1, path)
            XCTAssertEqual(entries[0].status, .done, "\(path): \(entries[0].error ?? "")")
            XCTAssertLessThanOrEqual(entries[0].attempts, 2, path)
        }
        // Each input once in done/ (a second move would have made "k3~2.png"), each result
        // once, and no temporary file of a killed write left in the output folder.
        XCTAssertEqual(Set(ws.files(ws.done)), Set((0..<n).map { "k\($0).png" }))
        let outFiles = ws.files(ws.out)
        XCTAssertEqual(Set(outFiles.filter { $0.hasSuffix(".json") }), Set((0..<n).map { "k\($0).json" }))
        XCTAssertEqual(outFiles.filter { ($0 as NSString).lastPathComponent.hasPrefix(".") }, [], "temporary files left")
        XCTAssertEqual(outFiles.count, 2 * n, "\(outFiles)")
        if interrupted > 0 { XCTAssertTrue(second.log.contains("retrying an input that was in flight"), second.log) }
        second.send(SIGTERM)
        XCTAssertEqual(second.waitForExit(timeout: 20)?.status, 0)
    }

    /// Killed after the journal recorded the job done and before the input was moved: the
    /// next process settles it at start-up crash recovery (JobLife.settleOrphans), not by a
    /// rescan (set to an hour here), and records where it went.
    func testInputOfAJobFinishedByAKilledProcessIsMovedAtRecovery() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(inputs: "rescan_interval_s: 3600")
        try ws.put(DaemonFixture.png(seed: 30_500), "late.png", oldMtime: true)
        let first = try SegdDaemon(ws, environment: ["SEGD_TEST_CRASH_AFTER_FINISH": "late.png", "SWIFT_BACKTRACE": "enable=no"],
                                   logName: "killed")
        XCTAssertEqual(first.waitForExit(timeout: 60)?.reason, .uncaughtSignal, first.log)
        let row = try XCTUnwrap(try ws.journal().first)
        XCTAssertEqual(row.status, .done)
        XCTAssertNil(row.finalPath)
        XCTAssertEqual(ws.files(ws.inbox), ["late.png"], "killed before the move")
        let second = try SegdDaemon(ws, logName: "recovered")
        XCTAssertTrue(waitUntil(timeout: 30) { ws.files(ws.done) == ["late.png"] }, second.log)
        XCTAssertTrue(waitUntil(timeout: 10) { (try? ws.journal().first?.finalPath) == ws.done + "/late.png" }, second.log)
        XCTAssertTrue(second.log.contains("moved the input of a job its node finished but did not move"), second.log)
        XCTAssertEqual(ws.files(ws.inbox), [])
        second.send(SIGTERM)
        XCTAssertEqual(second.waitForExit(timeout: 20)?.status, 0)
    }

    func testInputThatCrashesDecodingEndsInFailedAfterMaxCrashes() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(service: "status_interval_s: 1\n  max_crashes: 3")
        try ws.put(DaemonFixture.png(seed: 30_000), "poison.png", oldMtime: true)
        for i in 0..<6 { try ws.put(DaemonFixture.png(seed: 30_001 + i), "good\(i).png", oldMtime: true) }
        // Restart after each crash as systemd's Restart=on-failure does.
        var crashes = 0
        var last: SegdDaemon?
        while finishedCount(ws) < 7 && crashes <= 5 {
            let d = try SegdDaemon(ws, environment: ["SEGD_TEST_CRASH_ON": "poison.png"], logName: "run\(crashes)")
            last = d
            _ = waitUntil(timeout: 60) { !d.isRunning || finishedCount(ws) == 7 }
            if !d.isRunning {
                XCTAssertEqual(d.waitForExit(timeout: 5)?.reason, .uncaughtSignal, d.log)
                crashes += 1
            }
        }
        XCTAssertEqual(crashes, 3, "the poisoned file crashes segd max_crashes times, then is parked")
        let rows = try rowsByPath(ws)
        let poison = try XCTUnwrap(rows[ws.inbox + "/poison.png"]?.first)
        XCTAssertEqual(poison.status, .failed)
        XCTAssertEqual(poison.attempts, 3)
        XCTAssertTrue(poison.error?.contains("3 times") == true, poison.error ?? "")
        for i in 0..<6 { XCTAssertEqual(rows[ws.inbox + "/good\(i).png"]?.first?.status, .done, "good\(i)") }
        // The journal records the failure before the input is moved and its reason written
        // (atomically, through a hidden temporary): wait for the folder to settle.
        XCTAssertTrue(waitUntil(timeout: 10) { ws.files(ws.failed) == ["poison.png", "poison.png.error.json"] }, "\(ws.files(ws.failed))")
        let errorDoc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ws.failed + "/poison.png.error.json"))) as? [String: Any])
        XCTAssertEqual(errorDoc["attempts"] as? Int, 3)
        XCTAssertTrue((errorDoc["reason"] as? String)?.contains("stopped abnormally") == true)
        // `segd status` shows the failure and its reason.
        let status = Process()
        status.executableURL = URL(fileURLWithPath: DaemonFixture.binary)
        status.arguments = ["status", "--state-dir", ws.state]
        let pipe = Pipe()
        status.standardOutput = pipe
        try status.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        status.waitUntilExit()
        XCTAssertEqual(status.terminationStatus, 0)
        XCTAssertTrue(text.contains("done 6") && text.contains("failed 1") && text.contains("poison.png") && text.contains("stopped abnormally"), text)
        if let last, last.isRunning {
            last.send(SIGTERM)
            XCTAssertEqual(last.waitForExit(timeout: 20)?.status, 0)
        }
    }

    func testSIGTERMWithWorkInFlightExitsZeroWithinTheBound() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(service: "status_interval_s: 1\n  drain_timeout_s: 10")
        // A backlog far longer than the seconds this test waits (about 20 ms an image).
        let n = 400
        for i in 0..<n { try ws.put(DaemonFixture.png(seed: 40_000 + i), "t\(i).png", oldMtime: true) }
        let d = try SegdDaemon(ws)
        XCTAssertTrue(waitUntil(timeout: 60) { ws.files(ws.done).count >= 2 }, d.log)
        XCTAssertTrue(try ws.journal().contains { $0.status == .processing || $0.status == .queued }, "work in flight")
        let sent = Date()
        d.send(SIGTERM)
        let exit = d.waitForExit(timeout: 15)
        let took = Date().timeIntervalSince(sent)
        XCTAssertEqual(exit?.reason, .exit, d.log)
        XCTAssertEqual(exit?.status, 0, d.log)
        XCTAssertLessThan(took, 10 + 2, "drain_timeout_s 10")
        let rows = try ws.journal()
        XCTAssertEqual(rows.filter { $0.status == .processing }.count, 0, "in-flight jobs finished or went back to the queue")
        XCTAssertLessThan(ws.files(ws.done).count, n, "intake stopped: the backlog waits for the next start")
        XCTAssertEqual(rows.filter { $0.status == .done }.count, ws.files(ws.done).count, "every finished job recorded")
        XCTAssertTrue(rows.filter { $0.status == .queued }.allSatisfy { $0.attempts == 0 }, "a clean stop is not a crash")
        XCTAssertTrue(d.log.contains("stopped"), d.log)
    }

    func testSIGTERMPastTheBoundReturnsUnfinishedWorkToTheQueue() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(service: "status_interval_s: 1\n  drain_timeout_s: 0")
        let n = 150
        for i in 0..<n { try ws.put(DaemonFixture.png(seed: 45_000 + i), "u\(i).png", oldMtime: true) }
        let d = try SegdDaemon(ws, logName: "first")
        XCTAssertTrue(waitUntil(timeout: 60) { ws.files(ws.done).count >= 2 }, d.log)
        d.send(SIGTERM)
        let exit = d.waitForExit(timeout: 5)
        XCTAssertEqual(exit?.reason, .exit, d.log)
        XCTAssertEqual(exit?.status, 0, d.log)
        XCTAssertTrue(d.log.contains("stop bound reached"), d.log)
        let rows = try ws.journal()
        XCTAssertEqual(rows.filter { $0.status == .processing }.count, 0, "interrupted jobs went back to the queue")
        XCTAssertTrue(rows.filter { $0.status == .queued }.allSatisfy { $0.attempts == 0 }, "a stop is not counted as a crash")
        // The next start finishes the rest, each input once.
        let again = try SegdDaemon(ws, logName: "again")
        XCTAssertTrue(waitUntil(timeout: 90) { finishedCount(ws) == n }, again.log)
        let byPath = try rowsByPath(ws)
        XCTAssertEqual(byPath.count, n)
        XCTAssertTrue(byPath.values.allSatisfy { $0.count == 1 && $0[0].status == .done && $0[0].attempts <= 1 })
        XCTAssertEqual(Set(ws.files(ws.done)), Set((0..<n).map { "u\($0).png" }))
        again.send(SIGTERM)
        XCTAssertEqual(again.waitForExit(timeout: 20)?.status, 0)
    }

    func testSIGHUPWithBrokenFileKeepsRunningOnTheOldConfig() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        let good = try String(contentsOfFile: ws.configPath, encoding: .utf8)
        // An unknown key on line 3.
        try good.replacingOccurrences(of: "  min_size: 32", with: "  min_sise: 32").write(toFile: ws.configPath, atomically: true, encoding: .utf8)
        d.send(SIGHUP)
        XCTAssertTrue(d.waitForLog("keeping the running one"), d.log)
        XCTAssertTrue(d.log.contains("pipeline.yml:3: model.min_sise: unknown key"), d.log)
        XCTAssertTrue(d.isRunning)
        try ws.put(DaemonFixture.png(seed: 50_000), "after-bad-hup.png")
        XCTAssertTrue(waitUntil(timeout: 30) { FileManager.default.fileExists(atPath: ws.out + "/after-bad-hup.json") }, d.log)

        // A valid change applies: results go to another folder from now on.
        try good.replacingOccurrences(of: "directory: \(ws.out)", with: "directory: \(ws.root)/out2")
            .write(toFile: ws.configPath, atomically: true, encoding: .utf8)
        d.send(SIGHUP)
        XCTAssertTrue(d.waitForLog("configuration reloaded"), d.log)
        try ws.put(DaemonFixture.png(seed: 50_001), "after-good-hup.png")
        XCTAssertTrue(waitUntil(timeout: 30) { finishedCount(ws) == 2 }, d.log)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ws.root + "/out2/after-good-hup.json"), d.log)
        XCTAssertEqual(try ws.journal().filter { $0.status == .done }.count, 2)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    func testNotifySocketSeesReadyAfterInitialScanAndWatchdogAtItsRate() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        for i in 0..<4 { try ws.put(DaemonFixture.png(seed: 60_000 + i), "n\(i).png", oldMtime: true) }
        let listener = try NotifyListener(directory: ws.root)
        // At READY=1 the initial scan's files must already be in the journal.
        let journaledAtReady = LockedBox<Int?>(nil)
        listener.onMessage = { text in
            if text.split(separator: "\n").contains("READY=1"), journaledAtReady.value == nil {
                journaledAtReady.value = (try? ws.journal().count) ?? -1
            }
        }
        // WATCHDOG_USEC 1 s: segd pings every 500 ms (half, as sd_watchdog_enabled advises).
        let d = try SegdDaemon(ws, environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000"])
        XCTAssertTrue(waitUntil(timeout: 30) { !listener.times(of: "READY=1").isEmpty }, d.log)
        XCTAssertEqual(journaledAtReady.value, 4, "READY=1 came before the initial scan was journaled")
        Thread.sleep(forTimeInterval: 3.6)
        let ready = try XCTUnwrap(listener.times(of: "READY=1").first)
        let pings = listener.times(of: "WATCHDOG=1").filter { $0 > ready.addingTimeInterval(0.4) && $0 <= ready.addingTimeInterval(3.4) }
        // 3 s at one ping per 500 ms: 6; allow one early or late on a loaded machine.
        XCTAssertTrue((5...7).contains(pings.count), "\(pings.count) watchdog pings in 3 s")
        let gaps = zip(pings.dropFirst(), pings).map { $0.timeIntervalSince($1) }
        XCTAssertGreaterThan(gaps.min() ?? 0, 0.3, "pings at the configured rate, not faster")
        XCTAssertLessThan(gaps.max() ?? 0, 1.0, "a gap of WATCHDOG_USEC or more would get segd killed")
        XCTAssertTrue(listener.messages.contains { $0.text.contains("STATUS=queued") && $0.text.contains("images/s") }, "\(listener.messages.map(\.text))")
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
        XCTAssertFalse(listener.times(of: "STOPPING=1").isEmpty)
        listener.stop()
    }

    func testWatchdogIsNotFedWhenThePipelineStopsMakingProgress() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(service: "status_interval_s: 1\n  stall_timeout_s: 1")
        let listener = try NotifyListener(directory: ws.root)
        defer { listener.stop() }
        let d = try SegdDaemon(ws, environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000",
                                                 "SEGD_TEST_HANG_ON": "stuck.png"])
        XCTAssertTrue(waitUntil(timeout: 30) { !listener.times(of: "READY=1").isEmpty }, d.log)
        // Idle is healthy: pings go on with nothing to do.
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertGreaterThanOrEqual(listener.times(of: "WATCHDOG=1").count, 4)
        try ws.put(DaemonFixture.png(seed: 95_000), "stuck.png")
        XCTAssertTrue(d.waitForLog("SEGD_TEST_HANG_ON"), d.log)
        // stall_timeout_s 1: within about a second of the hang the pings stop for good.
        XCTAssertTrue(d.waitForLog("not feeding the watchdog", timeout: 10), d.log)
        let quietFrom = Date()
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertEqual(listener.times(of: "WATCHDOG=1").filter { $0 > quietFrom }.count, 0, "a stuck pipeline must not feed the watchdog")
        XCTAssertTrue(d.log.contains("1 images in flight and none finished"), d.log)
        d.send(SIGKILL)
        _ = d.waitForExit(timeout: 5)
    }

    func testBurstIsBatchedUpToMaxBatch() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(batching: "max_batch: 4\n  max_delay_ms: 500", queues: "bound: 2",
                           after: "success: delete\n  done_directory: \(ws.done)\n  failed_directory: \(ws.failed)")
        for i in 0..<8 { try ws.put(DaemonFixture.png(seed: 70_000 + i), "b\(i).png", in: ws.staging) }
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        for i in 0..<8 { XCTAssertEqual(rename(ws.staging + "/b\(i).png", ws.inbox + "/b\(i).png"), 0) }
        XCTAssertTrue(waitUntil(timeout: 60) { finishedCount(ws) == 8 }, d.log)
        var sizes: [Int] = []
        for i in 0..<8 {
            let json = try ws.resultJSON("b\(i)")
            sizes.append(try XCTUnwrap(json["batch_size"] as? Int))
            let timings = try XCTUnwrap(json["timings_ms"] as? [String: Double])
            XCTAssertNotNil(timings["backbone"])
            // One vocabulary: every key is a PipelineStage name, in the model's order.
            XCTAssertTrue(Set(timings.keys).isSubset(of: PipelineStage.allCases.map(\.rawValue)), "\(timings.keys)")
        }
        XCTAssertTrue(sizes.contains { $0 > 1 }, "batch sizes \(sizes)")
        XCTAssertTrue(sizes.allSatisfy { $0 <= 4 }, "batch sizes \(sizes)")
        XCTAssertEqual(try ws.journal().compactMap(\.batchSize).sorted(), sizes.sorted())
        // after.success: delete — the inputs are gone, nothing was moved to done/.
        XCTAssertEqual(ws.files(ws.inbox), [])
        XCTAssertEqual(ws.files(ws.done), [])
        XCTAssertTrue(try ws.journal().allSatisfy { $0.finalPath == nil })
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }

    func testSameContentIsNotProcessedAgainAndKeptInputsAreRemembered() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig(after: "success: keep\n  done_directory: \(ws.done)\n  failed_directory: \(ws.failed)")
        let d = try SegdDaemon(ws)
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        try ws.put(DaemonFixture.png(seed: 80_000), "a.png")
        XCTAssertTrue(waitUntil(timeout: 30) { finishedCount(ws) == 1 }, d.log)
        try ws.put(DaemonFixture.png(seed: 80_000), "copy-of-a.png")
        XCTAssertTrue(waitUntil(timeout: 30) { finishedCount(ws) == 2 }, d.log)
        let rows = try ws.journal()
        let copy = try XCTUnwrap(rows.first { $0.path.hasSuffix("copy-of-a.png") })
        XCTAssertEqual(copy.duplicateOf, rows.first { $0.path.hasSuffix("/a.png") }?.id)
        XCTAssertNil(copy.startedAt, "a duplicate is not run through the model")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ws.out + "/copy-of-a.json"))
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
        // Kept in place: a restart's scan finds both and processes neither again.
        let again = try SegdDaemon(ws, logName: "again")
        XCTAssertTrue(again.waitForLog("ready"), again.log)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try ws.journal().count, 2, again.log)
        XCTAssertEqual(ws.files(ws.inbox), ["a.png", "copy-of-a.png"])
        again.send(SIGTERM)
        XCTAssertEqual(again.waitForExit(timeout: 20)?.status, 0)
    }

    func testWatchLimitFallsBackToPollingAndNamesTheSysctl() throws {
        let ws = try DaemonWorkspace(self)
        try ws.writeConfig()
        let d = try SegdDaemon(ws, environment: ["SEGD_TEST_INOTIFY_ERROR": "ENOSPC", "JOURNAL_STREAM": "auto"])
        XCTAssertTrue(d.waitForLog("ready"), d.log)
        // Under journald each line carries its syslog priority: <3> error, <6> info.
        XCTAssertTrue(d.log.split(separator: "\n").contains { $0.hasPrefix("<3>inotify watch limit reached") && $0.contains("fs.inotify.max_user_watches") }, d.log)
        XCTAssertTrue(d.log.split(separator: "\n").contains { $0.hasPrefix("<6>ready") }, d.log)
        XCTAssertTrue(d.log.contains("watching=polling"), d.log)
        try ws.put(DaemonFixture.png(seed: 90_000), "polled.png")
        XCTAssertTrue(waitUntil(timeout: 30) { finishedCount(ws) == 1 }, d.log)
        XCTAssertEqual(try ws.journal().first?.status, .done)
        d.send(SIGTERM)
        XCTAssertEqual(d.waitForExit(timeout: 20)?.status, 0)
    }
}

/// A value shared with a callback on another thread.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}
