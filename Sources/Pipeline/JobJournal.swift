// The job protocol every journal implements: SQLite in the state directory (`Journal`, one
// node) and PostgreSQL (`PostgresJournal`, a cluster of nodes on one queue). The daemon has
// one way of getting work whichever it is: it *claims* queued jobs under its worker id with
// a lease, renews the lease by heartbeat, and finishes a job only while it still holds it.
// SQLite is the one-worker case of the same protocol: nobody else claims, a heartbeat has
// nothing to renew, and "a lease that expired" is any claim of an earlier process, which is
// exactly start-up crash recovery.
//
//   admit ─▶ queued ─claim─▶ processing (worker, lease) ─begin (attempts+1)─▶ … ─finish─▶ done / failed
//              ▲                    │  giveBack: not counted (clean stop, outputs unwritable, input still being written)
//              └────────────────────┘  recoverLost: the lease lapsed; counted as a crash if it had begun,
//                                       failed once attempts reach max_crashes
import Foundation

/// One process of one node: what leases and claims are held by.
public struct WorkerID: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var pid: Int32
    /// Random per process start: a restarted process with a recycled pid is another worker.
    public var tag: String

    public init(host: String, pid: Int32, tag: String) {
        self.host = host
        self.pid = pid
        self.tag = tag
    }

    /// This process.
    public static let current: WorkerID = {
        var name = [CChar](repeating: 0, count: 256)
        let host = gethostname(&name, name.count) == 0 ? String(cString: name) : "localhost"
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return WorkerID(host: host, pid: getpid(), tag: tag)
    }()

    public var description: String { "\(host):\(pid):\(tag)" }
}

/// A claimed job as the guarded operations name it: the row and which claim of it this is.
/// A node whose lease lapsed holds a stale ticket; begin and finish refuse it.
public struct Ticket: Sendable, Hashable {
    public var id: Int64
    public var claim: Int

    public init(id: Int64, claim: Int) {
        self.id = id
        self.claim = claim
    }
}

/// What admitting a found file did. The decision is one atomic step in the journal (unique
/// key on path, size and mtime; the content lookup in the same statement), so two nodes that
/// see the same file make one job of it.
public enum Admission: Sendable, Equatable {
    /// A new queued job.
    case queued(Int64)
    /// Same content and model as the done job `original`: recorded done, never run.
    case duplicate(Int64, original: Int64)
    /// This file (path, size, mtime) already has a job (another node, or an earlier run).
    case known(JournalEntry)
}

/// A node as the heartbeat reports it (`segd status` shows these).
public struct NodeReport: Sendable, Equatable {
    public var inFlight = 0
    public var done = 0
    public var failed = 0
    public var throughput = 0.0

    public init(inFlight: Int = 0, done: Int = 0, failed: Int = 0, throughput: Double = 0) {
        self.inFlight = inFlight
        self.done = done
        self.failed = failed
        self.throughput = throughput
    }
}

/// A node as the shared journal last heard of it.
public struct NodeStatus: Sendable, Equatable {
    public var worker: String
    public var host: String
    public var pid: Int
    public var startedAt: Double
    public var heartbeatAt: Double
    public var report: NodeReport
}

/// Where jobs are recorded. No storage types cross this surface: rows are `JournalEntry`,
/// new inputs `JournalInput`. Every method may throw `PipelineError.journal`; a shared
/// journal that cannot reach its server throws it with `unavailable` true.
public protocol JobJournal: AnyObject, Sendable {
    /// Shared by several nodes (PostgreSQL), not owned by this process alone (SQLite).
    var isShared: Bool { get }
    /// Where the journal is, for logs and `segd status` (never with a password).
    var location: String { get }

