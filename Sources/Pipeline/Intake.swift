// Intake: what the watcher found → journal rows, which the daemon's feeder claims (it
// never takes work from anywhere else, so a row admitted here or by another node is the
// same). It runs on its own serial queue, so hashing a burst of files never holds up the
// watcher's thread, and it decides, once per file:
//   - journal row with the same size and mtime     → queued: nothing (a hold on it lifted);
//                                                    processing: nothing; done/failed:
//                                                    finish moving it if needed;
//   - a queued row whose file changed               → described again;
//   - otherwise, admitted in one journal step       → a new queued row; or a done row marked
//     (JobJournal.admit)                              duplicate (same content and model as a
//                                                    done job), not processed again; or the
//                                                    row another node made of it first.
import Foundation
import Logging
import Results

/// One claimed input on its way through the pipeline.
public struct ReadyItem: Sendable {
    public var id: Int64
    public var path: String
    public var root: String
    public var relative: String
    /// Size and mtime of the file when it was admitted.
    public var size: Int64
    public var mtimeNs: Int64
    /// Was in flight when its holder died: run alone.
    public var suspect: Bool
    /// The claim it runs under.
    public var claim: Int

    init(_ e: JournalEntry) {
        id = e.id
        path = e.path
        root = e.root
        relative = e.relative
        size = e.size
        mtimeNs = e.mtimeNs
        suspect = e.suspect
        claim = e.claim
    }

    var input: JobInput { JobInput(id: id, path: path, root: root, relative: relative, claim: claim) }
}

/// What happens to an input after its job: kept, moved to done/ or failed/ (with
/// NAME.error.json saying why), or deleted.
struct InputDisposer: Sendable {
    let after: PipelineConfig.After
    /// More than one watched folder: their names prefix paths in outputs, done/ and failed/.
    let prefixRoots: Bool

    /// `relative` as used under outputs, done/ and failed/.
    func placement(root: String, relative: String) -> String {
        prefixRoots ? (root as NSString).lastPathComponent + "/" + relative : relative
    }

    /// Returns where the input is now (nil: deleted).
    func succeeded(path: String, root: String, relative: String) throws -> String? {
        switch after.success {
        case .keep: return path
        case .delete:
            do { try Sys.unlink(path) } catch {
                throw PipelineError.io(path: path, reason: "cannot delete the processed input: \(error)")
            }
            return nil
        case .move:
            return try Self.move(path, into: after.doneDirectory, as: placement(root: root, relative: relative))
        }
    }

    /// Moves (or keeps) a failed input and writes the reason next to it in failed/.
    func failed(path: String, root: String, relative: String, reason: String, attempts: Int, jobID: Int64) throws -> String? {
        let place = placement(root: root, relative: relative)
        var final: String? = path
        if after.failure == .move, FileManager.default.fileExists(atPath: path) {
            final = try Self.move(path, into: after.failedDirectory, as: place)
        }
        let errorPath = (final.map { $0.hasPrefix(after.failedDirectory + "/") ? $0 : nil } ?? nil)
            ?? (after.failedDirectory as NSString).appendingPathComponent(place)
        let doc: [String: Any] = [
            "schema": "segd.error/1",
            "source": path,
            "moved_to": final.map { $0 == path ? NSNull() : $0 as Any } ?? NSNull(),
            "reason": reason,
            "attempts": attempts,
            "job_id": jobID,
            "time": DaemonLogHandler.iso8601(Date().timeIntervalSince1970, utc: true),
        ]
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
        try AtomicWrite.write(data, to: errorPath + ".error.json")
        return final
    }

    /// Renames `path` to dir/relative (parents created); an existing file there is kept and
    /// the new one gets "~2", "~3"… before its extension. Across file systems: copy to a
    /// hidden temporary, fsync, rename, then unlink the original.
    static func move(_ path: String, into dir: String, as relative: String) throws -> String {
        let target = (dir as NSString).appendingPathComponent(relative)
        try AtomicWrite.createParentDirectory(of: target)
        let ext = (target as NSString).pathExtension
        let base = ext.isEmpty ? target : String(target.dropLast(ext.count + 1))
        var candidate = target
        var n = 1
        while true {
            // link+unlink rather than rename: rename would silently replace an existing file.
            let e: Int32
            do {
                try Sys.link(path, candidate)
                try? Sys.unlink(path)
                return candidate
            } catch {
                e = error.code
            }
            if e == EEXIST && Sys.sameFile(path, candidate) {
                // A move interrupted between link and unlink (kill -9): finish it.
                try? Sys.unlink(path)
                return candidate
            }
            if e == EEXIST {
                n += 1
                candidate = base + "~\(n)" + (ext.isEmpty ? "" : "." + ext)
                continue
            }
            if e == EXDEV || e == EPERM || e == EMLINK {
                // Another file system (or one without hard links): copy, then remove.
                if FileManager.default.fileExists(atPath: candidate) {
                    n += 1
                    candidate = base + "~\(n)" + (ext.isEmpty ? "" : "." + ext)
                    continue
                }
                let data: Data
                do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                    throw PipelineError.io(path: path, reason: "cannot read for moving: \((error as NSError).localizedDescription)")
                }
                try AtomicWrite.write(data, to: candidate)
                try? Sys.unlink(path)
                return candidate
            }
            throw PipelineError.io(path: path, reason: "cannot move to \(candidate): \(PipelineError.errnoText(e))")
        }
    }
}

