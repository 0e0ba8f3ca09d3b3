// One contract, both journals: every test here runs the same steps against the SQLite journal
// (a temporary state directory) and the PostgreSQL journal (a real server started for this
// class, a database per journal), so the daemon can rely on JobJournal without knowing which
// one it has. Where the two differ by design (what "lost" means: SQLite, another process's
// claim; PostgreSQL, a lapsed lease) the test makes both true at once: the holder is another
// worker and its lease is short and over.
import Foundation
import Pipeline
import XCTest

final class JournalContractTests: XCTestCase {
    nonisolated(unsafe) static var server: PostgresServer?

    override class func tearDown() {
        server?.stop()
        server = nil
        super.tearDown()
    }

    let a = WorkerID(host: "node-a", pid: 1, tag: "a")
    let b = WorkerID(host: "node-b", pid: 2, tag: "b")

    /// A fresh journal of each kind, named for messages.
    func journals() throws -> [(String, any JobJournal)] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-contract-\(UUID().uuidString.prefix(8))").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        if Self.server == nil { Self.server = try PostgresServer() }
        let pg = try PostgresJournal(try Self.server!.createDatabase(), password: nil, log: .init(label: "test"))
        return [("sqlite", try Journal(directory: dir)), ("postgresql", pg)]
    }

    func input(_ name: String, size: Int64 = 100, mtime: Int64 = 1, hash: String? = nil) -> JournalInput {
        Self.input(name, size: size, mtime: mtime, hash: hash)
    }

    static func input(_ name: String, size: Int64 = 100, mtime: Int64 = 1, hash: String? = nil) -> JournalInput {
        JournalInput(path: "/in/" + name, root: "/in", relative: name, size: size, mtimeNs: mtime, hash: hash ?? "h-" + name, model: "m")
    }

    func queuedID(_ a: Admission, _ kind: String, file: StaticString = #filePath, line: UInt = #line) -> Int64 {
        guard case let .queued(id) = a else {
            XCTFail("\(kind): expected queued, got \(a)", file: file, line: line)
            return -1
        }
        return id
    }

    // MARK: Admission

    func testAdmitDedupesTheSameFileAndRecordsSameContentAsDuplicate() throws {
        for (kind, j) in try journals() {
            let first = queuedID(try j.admit(input("x.png")), kind)
            // The same path, size and mtime: the row it has, not a second job.
            guard case let .known(e) = try j.admit(input("x.png")) else { return XCTFail(kind) }
            XCTAssertEqual(e.id, first, kind)
            // The same path changed (new mtime): a new job.
            let changed = queuedID(try j.admit(input("x.png", mtime: 2, hash: "h-x2")), kind)
            XCTAssertNotEqual(changed, first, kind)
            // Content of a done job: a done duplicate sharing its outputs, never claimed.
            let claimed = try j.claim(max: 10, worker: a, lease: 30)
            XCTAssertEqual(claimed.map(\.id), [first, changed], kind)
            XCTAssertTrue(try j.begin(claimed[0].ticket, worker: a), kind)
            XCTAssertTrue(try j.finish(claimed[0].ticket, worker: a, status: .done, error: nil, outputs: ["x.json"], timings: ["decode": 1],
                                       batchSize: 1), kind)
            guard case let .duplicate(dup, original) = try j.admit(input("copy.png", hash: "h-x.png")) else { return XCTFail(kind) }
            XCTAssertEqual(original, first, kind)
            let d = try XCTUnwrap(try j.entry(id: dup), kind)
            XCTAssertEqual(d.status, .done, kind)
            XCTAssertEqual(d.duplicateOf, first, kind)
            XCTAssertEqual(d.outputs, "[\"x.json\"]", kind)
            XCTAssertNil(d.startedAt, kind)
            XCTAssertEqual(try j.latest(path: "/in/x.png")?.id, changed, kind)
        }
    }

    /// Eight threads admit the same 50 files at once (as nodes whose watchers all see a
    /// shared folder): 50 jobs, every other answer `known`.
    func testConcurrentAdmitsOfOneFileMakeOneJob() throws {
        for (kind, j) in try journals() {
            let queued = Shared(0), known = Shared(0), errors = Shared<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                for i in 0..<50 {
                    do {
                        switch try j.admit(Self.input("f\(i).png")) {
                        case .queued: queued.update { $0 += 1 }
                        case .known: known.update { $0 += 1 }
                        case .duplicate: errors.update { $0.append("duplicate") }
                        }
                    } catch { errors.update { $0.append("\(error)") } }
                }
            }
            XCTAssertEqual(errors.value, [], kind)
            XCTAssertEqual(queued.value, 50, kind)
            XCTAssertEqual(known.value, 350, kind)
            XCTAssertEqual(try j.all().count, 50, kind)
        }
    }

    // MARK: Claims

    func testClaimTakesUpToMaxSuspectsFirstAndAloneAndNeverTwice() throws {
        for (kind, j) in try journals() {
            let ids = try (0..<5).map { queuedID(try j.admit(input("c\($0).png")), kind) }
            let first = try j.claim(max: 2, worker: a, lease: 30)
            XCTAssertEqual(first.map(\.id), Array(ids[0..<2]), kind)
            XCTAssertTrue(first.allSatisfy { $0.status == .processing && $0.worker == a.description && $0.claim == 1 && !$0.began }, kind)
            let second = try j.claim(max: 10, worker: b, lease: 30)
            XCTAssertEqual(second.map(\.id), Array(ids[2...]), kind)
            XCTAssertEqual(try j.claim(max: 10, worker: b, lease: 30), [], kind)
            XCTAssertEqual(try j.queuedCount(), 0, kind)
        }
    }

    /// Four claimers race over 200 jobs: each job is claimed exactly once.
    func testConcurrentClaimersNeverShareAJob() throws {
        for (kind, j) in try journals() {
            for i in 0..<200 { _ = try j.admit(input("r\(i).png")) }
            let got = Shared<[Int64]>([]), errors = Shared<[String]>([])
            let workers = (0..<4).map { WorkerID(host: "w", pid: Int32($0), tag: "t\($0)") }
            DispatchQueue.concurrentPerform(iterations: 4) { w in
                while true {
                    do {
                        let c = try j.claim(max: 3, worker: workers[w], lease: 30)
                        if c.isEmpty { break }
                        got.update { $0 += c.map(\.id) }
                    } catch {
                        errors.update { $0.append("\(error)") }
                        break
                    }
                }
            }
            XCTAssertEqual(errors.value, [], kind)
            XCTAssertEqual(got.value.count, 200, kind)
            XCTAssertEqual(Set(got.value).count, 200, "\(kind): a job claimed twice")
        }
    }

    // MARK: Guarded transitions

    func testBeginAndFinishAreGuardedByWorkerAndClaim() throws {
        for (kind, j) in try journals() {
            let id = queuedID(try j.admit(input("g.png")), kind)
            let c = try XCTUnwrap(try j.claim(max: 1, worker: a, lease: 30).first, kind)
            XCTAssertFalse(try j.begin(c.ticket, worker: b), "\(kind): another worker may not begin it")
            XCTAssertTrue(try j.begin(c.ticket, worker: a), kind)
            XCTAssertEqual(try j.entry(id: id)?.attempts, 1, kind)
            XCTAssertFalse(try j.finish(c.ticket, worker: b, status: .done, error: nil, outputs: [], timings: [:], batchSize: 1), kind)
            XCTAssertFalse(try j.finish(Ticket(id: id, claim: c.claim + 1), worker: a, status: .done, error: nil, outputs: [], timings: [:],
                                        batchSize: 1), "\(kind): a stale claim number")
            XCTAssertEqual(try j.entry(id: id)?.status, .processing, kind)
            XCTAssertTrue(try j.finish(c.ticket, worker: a, status: .failed, error: "bad", outputs: [], timings: [:], batchSize: nil), kind)
            let e = try XCTUnwrap(try j.entry(id: id), kind)
            XCTAssertEqual(e.status, .failed, kind)
            XCTAssertEqual(e.error, "bad", kind)
            try j.setFinalPath(id: id, "/failed/g.png")
            XCTAssertEqual(try j.entry(id: id)?.finalPath, "/failed/g.png", kind)
            XCTAssertEqual(try j.summary(failures: 5).recentFailures.map(\.id), [id], kind)
        }
    }

    func testGiveBackUncountsTheAttemptAndHoldsUntilReleased() throws {
        for (kind, j) in try journals() {
            let id = queuedID(try j.admit(input("h.png")), kind)
            var c = try XCTUnwrap(try j.claim(max: 1, worker: a, lease: 30).first, kind)
            XCTAssertTrue(try j.begin(c.ticket, worker: a), kind)
            try j.giveBack([c.ticket], worker: a, holdFor: nil)
            var e = try XCTUnwrap(try j.entry(id: id), kind)
            XCTAssertEqual(e.status, .queued, kind)
            XCTAssertEqual(e.attempts, 0, "\(kind): a stop is not an attempt")
            // Held open-ended (an input still being written): not claimable until released.
            c = try XCTUnwrap(try j.claim(max: 1, worker: a, lease: 30).first, kind)
            XCTAssertEqual(c.claim, 2, kind)
            try j.giveBack([c.ticket], worker: a, holdFor: .infinity)
            XCTAssertEqual(try j.claim(max: 1, worker: a, lease: 30), [], kind)
            try j.release(id: id)
            c = try XCTUnwrap(try j.claim(max: 1, worker: a, lease: 30).first, kind)
            // Held for a while (outputs unwritable): claimable once it passed.
            try j.giveBack([c.ticket], worker: a, holdFor: 0.4)
            XCTAssertEqual(try j.claim(max: 1, worker: a, lease: 30), [], kind)
            Thread.sleep(forTimeInterval: 0.6)
            XCTAssertEqual(try j.claim(max: 1, worker: a, lease: 30).map(\.id), [id], kind)
            // Changed while held: described again, claimable at once.
            e = try XCTUnwrap(try j.entry(id: id), kind)
            try j.giveBack([e.ticket], worker: a, holdFor: .infinity)
            try j.describeAgain(id: id, with: input("h.png", size: 200, mtime: 5))
            let again = try XCTUnwrap(try j.claim(max: 1, worker: a, lease: 30).first, kind)
            XCTAssertEqual(again.size, 200, kind)
        }
    }

    // MARK: Lost holders

    /// Worker A claims three jobs, begins two, and is never heard of again (its lease is
    /// short and over). Worker B takes them over: begun ones become suspects with their
    /// crash counted, the unbegun one is queued as it was; A's late finish is refused;
    /// after max_crashes begun-and-lost claims a job fails.
    func testLostClaimsAreRequeuedWithCrashesCountedThenFailed() throws {
        for (kind, j) in try journals() {
            let ids = try (0..<3).map { queuedID(try j.admit(input("l\($0).png")), kind) }
            let claimed = try j.claim(max: 3, worker: a, lease: 0.3)
            XCTAssertTrue(try j.begin(claimed[0].ticket, worker: a), kind)
            XCTAssertTrue(try j.begin(claimed[1].ticket, worker: a), kind)
            Thread.sleep(forTimeInterval: 0.6)
            let (retried, failed) = try j.recoverLost(worker: b, maxCrashes: 2)
            XCTAssertEqual(Set(retried.map(\.id)), Set(ids), kind)
            XCTAssertEqual(failed, [], kind)
            for id in ids {
                let e = try XCTUnwrap(try j.entry(id: id), kind)
                XCTAssertEqual(e.status, .queued, kind)
                XCTAssertEqual(e.suspect, id != ids[2], "\(kind): only begun jobs are suspects")
                XCTAssertEqual(e.attempts, id != ids[2] ? 1 : 0, kind)
            }
            XCTAssertFalse(try j.finish(claimed[0].ticket, worker: a, status: .done, error: nil, outputs: [], timings: [:], batchSize: 1),
                           "\(kind): the lost holder's result must be discarded")
            // A suspect is claimed alone.
            let alone = try j.claim(max: 3, worker: b, lease: 0.3)
            XCTAssertEqual(alone.map(\.id), [ids[0]], kind)
            XCTAssertTrue(try j.begin(alone[0].ticket, worker: b), kind)
            Thread.sleep(forTimeInterval: 0.6)
            // B is lost too; a third worker finds the second crash of ids[0]: max_crashes 2.
            let c = WorkerID(host: "node-c", pid: 3, tag: "c")
            let (_, failedNow) = try j.recoverLost(worker: c, maxCrashes: 2)
            XCTAssertEqual(failedNow.map(\.id), [ids[0]], kind)
            let e = try XCTUnwrap(try j.entry(id: ids[0]), kind)
            XCTAssertEqual(e.status, .failed, kind)
            XCTAssertEqual(e.attempts, 2, kind)
            XCTAssertTrue(e.error?.contains("stopped abnormally") == true && e.error?.contains("2 times") == true, "\(kind): \(e.error ?? "")")
            XCTAssertEqual(try j.claim(max: 3, worker: c, lease: 30).map(\.id), [ids[1]], "\(kind): the next suspect, alone")
        }
    }

    /// Worker A finishes two jobs (done, failed) and dies before recording where their inputs
    /// went; a third, settled job and a fourth still processing are not A's leftovers. While
    /// A is live (shared: heartbeat within the lease) nobody takes them; once it is gone, B
    /// takes exactly the two, a second taker gets nothing while B is live, and after B
    /// records the final paths nobody takes them again.
    func testUnsettledJobsOfADeadWorkerAreTakenOnce() throws {
        for (kind, j) in try journals() {
            let shared = j.isShared
            let ids = try (0..<4).map { queuedID(try j.admit(input("u\($0).png")), kind) }
            try j.heartbeat(worker: a, lease: 0.5, report: NodeReport())
            let claimed = try j.claim(max: 4, worker: a, lease: 0.5)
            XCTAssertEqual(claimed.count, 4, kind)
            for (n, e) in claimed.prefix(3).enumerated() {
                XCTAssertTrue(try j.begin(e.ticket, worker: a), kind)
                XCTAssertTrue(try j.finish(e.ticket, worker: a, status: n == 1 ? .failed : .done, error: n == 1 ? "bad" : nil,
                                           outputs: [], timings: [:], batchSize: 1), kind)
            }
            try j.setFinalPath(id: ids[2], "/done/u2.png")
            XCTAssertEqual(try j.takeUnsettled(worker: a, lease: 0.5, limit: 10), [], "\(kind): never one's own")
            if shared {
                XCTAssertEqual(try j.takeUnsettled(worker: b, lease: 0.5, limit: 10), [], "\(kind): A is live")
                Thread.sleep(forTimeInterval: 0.8)
                try j.heartbeat(worker: b, lease: 30, report: NodeReport())
            }
            let taken = try j.takeUnsettled(worker: b, lease: 0.5, limit: 10)
            XCTAssertEqual(taken.map(\.id), [ids[0], ids[1]], kind)
            XCTAssertEqual(taken.map(\.status), [.done, .failed], kind)
            XCTAssertEqual(try j.entry(id: ids[0])?.worker, b.description, kind)
            let c = WorkerID(host: "node-c", pid: 3, tag: "c")
            if shared {
                XCTAssertEqual(try j.takeUnsettled(worker: c, lease: 0.5, limit: 10), [], "\(kind): taken by live B")
            }
            for e in taken { try j.setFinalPath(id: e.id, "/moved/\(e.id)") }
            if shared { try j.leave(worker: b) }
            XCTAssertEqual(try j.takeUnsettled(worker: c, lease: 0.5, limit: 10), [], "\(kind): settled")
            XCTAssertEqual(try j.entry(id: ids[0])?.finalPath, "/moved/\(ids[0])", kind)
            XCTAssertEqual(try j.entry(id: ids[3])?.status, .processing, kind)
        }
    }

    /// A clean stop's unfinished jobs and a vanished input.
    func testVanishedAndQueuedListing() throws {
        for (kind, j) in try journals() {
            let x = queuedID(try j.admit(input("v.png")), kind)
            let y = queuedID(try j.admit(input("w.png")), kind)
            XCTAssertEqual(try j.queued().map(\.id), [x, y], kind)
            try j.markVanished(id: x)
            let e = try XCTUnwrap(try j.entry(id: x), kind)
            XCTAssertEqual(e.status, .failed, kind)
            XCTAssertEqual(try j.queued().map(\.id), [y], kind)
            let s = try j.summary(failures: 10)
            XCTAssertEqual(s.counts[.failed], 1, kind)
            XCTAssertEqual(s.counts[.queued], 1, kind)
        }
    }

    // MARK: PostgreSQL only

    /// A heartbeat keeps a claim alive past its first lease; without it another node takes
    /// the claim over. The node table records the heartbeat.
    func testHeartbeatRenewsLeasesAndRecordsTheNode() throws {
        let j = try XCTUnwrap(try journals().last?.1 as? PostgresJournal)
        let id = queuedID(try j.admit(input("hb.png")), "postgresql")
        _ = try j.claim(max: 1, worker: a, lease: 0.5)
        for _ in 0..<4 {
            Thread.sleep(forTimeInterval: 0.25)
            try j.heartbeat(worker: a, lease: 0.5, report: NodeReport(inFlight: 1, done: 3, failed: 0, throughput: 1.5))
        }
        XCTAssertEqual(try j.recoverLost(worker: b, maxCrashes: 3).retried, [], "renewed: not lost")
        XCTAssertEqual(try j.entry(id: id)?.worker, a.description)
        let nodes = try j.nodes()
        XCTAssertEqual(nodes.map(\.worker), [a.description])
        XCTAssertEqual(nodes.first?.report, NodeReport(inFlight: 1, done: 3, failed: 0, throughput: 1.5))
        Thread.sleep(forTimeInterval: 0.8)
        XCTAssertEqual(try j.recoverLost(worker: b, maxCrashes: 3).retried.map(\.id), [id], "not renewed: lost")
        try j.leave(worker: a)
        XCTAssertEqual(try j.nodes(), [])
    }

    /// An admit on one node wakes a waiting feeder on another (LISTEN/NOTIFY), well before
    /// the poll backstop would.
    func testAnAdmitElsewhereWakesAWaitingClaimer() throws {
        let server = try XCTUnwrap(Self.server ?? { Self.server = try PostgresServer(); return Self.server }())
        let db = try server.createDatabase()
        let waiter = try PostgresJournal(db, password: nil, log: .init(label: "w"))
        let other = try PostgresJournal(db, password: nil, log: .init(label: "o"))
        Thread.sleep(forTimeInterval: 0.5)  // the LISTEN connection is up
        waiter.waitForWork(timeout: 0.1)  // consume the ring of its (re)connect
        let woke = LockedBox<Date?>(nil)
        let t = Thread {
            waiter.waitForWork(timeout: 20)
            woke.value = Date()
        }
        t.start()
        Thread.sleep(forTimeInterval: 0.3)
        let sent = Date()
        _ = try other.admit(input("wake.png"))
        XCTAssertTrue(waitUntil(timeout: 10) { woke.value != nil })
        XCTAssertLessThan(woke.value!.timeIntervalSince(sent), 5, "woken by NOTIFY, not by the 20 s timeout")
    }

    /// The schema is versioned and a second open (another node starting) migrates nothing.
    func testSchemaIsCreatedOnceAndVersioned() throws {
        if Self.server == nil { Self.server = try PostgresServer() }
        let db = try Self.server!.createDatabase()
        let errors = Shared<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 3) { _ in
            do { _ = try PostgresJournal(db, password: nil, log: .init(label: "m"), listen: false) } catch { errors.update { $0.append("\(error)") } }
        }
        XCTAssertEqual(errors.value, [])
        let out = try Self.server!.runTool("psql", ["-h", "127.0.0.1", "-p", "\(Self.server!.port)", "-U", "segd", "-d", db.database,
                                                    "-Atc", "SELECT string_agg(version::text, ',') FROM segd_schema"])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), (1...PostgresJournal.schemaVersion).map(String.init).joined(separator: ","))
    }
}

/// A value several threads update: `update` is one locked read-modify-write.
final class Shared<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T { lock.withLock { v } }
    func update(_ body: (inout T) -> Void) { lock.withLock { body(&v) } }
}
