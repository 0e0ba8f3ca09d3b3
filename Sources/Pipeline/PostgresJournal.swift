// The shared journal of a cluster: the same job protocol as the SQLite journal
// (JobJournal.swift), in PostgreSQL through postgres-nio, so several segd nodes work one
// queue the way River, Oban and graphile-worker do:
//   - admit: one INSERT … ON CONFLICT on the unique (path, size, mtime_ns) key, the content
//     lookup in the same statement: a file seen by several nodes is one job;
//   - claim: one UPDATE over SELECT … FOR UPDATE SKIP LOCKED: concurrent claimers never wait
//     for each other nor take the same row; each claim numbered (`claim`) and leased;
//   - begin/finish guarded by worker and claim number: a node whose lease lapsed changes
//     nothing and discards its result;
//   - heartbeat renews the leases; recoverLost (any live node) requeues lapsed ones;
//   - a trigger NOTIFYs segd_jobs whenever a row becomes claimable; a LISTEN connection
//     rings the feeder, which also polls as the backstop.
// Times are the server's clock (clock_timestamp()), so nodes' clocks need not agree.
//
// postgres-nio is async; the journal's callers are Dispatch queues and threads (never an
// event loop or a Swift task), so each call blocks its caller on the query's task here, in
// `run`, the one bridge. One connection carries every query (they are single statements,
// pipelined by postgres-nio); a second one LISTENs. A connection that fails is dropped and
// the call throws `PipelineError.databaseUnavailable`; the next call connects again. The
// daemon pauses and retries with back-off on that error, so an outage loses nothing.
import Foundation
import Logging
import NIOCore
import PostgresNIO

public final class PostgresJournal: JobJournal, @unchecked Sendable {
    public let settings: DatabaseSettings
    private let password: String?
    private let log: Logger
    /// postgres-nio's own logging: its messages can carry query text; errors reach the
    /// daemon's log through the errors thrown here instead.
    private let quiet: Logger
    private let signal = WorkSignal()
    private let lock = NSLock()
    private var connection: PostgresConnection?
    private let connecting = NSLock()
    private var nextConnectionID = 1
    private var listener: Task<Void, Never>?
    /// A query that takes longer than this is taken as a lost connection (a partition
    /// leaves TCP waiting for minutes).
    private static let queryTimeout: Double = 15
    static let channel = "segd_jobs"

    public var isShared: Bool { true }
    public var location: String { settings.display }