/// AtomicFile (Results) with this module's error type.
enum AtomicWrite {
    static func write(_ data: Data, to path: String) throws {
        do { try AtomicFile.write(data, to: path) } catch {
            throw PipelineError.io(path: path, reason: "\(error)")
        }
    }

    static func createParentDirectory(of path: String) throws {
        do { try AtomicFile.createParentDirectory(of: path) } catch {
            throw PipelineError.io(path: path, reason: "\(error)")
        }
    }
}

final class Intake: @unchecked Sendable {
    let queue = DispatchQueue(label: "segd.intake", qos: .utility)
    private let life: JobLife
    private let modelHash: String
    private let filter: NameFilter
    private let log: Logger
    /// Set from any thread; checked between files, so a stop does not wait for a backlog
    /// of thousands of files to be hashed first.
    private let stopLock = NSLock()
    private var _stopped = false
    private var stopped: Bool { stopLock.withLock { _stopped } }

    init(life: JobLife, modelHash: String, filter: NameFilter, log: Logger) {
        self.life = life
        self.modelHash = modelHash
        self.filter = filter
        self.log = log
    }

    /// Files from the watcher (any thread).
    func submit(_ files: [FoundFile]) {
        queue.async { [self] in
            for f in files where !stopped { consider(f) }
        }
    }

    /// Stops taking files.
    func stop() {
        stopLock.withLock { _stopped = true }
        queue.sync {}  // the file being considered, if any, is finished
    }

    /// Logged once per outage (touched on `queue` only).
    private var waitingForJournal = false

    /// While the journal's server is away the intake waits here, retrying with back-off, so a
    /// file found during an outage is not dropped until the next rescan.
    private func consider(_ f: FoundFile) {
        var delay = 0.5
        while !stopped {
            do {
                try admit(f)
                if waitingForJournal { log.notice("journal reachable again; taking files") }
                waitingForJournal = false
                return
            } catch PipelineError.databaseUnavailable(let at, let reason) {
                if !waitingForJournal {
                    log.error("journal database unavailable; holding found files until it answers",
                              metadata: ["database": "\(at)", "reason": "\(reason)"])
                }
                waitingForJournal = true
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 10)
            } catch {
                log.error("cannot take input", metadata: ["input": "\(f.path)", "error": "\(error)"])
                return
            }
        }
    }

    private func admit(_ f: FoundFile) throws {
        log.trace("considering", metadata: ["input": "\(f.path)", "via": "\(f.origin.rawValue)"])
        // Gone again, or not a file.
        guard let st = Sys.status(f.path, followingLinks: true), (st.st_mode & S_IFMT) == S_IFREG else { return }
        let size = Int64(st.st_size), mtime = Sys.mtimeNs(st)
        do {
            let latest = try life.journal.latest(path: f.path)
            if let latest, latest.size == size, latest.mtimeNs == mtime {
                try known(latest)
                return
            }
            let hash = try FileHash.sha256(fileAt: f.path)
            let input = JournalInput(path: f.path, root: f.root, relative: f.relative, size: size, mtimeNs: mtime, hash: hash, model: modelHash)
            if let latest, latest.status == .queued {
                try life.describeAgain(id: latest.id, as: input)
                return
            }
            switch try life.admit(input) {
            case let .queued(id):
                log.debug("queued", metadata: ["input": "\(f.path)", "job": "\(id)", "via": "\(f.origin.rawValue)"])
            case let .duplicate(id, original):
                DaemonMetrics.shared.duplicates.increment()
                let from = (try? life.journal.entry(id: original))?.path ?? "?"
                log.info("already processed: same content and model as an earlier job; not processed again",
                         metadata: ["input": "\(f.path)", "job": "\(id)", "original": "\(from)", "original_job": "\(original)"])
            case let .known(e):
                try known(e)
            }
        }
    }

    /// A file whose job exists (this run, an earlier one, another node).
    private func known(_ e: JournalEntry) throws {
        switch e.status {
        case .queued: try life.journal.release(id: e.id)  // seen complete: a hold for its writer ends
        case .processing: break  // claimed; its holder, or whoever takes over a lost claim, finishes it
        case .done, .failed: try life.completeDisposal(e)
        }
    }

    /// After the initial scan: queued rows whose files are gone fail (the others wait for a
    /// claim wherever they are). Runs behind everything submitted so far, then calls `then`.
    func checkLeftovers(then: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            defer { then() }
            do {
                for e in try life.journal.queued() {
                    if let st = Sys.status(e.path, followingLinks: true), (st.st_mode & S_IFMT) == S_IFREG { continue }
                    try life.vanished(id: e.id)
                    log.warning("queued input disappeared before processing", metadata: ["input": "\(e.path)", "job": "\(e.id)"])
                }
            } catch {
                log.error("cannot list queued jobs", metadata: ["error": "\(error)"])
            }
        }
    }
}
