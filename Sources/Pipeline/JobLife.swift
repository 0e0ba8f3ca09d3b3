// The life of a job, owned in one place:
//
//   (found) ──enqueue──▶ queued ──start──▶ processing ──succeed──▶ done    (input kept, moved to done/ or deleted)
//                          ▲                   │        ──fail─────▶ failed  (input kept or moved to failed/ + NAME.error.json)
//                          └────requeue────────┘  (a clean stop, outputs not writable, an input still being written:
//                                                  the attempt not counted)
//   duplicate content ──recordDuplicate──▶ done (never processed; the input is disposed of as a success)
//   a claim whose holder is gone (segd killed; on a cluster also frozen or cut off past its
//   lease) is queued again, a suspect if it had begun, or failed once `max_crashes` starts each
//   ended that way (recoverLost); its temporary output files are removed.
//
// Every transition records the row and moves the input in the same call, and records where
// the input went, so no caller writes that sequence itself. The rows live behind
// `JobJournal` (JobJournal.swift): SQLite (`Journal`) or PostgreSQL (`PostgresJournal`).
// A transition guarded by a claim that this worker no longer holds changes nothing and
// returns false: the job belongs to another node now.
import Foundation
import Logging

/// One input as the job life moves it: where it was found, and the claim it runs under.
struct JobInput: Sendable {
    var id: Int64
    var path: String
    var root: String
    var relative: String
    var claim = 0

    var ticket: Ticket { Ticket(id: id, claim: claim) }
}

final class JobLife: Sendable {
    let journal: any JobJournal
    let disposer: InputDisposer
    /// This process: the holder of its claims.
    let worker: WorkerID
    private let outputDirectory: String
    private let log: Logger
    private let faults: FaultHook

    init(journal: any JobJournal, after: PipelineConfig.After, prefixRoots: Bool, outputDirectory: String,
         worker: WorkerID = .current, faults: FaultHook = .none, log: Logger) {
        self.faults = faults
        self.journal = journal
        disposer = InputDisposer(after: after, prefixRoots: prefixRoots)
        self.worker = worker
        self.outputDirectory = outputDirectory
        self.log = log
    }

    // MARK: Intake

    /// Records a found file once (JobJournal.admit); a duplicate's input is disposed of as a
    /// success.
    func admit(_ input: JournalInput) throws -> Admission {
        let a = try journal.admit(input)
        if case let .duplicate(id, _) = a {
            try settle(JobInput(id: id, path: input.path, root: input.root, relative: input.relative), status: .done, reason: nil, attempts: 0)
        }
        return a
    }

    /// A queued job whose file changed before it ran: described again, still queued.
    func describeAgain(id: Int64, as input: JournalInput) throws { try journal.describeAgain(id: id, with: input) }

    /// A finished job whose input is still where it was found (segd stopped between the
    /// journal update and the move, or another node's move is not done yet): the move is
    /// done now, by whichever node sees it.
    func completeDisposal(_ e: JournalEntry) throws {
        let keeps = e.status == .done ? disposer.after.success == .keep : disposer.after.failure == .keep
        guard !keeps, Sys.status(e.path) != nil else { return }
        try settle(JobInput(id: e.id, path: e.path, root: e.root, relative: e.relative), status: e.status,
                   reason: e.error ?? "failed", attempts: e.attempts)
    }

    /// A queued job whose input disappeared before it ran.
    func vanished(id: Int64) throws { try journal.markVanished(id: id) }

    // MARK: Processing

    /// Up to `max` jobs for this worker (JobJournal.claim).
    func claim(max: Int, lease: Double) throws -> [JournalEntry] { try journal.claim(max: max, worker: worker, lease: lease) }

    /// processing: one attempt counted before any byte of the input is read. False: this
    /// node lost the claim (its result will be discarded).
    func start(_ input: JobInput) throws -> Bool { try journal.begin(input.ticket, worker: worker) }

    /// processing → done; the input kept, moved to done/ or deleted. False: the claim was
    /// lost, nothing recorded or moved.
    func succeed(_ input: JobInput, outputs: [String], timings: [String: Double], batchSize: Int) throws -> Bool {
        guard try journal.finish(input.ticket, worker: worker, status: .done, error: nil, outputs: outputs, timings: timings,
                                 batchSize: batchSize) else { return false }
        crashIfHooked(input)
        try settle(input, status: .done, reason: nil, attempts: 0)
        return true
    }