    /// Connects and brings the schema up to date (unless `migrate` is false: `segd status`
    /// only reads). Throws `databaseUnavailable` when the server cannot be reached.
    public init(_ settings: DatabaseSettings, password: String?, log: Logger, migrate: Bool = true, listen: Bool = true) throws {
        self.settings = settings
        self.password = password
        self.log = log
        // Not the daemon's handler: its level is process-wide, and postgres-nio's debug
        // messages are not for the service log.
        quiet = Logger(label: "segd.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
        if migrate { try self.migrate() } else { _ = try run("connect", "SELECT 1") }
        if listen { startListening() }
    }

    deinit {
        listener?.cancel()
        if let c = connection { Self.close(c) }
    }

    /// Closes in the background; the closure keeps the connection alive until it is closed
    /// (postgres-nio requires that of every connection).
    private static func close(_ c: PostgresConnection) {
        c.close().whenComplete { _ in _ = c }
    }

    // MARK: The bridge

    private var configuration: PostgresConnection.Configuration {
        var c = PostgresConnection.Configuration(host: settings.host, port: settings.port, username: settings.user,
                                                 password: password, database: settings.database, tls: .disable)
        c.options.connectTimeout = .seconds(5)
        return c
    }

    private func connect() async throws -> PostgresConnection {
        let id = lock.withLock { () -> Int in
            defer { nextConnectionID += 1 }
            return nextConnectionID
        }
        return try await PostgresConnection.connect(configuration: configuration, id: id, logger: quiet)
    }

    /// Runs `body` on a Swift task and waits for it here, on the calling (non-async) thread.
    private func blocking<T: Sendable>(timeout: Double, _ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Outcome<T>()
        let done = DispatchSemaphore(value: 0)
        let task = Task.detached {
            do { outcome.value = .success(try await body()) } catch { outcome.value = .failure(error) }
            done.signal()
        }
        if done.wait(timeout: .now() + timeout) == .timedOut {
            task.cancel()
            throw Timeout()
        }
        return try outcome.value!.get()
    }

    private struct Timeout: Error {}

    /// Written by the task before it signals, read by the waiter after.
    private final class Outcome<T>: @unchecked Sendable { var value: Result<T, any Error>? }

    /// The shared query connection, connected if needed (one caller connects at a time).
    private func queryConnection() throws -> PostgresConnection {
        if let c = lock.withLock({ connection }), !c.isClosed { return c }
        connecting.lock()
        defer { connecting.unlock() }
        if let c = lock.withLock({ connection }), !c.isClosed { return c }
        let c: PostgresConnection
        do {
            c = try blocking(timeout: 10) {
                let c = try await self.connect()
                if Task.isCancelled {  // the caller gave up waiting: nobody will use it
                    try? await c.close()
                    throw CancellationError()
                }
                return c
            }
        } catch {
            throw PipelineError.databaseUnavailable(location: location, reason: Self.describe(error))
        }
        let old = lock.withLock { () -> PostgresConnection? in
            defer { connection = c }
            return connection
        }
        if let old { Self.close(old) }
        return c
    }

    private func dropConnection(_ c: PostgresConnection) {
        lock.withLock { if connection === c { connection = nil } }
        Self.close(c)
    }

    /// One statement; its rows. Errors: `databaseUnavailable` when the connection is gone
    /// (the connection is dropped), `journal` for an error the server reported about it.
    @discardableResult
    private func run(_ what: String, _ query: PostgresQuery) throws -> [PostgresRow] {
        let c = try queryConnection()
        let quiet = quiet
        do {
            return try blocking(timeout: Self.queryTimeout) { try await c.query(query, logger: quiet).collect() }
        } catch {
            if Self.isConnectionLoss(error) {
                dropConnection(c)
                throw PipelineError.databaseUnavailable(location: location, reason: "\(what): \(Self.describe(error))")
            }
            throw PipelineError.journal(path: location, reason: "\(what): \(Self.describe(error))")
        }
    }

    /// Lost connection, server going down or not accepting yet (SQLSTATE class 08 and 57).
    private static func isConnectionLoss(_ error: any Error) -> Bool {
        guard let e = error as? PSQLError else { return true }  // a timeout, a socket error
        if e.code == .server {
            let state = e.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("57")
        }
        return true
    }

    /// postgres-nio's errors print a generic text on purpose; this names the code, the
    /// server's SQLSTATE and message (which hold no password).
    static func describe(_ error: any Error) -> String {
        if error is Timeout { return "no answer within \(Int(queryTimeout)) s" }
        guard let e = error as? PSQLError else { return "\(error)" }
        if let info = e.serverInfo {
            return "\(info[.sqlState] ?? "?"): \(info[.message] ?? "?")" + (info[.detail].map { " (\($0))" } ?? "")
        }
        return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
    }

    private static func sqlState(_ error: any Error) -> String? {
        guard case let PipelineError.journal(_, reason) = error else { return nil }
        return reason.contains("23505") ? "23505" : nil
    }

    // MARK: Wake-ups

    /// A LISTEN connection of its own, reconnecting with back-off; every notification (and
    /// every reconnect: rows may have been queued meanwhile) rings the feeder.
    private func startListening() {
        let configuration = configuration, quiet = quiet, signal = signal
        let idBase = lock.withLock { () -> Int in
            defer { nextConnectionID += 1000 }
            return nextConnectionID + 1000
        }
        listener = Task.detached {
            var delay = 0.5
            var n = 0
            while !Task.isCancelled {
                n += 1
                do {
                    let c = try await PostgresConnection.connect(configuration: configuration, id: idBase + n, logger: quiet)
                    delay = 0.5
                    do {
                        try await c.listen(on: Self.channel) { notifications in
                            signal.ring()
                            for try await _ in notifications { signal.ring() }
                        }
                    } catch {}
                    try? await c.close()
                } catch {}
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, 10)
            }
        }
    }

