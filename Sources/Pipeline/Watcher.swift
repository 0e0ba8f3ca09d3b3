// The watched folders: libinotifytools on a thread of its own, so reading events never
// waits for inference (the kernel queue holds 16384 events by default; a reader stuck behind
// a model run would overflow it).
//
// Order matters: watches are set up first and the folders scanned second, so a file that
// arrives during the scan is seen by one or the other (or both: the intake deduplicates).
// A file is handed on only when it is complete:
//   - IN_CLOSE_WRITE: the writer closed it;              - IN_MOVED_TO: renamed in, whole;
//   - IN_CREATE with an IN_OPEN after it: someone is writing it — wait for its close;
//   - created otherwise (a hard link), or found by a scan with a recent mtime: re-checked
//     until size and mtime have not changed for `stableMs`.
// New subfolders are watched, then scanned (files may land before the watch exists). A
// queue overflow (IN_Q_OVERFLOW) means events were lost: everything is rescanned. A
// periodic rescan is the backstop for anything else missed. When the kernel's limits on
// watches (ENOSPC) or instances (EMFILE) are reached, the message names the sysctl to
// raise and the watcher polls instead.
import CInotifyTools
import Foundation
import Logging

public struct FoundFile: Sendable, Equatable {
    public enum Origin: String, Sendable { case closedAfterWrite = "close_write", movedIn = "moved_in", scanned = "scan", stable = "stable" }
    public var path: String
    public var root: String
    /// Path relative to `root`.
    public var relative: String
    public var origin: Origin
}

/// Include/exclude patterns (fnmatch): a pattern without "/" matches the name, one with
/// "/" the path relative to the watched folder. Includes ignore case ("*.jpg" takes X.JPG).
public struct NameFilter: Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]

    public func accepts(relative: String) -> Bool {
        let name = (relative as NSString).lastPathComponent
        for p in exclude where Self.match(p, name: name, relative: relative, caseFold: false) { return false }
        return include.contains { Self.match($0, name: name, relative: relative, caseFold: true) }
    }

    /// Directories are pruned by the exclude patterns only (".*" skips hidden folders).
    public func acceptsDirectory(relative: String) -> Bool {
        let name = (relative as NSString).lastPathComponent
        return !exclude.contains { Self.match($0, name: name, relative: relative, caseFold: false) }
    }

    /// glibc's FNM_CASEFOLD (a GNU extension the Swift importer does not see).
    static let caseFoldFlag: Int32 = 1 << 4

    static func match(_ pattern: String, name: String, relative: String, caseFold: Bool) -> Bool {
        let flags = caseFold ? caseFoldFlag : 0
        if pattern.contains("/") { return fnmatch(pattern, relative, flags | FNM_PATHNAME) == 0 }
        return fnmatch(pattern, name, flags) == 0
    }
}

public struct WatchOptions: Sendable {
    public var roots: [String]
    public var recursive = true
    public var filter: NameFilter
    /// Folders never watched nor scanned (outputs, done/, failed/ and state inside a root).
    public var excludedDirectories: [String] = []
    public var stableMs = 2000
    public var rescanInterval: TimeInterval = 300
    public var pollIntervalMs = 2000

    public init(roots: [String], filter: NameFilter) {
        self.roots = roots
        self.filter = filter
    }
}

public final class Watcher: @unchecked Sendable {
    public enum Mode: String, Sendable { case starting, inotify, polling, stopped }

    public let options: WatchOptions
    private let log: Logger
    private let faults: FaultHook
    private let deliver: @Sendable ([FoundFile]) -> Void
    private let initialScanDone: @Sendable () -> Void
    private let lock = NSLock()
    private var stopRequested = false
    private var _mode = Mode.starting
    private var _heartbeat = Date()
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    /// Files seen being created, not yet complete.
    private struct Pending {
        var root: String
        var relative: String
        /// An IN_OPEN followed the creation: a writer holds it; its IN_CLOSE_WRITE decides.
        var awaitingClose: Bool
        var size: Int64
        var mtimeNs: Int64
        /// Last time a change was seen (ProcessInfo uptime, s).
        var since: Double
    }
    private var pending: [String: Pending] = [:]
    private var movedDirectories: [UInt32: String] = [:]
    /// Device and inode of each root when it was last watched (nil: missing), to notice a
    /// watched folder deleted and recreated: its old inotify watch died with it.
    private var rootIdentity: [String: [UInt64]] = [:]
    /// A root that exists but could not be watched (EACCES, say): when to try again, and the
    /// current delay (1 s doubling to 60 s), so that it is not retried and logged every second.
    private var rootRetry: [String: (at: Double, delay: Double)] = [:]
    /// Entries already logged as skipped (see `skip`), so a rescan does not repeat the line.
    private var skippedLogged: Set<String> = []
    /// Files handed back by `retake` (under `lock`), moved into `pending` by the loop.
    private var retakes: [FoundFile] = []