    // Intake
    /// The newest row for an input path.
    func latest(path: String) throws -> JournalEntry?
    /// Records a found file once: a queued job, a duplicate of a done job with the same
    /// content and model, or the row this file already has.
    func admit(_ input: JournalInput) throws -> Admission
    /// Re-describes a queued row whose file changed before it was processed; it may be
    /// claimed at once (a hold set by `giveBack(holdFor:)` is lifted).
    func describeAgain(id: Int64, with input: JournalInput) throws
    /// Lifts a hold on a queued row (its file was seen complete again).
    func release(id: Int64) throws
    /// A queued row whose input is gone → failed.
    func markVanished(id: Int64) throws
    /// Queued rows, suspects first.
    func queued() throws -> [JournalEntry]

    // Claims
    /// Up to `max` queued jobs → processing under `worker` with a lease of `lease` s, in
    /// one statement; suspects first and alone (a suspect is the only job of its claim).
    func claim(max: Int, worker: WorkerID, lease: Double) throws -> [JournalEntry]
    /// The job's decode starts: one attempt counted. False: the claim is no longer ours.
    func begin(_ ticket: Ticket, worker: WorkerID) throws -> Bool
    /// processing → done / failed with what the job produced. False: the claim is no longer
    /// ours (the lease lapsed and the job went to another node): the result is discarded.
    func finish(_ ticket: Ticket, worker: WorkerID, status: JobStatus, error: String?, outputs: [String],
                timings: [String: Double], batchSize: Int?) throws -> Bool
    /// Where the input went after its job (nil: left in place or deleted); the job is
    /// settled from then on (`takeUnsettled` no longer returns it).
    func setFinalPath(id: Int64, _ finalPath: String?) throws
    /// Finished jobs (done or failed by `finish`) whose input was never settled because their
    /// worker died between `finish` and `setFinalPath`, the worker gone by the same notion
    /// `recoverLost` uses (SQLite: any earlier process; shared: no heartbeat within `lease`
    /// s). Each is handed to `worker` in one guarded UPDATE (its worker column changes from
    /// the dead one to `worker`), so of two nodes trying at once only one gets a row; if
    /// `worker` dies before settling it, the row is another dead worker's and is taken again.
    func takeUnsettled(worker: WorkerID, lease: Double, limit: Int) throws -> [JournalEntry]
    /// processing → queued, the attempt not counted; not claimable for `holdFor` s
    /// (`.infinity`: until `describeAgain` or `release`).
    func giveBack(_ tickets: [Ticket], worker: WorkerID, holdFor: Double?) throws
    /// Renews every lease `worker` holds and records the node's figures.
    func heartbeat(worker: WorkerID, lease: Double, report: NodeReport) throws
    /// Claims whose holder is gone (lease lapsed; SQLite: any claim of another process)
    /// become queued (suspects if they had begun), or failed once `maxCrashes` attempts each
    /// ended this way.
    func recoverLost(worker: WorkerID, maxCrashes: Int) throws -> (retried: [JournalEntry], failed: [JournalEntry])
    /// This worker is stopping: its node row goes.
    func leave(worker: WorkerID) throws

    // Reading
    func entry(id: Int64) throws -> JournalEntry?
    func all() throws -> [JournalEntry]
    func queuedCount() throws -> Int
    func summary(failures limit: Int) throws -> JournalSummary
    /// The nodes heard of recently (empty for SQLite).
    func nodes() throws -> [NodeStatus]

    // Wake-ups
    /// Blocks until work may be claimable (an admit or give-back here or, shared, on another
    /// node) or `timeout` s passed: the caller polls as the backstop.
    func waitForWork(timeout: Double)
    /// Wakes `waitForWork` (a stop).
    func wake()
}

/// The wake-up a journal's writers ring and the feeder waits on, within one process. A ring
/// while nobody waits is kept (the feeder's claim may have just missed the new row).
final class WorkSignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending = false

    func ring() {
        condition.withLock {
            pending = true
            condition.broadcast()
        }
    }

    func wait(timeout: Double) {
        condition.withLock {
            let deadline = Date().addingTimeInterval(timeout)
            while !pending, condition.wait(until: deadline) {}
            pending = false
        }
    }
}