    /// → failed; the input kept or moved to failed/ with NAME.error.json. False: the claim
    /// was lost.
    func fail(_ input: JobInput, _ failure: JobFailure, timings: [String: Double] = [:], batchSize: Int? = nil) throws -> Bool {
        guard try journal.finish(input.ticket, worker: worker, status: .failed, error: failure.description, outputs: [],
                                 timings: timings, batchSize: batchSize) else { return false }
        crashIfHooked(input)
        let attempts = try journal.entry(id: input.id)?.attempts ?? 0
        try settle(input, status: .failed, reason: failure.description, attempts: attempts)
        return true
    }

    /// processing → queued, the attempt not counted (a clean stop, outputs not writable,
    /// an input still being written); not claimable for `holdFor` s.
    func requeue(_ inputs: [JobInput], holdFor: Double? = nil) throws {
        try journal.giveBack(inputs.map(\.ticket), worker: worker, holdFor: holdFor)
    }

    /// Claims whose holder is gone are queued again as suspects (returned), or failed, their
    /// inputs moved, once `maxCrashes` of their starts ended that way. Either way the
    /// temporary files the holder's interrupted writes left are removed. Then finished jobs
    /// whose dead worker never moved their input are settled (`settleOrphans`).
    func recoverLost(maxCrashes: Int, lease: Double) throws -> [JournalEntry] {
        let (retried, failed) = try journal.recoverLost(worker: worker, maxCrashes: maxCrashes)
        for e in retried + failed { removeTemporaries(of: e) }
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
        settleOrphans(lease: lease)
        return retried
    }

    /// Jobs finished by a worker killed before it moved the input (between `finish` and
    /// `setFinalPath`): without this the input waits in the inbox for a rescan (300 s by
    /// default). The journal hands each row to this worker in one guarded UPDATE
    /// (JobJournal.takeUnsettled), so two nodes never settle the same row; should this
    /// process die midway, the row is a dead worker's again and the next taker repeats the
    /// move, which is safe: InputDisposer.move finishes a half-done link+unlink, and an input
    /// already gone (the dead worker's move or delete landed) is only recorded, its final
    /// place unknown (nil).
    func settleOrphans(lease: Double, limit: Int = 256) {
        let taken: [JournalEntry]
        do { taken = try journal.takeUnsettled(worker: worker, lease: lease, limit: limit) } catch {
            log.error("cannot look for finished jobs left unmoved", metadata: ["error": "\(error)"])
            return
        }
        for e in taken {
            let input = JobInput(id: e.id, path: e.path, root: e.root, relative: e.relative)
            do {
                if e.status == .done, Sys.status(e.path) == nil {
                    try journal.setFinalPath(id: e.id, nil)
                } else {
                    try settle(input, status: e.status, reason: e.error ?? "failed", attempts: e.attempts)
                }
                log.notice("moved the input of a job its node finished but did not move (the node stopped)",
                           metadata: ["input": "\(e.path)", "job": "\(e.id)", "status": "\(e.status.rawValue)"])
            } catch {
                log.error("cannot move the input of a finished job", metadata: ["input": "\(e.path)", "error": "\(error)"])
            }
        }
    }

    /// AtomicFile's temporaries (".NAME.XXXXXX" beside NAME) of a job's outputs: a writer
    /// killed mid-write leaves them, and on a shared output folder only the node that takes
    /// the job over knows they are dead (another node's may be live).
    private func removeTemporaries(of e: JournalEntry) {
        guard let stem = try? OutputLayout.stem(forRelativePath: disposer.placement(root: e.root, relative: e.relative)) else { return }
        let full = (outputDirectory as NSString).appendingPathComponent(stem)
        let dir = (full as NSString).deletingLastPathComponent
        let prefix = "." + (full as NSString).lastPathComponent + "."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        // ".NAME.EXT.XXXXXX" exactly: ".k3.x.json.XXXXXX" belongs to the job of "k3.x".
        func isOurs(_ name: String) -> Bool {
            guard name.hasPrefix(prefix) else { return false }
            let rest = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
            return rest.count == 2 && !rest[0].isEmpty && rest[1].count == 6
                && rest.joined().allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        }
        for name in names where isOurs(name) {
            if (try? Sys.unlink(dir + "/" + name)) != nil {
                log.notice("removed a temporary file of an interrupted write", metadata: ["file": "\(dir)/\(name)", "job": "\(e.id)"])
            }
        }
    }

    /// SEGD_TEST_CRASH_AFTER_FINISH: dies where a kill -9 leaves a finished job unmoved.
    private func crashIfHooked(_ input: JobInput) {
        guard let name = faults.crashAfterFinish, (input.path as NSString).lastPathComponent == name else { return }
        log.critical("test hook SEGD_TEST_CRASH_AFTER_FINISH: aborting before the input is moved", metadata: ["input": "\(input.path)"])
        abort()
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