    /// libinotifytools keeps its state in globals: one watcher at a time per process.
    private static let active = NSLock()

    public init(options: WatchOptions, log: Logger, faults: FaultHook = .none, deliver: @escaping @Sendable ([FoundFile]) -> Void,
                initialScanDone: @escaping @Sendable () -> Void) {
        self.options = options
        self.faults = faults
        self.log = log
        self.deliver = deliver
        self.initialScanDone = initialScanDone
    }

    public var mode: Mode { lock.withLock { _mode } }
    /// When the watcher's loop last went round (at least once a second while it runs).
    public var heartbeat: Date { lock.withLock { _heartbeat } }
    private var stopping: Bool { lock.withLock { stopRequested } }

    public func start() {
        let t = Thread { [self] in
            Self.active.lock()
            run()
            Self.active.unlock()
            finished.signal()
        }
        t.name = "segd.watcher"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    /// Stops the loop (within about a second: inotify reads wait at most 1 s) and waits.
    public func stop() {
        let started = lock.withLock { () -> Bool in
            stopRequested = true
            return thread != nil && _mode != .stopped
        }
        if started { finished.wait() }
    }

    private func setMode(_ m: Mode) { lock.withLock { _mode = m } }
    private func beat() { lock.withLock { _heartbeat = Date() } }
    private static var uptime: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    // MARK: The loop

    private static let fileEvents = UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_MOVED_FROM) | UInt32(IN_CREATE)
        | UInt32(IN_DELETE) | UInt32(IN_OPEN) | UInt32(IN_MODIFY)

    private func run() {
        var inotify = setUpInotify()
        setMode(inotify ? .inotify : .polling)
        for root in options.roots { rootIdentity[root] = Self.identity(root) }
        var lastRootCheck = Self.uptime
        var found: [FoundFile] = []
        for root in options.roots { scan(root, root: root, into: &found) }
        if !found.isEmpty { deliver(found) }
        log.info("initial scan done", metadata: ["files": "\(found.count)", "mode": "\(mode.rawValue)", "folders": "\(options.roots.joined(separator: ","))"])
        initialScanDone()
        var lastRescan = Self.uptime
        var lastPoll = Self.uptime
        var lastPendingCheck = 0.0
        while !stopping {
            beat()
            found = []
            if inotify {
                // Waits up to 1 s for the next event. libinotifytools' timeout is in whole
                // seconds and 0 means "block" in this version (3.22), so events are taken one
                // per round and what they found is handed on at once.
                if let e = inotifytools_next_event(1) {
                    if !handle(e, into: &found) {
                        inotify = false
                        setMode(.polling)
                        inotifytools_cleanup()
                    }
                } else if inotifytools_error() != 0, inotifytools_error() != EINTR {
                    log.error("reading inotify events failed; polling from now on", metadata: ["error": "\(PipelineError.errnoText(inotifytools_error()))"])
                    inotify = false
                    setMode(.polling)
                    inotifytools_cleanup()
                } else {
                    movedDirectories.removeAll()  // a MOVED_FROM with no MOVED_TO in a quiet second: moved out
                }
            } else {
                usleep(useconds_t(min(options.pollIntervalMs, 250) * 1000))
                if Self.uptime - lastPoll >= Double(options.pollIntervalMs) / 1000 {
                    lastPoll = Self.uptime
                    for root in options.roots { scan(root, root: root, into: &found) }
                }
            }
            // Stability checks stat each pending file: at most 5 times a second, not per event.
            if Self.uptime - lastPendingCheck >= 0.2 {
                lastPendingCheck = Self.uptime
                checkPending(into: &found)
            }
            if inotify && Self.uptime - lastRootCheck >= 1 {
                lastRootCheck = Self.uptime
                if !checkRoots(into: &found) {
                    inotify = false
                    setMode(.polling)
                    inotifytools_cleanup()
                }
            }
            if Self.uptime - lastRescan >= options.rescanInterval {
                lastRescan = Self.uptime
                log.debug("periodic rescan")
                DaemonMetrics.shared.rescans["periodic"]?.increment()
                for root in options.roots { scan(root, root: root, into: &found) }
            }
            if !found.isEmpty { deliver(found) }
        }
        if inotify { inotifytools_cleanup() }
        setMode(.stopped)
    }

