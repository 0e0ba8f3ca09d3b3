// The daemon's journal: one SQLite row per job (GRDB, WAL) in the state directory. It is
// what makes segd restartable: a row is `processing` from the moment its decode starts, so
// after a crash or kill -9 the rows still `processing` are exactly the inputs that were in
// flight; each start counts one attempt, so an input that keeps crashing the process is
// recognized and parked in failed/ instead of crash-looping the service.
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

    enum CodingKeys: String, CodingKey {
        case id, path, root, relative, size, hash, model, status, attempts, suspect, error, outputs, timings
        case mtimeNs = "mtime_ns", batchSize = "batch_size", duplicateOf = "duplicate_of", finalPath = "final_path"
        case queuedAt = "queued_at", startedAt = "started_at", finishedAt = "finished_at"
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
}

/// A row read through GRDB (its record protocol stays inside this file).
private struct StoredEntry: Decodable, FetchableRecord {
    let entry: JournalEntry
    init(from decoder: Decoder) throws { entry = try JournalEntry(from: decoder) }
}

/// The SQLite implementation of `JobJournal`.
public final class Journal: JobJournal, @unchecked Sendable {
    public static let fileName = "journal.sqlite"
    public let path: String
    private let db: DatabaseQueue

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
        return m
    }

    private func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try db.write(body) } catch { throw PipelineError.journal(path: path, reason: "\(what): \(error)") }
    }

    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try db.read(body) } catch { throw PipelineError.journal(path: path, reason: "\(what): \(error)") }
    }

    static var now: Double { Date().timeIntervalSince1970 }

    // MARK: Intake

    /// The newest row for an input path.
    public func latest(path: String) throws -> JournalEntry? {
        try read("look up \(path)") { db in
            try StoredEntry.fetchOne(db, sql: "SELECT * FROM jobs WHERE path = ? ORDER BY id DESC LIMIT 1", arguments: [path])?.entry
        }
    }

    /// A finished, successful job for this content and model (the first one: the original).
    public func done(hash: String, model: String) throws -> JournalEntry? {
        try read("look up content") { db in
            try StoredEntry.fetchOne(db, sql: """
                SELECT * FROM jobs WHERE hash = ? AND model = ? AND status = 'done' AND duplicate_of IS NULL
                ORDER BY id LIMIT 1
                """, arguments: [hash, model])?.entry
        }
    }

    /// A new queued row; returns its id.
    public func enqueue(_ input: JournalInput) throws -> Int64 {
        try write("queue \(input.path)") { db in
            try db.execute(sql: """
                INSERT INTO jobs (path, root, relative, size, mtime_ns, hash, model, status, queued_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)
                """, arguments: [input.path, input.root, input.relative, input.size, input.mtimeNs, input.hash, input.model, Self.now])
            return db.lastInsertedRowID
        }
    }

    /// Re-describes a queued row whose file changed before it was processed.
    public func requeue(id: Int64, with input: JournalInput) throws {
        try write("update \(input.path)") { db in
            try db.execute(sql: """
                UPDATE jobs SET size = ?, mtime_ns = ?, hash = ?, model = ?, queued_at = ? WHERE id = ? AND status = 'queued'
                """, arguments: [input.size, input.mtimeNs, input.hash, input.model, Self.now, id])
        }
    }

    /// A done row for an input whose content was already processed with this model.
    public func recordDuplicate(_ input: JournalInput, of original: JournalEntry) throws -> Int64 {
        try write("record duplicate \(input.path)") { db in
            let t = Self.now
            try db.execute(sql: """
                INSERT INTO jobs (path, root, relative, size, mtime_ns, hash, model, status, outputs, duplicate_of,
                                  queued_at, finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, ?)
                """, arguments: [input.path, input.root, input.relative, input.size, input.mtimeNs, input.hash, input.model,
                                 original.outputs, original.id, t, t])
            return db.lastInsertedRowID
        }
    }

    // MARK: Processing

    /// Marks a job as started: counted as an attempt before any byte of it is decoded.
    public func markProcessing(id: Int64) throws {
        try write("start job \(id)") { db in
            try db.execute(sql: "UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = ? WHERE id = ?",
                           arguments: [Self.now, id])
        }
    }

    /// Records the end of a job.
    public func finish(id: Int64, status: JobStatus, error: String?, outputs: [String], timings: [String: Double],
                       batchSize: Int?) throws {
        let outputsJSON = String(decoding: (try? JSONSerialization.data(withJSONObject: outputs)) ?? Data("[]".utf8), as: UTF8.self)
        let timingsJSON = String(decoding: (try? JSONSerialization.data(withJSONObject: timings, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
        try write("finish job \(id)") { db in
            try db.execute(sql: """
                UPDATE jobs SET status = ?, error = ?, outputs = ?, timings = ?, batch_size = ?, suspect = 0, finished_at = ?
                WHERE id = ?
                """, arguments: [status.rawValue, error, outputsJSON, timingsJSON, batchSize, Self.now, id])
        }
    }

    /// Where the input went after its job finished.
    public func setFinalPath(id: Int64, _ finalPath: String?) throws {
        try write("record where job \(id)'s input went") { db in
            try db.execute(sql: "UPDATE jobs SET final_path = ? WHERE id = ?", arguments: [finalPath, id])
        }
    }

    /// Jobs that a clean shutdown interrupted go back to the queue, the attempt not counted:
    /// they did not crash anything.
    public func returnToQueue(ids: [Int64]) throws {
        guard !ids.isEmpty else { return }
        try write("requeue interrupted jobs") { db in
            for id in ids {
                try db.execute(sql: """
                    UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = 'processing'
                    """, arguments: [id])
            }
        }
    }

    /// After a crash: rows left `processing` were in flight. Those started `maxCrashes`
    /// times are failed (returned, for moving to failed/); the others are queued again as
    /// suspects.
    public func recoverAfterCrash(maxCrashes: Int) throws -> (retried: [JournalEntry], failed: [JournalEntry]) {
        try write("recover interrupted jobs") { db in
            let rows = try StoredEntry.fetchAll(db, sql: "SELECT * FROM jobs WHERE status = 'processing' ORDER BY id").map(\.entry)
            var retried: [JournalEntry] = [], failed: [JournalEntry] = []
            for var row in rows {
                if row.attempts >= maxCrashes {
                    row.status = .failed
                    row.error = "segd stopped abnormally (crash or kill) \(row.attempts) times while processing this input; not retried"
                    try db.execute(sql: "UPDATE jobs SET status = 'failed', error = ?, suspect = 0, finished_at = ? WHERE id = ?",
                                   arguments: [row.error, Self.now, row.id])
                    failed.append(row)
                } else {
                    row.status = .queued
                    row.suspect = true
                    try db.execute(sql: "UPDATE jobs SET status = 'queued', suspect = 1 WHERE id = ?", arguments: [row.id])
                    retried.append(row)
                }
            }
            return (retried, failed)
        }
    }

    /// Every queued row, suspects first (they run alone, before new work).
    public func queued() throws -> [JournalEntry] {
        try read("list queued jobs") { db in
            try StoredEntry.fetchAll(db, sql: "SELECT * FROM jobs WHERE status = 'queued' ORDER BY suspect DESC, id").map(\.entry)
        }
    }

    /// A queued job whose input is gone: failed with that reason.
    public func markVanished(id: Int64) throws {
        try write("mark job \(id) vanished") { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'failed', error = 'the input disappeared before it was processed', finished_at = ?
                WHERE id = ? AND status = 'queued'
                """, arguments: [Self.now, id])
        }
    }

    public func entry(id: Int64) throws -> JournalEntry? {
        try read("look up job \(id)") { db in try StoredEntry.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id])?.entry }
    }

    public func all() throws -> [JournalEntry] {
        try read("list jobs") { db in try StoredEntry.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id").map(\.entry) }
    }

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
