// The daemon's journal: one SQLite row per job (GRDB, WAL) in the state directory. It is
// what makes segd restartable: a row is `processing` from the moment the daemon claims it,
// so after a crash or kill -9 the rows still `processing` under an earlier process are
// exactly the inputs that were in flight; each decode start counts one attempt, so an input
// that keeps crashing the process is recognized and parked in failed/ instead of
// crash-looping the service. One process uses it at a time: the one-worker case of the
// claim protocol (JobJournal.swift).
import Foundation
import GRDB

public enum JobStatus: String, Codable, Sendable, CaseIterable {
    case queued, processing, done, failed
}

public struct JournalEntry: Codable, Sendable, Equatable {
    public var id: Int64
    /// Where the input was found (absolute).
    public var path: String
    /// The watched folder it was found under, and its path relative to that folder.
    public var root: String
    public var relative: String
    public var size: Int64
    public var mtimeNs: Int64
    /// SHA-256 of the content, and of the model that processed (or will process) it.
    public var hash: String
    public var model: String
    public var status: JobStatus
    /// Times processing started (crashes included).
    public var attempts: Int
    /// Was in flight when segd died: processed alone next time, so that only the input
    /// that crashes the process collects crash counts.
    public var suspect: Bool
    public var error: String?
    /// JSON array of the files written.
    public var outputs: String?
    /// JSON object, milliseconds per stage.
    public var timings: String?
    public var batchSize: Int?
    /// A done job with the same content and model whose results this input shares.
    public var duplicateOf: Int64?
    /// Where the input went afterwards (done/ or failed/ path; nil: left in place or deleted).
    public var finalPath: String?
    public var queuedAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    /// The worker holding the current claim (nil while queued or finished: the last holder
    /// of a finished job stays recorded).
    public var worker: String?
    /// Times the job was claimed: the current claim's number, what guarded calls check.
    public var claim: Int = 0
    /// The current claim's decode began (its attempt is counted).
    public var began: Bool = false
    /// The current claim's lease ends (epoch s, the database's clock).
    public var leaseUntil: Double?
    /// Not claimable before this (epoch s): a given-back job waiting for its file or a retry.
    public var runAfter: Double = 0

    /// The current claim, as begin and finish name it.
    public var ticket: Ticket { Ticket(id: id, claim: claim) }

