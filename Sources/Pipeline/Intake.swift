// Intake: what the watcher found → journal rows → the ready queue the daemon feeds the
// staged pipeline from. It runs on its own serial queue, so hashing a burst of files
// never holds up the watcher's thread, and it decides, once per file:
//   - already scheduled in this process            → nothing;
//   - journal row with the same size and mtime     → queued: schedule it; done/failed:
//                                                    nothing (finish moving it if needed);
//   - same content (SHA-256) and model already done → a done row marked duplicate, not
//                                                    processed again;
//   - otherwise                                     → a new queued row, scheduled.
import Foundation
import Logging
import Results

/// One input ready for the pipeline.
public struct ReadyItem: Sendable {
    public var id: Int64
    public var path: String
    public var root: String
    public var relative: String
    /// Size and mtime of the file when it was taken.
    public var size: Int64
    public var mtimeNs: Int64
    /// Was in flight when segd died last time: run alone.
    public var suspect: Bool

    var input: JobInput { JobInput(id: id, path: path, root: root, relative: relative) }
}

/// A FIFO of ready items with blocking `take`; suspects go to the front.
final class ReadyQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [ReadyItem] = []
    private var head = 0
    private var closed = false

    func put(_ item: ReadyItem) {
        condition.withLock {
            guard !closed else { return }
            if item.suspect {
                items.insert(item, at: head)
            } else {
                items.append(item)
            }
            condition.signal()
        }
    }

    /// The next item; nil once closed.
    func take() -> ReadyItem? {
        condition.withLock {
            while head == items.count && !closed { condition.wait() }
            guard !closed else { return nil }
            let item = items[head]
            head += 1
            if head > 1024 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return item
        }
    }

    var count: Int { condition.withLock { items.count - head } }

    /// Wakes the taker with nil; what was waiting stays queued in the journal.
    func close() {
        condition.withLock {
            closed = true
            items = []
            head = 0
            condition.broadcast()
        }
    }
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
    let ready = ReadyQueue()
    private let life: JobLife
    private let modelHash: String
    private let filter: NameFilter
    private let log: Logger
    /// Paths queued or in flight in this process (touched on `queue` only).
    private var scheduled = Set<String>()
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

    /// A job finished: its path may be scheduled again (a new file under the same name).
    func release(_ path: String) {
        queue.async { [self] in scheduled.remove(path) }
    }

    /// Stops taking files; the ready queue wakes its taker with nil.
    func stop() {
        stopLock.withLock { _stopped = true }
        queue.sync {}  // the file being considered, if any, is finished
        ready.close()
    }

    private func schedule(_ e: JournalEntry) {
        scheduled.insert(e.path)
        ready.put(ReadyItem(id: e.id, path: e.path, root: e.root, relative: e.relative, size: e.size, mtimeNs: e.mtimeNs, suspect: e.suspect))
    }

    private func consider(_ f: FoundFile) {
        log.trace("considering", metadata: ["input": "\(f.path)", "via": "\(f.origin.rawValue)", "scheduled": "\(scheduled.contains(f.path))"])
        guard !scheduled.contains(f.path) else { return }
        // Gone again, or not a file.
        guard let st = Sys.status(f.path, followingLinks: true), (st.st_mode & S_IFMT) == S_IFREG else { return }
        let size = Int64(st.st_size), mtime = Sys.mtimeNs(st)
        do {
            let latest = try life.journal.latest(path: f.path)
            if let latest, latest.size == size, latest.mtimeNs == mtime {
                switch latest.status {
                case .queued: schedule(latest)
                case .processing: break  // a job of this process; it ends in release()
                case .done, .failed: try life.completeDisposal(latest)
                }
                return
            }
            let hash = try FileHash.sha256(fileAt: f.path)
            let input = JournalInput(path: f.path, root: f.root, relative: f.relative, size: size, mtimeNs: mtime, hash: hash, model: modelHash)
            if let original = try life.journal.done(hash: hash, model: modelHash) {
                let id = try life.recordDuplicate(input, of: original)
                DaemonMetrics.shared.duplicates.increment()
                log.info("already processed: same content and model as an earlier job; not processed again",
                         metadata: ["input": "\(f.path)", "job": "\(id)", "original": "\(original.path)", "original_job": "\(original.id)"])
                return
            }
            if let latest, latest.status == .queued {
                try life.describeAgain(id: latest.id, as: input)
                var e = latest
                e.size = size
                e.mtimeNs = mtime
                schedule(e)
                return
            }
            let id = try life.enqueue(input)
            log.debug("queued", metadata: ["input": "\(f.path)", "job": "\(id)", "via": "\(f.origin.rawValue)"])
            schedule(JournalEntry(id: id, path: f.path, root: f.root, relative: f.relative, size: size, mtimeNs: mtime, hash: hash,
                                  model: modelHash, status: .queued, attempts: 0, suspect: false, queuedAt: Journal.now))
        } catch {
            log.error("cannot take input", metadata: ["input": "\(f.path)", "error": "\(error)"])
        }
    }

    /// After the initial scan: queued rows the scan did not schedule (their files are
    /// outside today's folders or patterns, or gone). Present ones run; gone ones fail.
    /// Runs behind everything submitted so far, then calls `then`.
    func scheduleLeftovers(then: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            defer { then() }
            do {
                for e in try life.journal.queued() where !scheduled.contains(e.path) {
                    if let st = Sys.status(e.path, followingLinks: true), (st.st_mode & S_IFMT) == S_IFREG {
                        schedule(e)
                    } else {
                        try life.vanished(id: e.id)
                        log.warning("queued input disappeared before processing", metadata: ["input": "\(e.path)", "job": "\(e.id)"])
                    }
                }
            } catch {
                log.error("cannot list queued jobs", metadata: ["error": "\(error)"])
            }
        }
    }
}