    /// A watched folder that was deleted (its watch is gone with it) and has come back, or
    /// was replaced: watched again and scanned. False when inotify cannot go on.
    private func checkRoots(into found: inout [FoundFile]) -> Bool {
        for root in options.roots {
            let now = Self.identity(root)
            // Same identity and still watched: nothing happened. (A watch can be gone with
            // the identity unchanged when the folder was recreated on the same inode.)
            let changed = now != rootIdentity[root]
            guard changed || (now != nil && !Self.isWatched(root)) else {
                rootRetry[root] = nil
                continue
            }
            if !changed, let retry = rootRetry[root], Self.uptime < retry.at { continue }
            rootIdentity[root] = now
            guard now != nil else {
                log.warning("watched folder is gone; waiting for it to come back", metadata: ["folder": "\(root)"])
                continue
            }
            if changed {
                log.warning("watched folder is back (deleted and recreated, or replaced); watching it again", metadata: ["folder": "\(root)"])
            }
            guard addWatch(root, quiet: !changed) else { return false }  // same folder: already reported
            if Self.isWatched(root) {
                rootRetry[root] = nil
            } else {
                let delay = min(max((rootRetry[root]?.delay ?? 0) * 2, 1), 60)
                rootRetry[root] = (Self.uptime + delay, delay)
            }
            scan(root, root: root, into: &found)
        }
        return true
    }

    /// Whether libinotifytools holds a watch on `dir` (it may key it with a trailing slash).
    private static func isWatched(_ dir: String) -> Bool {
        inotifytools_wd_from_filename(dir + "/") >= 0 || inotifytools_wd_from_filename(dir) >= 0
    }