    public init(id: Int64, path: String, root: String, relative: String, size: Int64, mtimeNs: Int64, hash: String, model: String,
                status: JobStatus, attempts: Int, suspect: Bool, error: String? = nil, outputs: String? = nil, timings: String? = nil,
                batchSize: Int? = nil, duplicateOf: Int64? = nil, finalPath: String? = nil, queuedAt: Double, startedAt: Double? = nil,
                finishedAt: Double? = nil) {
        self.id = id
        self.path = path
        self.root = root
        self.relative = relative
        self.size = size
        self.mtimeNs = mtimeNs
        self.hash = hash
        self.model = model
        self.status = status
        self.attempts = attempts
        self.suspect = suspect
        self.error = error
        self.outputs = outputs
        self.timings = timings
        self.batchSize = batchSize
        self.duplicateOf = duplicateOf
        self.finalPath = finalPath
        self.queuedAt = queuedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    /// The claim columns may be missing: `segd status` reads a v1 journal (an upgraded binary
    /// before the daemon's restart migrated it) without migrating it.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(id: try c.decode(Int64.self, forKey: .id), path: try c.decode(String.self, forKey: .path),
                  root: try c.decode(String.self, forKey: .root), relative: try c.decode(String.self, forKey: .relative),
                  size: try c.decode(Int64.self, forKey: .size), mtimeNs: try c.decode(Int64.self, forKey: .mtimeNs),
                  hash: try c.decode(String.self, forKey: .hash), model: try c.decode(String.self, forKey: .model),
                  status: try c.decode(JobStatus.self, forKey: .status), attempts: try c.decode(Int.self, forKey: .attempts),
                  suspect: try c.decode(Bool.self, forKey: .suspect), error: try c.decodeIfPresent(String.self, forKey: .error),
                  outputs: try c.decodeIfPresent(String.self, forKey: .outputs), timings: try c.decodeIfPresent(String.self, forKey: .timings),
                  batchSize: try c.decodeIfPresent(Int.self, forKey: .batchSize), duplicateOf: try c.decodeIfPresent(Int64.self, forKey: .duplicateOf),
                  finalPath: try c.decodeIfPresent(String.self, forKey: .finalPath), queuedAt: try c.decode(Double.self, forKey: .queuedAt),
                  startedAt: try c.decodeIfPresent(Double.self, forKey: .startedAt),
                  finishedAt: try c.decodeIfPresent(Double.self, forKey: .finishedAt))
        worker = try c.decodeIfPresent(String.self, forKey: .worker)
        claim = try c.decodeIfPresent(Int.self, forKey: .claim) ?? 0
        began = try c.decodeIfPresent(Bool.self, forKey: .began) ?? false
        leaseUntil = try c.decodeIfPresent(Double.self, forKey: .leaseUntil)
        runAfter = try c.decodeIfPresent(Double.self, forKey: .runAfter) ?? 0
    }

    enum CodingKeys: String, CodingKey {
        case id, path, root, relative, size, hash, model, status, attempts, suspect, error, outputs, timings
        case mtimeNs = "mtime_ns", batchSize = "batch_size", duplicateOf = "duplicate_of", finalPath = "final_path"
        case queuedAt = "queued_at", startedAt = "started_at", finishedAt = "finished_at"
        case worker, claim, began, leaseUntil = "lease_until", runAfter = "run_after"
    }
}

/// What `segd status` shows.
public struct JournalSummary: Sendable {
    public var counts: [JobStatus: Int] = [:]
    public var duplicates = 0
    /// Images finished (done or failed, duplicates excluded) in the last 60 s, 10 min, hour.
    public var finishedLastMinute = 0
    public var finishedLast10Minutes = 0
    public var finishedLastHour = 0
    /// Mean of the per-image processing time (start → finish) of the last 100 images, s.
    public var meanLatency: Double?
    public var recentFailures: [JournalEntry] = []
    public var lastFinishedAt: Double?
}

/// What a new job row records about its input.
public struct JournalInput: Sendable {
    public var path: String
    public var root: String
    public var relative: String
    public var size: Int64
    public var mtimeNs: Int64
    public var hash: String
    public var model: String

    public init(path: String, root: String, relative: String, size: Int64, mtimeNs: Int64, hash: String, model: String) {
        self.path = path
        self.root = root
        self.relative = relative
        self.size = size
        self.mtimeNs = mtimeNs
        self.hash = hash
        self.model = model
    }
}

/// A row read through GRDB (its record protocol stays inside this file).
private struct StoredEntry: Decodable, FetchableRecord {
    let entry: JournalEntry
    init(from decoder: Decoder) throws { entry = try JournalEntry(from: decoder) }
}

/// JSON text of a job's outputs and timings, as both journals store them.
enum JournalJSON {
    static func outputs(_ outputs: [String]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: outputs)) ?? Data("[]".utf8), as: UTF8.self)
    }

    static func timings(_ timings: [String: Double]) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: timings, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The reason a job fails after its holder was lost `attempts` times.
    static func lostReason(attempts: Int, shared: Bool) -> String {
        shared
            ? "segd stopped abnormally (crash, kill, or its node lost its lease) \(attempts) times while processing this input; not retried"
            : "segd stopped abnormally (crash or kill) \(attempts) times while processing this input; not retried"
    }
}

/// The SQLite implementation of `JobJournal`.
public final class Journal: JobJournal, @unchecked Sendable {
    public static let fileName = "journal.sqlite"
    public let path: String
    private let db: DatabaseQueue
    private let signal = WorkSignal()