    public func waitForWork(timeout: Double) { signal.wait(timeout: timeout) }
    public func wake() { signal.ring() }

    // MARK: Schema

    /// The server's clock, epoch seconds.
    private static let now = "extract(epoch from clock_timestamp())::float8"

    /// Versioned migrations; each runs once, in order, in one transaction with the version
    /// row, under an advisory lock so that nodes starting together do not race.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE segd_jobs (
                id BIGSERIAL PRIMARY KEY,
                path TEXT NOT NULL,
                root TEXT NOT NULL,
                relative TEXT NOT NULL,
                size BIGINT NOT NULL,
                mtime_ns BIGINT NOT NULL,
                hash TEXT NOT NULL,
                model TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'done', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                suspect BOOLEAN NOT NULL DEFAULT false,
                error TEXT,
                outputs TEXT,
                timings TEXT,
                batch_size INTEGER,
                duplicate_of BIGINT REFERENCES segd_jobs(id),
                final_path TEXT,
                queued_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                worker TEXT,
                claim INTEGER NOT NULL DEFAULT 0,
                began BOOLEAN NOT NULL DEFAULT false,
                lease_until DOUBLE PRECISION,
                run_after DOUBLE PRECISION NOT NULL DEFAULT 0,
                CONSTRAINT segd_jobs_file UNIQUE (path, size, mtime_ns)
            )
            """,
            "CREATE INDEX segd_jobs_path ON segd_jobs (path, id)",
            "CREATE INDEX segd_jobs_ready ON segd_jobs (suspect DESC, id) WHERE status = 'queued'",
            "CREATE INDEX segd_jobs_content ON segd_jobs (hash, model, id) WHERE status = 'done' AND duplicate_of IS NULL",
            "CREATE INDEX segd_jobs_claims ON segd_jobs (worker) WHERE status = 'processing'",
            "CREATE INDEX segd_jobs_leases ON segd_jobs (lease_until) WHERE status = 'processing'",
            "CREATE INDEX segd_jobs_finished ON segd_jobs (finished_at)",
            """
            CREATE TABLE segd_nodes (
                worker TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                heartbeat_at DOUBLE PRECISION NOT NULL,
                in_flight INTEGER NOT NULL DEFAULT 0,
                done BIGINT NOT NULL DEFAULT 0,
                failed BIGINT NOT NULL DEFAULT 0,
                throughput DOUBLE PRECISION NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE FUNCTION segd_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('segd_jobs', ''); RETURN NULL; END $$
            """,
            // Claimable now: a new row, a given-back one without an open-ended hold, a
            // requeued one, a hold lifted. (A held row is picked up by the polling backstop.)
            """
            CREATE TRIGGER segd_jobs_claimable AFTER INSERT OR UPDATE OF status, run_after ON segd_jobs
            FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.run_after < 1e300) EXECUTE FUNCTION segd_jobs_notify()
            """,
        ],
        // 2: settled (JobJournal.takeUnsettled); existing rows count as settled (the rescan
        // still finds any a version-1 node left unmoved).
        [
            "ALTER TABLE segd_jobs ADD COLUMN settled BOOLEAN NOT NULL DEFAULT true",
            "CREATE INDEX segd_jobs_unsettled ON segd_jobs (id) WHERE NOT settled",
        ],
    ]

    public static var schemaVersion: Int { migrations.count }

    /// Runs the missing migrations on a connection of its own (a transaction must not share
    /// the pipelined query connection).
    private func migrate() throws {
        let quiet = quiet
        do {
            try blocking(timeout: 60) {
                let c = try await self.connect()
                do {
                    try await c.query("BEGIN", logger: quiet)
                    try await c.query("SELECT pg_advisory_xact_lock(7460191)", logger: quiet)  // "segd" in the lock space
                    try await c.query("CREATE TABLE IF NOT EXISTS segd_schema (version INTEGER NOT NULL)", logger: quiet)
                    var have = 0
                    for try await v in try await c.query("SELECT COALESCE(MAX(version), 0) FROM segd_schema", logger: quiet).decode(Int.self) {
                        have = v
                    }
                    for (i, statements) in Self.migrations.enumerated() where i + 1 > have {
                        for sql in statements { try await c.query(PostgresQuery(unsafeSQL: sql), logger: quiet) }
                        try await c.query("INSERT INTO segd_schema (version) VALUES (\(i + 1))", logger: quiet)
                    }
                    try await c.query("COMMIT", logger: quiet)
                } catch {
                    try? await c.close()
                    throw error
                }
                try await c.close()
            }
        } catch {
            if Self.isConnectionLoss(error) { throw PipelineError.databaseUnavailable(location: location, reason: Self.describe(error)) }
            throw PipelineError.journal(path: location, reason: "bring the schema to version \(Self.schemaVersion): \(Self.describe(error))")
        }
    }

    // MARK: Rows

    private func entries(_ rows: [PostgresRow]) throws -> [JournalEntry] {
        do { return try rows.map(Self.entry) } catch {
            throw PipelineError.journal(path: location, reason: "unexpected row: \(error)")
        }
    }

    private static func entry(_ row: PostgresRow) throws -> JournalEntry {
        let r = row.makeRandomAccess()
        var e = JournalEntry(id: try r["id"].decode(Int64.self), path: try r["path"].decode(String.self),
                             root: try r["root"].decode(String.self), relative: try r["relative"].decode(String.self),
                             size: try r["size"].decode(Int64.self), mtimeNs: try r["mtime_ns"].decode(Int64.self),
                             hash: try r["hash"].decode(String.self), model: try r["model"].decode(String.self),
                             status: JobStatus(rawValue: try r["status"].decode(String.self)) ?? .failed,
                             attempts: try r["attempts"].decode(Int.self), suspect: try r["suspect"].decode(Bool.self),
                             queuedAt: try r["queued_at"].decode(Double.self))
        e.error = try r["error"].decode(String?.self)
        e.outputs = try r["outputs"].decode(String?.self)
        e.timings = try r["timings"].decode(String?.self)
        e.batchSize = try r["batch_size"].decode(Int?.self)
        e.duplicateOf = try r["duplicate_of"].decode(Int64?.self)
        e.finalPath = try r["final_path"].decode(String?.self)
        e.startedAt = try r["started_at"].decode(Double?.self)
        e.finishedAt = try r["finished_at"].decode(Double?.self)
        e.worker = try r["worker"].decode(String?.self)
        e.claim = try r["claim"].decode(Int.self)
        e.began = try r["began"].decode(Bool.self)
        e.leaseUntil = try r["lease_until"].decode(Double?.self)
        e.runAfter = try r["run_after"].decode(Double.self)
        return e
    }

    private func one<T: PostgresDecodable>(_ rows: [PostgresRow], _ type: T.Type) throws -> T? {
        guard let row = rows.first else { return nil }
        do { return try row.decode(T.self) } catch {
            throw PipelineError.journal(path: location, reason: "unexpected value: \(error)")
        }
    }

    // MARK: Intake

    public func latest(path: String) throws -> JournalEntry? {
        try entries(run("look up \(path)", "SELECT * FROM segd_jobs WHERE path = \(path) ORDER BY id DESC LIMIT 1")).first
    }

    public func admit(_ input: JournalInput) throws -> Admission {
        let rows = try run("queue \(input.path)", """
            WITH original AS (
                SELECT id, outputs FROM segd_jobs
                WHERE hash = \(input.hash) AND model = \(input.model) AND status = 'done' AND duplicate_of IS NULL
                ORDER BY id LIMIT 1
            )
            INSERT INTO segd_jobs (path, root, relative, size, mtime_ns, hash, model, status, outputs, duplicate_of,
                                   queued_at, finished_at)
            SELECT \(input.path), \(input.root), \(input.relative), \(input.size), \(input.mtimeNs), \(input.hash), \(input.model),
                   CASE WHEN o.id IS NULL THEN 'queued' ELSE 'done' END, o.outputs, o.id,
                   \(unescaped: Self.now), CASE WHEN o.id IS NULL THEN NULL ELSE \(unescaped: Self.now) END
            FROM (SELECT 1) AS one LEFT JOIN original AS o ON true
            ON CONFLICT (path, size, mtime_ns) DO NOTHING
            RETURNING id, duplicate_of
            """)
        if let row = rows.first {
            let (id, original) = try row.decode((Int64, Int64?).self)
            if let original { return .duplicate(id, original: original) }
            signal.ring()
            return .queued(id)
        }
        // The unique key held: this file has a row (another node's, or an earlier one).
        let known = try entries(run("look up \(input.path)", """
            SELECT * FROM segd_jobs WHERE path = \(input.path) AND size = \(input.size) AND mtime_ns = \(input.mtimeNs)
            """))
        guard let e = known.first else { throw PipelineError.journal(path: location, reason: "queue \(input.path): neither inserted nor found") }
        return .known(e)
    }

    public func describeAgain(id: Int64, with input: JournalInput) throws {
        do {
            try run("update \(input.path)", """
                UPDATE segd_jobs SET size = \(input.size), mtime_ns = \(input.mtimeNs), hash = \(input.hash), model = \(input.model),
                                     queued_at = \(unescaped: Self.now), run_after = 0
                WHERE id = \(id) AND status = 'queued'
                """)
        } catch let e where Self.sqlState(e) == "23505" {
            return  // another node already recorded the changed file as its own row
        }
        signal.ring()
    }

    public func release(id: Int64) throws {
        try run("release job \(id)", """
            UPDATE segd_jobs SET run_after = 0 WHERE id = \(id) AND status = 'queued' AND run_after > \(unescaped: Self.now)
            """)
    }

    public func markVanished(id: Int64) throws {
        try run("mark job \(id) vanished", """
            UPDATE segd_jobs SET status = 'failed', error = 'the input disappeared before it was processed',
                                 finished_at = \(unescaped: Self.now)
            WHERE id = \(id) AND status = 'queued'
            """)
    }

    public func queued() throws -> [JournalEntry] {
        try entries(run("list queued jobs", "SELECT * FROM segd_jobs WHERE status = 'queued' ORDER BY suspect DESC, id"))
    }

    // MARK: Claims

    public func claim(max: Int, worker: WorkerID, lease: Double) throws -> [JournalEntry] {
        let rows = try run("claim jobs", """
            WITH head AS (
                SELECT suspect FROM segd_jobs WHERE status = 'queued' AND run_after <= \(unescaped: Self.now)
                ORDER BY suspect DESC, id LIMIT 1
            ), picked AS (
                SELECT id FROM segd_jobs WHERE status = 'queued' AND run_after <= \(unescaped: Self.now)
                ORDER BY suspect DESC, id
                LIMIT CASE WHEN (SELECT suspect FROM head) THEN 1 ELSE \(max) END
                FOR UPDATE SKIP LOCKED
            )
            UPDATE segd_jobs AS j SET status = 'processing', worker = \(worker.description), claim = j.claim + 1, began = false,
                                      lease_until = \(unescaped: Self.now) + \(lease)
            FROM picked WHERE j.id = picked.id
            RETURNING j.*
            """)
        return try entries(rows).sorted { ($0.suspect ? 0 : 1, $0.id) < ($1.suspect ? 0 : 1, $1.id) }
    }

    public func begin(_ ticket: Ticket, worker: WorkerID) throws -> Bool {
        try !run("start job \(ticket.id)", """
            UPDATE segd_jobs SET attempts = attempts + 1, began = true, started_at = \(unescaped: Self.now)
            WHERE id = \(ticket.id) AND claim = \(ticket.claim) AND worker = \(worker.description) AND status = 'processing'
            RETURNING id
            """).isEmpty
    }

    public func finish(_ ticket: Ticket, worker: WorkerID, status: JobStatus, error: String?, outputs: [String],
                       timings: [String: Double], batchSize: Int?) throws -> Bool {
        let updated = try run("finish job \(ticket.id)", """
            UPDATE segd_jobs SET status = \(status.rawValue), error = \(error), outputs = \(JournalJSON.outputs(outputs)),
                                 timings = \(JournalJSON.timings(timings)), batch_size = \(batchSize), suspect = false,
                                 finished_at = \(unescaped: Self.now), lease_until = NULL, settled = false
            WHERE id = \(ticket.id) AND claim = \(ticket.claim) AND worker = \(worker.description) AND status = 'processing'
            RETURNING id
            """)
        if !updated.isEmpty { return true }
        // A retry after a lost answer: the first try may have landed.
        guard let e = try entry(id: ticket.id) else { return false }
        return e.status == status && e.worker == worker.description && e.claim == ticket.claim
    }

    public func setFinalPath(id: Int64, _ finalPath: String?) throws {
        try run("record where job \(id)'s input went",
                "UPDATE segd_jobs SET final_path = \(finalPath), settled = true WHERE id = \(id)")
    }

    /// A worker is gone when its node row has not been renewed for `lease` s (or was removed
    /// by `leave`), the notion that makes its claims' leases lapse. SKIP LOCKED splits rows
    /// between two nodes running this at once; a row another node took meanwhile is re-checked
    /// after its lock (READ COMMITTED) and no longer matches, its worker being live.
    public func takeUnsettled(worker: WorkerID, lease: Double, limit: Int) throws -> [JournalEntry] {
        try entries(run("take over unsettled jobs", """
            WITH gone AS (
                SELECT id FROM segd_jobs AS u
                WHERE NOT u.settled AND u.status IN ('done', 'failed') AND u.worker IS NOT NULL AND u.worker <> \(worker.description)
                  AND NOT EXISTS (SELECT 1 FROM segd_nodes AS n
                                  WHERE n.worker = u.worker AND n.heartbeat_at >= \(unescaped: Self.now) - \(lease))
                ORDER BY id LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            UPDATE segd_jobs AS j SET worker = \(worker.description) FROM gone WHERE j.id = gone.id
            RETURNING j.*
            """))
    }

    public func giveBack(_ tickets: [Ticket], worker: WorkerID, holdFor: Double?) throws {
        guard !tickets.isEmpty else { return }
        // 1e300: held until released (the trigger does not wake anyone for it).
        let hold: String = holdFor.map { $0.isFinite ? "\(Self.now) + \($0)" : "1e300" } ?? "0"
        try run("requeue interrupted jobs", """
            UPDATE segd_jobs SET status = 'queued', attempts = GREATEST(attempts - CASE WHEN began THEN 1 ELSE 0 END, 0),
                                 began = false, worker = NULL, lease_until = NULL, run_after = \(unescaped: hold)
            WHERE (id, claim) IN (SELECT * FROM unnest(\(tickets.map(\.id))::bigint[], \(tickets.map(\.claim))::integer[]))
              AND worker = \(worker.description) AND status = 'processing'
            """)
        signal.ring()
    }

    public func heartbeat(worker: WorkerID, lease: Double, report: NodeReport) throws {
        try run("renew leases", """
            WITH renewed AS (
                UPDATE segd_jobs SET lease_until = \(unescaped: Self.now) + \(lease)
                WHERE worker = \(worker.description) AND status = 'processing'
                RETURNING 1
            )
            INSERT INTO segd_nodes (worker, host, pid, started_at, heartbeat_at, in_flight, done, failed, throughput)
            VALUES (\(worker.description), \(worker.host), \(Int(worker.pid)), \(unescaped: Self.now), \(unescaped: Self.now),
                    \(report.inFlight), \(report.done), \(report.failed), \(report.throughput))
            ON CONFLICT (worker) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, in_flight = EXCLUDED.in_flight,
                                               done = EXCLUDED.done, failed = EXCLUDED.failed, throughput = EXCLUDED.throughput
            """)
    }

    /// Any live node runs this; SKIP LOCKED lets two of them split the lapsed rows rather
    /// than both take one.
    public func recoverLost(worker: WorkerID, maxCrashes: Int) throws -> (retried: [JournalEntry], failed: [JournalEntry]) {
        let reason = JournalJSON.lostReason(attempts: 0, shared: true).components(separatedBy: " 0 ")
        let rows = try run("requeue jobs of lost nodes", """
            WITH lost AS (
                SELECT id FROM segd_jobs WHERE status = 'processing' AND lease_until < \(unescaped: Self.now)
                FOR UPDATE SKIP LOCKED
            )
            UPDATE segd_jobs AS j SET
                status = CASE WHEN j.began AND j.attempts >= \(maxCrashes) THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN j.began AND j.attempts >= \(maxCrashes)
                             THEN \(reason[0]) || ' ' || j.attempts || ' ' || \(reason[1]) ELSE j.error END,
                finished_at = CASE WHEN j.began AND j.attempts >= \(maxCrashes) THEN \(unescaped: Self.now) ELSE j.finished_at END,
                suspect = CASE WHEN j.began AND j.attempts >= \(maxCrashes) THEN false ELSE j.suspect OR j.began END,
                worker = CASE WHEN j.began AND j.attempts >= \(maxCrashes) THEN j.worker ELSE NULL END,
                began = false, lease_until = NULL
            FROM lost WHERE j.id = lost.id
            RETURNING j.*
            """)
        let all = try entries(rows)
        let retried = all.filter { $0.status == .queued }
        if !retried.isEmpty { signal.ring() }
        return (retried, all.filter { $0.status == .failed })
    }

    public func leave(worker: WorkerID) throws {
        try run("leave", "DELETE FROM segd_nodes WHERE worker = \(worker.description)")
    }

    // MARK: Reading

    public func entry(id: Int64) throws -> JournalEntry? {
        try entries(run("look up job \(id)", "SELECT * FROM segd_jobs WHERE id = \(id)")).first
    }

    public func all() throws -> [JournalEntry] {
        try entries(run("list jobs", "SELECT * FROM segd_jobs ORDER BY id"))
    }

    public func queuedCount() throws -> Int {
        try one(run("count queued jobs", "SELECT COUNT(*)::bigint FROM segd_jobs WHERE status = 'queued'"), Int.self) ?? 0
    }

    public func summary(failures limit: Int) throws -> JournalSummary {
        var s = JournalSummary()
        for row in try run("summarize", "SELECT status, COUNT(*)::bigint FROM segd_jobs GROUP BY status") {
            let (status, n) = try row.decode((String, Int).self)
            if let st = JobStatus(rawValue: status) { s.counts[st] = n }
        }
        let t = try serverTime()
        func count(_ what: String, _ query: PostgresQuery) throws -> Int { try one(run(what, query), Int.self) ?? 0 }
        s.duplicates = try count("summarize", "SELECT COUNT(*)::bigint FROM segd_jobs WHERE duplicate_of IS NOT NULL")
        func finished(since seconds: Double) throws -> Int {
            try count("summarize", """
                SELECT COUNT(*)::bigint FROM segd_jobs
                WHERE finished_at >= \(t - seconds) AND status IN ('done', 'failed') AND duplicate_of IS NULL
                """)
        }
        s.finishedLastMinute = try finished(since: 60)
        s.finishedLast10Minutes = try finished(since: 600)
        s.finishedLastHour = try finished(since: 3600)
        s.meanLatency = try one(run("summarize", """
            SELECT AVG(finished_at - started_at) FROM (SELECT finished_at, started_at FROM segd_jobs
            WHERE started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 100) AS recent
            """), Double?.self) ?? nil
        s.lastFinishedAt = try one(run("summarize", "SELECT MAX(finished_at) FROM segd_jobs"), Double?.self) ?? nil
        s.recentFailures = try entries(run("list failures", """
            SELECT * FROM segd_jobs WHERE status = 'failed' ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT \(limit)
            """))
        return s
    }

    /// Nodes heard of in the last hour (a node that stopped cleanly has left).
    public func nodes() throws -> [NodeStatus] {
        try run("list nodes", """
            SELECT worker, host, pid, started_at, heartbeat_at, in_flight, done, failed, throughput FROM segd_nodes
            WHERE heartbeat_at >= \(unescaped: Self.now) - 3600 ORDER BY host, pid
            """).map { row in
            let v = try row.decode((String, String, Int, Double, Double, Int, Int, Int, Double).self)
            return NodeStatus(worker: v.0, host: v.1, pid: v.2, startedAt: v.3, heartbeatAt: v.4,
                              report: NodeReport(inFlight: v.5, done: v.6, failed: v.7, throughput: v.8))
        }
    }

    /// The server's clock now (epoch s): `segd status` ages heartbeats by it.
    public func serverTime() throws -> Double {
        try one(run("read the clock", "SELECT \(unescaped: Self.now)"), Double.self) ?? Date().timeIntervalSince1970
    }
}