    static func identity(_ path: String) -> [UInt64]? {
        guard let st = Sys.status(path, followingLinks: true), (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return [UInt64(st.st_dev), UInt64(st.st_ino)]
    }

    /// Initializes inotify and watches every root; false (logged) when it cannot and the
    /// watcher must poll.
    private func setUpInotify() -> Bool {
        if let forced = faults.inotifyError {
            // Test hook: pretend the kernel refused, to exercise the polling fallback.
            reportInotifyFailure(forced, path: options.roots.first ?? "")
            return false
        }
        guard inotifytools_initialize() != 0 else {
            reportInotifyFailure(inotifytools_error(), path: "")
            return false
        }
        for root in options.roots {
            if !addWatch(root) {
                inotifytools_cleanup()
                return false
            }
        }
        return true
    }

    /// Watches `dir` (and below, when recursive); false after reporting a failure that
    /// means inotify cannot go on (out of watches).
    private func addWatch(_ dir: String, quiet: Bool = false) -> Bool {
        let excluded = options.excludedDirectories + hiddenBelow(dir)
        let ok: Int32
        // Test hook: this folder cannot be watched, as if unreadable (root can read anything).
        let unwatchable = faults.unwatchable == dir
        if unwatchable {
            ok = 0
        } else if options.recursive {
            var cStrings = excluded.map { strdup($0) } + [nil]
            defer { for p in cStrings { free(p) } }
            ok = cStrings.withUnsafeMutableBufferPointer { buf in
                buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { p in
                    inotifytools_watch_recursively_with_exclude(dir, Int32(bitPattern: Self.fileEvents), p)
                }
            }
        } else {
            ok = inotifytools_watch_file(dir, Int32(bitPattern: Self.fileEvents))
        }
        if ok != 0 { return true }
        let e = unwatchable ? EACCES : inotifytools_error()
        if e == ENOENT || e == EACCES {
            if !quiet {
                log.warning("cannot watch folder; files in it are found by the periodic rescan", metadata: [
                    "folder": "\(dir)", "error": "\(PipelineError.errnoText(e))"])
            }
            return true  // gone or unreadable; the rescan sees it if it comes back
        }
        reportInotifyFailure(e, path: dir)
        return false
    }

    /// Subfolders of `dir` that the exclude patterns prune (".git", ".cache"): not watched.
    private func hiddenBelow(_ dir: String) -> [String] {
        guard options.recursive else { return [] }
        var out: [String] = []
        func visit(_ d: String, depth: Int) {
            guard depth < 64, let names = try? FileManager.default.contentsOfDirectory(atPath: d) else { return }
            for name in names {
                let child = d + "/" + name
                guard let st = Sys.status(child), (st.st_mode & S_IFMT) == S_IFDIR else { continue }
                guard !options.excludedDirectories.contains(child) else { continue }
                if let (root, rel) = locate(child), !options.filter.acceptsDirectory(relative: rel), root != child {
                    out.append(child)
                } else {
                    visit(child, depth: depth + 1)
                }
            }
        }
        visit(dir, depth: 0)
        return out
    }

    private func reportInotifyFailure(_ e: Int32, path: String) {
        let pollS = String(format: "%.1f", Double(options.pollIntervalMs) / 1000)
        switch e {
        case ENOSPC:
            let now = Self.readSysctl("max_user_watches").map { " (now \($0))" } ?? ""
            log.error("inotify watch limit reached\(now): raise the sysctl fs.inotify.max_user_watches, e.g. `sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/); polling every \(pollS) s instead",
                      metadata: ["folder": "\(path)"])
        case EMFILE:
            let now = Self.readSysctl("max_user_instances").map { " (now \($0))" } ?? ""
            log.error("inotify instance limit reached\(now): raise the sysctl fs.inotify.max_user_instances, e.g. `sysctl fs.inotify.max_user_instances=1024` (persist it in /etc/sysctl.d/); polling every \(pollS) s instead")
        default:
            log.error("inotify unavailable; polling every \(pollS) s instead", metadata: ["folder": "\(path)", "error": "\(PipelineError.errnoText(e))"])
        }
    }

    static func readSysctl(_ name: String) -> String? {
        (try? String(contentsOfFile: "/proc/sys/fs/inotify/" + name, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: Events

    /// Handles one event; false when inotify must be given up (out of watches).
    private func handle(_ e: UnsafeMutablePointer<inotify_event>, into found: inout [FoundFile]) -> Bool {
        let mask = e.pointee.mask
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            log.warning("inotify queue overflowed; rescanning every folder (raise fs.inotify.max_queued_events if this repeats)")
            DaemonMetrics.shared.overflows.increment()
            DaemonMetrics.shared.rescans["overflow"]?.increment()
            // Lost events may include closes: a pending file is judged by stability now.
            for k in pending.keys { pending[k]!.awaitingClose = false }
            for root in options.roots { scan(root, root: root, into: &found) }
            return true
        }
        if mask & UInt32(IN_IGNORED) != 0 {
            // The kernel dropped a watch (its folder was deleted). For a root, forget its
            // identity so that checkRoots watches it again once it exists: a folder
            // recreated at once often gets the same inode number back, so comparing
            // identities alone misses it.
            if let c = inotifytools_filename_from_wd(e.pointee.wd) {
                var path = String(cString: c)
                if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
                if options.roots.contains(path) { rootIdentity[path] = nil }
            }
            return true
        }
        guard let dirC = inotifytools_filename_from_wd(e.pointee.wd) else { return true }
        var dir = String(cString: dirC)
        if dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        var name = ""
        if e.pointee.len > 0 {
            // The name is a flexible array member right after the fixed 16-byte header.
            let p = (UnsafeRawPointer(e) + MemoryLayout<inotify_event>.size).assumingMemoryBound(to: CChar.self)
            guard let valid = Self.name(p) else {
                let escaped = dir + "/" + Self.escapedName(p)
                if mask & (UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM)) != 0 {
                    skippedLogged.remove(escaped)
                } else if mask & UInt32(IN_ISDIR) == 0, let (_, relative) = locate(escaped), options.filter.accepts(relative: relative) {
                    skip(escaped, reason: "the name is not valid UTF-8; rename the file to take it")
                }
                return true
            }
            name = valid
        }
        guard !name.isEmpty else { return true }  // an event on the watched folder itself
        let path = dir + "/" + name
        log.trace("inotify event", metadata: ["path": "\(path)", "mask": "\(String(mask, radix: 16))"])
        guard let (root, relative) = locate(path) else { return true }

        if mask & UInt32(IN_ISDIR) != 0 {
            if mask & UInt32(IN_MOVED_FROM) != 0 {
                movedDirectories[e.pointee.cookie] = path
                return true
            }
            guard mask & (UInt32(IN_CREATE) | UInt32(IN_MOVED_TO)) != 0, options.recursive else { return true }
            guard !options.excludedDirectories.contains(path), options.filter.acceptsDirectory(relative: relative) else { return true }
            if mask & UInt32(IN_MOVED_TO) != 0, let old = movedDirectories.removeValue(forKey: e.pointee.cookie) {
                // Renamed inside the tree: its watches stay valid, their names change.
                inotifytools_replace_filename(old + "/", path + "/")
            } else if !addWatch(path) {
                return false
            }
            scan(path, root: root, into: &found)
            return true
        }

        guard options.filter.accepts(relative: relative) else { return true }
        if mask & UInt32(IN_CREATE) != 0 {
            pending[path] = Pending(root: root, relative: relative, awaitingClose: false, size: -1, mtimeNs: -1, since: Self.uptime)
        } else if mask & UInt32(IN_OPEN) != 0 {
            pending[path]?.awaitingClose = true
        } else if mask & UInt32(IN_MODIFY) != 0 {
            pending[path]?.since = Self.uptime
        } else if mask & UInt32(IN_CLOSE_WRITE) != 0 {
            pending[path] = nil
            found.append(FoundFile(path: path, root: root, relative: relative, origin: .closedAfterWrite))
        } else if mask & UInt32(IN_MOVED_TO) != 0 {
            pending[path] = nil
            if let kind = Self.kind(path), kind != S_IFREG {
                skip(path, reason: Self.describe(kind: kind))  // a link, FIFO or socket moved in
            } else {
                found.append(FoundFile(path: path, root: root, relative: relative, origin: .movedIn))
            }
        } else if mask & (UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM)) != 0 {
            pending[path] = nil
            skippedLogged.remove(path)
        }
        return true
    }

    /// The root holding `path` and the path relative to it; nil outside every root or
    /// inside an excluded folder.
    private func locate(_ path: String) -> (String, String)? {
        for d in options.excludedDirectories where path == d || path.hasPrefix(d + "/") { return nil }
        for root in options.roots where path.hasPrefix(root + "/") {
            return (root, String(path.dropFirst(root.count + 1)))
        }
        return nil
    }

    /// Hands a file back to wait for completeness again (any thread): it was taken, but
    /// its data ended early while it was young or changing, so its writer may not be done.
    /// It is delivered again at its next close, or once it has held still for `stableMs`
    /// and no one holds it open for writing.
    public func retake(_ file: FoundFile) {
        lock.withLock { retakes.append(file) }
    }

    /// Created-otherwise files whose size and mtime have held still for `stableMs` (and
    /// that no writer holds open, where that can be told).
    private func checkPending(into found: inout [FoundFile]) {
        for f in lock.withLock({ () -> [FoundFile] in
            defer { retakes = [] }
            return retakes
        }) where pending[f.path] == nil {
            pending[f.path] = Pending(root: f.root, relative: f.relative, awaitingClose: false, size: -1, mtimeNs: -1, since: Self.uptime)
        }
        let now = Self.uptime
        let stable = Double(options.stableMs) / 1000
        for (path, p) in pending where !p.awaitingClose {
            guard let st = Sys.status(path) else {
                pending[path] = nil  // gone again
                continue
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                pending[path] = nil
                skip(path, reason: Self.describe(kind: st.st_mode & S_IFMT))
                continue
            }
            let size = Int64(st.st_size), mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
            if size != p.size || mtime != p.mtimeNs {
                pending[path]!.size = size
                pending[path]!.mtimeNs = mtime
                pending[path]!.since = now
            } else if now - p.since >= stable {
                if Sys.isOpenForWriting(path) == true {
                    // Still and open: a writer that paused, whose open came before our
                    // watch (a scan after a restart found it). Its close decides.
                    log.debug("still open for writing; waiting for its close", metadata: ["input": "\(path)"])
                    pending[path]!.since = now
                    continue
                }
                pending[path] = nil
                found.append(FoundFile(path: path, root: p.root, relative: p.relative, origin: .stable))
            }
        }
    }

    // MARK: Skipped entries

    /// Logs, once per path until it goes away, an entry the watcher will not take although
    /// its name matches: anything but a regular file (a FIFO or socket never yields an
    /// image; a symbolic link is not followed, since a link dropped into a shared folder
    /// could hand the service any file it can read, /dev/zero, or a loop, and the startup
    /// scan never took links either) and names that are not valid UTF-8 (paths, the
    /// journal and output names are text; the log shows the name with its bytes escaped,
    /// so that the file can be found and renamed).
    private func skip(_ path: String, reason: String) {
        guard !skippedLogged.contains(path) else { return }
        if skippedLogged.count >= 10_000 { skippedLogged.removeAll() }  // bounded whatever arrives
        skippedLogged.insert(path)
        log.warning("skipped input", metadata: ["input": "\(path)", "reason": "\(reason)"])
    }

    static func describe(kind: mode_t) -> String {
        switch kind {
        case S_IFLNK: return "a symbolic link (links are not followed in watched folders)"
        case S_IFIFO: return "a FIFO, not a regular file"
        case S_IFSOCK: return "a socket, not a regular file"
        case S_IFCHR: return "a character device, not a regular file"
        case S_IFBLK: return "a block device, not a regular file"
        case S_IFDIR: return "a directory"
        default: return "not a regular file (type \(String(kind, radix: 8)))"
        }
    }

    /// A file name as text: nil when its bytes are not valid UTF-8.
    static func name(_ p: UnsafePointer<CChar>) -> String? {
        String(validatingCString: p)
    }

    /// The name with every byte outside printable ASCII written as \xNN.
    static func escapedName(_ p: UnsafePointer<CChar>) -> String {
        var out = ""
        var q = p
        while q.pointee != 0 {
            let b = UInt8(bitPattern: q.pointee)
            if b >= 0x20 && b < 0x7F && b != 0x5C { out.unicodeScalars.append(Unicode.Scalar(b)) } else { out += "\\x" + String(format: "%02x", b) }
            q += 1
        }
        return out
    }

    /// The kind of what `path` names itself (links not followed); nil when it is gone.
    static func kind(_ path: String) -> mode_t? {
        Sys.status(path).map { $0.st_mode & S_IFMT }
    }

    // MARK: Scanning

    /// Lists `dir` (below, when recursive). Files whose mtime is older than `stableMs` are
    /// complete; younger ones may still be written and wait in `pending`.
    private func scan(_ dir: String, root: String, into found: inout [FoundFile]) {
        let nowWall = Date().timeIntervalSince1970
        let stable = Double(options.stableMs) / 1000
        func visit(_ d: String, depth: Int) {
            guard depth < 64, !stopping else { return }
            guard let handle = opendir(d) else {
                if d == root { log.warning("cannot list folder", metadata: ["folder": "\(d)", "error": "\(PipelineError.errnoText())"]) }
                return
            }
            var names: [String] = []
            var undecodable: [String] = []
            while let ent = readdir(handle) {
                let (name, escaped) = withUnsafePointer(to: &ent.pointee.d_name) { p in
                    p.withMemoryRebound(to: CChar.self, capacity: 256) { c in
                        Self.name(c).map { ($0, "") } ?? (nil, Self.escapedName(c))
                    }
                }
                if let name {
                    if name != "." && name != ".." { names.append(name) }
                } else {
                    undecodable.append(escaped)
                }
            }
            closedir(handle)
            for escaped in undecodable {
                let path = d + "/" + escaped
                if let (_, relative) = locate(path), options.filter.accepts(relative: relative) {
                    skip(path, reason: "the name is not valid UTF-8; rename the file to take it")
                }
            }
            for name in names.sorted() {
                let path = d + "/" + name
                guard let (_, relative) = locate(path) else { continue }
                guard let st = Sys.status(path) else { continue }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFDIR {
                    if options.recursive && options.filter.acceptsDirectory(relative: relative) { visit(path, depth: depth + 1) }
                    continue
                }
                guard options.filter.accepts(relative: relative), pending[path] == nil else { continue }
                guard kind == S_IFREG else {
                    skip(path, reason: Self.describe(kind: kind))
                    continue
                }
                let mtime = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
                if nowWall - mtime >= stable {
                    found.append(FoundFile(path: path, root: root, relative: relative, origin: .scanned))
                } else {
                    pending[path] = Pending(root: root, relative: relative, awaitingClose: false,
                                            size: Int64(st.st_size), mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                                            since: Self.uptime)
                }
            }
        }
        visit(dir, depth: 0)
    }
}