    public var isShared: Bool { false }
    public var location: String { path }

    /// Opens (creating if needed) the journal in `directory`.
    public init(directory: String, readOnly: Bool = false) throws {
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        if !readOnly {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw PipelineError.journal(path: path, reason: "cannot create the state directory: \((error as NSError).localizedDescription)")
            }
        } else if !FileManager.default.fileExists(atPath: path) {
            throw PipelineError.journal(path: path, reason: "no journal here (has `segd watch` run with this state directory?)")
        }
        var config = Configuration()
        config.readonly = readOnly
        // `segd status` reads while the daemon writes: wait for a lock rather than fail.
        config.busyMode = .timeout(10)
        config.journalMode = readOnly ? .default : .wal
        config.label = "segd.journal"
        if !readOnly {
            // WAL + NORMAL: a commit survives a process crash (kill -9), and a power loss
            // loses at most the last commits, never the database's consistency.
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        }
        do {
            db = try DatabaseQueue(path: path, configuration: config)
            if !readOnly { try Self.migrator.migrate(db) }
        } catch {
            throw PipelineError.journal(path: path, reason: "\(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE jobs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    path TEXT NOT NULL,
                    root TEXT NOT NULL,
                    relative TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL,
                    hash TEXT NOT NULL,
                    model TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'failed')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    suspect INTEGER NOT NULL DEFAULT 0,
                    error TEXT,
                    outputs TEXT,
                    timings TEXT,
                    batch_size INTEGER,
                    duplicate_of INTEGER REFERENCES jobs(id),
                    final_path TEXT,
                    queued_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL
                );
                CREATE INDEX jobs_path ON jobs(path);
                CREATE INDEX jobs_content ON jobs(hash, model, status);
                CREATE INDEX jobs_status ON jobs(status);
                CREATE INDEX jobs_finished ON jobs(finished_at);
                """)
        }
        // v2: claims (JobJournal.swift). Rows a v1 segd left processing had begun: their
        // attempt was counted when they were marked.
        m.registerMigration("v2") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN worker TEXT;
                ALTER TABLE jobs ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN began INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN lease_until REAL;
                ALTER TABLE jobs ADD COLUMN run_after REAL NOT NULL DEFAULT 0;
                UPDATE jobs SET began = 1 WHERE status = 'processing';
                CREATE INDEX jobs_file ON jobs(path, size, mtime_ns);
                """)
        }
        // v3: settled (JobJournal.takeUnsettled). Existing rows count as settled (default 1):
        // rows a v2 segd left unmoved are still found by the rescan (JobLife.completeDisposal).
        m.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN settled INTEGER NOT NULL DEFAULT 1")
        }
        return m
    }

    private func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try db.write(body) } catch { throw PipelineError.journal(path: path, reason: "\(what): \(error)") }
    }

    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try db.read(body) } catch { throw PipelineError.journal(path: path, reason: "\(what): \(error)") }
    }

    static var now: Double { Date().timeIntervalSince1970 }

    private static func fetchEntry(_ db: Database, id: Int64) throws -> JournalEntry? {
        try StoredEntry.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id])?.entry
    }

    // MARK: Intake

    public func latest(path: String) throws -> JournalEntry? {
        try read("look up \(path)") { db in
            try StoredEntry.fetchOne(db, sql: "SELECT * FROM jobs WHERE path = ? ORDER BY id DESC LIMIT 1", arguments: [path])?.entry
        }
    }

    /// One write transaction: SQLite runs one writer at a time, so the lookups and the
    /// insert cannot interleave with another admit.
    public func admit(_ input: JournalInput) throws -> Admission {
        let result = try write("queue \(input.path)") { db -> Admission in
            if let known = try StoredEntry.fetchOne(db, sql: """
                SELECT * FROM jobs WHERE path = ? AND size = ? AND mtime_ns = ? ORDER BY id DESC LIMIT 1
                """, arguments: [input.path, input.size, input.mtimeNs])?.entry {
                return .known(known)
            }
            let t = Self.now
            if let original = try StoredEntry.fetchOne(db, sql: """
                SELECT * FROM jobs WHERE hash = ? AND model = ? AND status = 'done' AND duplicate_of IS NULL ORDER BY id LIMIT 1
                """, arguments: [input.hash, input.model])?.entry {
                try db.execute(sql: """
                    INSERT INTO jobs (path, root, relative, size, mtime_ns, hash, model, status, outputs, duplicate_of,
                                      queued_at, finished_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, ?)
                    """, arguments: [input.path, input.root, input.relative, input.size, input.mtimeNs, input.hash, input.model,
                                     original.outputs, original.id, t, t])
                return .duplicate(db.lastInsertedRowID, original: original.id)
            }
            try db.execute(sql: """
                INSERT INTO jobs (path, root, relative, size, mtime_ns, hash, model, status, queued_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)
                """, arguments: [input.path, input.root, input.relative, input.size, input.mtimeNs, input.hash, input.model, t])
            return .queued(db.lastInsertedRowID)
        }
        if case .queued = result { signal.ring() }
        return result
    }

    public func describeAgain(id: Int64, with input: JournalInput) throws {
        try write("update \(input.path)") { db in
            try db.execute(sql: """
                UPDATE jobs SET size = ?, mtime_ns = ?, hash = ?, model = ?, queued_at = ?, run_after = 0
                WHERE id = ? AND status = 'queued'
                """, arguments: [input.size, input.mtimeNs, input.hash, input.model, Self.now, id])
        }
        signal.ring()
    }

    public func release(id: Int64) throws {
        let changed = try write("release job \(id)") { db -> Bool in
            try db.execute(sql: "UPDATE jobs SET run_after = 0 WHERE id = ? AND status = 'queued' AND run_after > ?", arguments: [id, Self.now])
            return db.changesCount > 0
        }
        if changed { signal.ring() }
    }

    public func markVanished(id: Int64) throws {
        try write("mark job \(id) vanished") { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'failed', error = 'the input disappeared before it was processed', finished_at = ?
                WHERE id = ? AND status = 'queued'
                """, arguments: [Self.now, id])
        }
    }

    /// Every queued row, suspects first (they run alone, before new work).
    public func queued() throws -> [JournalEntry] {
        try read("list queued jobs") { db in
            try StoredEntry.fetchAll(db, sql: "SELECT * FROM jobs WHERE status = 'queued' ORDER BY suspect DESC, id").map(\.entry)
        }
    }

    // MARK: Claims

    public func claim(max: Int, worker: WorkerID, lease: Double) throws -> [JournalEntry] {
        try write("claim jobs") { db in
            let t = Self.now
            let candidates = try StoredEntry.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE status = 'queued' AND run_after <= ? ORDER BY suspect DESC, id LIMIT ?
                """, arguments: [t, max]).map(\.entry)
            // A suspect runs alone: if one leads, it is the whole claim.
            let picked = candidates.first?.suspect == true ? Array(candidates.prefix(1)) : candidates
            var claimed: [JournalEntry] = []
            for var e in picked {
                try db.execute(sql: """
                    UPDATE jobs SET status = 'processing', worker = ?, claim = claim + 1, began = 0, lease_until = ? WHERE id = ?
                    """, arguments: [worker.description, t + lease, e.id])
                e.status = .processing
                e.worker = worker.description
                e.claim += 1
                e.began = false
                e.leaseUntil = t + lease
                claimed.append(e)
            }
            return claimed
        }
    }

    public func begin(_ ticket: Ticket, worker: WorkerID) throws -> Bool {
        try write("start job \(ticket.id)") { db in
            try db.execute(sql: """
                UPDATE jobs SET attempts = attempts + 1, began = 1, started_at = ?
                WHERE id = ? AND claim = ? AND worker = ? AND status = 'processing'
                """, arguments: [Self.now, ticket.id, ticket.claim, worker.description])
            return db.changesCount > 0
        }
    }

    public func finish(_ ticket: Ticket, worker: WorkerID, status: JobStatus, error: String?, outputs: [String],
                       timings: [String: Double], batchSize: Int?) throws -> Bool {
        try write("finish job \(ticket.id)") { db in
            try db.execute(sql: """
                UPDATE jobs SET status = ?, error = ?, outputs = ?, timings = ?, batch_size = ?, suspect = 0, finished_at = ?,
                                lease_until = NULL, settled = 0
                WHERE id = ? AND claim = ? AND worker = ? AND status = 'processing'
                """, arguments: [status.rawValue, error, JournalJSON.outputs(outputs), JournalJSON.timings(timings), batchSize,
                                 Self.now, ticket.id, ticket.claim, worker.description])
            return db.changesCount > 0
        }
    }

    public func setFinalPath(id: Int64, _ finalPath: String?) throws {
        try write("record where job \(id)'s input went") { db in
            try db.execute(sql: "UPDATE jobs SET final_path = ?, settled = 1 WHERE id = ?", arguments: [finalPath, id])
        }
    }

    /// One process owns the file, so any other worker's unsettled row is a dead process's.
    /// The UPDATE names the dead worker it takes the row from: a second taker changes nothing.
    public func takeUnsettled(worker: WorkerID, lease: Double, limit: Int) throws -> [JournalEntry] {
        try write("take over unsettled jobs") { db in
            let rows = try StoredEntry.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE status IN ('done', 'failed') AND settled = 0 AND worker IS NOT NULL AND worker <> ?
                ORDER BY id LIMIT ?
                """, arguments: [worker.description, limit]).map(\.entry)
            var taken: [JournalEntry] = []
            for var row in rows {
                try db.execute(sql: "UPDATE jobs SET worker = ? WHERE id = ? AND worker = ? AND settled = 0",
                               arguments: [worker.description, row.id, row.worker])
                guard db.changesCount > 0 else { continue }
                row.worker = worker.description
                taken.append(row)
            }
            return taken
        }
    }

    /// The attempt is taken back if it had begun: a stop or a full disk crashed nothing.
    public func giveBack(_ tickets: [Ticket], worker: WorkerID, holdFor: Double?) throws {
        guard !tickets.isEmpty else { return }
        let hold = holdFor.map { $0.isFinite ? Self.now + $0 : Double.greatestFiniteMagnitude } ?? 0
        try write("requeue interrupted jobs") { db in
            for t in tickets {
                try db.execute(sql: """
                    UPDATE jobs SET status = 'queued', attempts = MAX(attempts - began, 0), began = 0, worker = NULL,
                                    lease_until = NULL, run_after = ?
                    WHERE id = ? AND claim = ? AND worker = ? AND status = 'processing'
                    """, arguments: [hold, t.id, t.claim, worker.description])
            }
        }
        signal.ring()
    }

    /// One process owns the file: nobody else's leases to respect, no node table.
    public func heartbeat(worker: WorkerID, lease: Double, report: NodeReport) throws {}

    /// Claims of any other (earlier) process: it died with them.
    public func recoverLost(worker: WorkerID, maxCrashes: Int) throws -> (retried: [JournalEntry], failed: [JournalEntry]) {
        let result = try write("recover interrupted jobs") { db -> ([JournalEntry], [JournalEntry]) in
            let rows = try StoredEntry.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE status = 'processing' AND (worker IS NULL OR worker <> ?) ORDER BY id
                """, arguments: [worker.description]).map(\.entry)
            var retried: [JournalEntry] = [], failed: [JournalEntry] = []
            for var row in rows {
                if row.began && row.attempts >= maxCrashes {
                    row.status = .failed
                    row.error = JournalJSON.lostReason(attempts: row.attempts, shared: false)
                    try db.execute(sql: """
                        UPDATE jobs SET status = 'failed', error = ?, suspect = 0, began = 0, lease_until = NULL, finished_at = ?
                        WHERE id = ?
                        """, arguments: [row.error, Self.now, row.id])
                    failed.append(row)
                } else {
                    row.status = .queued
                    row.suspect = row.suspect || row.began
                    try db.execute(sql: """
                        UPDATE jobs SET status = 'queued', suspect = ?, began = 0, worker = NULL, lease_until = NULL WHERE id = ?
                        """, arguments: [row.suspect, row.id])
                    retried.append(row)
                }
            }
            return (retried, failed)
        }
        if !result.0.isEmpty { signal.ring() }
        return (retried: result.0, failed: result.1)
    }

    public func leave(worker: WorkerID) throws {}

    // MARK: Reading

    public func entry(id: Int64) throws -> JournalEntry? {
        try read("look up job \(id)") { db in try Self.fetchEntry(db, id: id) }
    }

    public func all() throws -> [JournalEntry] {
        try read("list jobs") { db in try StoredEntry.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id").map(\.entry) }
    }

    public func queuedCount() throws -> Int {
        try read("count queued jobs") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE status = 'queued'") ?? 0 }
    }

    public func nodes() throws -> [NodeStatus] { [] }

    public func waitForWork(timeout: Double) { signal.wait(timeout: timeout) }
    public func wake() { signal.ring() }

    // MARK: Status

    public func recentDone(limit: Int) throws -> [JournalEntry] {
        try read("list recent results") { db in
            try StoredEntry.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE +status = 'done' AND duplicate_of IS NULL AND finished_at IS NOT NULL
                ORDER BY finished_at DESC, id DESC LIMIT ?
                """, arguments: [limit]).map(\.entry)
        }
    }

    public func finishedPerInterval(since: Double, interval: Double) throws -> [FinishedCount] {
        try read("count finished jobs") { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT CAST((finished_at - ?) / ? AS INTEGER) AS bucket, status = 'done' AS ok, COUNT(*) AS n FROM jobs
                WHERE finished_at >= ? AND +status IN ('done', 'failed') AND duplicate_of IS NULL GROUP BY bucket, ok
                """, arguments: [since, interval, since])
            let pairs = rows.flatMap { r -> [(Int, Bool)] in
                let b: Int = r["bucket"], ok: Bool = r["ok"], n: Int = r["n"]
                return Array(repeating: (b, ok), count: n)
            }
            return FinishedCount.buckets(since: since, interval: interval, now: Self.now, rows: pairs)
        }
    }

    public func summary(failures limit: Int = 10) throws -> JournalSummary {
        try read("summarize") { db in
            var s = JournalSummary()
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") {
                if let st = JobStatus(rawValue: row["status"]) { s.counts[st] = row["n"] }
            }
            s.duplicates = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE duplicate_of IS NOT NULL") ?? 0
            let now = Self.now
            // "+status": the finished_at index, not the status index (which SQLite picks
            // otherwise and then walks every done row: 0.4 s against 2 ms on a million rows).
            func finished(since seconds: Double) throws -> Int {
                try Int.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM jobs WHERE finished_at >= ? AND +status IN ('done', 'failed') AND duplicate_of IS NULL
                    """, arguments: [now - seconds]) ?? 0
            }
            s.finishedLastMinute = try finished(since: 60)
            s.finishedLast10Minutes = try finished(since: 600)
            s.finishedLastHour = try finished(since: 3600)
            s.meanLatency = try Double.fetchOne(db, sql: """
                SELECT AVG(finished_at - started_at) FROM (SELECT finished_at, started_at FROM jobs
                WHERE started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 100)
                """)
            s.lastFinishedAt = try Double.fetchOne(db, sql: "SELECT MAX(finished_at) FROM jobs")
            s.recentFailures = try StoredEntry.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE status = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?
                """, arguments: [limit]).map(\.entry)
            return s
        }
    }
}
