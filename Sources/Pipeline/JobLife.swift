// The life of a job, owned in one place:
//
//   (found) ──enqueue──▶ queued ──start──▶ processing ──succeed──▶ done    (input kept, moved to done/ or deleted)
//                          ▲                   │        ──fail─────▶ failed  (input kept or moved to failed/ + NAME.error.json)
//                          └────requeue────────┘  (a clean stop, outputs not writable, an input still being written:
//                                                  the attempt not counted)
//   duplicate content ──recordDuplicate──▶ done (never processed; the input is disposed of as a success)
//   at start-up, rows still processing were in flight at a crash: queued again as suspects, or
//   failed once `max_crashes` starts each ended in a crash (recoverAfterCrash).
//
// Every transition records the row and moves the input in the same call, and records where
// the input went, so no caller writes that sequence itself. The rows live behind
// `JobJournal`: SQLite (`Journal`) today; a shared database for a cluster is a second
// implementation of the same protocol.
import Foundation
import Logging

/// Where jobs are recorded. No storage types cross this surface: rows are `JournalEntry`,
/// new inputs `JournalInput`.
public protocol JobJournal: AnyObject, Sendable {
    /// The newest row for an input path.
    func latest(path: String) throws -> JournalEntry?
    /// The first done, non-duplicate row with this content and model.
    func done(hash: String, model: String) throws -> JournalEntry?
    /// A new queued row; returns its id.
    func enqueue(_ input: JournalInput) throws -> Int64
    /// Re-describes a queued row whose file changed before it was processed.
    func requeue(id: Int64, with input: JournalInput) throws
    /// A done row sharing `original`'s results.
    func recordDuplicate(_ input: JournalInput, of original: JournalEntry) throws -> Int64
    /// queued → processing, counting one attempt.
    func markProcessing(id: Int64) throws
    /// processing (or queued) → done / failed, with what the job produced.
    func finish(id: Int64, status: JobStatus, error: String?, outputs: [String], timings: [String: Double], batchSize: Int?) throws
    /// Where the input went after its job (nil: left in place or deleted).
    func setFinalPath(id: Int64, _ finalPath: String?) throws
    /// processing → queued, the attempt not counted.
    func returnToQueue(ids: [Int64]) throws
    /// At start-up: rows left processing become queued suspects, or failed after `maxCrashes`.
    func recoverAfterCrash(maxCrashes: Int) throws -> (retried: [JournalEntry], failed: [JournalEntry])
    /// Queued rows, suspects first.
    func queued() throws -> [JournalEntry]
    /// A queued row whose input is gone → failed.
    func markVanished(id: Int64) throws
    func entry(id: Int64) throws -> JournalEntry?
    func all() throws -> [JournalEntry]
    func summary(failures limit: Int) throws -> JournalSummary
}

/// One input as the job life moves it: where it was found.
struct JobInput: Sendable {
    var id: Int64
    var path: String
    var root: String
    var relative: String
}

final class JobLife: Sendable {
    let journal: any JobJournal
    let disposer: InputDisposer
    private let log: Logger

    init(journal: any JobJournal, after: PipelineConfig.After, prefixRoots: Bool, log: Logger) {
        self.journal = journal
        disposer = InputDisposer(after: after, prefixRoots: prefixRoots)
        self.log = log
    }

    // MARK: Intake

    /// A new queued job for `input`.
    func enqueue(_ input: JournalInput) throws -> Int64 { try journal.enqueue(input) }

    /// A queued job whose file changed before it ran: described again, still queued.
    func describeAgain(id: Int64, as input: JournalInput) throws { try journal.requeue(id: id, with: input) }

    /// Content already processed with this model: recorded done, not run; the input is
    /// disposed of as a success.
    func recordDuplicate(_ input: JournalInput, of original: JournalEntry) throws -> Int64 {
        let id = try journal.recordDuplicate(input, of: original)
        try settle(JobInput(id: id, path: input.path, root: input.root, relative: input.relative), status: .done, reason: nil, attempts: 0)
        return id
    }

    /// A finished job whose input is still where it was found (segd stopped between the
    /// journal update and the move): the move is done now.
    func completeDisposal(_ e: JournalEntry) throws {
        let keeps = e.status == .done ? disposer.after.success == .keep : disposer.after.failure == .keep
        guard !keeps else { return }
        try settle(JobInput(id: e.id, path: e.path, root: e.root, relative: e.relative), status: e.status,
                   reason: e.error ?? "failed", attempts: e.attempts)
    }

    /// A queued job whose input disappeared before it ran.
    func vanished(id: Int64) throws { try journal.markVanished(id: id) }

    // MARK: Processing

    /// queued → processing: one attempt counted before any byte of the input is read.
    func start(id: Int64) throws { try journal.markProcessing(id: id) }

    /// processing → done; the input kept, moved to done/ or deleted.
    func succeed(_ input: JobInput, outputs: [String], timings: [String: Double], batchSize: Int) throws {
        try journal.finish(id: input.id, status: .done, error: nil, outputs: outputs, timings: timings, batchSize: batchSize)
        try settle(input, status: .done, reason: nil, attempts: 0)
    }

    /// → failed; the input kept or moved to failed/ with NAME.error.json.
    func fail(_ input: JobInput, _ failure: JobFailure, timings: [String: Double] = [:], batchSize: Int? = nil) throws {
        try journal.finish(id: input.id, status: .failed, error: failure.description, outputs: [], timings: timings, batchSize: batchSize)
        let attempts = try journal.entry(id: input.id)?.attempts ?? 0
        try settle(input, status: .failed, reason: failure.description, attempts: attempts)
    }

    /// processing → queued, the attempt not counted (a clean stop, outputs not writable,
    /// an input still being written).
    func requeue(_ ids: [Int64]) throws { try journal.returnToQueue(ids: ids) }

    /// At start-up: jobs in flight when segd died are queued again as suspects (returned),
    /// or failed, their inputs moved, once `maxCrashes` of their starts ended in a crash.
    func recoverAfterCrash(maxCrashes: Int) throws -> [JournalEntry] {
        let (retried, failed) = try journal.recoverAfterCrash(maxCrashes: maxCrashes)
        DaemonMetrics.shared.crashRecoveries.increment(by: Int64(retried.count + failed.count))
        DaemonMetrics.shared.quarantined.increment(by: Int64(failed.count))
        for e in failed {
            log.error("giving up on an input: segd stopped abnormally every time it processed it",
                      metadata: ["input": "\(e.path)", "job": "\(e.id)", "attempts": "\(e.attempts)"])
            do {
                try settle(JobInput(id: e.id, path: e.path, root: e.root, relative: e.relative), status: .failed,
                           reason: e.error ?? "crashed", attempts: e.attempts)
            } catch {
                log.error("cannot move failed input", metadata: ["input": "\(e.path)", "error": "\(error)"])
            }
        }
        return retried
    }

    /// The one place an input is moved after its job, and where it went recorded.
    private func settle(_ input: JobInput, status: JobStatus, reason: String?, attempts: Int) throws {
        let final: String?
        if status == .done {
            final = try disposer.succeeded(path: input.path, root: input.root, relative: input.relative)
        } else {
            final = try disposer.failed(path: input.path, root: input.root, relative: input.relative, reason: reason ?? "failed",
                                        attempts: attempts, jobID: input.id)
        }
        try journal.setFinalPath(id: input.id, final)
    }
}
