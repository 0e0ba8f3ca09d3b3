// `segd watch`: the service. Threads and queues, and who talks to whom:
//
//   watcher thread ──found files──▶ intake queue ──admit──▶ journal ──claim──▶ feeder thread
//   ──submit──▶ StagedPipeline (decode … write) ──onStarted/onFinished──▶ journal, done/ / failed/
//   heartbeat timer: renews this worker's leases, takes over lost claims (JobJournal.swift)
//
//   lifecycle queue: start, SIGHUP reload, SIGTERM shutdown (one at a time, in order)
//   control queue:   signal sources, STATUS= and WATCHDOG=1 timers
//
// A `Runtime` is everything built from one configuration; start and reload go through the
// same `startRuntime`, so a reload is "stop taking files, finish what is in flight, build
// again from the new file". The journal outlives runtimes (unless state_directory changes).
import Dispatch
import Foundation
import Logging
import Results
import Tensor

public final class Daemon: @unchecked Sendable {
    public let configPath: String
    private let log: Logger
    private let notifier: SystemdNotifier?
    private let lifecycle = DispatchQueue(label: "segd.lifecycle")
    private let control = DispatchQueue(label: "segd.control")
    private let lock = NSLock()
    private var config: PipelineConfig
    private var journal: (any JobJournal)?
    private let faults: FaultHook
    /// SEGD_DATABASE_PASSWORD as the CLI read it (Pipeline reads no environment).
    private let databasePassword: String?
    private var runtime: Runtime?
    private var signalSources: [DispatchSourceSignal] = []
    private var timers: [DispatchSourceTimer] = []
    private let exitSignal = DispatchSemaphore(value: 0)
    private var exitCode: Int32 = 0
    private var stopping = false
    /// SIGTERM arrived (set on the control queue: the lifecycle queue may be busy waiting
    /// for the database at start-up).
    private var termRequested = false
    private var busySince: Double?
    private var sentReady = false
    let stats = DaemonStats()

    /// - Parameter faults: the tests' injected faults (`.none` in production).
    /// - Parameter databasePassword: for `state_database`, when no password_file is set.
    public init(configPath: String, config: PipelineConfig, log: Logger, faults: FaultHook = .none, databasePassword: String? = nil) {
        self.configPath = configPath
        self.config = config
        self.log = log
        self.faults = faults
        self.databasePassword = databasePassword
        notifier = SystemdNotifier()
    }

    /// Runs until SIGTERM/SIGINT; returns the exit code (0 after a clean stop, 1 when the
    /// service could not start).
    public func run() -> Int32 {
        DaemonLogHandler.setLevel(config.logLevel.loggerLevel)
        installSignalHandlers()
        var started = false
        lifecycle.sync {
            do {
                try start()
                started = true
            } catch {
                log.critical("cannot start", metadata: ["error": "\(error)"])
            }
        }
        guard started else { return 1 }
        if lock.withLock({ termRequested && runtime == nil }) { return 0 }
        startTimers()
        exitSignal.wait()
        return exitCode
    }

    // MARK: Start, reload, stop

    private func start() throws {
        let c = config
        log.info("starting", metadata: ["config": "\(configPath)", "pid": "\(getpid())", "folders": "\(c.inputs.directories.joined(separator: ","))"])
        guard let j = try openJournalWaiting(c) else { return }  // SIGTERM while the database was away
        try recover(j, config: c)
        let segmenter = try loadModel(c)
        // Alone on the output folder, every temporary file in it is dead; a node of a cluster
        // removes only those of the jobs it takes over (JobLife.recoverLost).
        if !j.isShared { removeTemporaries(under: c.outputs.directory) }
        lock.withLock { journal = j }
        try startRuntime(c, segmenter: segmenter, journal: j)
    }

    private func loadModel(_ c: PipelineConfig) throws -> Segmenter {
        var settings = c.inferenceSettings
        settings.precisionDecisions = (c.stateDirectory as NSString).appendingPathComponent("precision.json")
        let (s, ms) = try timed { try Segmenter(weights: c.model.weights, settings: settings) }
        log.info("model loaded", metadata: ["weights": "\(c.model.weights)", "name": "\(s.modelInfo.name)",
                                            "classes": "\(s.modelInfo.classes.count)", "ms": "\(Int(ms))",
                                            "precision": "\(s.model.precision)"])
        return s
    }

    /// The configured journal: SQLite in state_directory, or the state_database server.
    static func openJournal(_ c: PipelineConfig, password: String?, log: Logger) throws -> any JobJournal {
        guard let db = c.stateDatabase else { return try Journal(directory: c.stateDirectory) }
        return try PostgresJournal(db, password: try db.password(environment: password), log: log)
    }

    /// At start-up the database may be away too (restarting with the machine): wait for it
    /// with back-off rather than exit. Nil when SIGTERM came first.
    private func openJournalWaiting(_ c: PipelineConfig) throws -> (any JobJournal)? {
        var delay = 0.5
        while true {
            do { return try Self.openJournal(c, password: databasePassword, log: log) } catch PipelineError.databaseUnavailable(let at, let reason) {
                log.error("journal database unavailable; retrying", metadata: ["database": "\(at)", "reason": "\(reason)", "retry_in_s": "\(delay)"])
            }
            let until = Date().addingTimeInterval(delay)
            while Date() < until {
                if lock.withLock({ termRequested }) { return nil }
                usleep(100_000)
            }
            delay = min(delay * 2, 10)
        }
    }

    /// Jobs whose holder died (this node's last run; on a cluster, any node past its lease):
    /// retried alone, or failed after max_crashes.
    private func recover(_ j: any JobJournal, config c: PipelineConfig) throws {
        let life = JobLife(journal: j, after: c.after, prefixRoots: c.inputs.directories.count > 1, outputDirectory: c.outputs.directory, log: log)
        for e in try life.recoverLost(maxCrashes: c.service.maxCrashes, lease: Double(c.service.leaseS)) {
            log.warning("retrying an input that was in flight when segd stopped abnormally",
                        metadata: ["input": "\(e.path)", "job": "\(e.id)", "attempts": "\(e.attempts)"])
        }
    }

    /// Temporary files (".name.XXXXXX", AtomicFile's) that a killed write left behind.
    private func removeTemporaries(under dir: String) {
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return }
        var removed = 0
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            guard name.hasPrefix("."), name.count > 8 else { continue }
            let suffix = name.suffix(7)
            guard suffix.first == ".", suffix.dropFirst().allSatisfy({ $0.isLetter || $0.isNumber }) else { continue }
            if (try? Sys.unlink(dir + "/" + rel)) != nil { removed += 1 }
        }
        if removed > 0 { log.notice("removed temporary files left by an interrupted write", metadata: ["count": "\(removed)", "folder": "\(dir)"]) }
    }

    private func startRuntime(_ c: PipelineConfig, segmenter: Segmenter, journal j: any JobJournal) throws {
        for dir in c.inputs.directories + [c.outputs.directory] {
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw PipelineError.io(path: dir, reason: "cannot create folder: \((error as NSError).localizedDescription)")
            }
        }
        let rt = try Runtime(config: c, segmenter: segmenter, journal: j, log: log, stats: stats, faults: faults)
        lock.withLock { runtime = rt }
        rt.start { [weak self] in
            guard let self else { return }
            // The initial scan's files are in the journal and queued: now we are ready.
            self.log.info("ready", metadata: ["queued": "\((try? j.queuedCount()) ?? -1)", "watching": "\(rt.watcher?.mode.rawValue ?? "-")",
                                              "journal": "\(j.location)", "worker": "\(rt.life.worker)"])
            self.notifier?.send("READY=1\nSTATUS=" + self.statusLine())
            self.lock.withLock { self.sentReady = true }
        }
    }

    /// SIGHUP: a valid new file replaces the running configuration; an invalid one is
    /// reported and the running configuration stays.
    private func reload() {
        guard !lock.withLock({ stopping }) else { return }
        log.info("SIGHUP: re-reading configuration", metadata: ["config": "\(configPath)"])
        let new: PipelineConfig
        do { new = try PipelineConfig.load(path: configPath) } catch {
            log.error("new configuration is invalid; keeping the running one", metadata: ["error": "\(error)"])
            notifier?.send("STATUS=configuration reload failed: \(error); " + statusLine())
            return
        }
        let (old, oldRuntime, oldJournal) = lock.withLock { (config, runtime, journal) }
        guard new != old else {
            log.info("configuration unchanged")
            return
        }
        guard let oldRuntime, let oldJournal else { return }
        notifier?.send("RELOADING=1")
        lock.withLock { busySince = Self.uptime }
        defer { lock.withLock { busySince = nil } }
        if new.workers != old.workers { log.warning("workers takes effect at the next start", metadata: ["workers": "\(new.workers)"]) }
        if new.httpAddresses != old.httpAddresses {
            log.warning("service.http_listen takes effect at the next start", metadata: ["http_listen": "\(new.httpAddresses.map(\.description))"])
        }
        var segmenter = oldRuntime.segmenter
        if new.model != old.model {
            do { segmenter = try loadModel(new) } catch {
                log.error("cannot load the new model; keeping the running configuration", metadata: ["error": "\(error)"])
                notifier?.send("READY=1\nSTATUS=model reload failed; " + statusLine())
                return
            }
        }
        var j = oldJournal
        if new.stateDirectory != old.stateDirectory || new.stateDatabase != old.stateDatabase {
            do {
                j = try Self.openJournal(new, password: databasePassword, log: log)
                try recover(j, config: new)
            } catch {
                log.error("cannot open the new journal; keeping the running configuration", metadata: ["error": "\(error)"])
                notifier?.send("READY=1")
                return
            }
        }
        // Finish what is in flight under the old configuration, then build the new one.
        oldRuntime.stopIntake()
        _ = oldRuntime.drain(until: .distantFuture)
        oldRuntime.stopHeartbeat()
        DaemonLogHandler.setLevel(new.logLevel.loggerLevel)
        lock.withLock {
            config = new
            journal = j
        }
        do {
            try startRuntime(new, segmenter: segmenter, journal: j)
            log.info("configuration reloaded")
        } catch {
            log.error("cannot start with the new configuration; going back to the previous one", metadata: ["error": "\(error)"])
            DaemonLogHandler.setLevel(old.logLevel.loggerLevel)
            lock.withLock {
                config = old
                journal = oldJournal
            }
            do { try startRuntime(old, segmenter: oldRuntime.segmenter, journal: oldJournal) } catch {
                log.critical("cannot restart the previous configuration either", metadata: ["error": "\(error)"])
                finish(code: 1)
            }
        }
    }

    /// SIGTERM/SIGINT: stop taking files, let what is in flight finish within
    /// drain_timeout_s, exit 0. Jobs still running then are returned to the queue (not
    /// counted as crashes) and run at the next start.
    private func shutdown(_ signalName: String) {
        let already = lock.withLock { () -> Bool in
            defer { stopping = true }
            return stopping
        }
        guard !already else { return }
        let (c, rt) = lock.withLock { (config, runtime) }
        log.info("\(signalName): stopping; finishing images in flight", metadata: ["bound_s": "\(c.service.drainTimeoutS)"])
        notifier?.send("STOPPING=1\nSTATUS=stopping: finishing images in flight")
        guard let rt else { return finish(code: 0) }
        let deadline = Date().addingTimeInterval(Double(c.service.drainTimeoutS))
        if rt.stopIntake(until: deadline), rt.drain(until: deadline) {
            rt.stopHeartbeat()
            try? rt.life.journal.leave(worker: rt.life.worker)
            log.info("stopped; everything in flight finished", metadata: ["done": "\(stats.done)", "failed": "\(stats.failed)"])
            finish(code: 0)
        } else {
            let unfinished = rt.closeStartsAndListUnfinished()
            do { try rt.life.requeue(unfinished) } catch {
                log.error("cannot return unfinished jobs to the queue", metadata: ["error": "\(error)"])
            }
            log.warning("stop bound reached; unfinished images go back to the queue for the next start",
                        metadata: ["unfinished": "\(unfinished.count)", "bound_s": "\(c.service.drainTimeoutS)"])
            // Stages are still busy on other threads: leave without running exit handlers
            // under them. The journal's commits are already durable.
            fflush(nil)
            _exit(0)
        }
    }

    private func finish(code: Int32) {
        exitCode = code
        exitSignal.signal()
    }

    // MARK: Signals, status, watchdog

    private func installSignalHandlers() {
        for (sig, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGHUP, "SIGHUP")] {
            signal(sig, SIG_IGN)  // delivered to the dispatch source instead
            let s = DispatchSource.makeSignalSource(signal: sig, queue: control)
            s.setEventHandler { [weak self] in
                guard let self else { return }
                if sig != SIGHUP { self.lock.withLock { self.termRequested = true } }
                if sig == SIGHUP {
                    self.lifecycle.async { self.reload() }
                } else {
                    // On its own thread: the lifecycle queue may be busy reloading.
                    self.lifecycle.async { self.shutdown(name) }
                }
            }
            s.resume()
            signalSources.append(s)
        }
    }

    private func startTimers() {
        let interval = lock.withLock { config.service.statusIntervalS }
        let status = DispatchSource.makeTimerSource(queue: control)
        status.schedule(deadline: .now() + .seconds(interval), repeating: .seconds(interval))
        status.setEventHandler { [weak self] in
            guard let self, self.lock.withLock({ self.sentReady }) else { return }
            self.notifier?.send("STATUS=" + self.statusLine())
        }
        status.resume()
        timers.append(status)
        if let notifier, let every = notifier.watchdogInterval {
            log.info("watchdog enabled", metadata: ["ping_every_ms": "\(Int(every * 1000))"])
            let dog = DispatchSource.makeTimerSource(queue: control)
            dog.schedule(deadline: .now(), repeating: .milliseconds(max(1, Int(every * 1000))))
            var unhealthy = false  // the control queue is serial: only its handlers touch this
            dog.setEventHandler { [weak self] in
                guard let self else { return }
                if let problem = self.healthProblem() {
                    // Logged once when it starts, not at every tick.
                    if !unhealthy { self.log.error("not feeding the watchdog", metadata: ["reason": "\(problem)"]) }
                    unhealthy = true
                } else {
                    if unhealthy { self.log.notice("progress again; feeding the watchdog") }
                    unhealthy = false
                    notifier.send("WATCHDOG=1")
                }
            }
            dog.resume()
            timers.append(dog)
        }
    }

    static var uptime: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Why the service is not making progress, or nil when it is: the watcher's loop went
    /// round recently, and if images are in flight one finished within stall_timeout_s.
    func healthProblem() -> String? {
        let (rt, c, busy, isStopping) = lock.withLock { (runtime, config, busySince, stopping) }
        let stall = Double(c.service.stallTimeoutS)
        if let busy {
            // Reloading: loading a model and draining take a while, but not forever.
            return Self.uptime - busy > stall ? "reload has taken more than \(Int(stall)) s" : nil
        }
        guard let rt else { return isStopping ? nil : "not started" }
        if !isStopping {
            let age = Date().timeIntervalSince(rt.watcher?.heartbeat ?? Date())
            // The loop wakes at least once a second; 30 s covers a rescan of a large tree.
            if age > 30 { return "the watcher thread has not run for \(Int(age)) s" }
        }
        let (outstanding, lastProgress) = rt.progress()
        if outstanding > 0, Self.uptime - lastProgress > stall {
            return "\(outstanding) images in flight and none finished for \(Int(Self.uptime - lastProgress)) s"
        }
        return nil
    }

    /// One consistent look at the running state, for the status endpoint (DaemonStatus.swift).
    func parts() -> (config: PipelineConfig, runtime: Runtime?, journal: (any JobJournal)?, ready: Bool) {
        lock.withLock { (config, runtime, journal, sentReady) }
    }

    /// "queued 12, in flight 4, done 120, failed 2, 3.40 images/s" (this process's counts).
    func statusLine() -> String {
        let (rt, j) = lock.withLock { (runtime, journal) }
        let waiting = (try? j?.queuedCount()) ?? 0
        let outstanding = rt?.progress().outstanding ?? 0
        return String(format: "queued %d, in flight %d, done %d, failed %d, %.2f images/s",
                      waiting, outstanding, stats.done, stats.failed, stats.throughput())
    }
}

/// Counters of this process, for STATUS= and the logs.
final class DaemonStats: @unchecked Sendable {
    private let lock = NSLock()
    private var _done = 0
    private var _failed = 0
    /// Finish times (uptime, s) of the last 256 images.
    private var recent: [Double] = []

    var done: Int { lock.withLock { _done } }
    var failed: Int { lock.withLock { _failed } }

    func record(ok: Bool) {
        lock.withLock {
            if ok { _done += 1 } else { _failed += 1 }
            recent.append(Daemon.uptime)
            if recent.count > 256 { recent.removeFirst(recent.count - 256) }
        }
    }

    /// Images per second over the last minute (or since the first of the recent finishes).
    func throughput() -> Double {
        lock.withLock {
            let now = Daemon.uptime
            let window = recent.filter { now - $0 <= 60 }
            guard let first = window.first, window.count > 1 else { return 0 }
            return Double(window.count - 1) / max(now - first, 1e-3)
        }
    }
}

/// Everything built from one configuration: model pipeline, intake, watcher, feeder,
/// heartbeat.
final class Runtime: @unchecked Sendable {
    let config: PipelineConfig
    let segmenter: Segmenter
    /// Every change of a job's state and every move of an input goes through it.
    let life: JobLife
    let intake: Intake
    private(set) var pipeline: StagedPipeline!
    let watchOptions: WatchOptions
    private(set) var watcher: Watcher?
    private let log: Logger
    private let stats: DaemonStats
    private let faults: FaultHook
    private let feederDone = DispatchSemaphore(value: 0)
    /// Set by stopIntake: the feeder claims nothing more.
    private let stopLock = NSLock()
    private var feedStopped = false
    private var heartbeat: DispatchSourceTimer?
    /// Seconds a claim is held without a heartbeat (service.lease_s).
    private var lease: Double { Double(config.service.leaseS) }
    /// The backstop of the journal's wake-ups: a claim is tried at least this often.
    private static let pollInterval = 1.0

    /// Jobs handed to the pipeline and not finished, by submission number (the pipeline
    /// Job's id): one row can be in the pipeline twice, when this node lost its claim while
    /// frozen and then claimed the requeued row again; each instance keeps its own claim.
    private let flight = NSCondition()
    private var submitted: [Int: ReadyItem] = [:]
    private var started = Set<Int>()
    private var submissions = 0
    /// Held from a job's journal mark to its entry in `started`, so that the list taken at a
    /// stop bound holds every row marked processing (a CI run once left one row processing
    /// with its attempt counted: a job started between the list and the requeue).
    private let startGate = NSLock()
    private var startsClosed = false
    private var lastProgress = Daemon.uptime
    /// Seconds before an input whose outputs could not be written is offered again (0 after a
    /// success; doubles up to 60 s while writes keep failing).
    private var outputRetryDelay: Double = 0

    init(config c: PipelineConfig, segmenter: Segmenter, journal: any JobJournal, log: Logger, stats: DaemonStats,
         faults: FaultHook) throws {
        config = c
        self.segmenter = segmenter
        self.log = log
        self.stats = stats
        self.faults = faults
        let filter = NameFilter(include: c.inputs.include, exclude: c.inputs.exclude)
        life = JobLife(journal: journal, after: c.after, prefixRoots: c.inputs.directories.count > 1,
                       outputDirectory: c.outputs.directory, faults: faults, log: log)
        intake = Intake(life: life, modelHash: segmenter.modelInfo.sha256, filter: filter, log: log)
        var w = WatchOptions(roots: c.inputs.directories, filter: filter)
        w.recursive = c.inputs.recursive
        w.excludedDirectories = [c.outputs.directory, c.after.doneDirectory, c.after.failedDirectory, c.stateDirectory]
        w.stableMs = c.inputs.stableMs
        w.rescanInterval = Double(c.inputs.rescanIntervalS)
        w.pollIntervalMs = c.inputs.pollIntervalMs
        watchOptions = w
        pipeline = try StagedPipeline(segmenter: segmenter, options: c.pipelineOptions,
                                      onStarted: { [unowned self] job in jobStarted(job) },
                                      onFinished: { [unowned self] job in jobFinished(job) })
    }

    /// Starts the heartbeat, the feeder and the watcher; `ready` runs once the initial scan's
    /// files are journaled.
    func start(ready: @escaping @Sendable () -> Void) {
        startHeartbeat()
        let feeder = Thread { [self] in
            feed()
            feederDone.signal()
        }
        feeder.name = "segd.feeder"
        feeder.start()
        let intake = intake
        let hold = faults.holdReadyUntil
        let w = Watcher(options: watchOptions, log: log, faults: faults, deliver: { files in intake.submit(files) }, initialScanDone: {
            guard let hold else {
                // Behind the scan's files on the intake queue: runs once they are journaled.
                intake.checkLeftovers(then: ready)
                return
            }
            // SEGD_TEST_HOLD_READY_UNTIL: the scan is over only once the test says so (its own
            // thread: the watcher goes on watching meanwhile).
            Thread.detachNewThread {
                while !FileManager.default.fileExists(atPath: hold) { usleep(50_000) }
                intake.checkLeftovers(then: ready)
            }
        })
        watcher = w
        w.start()
    }

    private var isFeedStopped: Bool { stopLock.withLock { feedStopped } }

    /// Claims jobs from the journal and hands them to the pipeline (blocking while it is
    /// full), so at most a claim's worth waits here beyond what the pipeline holds. A
    /// journal that cannot be reached pauses the claims, with back-off, until it answers.
    private func feed() {
        var delay = 0.5
        var paused = false
        while !isFeedStopped {
            let claimed: [JournalEntry]
            do {
                claimed = try life.claim(max: config.batching.maxBatch, lease: lease)
                if paused { log.notice("journal reachable again; claiming jobs") }
                paused = false
                delay = 0.5
            } catch {
                if !paused { log.error("cannot claim jobs; pausing until the journal answers", metadata: ["error": "\(error)"]) }
                paused = true
                life.journal.waitForWork(timeout: delay)
                delay = min(delay * 2, 10)
                continue
            }
            if claimed.isEmpty {
                life.journal.waitForWork(timeout: Self.pollInterval)
                continue
            }
            for (i, e) in claimed.enumerated() {
                if isFeedStopped {
                    // Claimed, never started: back to the queue for whoever comes next.
                    let rest = claimed[i...].map { ReadyItem($0).input }
                    persist("return unstarted jobs to the queue") { try life.requeue(rest) }
                    break
                }
                submit(ReadyItem(e))
            }
        }
    }

    private func submit(_ item: ReadyItem) {
        let stem: String
        do {
            stem = try OutputLayout.stem(forRelativePath: life.disposer.placement(root: item.root, relative: item.relative))
        } catch {
            persist("record the failure of \(item.path)") { _ = try life.fail(item.input, .badInput("\(error)", incomplete: false)) }
            stats.record(ok: false)
            return
        }
        if item.suspect {
            // In flight when its holder died: run it alone, so that if it crashes again
            // only it is charged for the crash.
            waitUntilIdle()
            log.info("processing alone (was in flight at a crash)", metadata: ["input": "\(item.path)", "job": "\(item.id)"])
        }
        let token = flight.withLock { () -> Int in
            submissions += 1
            submitted[submissions] = item
            return submissions
        }
        pipeline.submit(Job(id: token, inputPath: item.path, outputStem: stem))
        if item.suspect {
            pipeline.flushPartialBatch()
            waitUntilIdle()
        }
    }

    /// Runs a journal write that must not be lost: while the journal's server is away it is
    /// retried with back-off (the calling stage waits: the pipeline pauses); other errors are
    /// logged, as they cannot succeed by waiting.
    private func persist(_ what: String, _ body: () throws -> Void) {
        var delay = 0.5
        var warned = false
        while true {
            do {
                try body()
                if warned { log.notice("journal reachable again", metadata: ["did": "\(what)"]) }
                return
            } catch PipelineError.databaseUnavailable(let at, let reason) {
                if !warned { log.error("journal database unavailable; retrying", metadata: ["to": "\(what)", "database": "\(at)", "reason": "\(reason)"]) }
                warned = true
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 10)
            } catch {
                log.error("cannot \(what)", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    // MARK: Heartbeat

    /// Every lease/3: renew this worker's leases, then take over the claims of workers that
    /// stopped renewing theirs (their inputs retried elsewhere, or failed after max_crashes).
    /// Renewing first means a node back from a database outage keeps its own claims.
    private func startHeartbeat() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "segd.heartbeat"))
        let every = max(0.2, lease / 3)
        t.schedule(deadline: .now(), repeating: every)
        var failing = false  // the timer's queue is serial: only its handler touches this
        t.setEventHandler { [weak self] in
            guard let self else { return }
            let report = NodeReport(inFlight: flight.withLock { submitted.count }, done: stats.done, failed: stats.failed,
                                    throughput: stats.throughput())
            do {
                try life.journal.heartbeat(worker: life.worker, lease: lease, report: report)
                for e in try life.recoverLost(maxCrashes: config.service.maxCrashes, lease: lease) {
                    log.warning("retrying an input that was in flight when its node stopped (crash, kill or lost lease)",
                                metadata: ["input": "\(e.path)", "job": "\(e.id)", "attempts": "\(e.attempts)"])
                }
                if failing { log.notice("heartbeat reaches the journal again") }
                failing = false
            } catch {
                if !failing { log.error("heartbeat cannot reach the journal; leases not renewed", metadata: ["error": "\(error)"]) }
                failing = true
            }
        }
        t.resume()
        heartbeat = t
    }

    /// A drained runtime holds no claims: its heartbeat ends (a reload's new runtime has its own).
    func stopHeartbeat() {
        heartbeat?.cancel()
        heartbeat = nil
    }

    private func waitUntilIdle() {
        flight.withLock { while !submitted.isEmpty { flight.wait() } }
    }

    /// Decode queue, before the file is read.
    private func jobStarted(_ job: Job) {
        guard let item = flight.withLock({ submitted[job.id] }) else { return }
        let id = item.id
        startGate.lock()
        if startsClosed {
            // The stop bound passed and the process is about to _exit: park this stage
            // thread rather than start an input the journal would then call interrupted.
            startGate.unlock()
            while true { sleep(3600) }
        }
        do {
            if try !life.start(item.input) {
                log.warning("this node lost its claim on the job (lease expired); its result will be discarded",
                            metadata: ["input": "\(job.inputPath)", "job": "\(id)"])
            }
        } catch {
            log.error("cannot mark job started", metadata: ["input": "\(job.inputPath)", "error": "\(error)"])
        }
        flight.withLock {
            started.insert(job.id)
            lastProgress = Daemon.uptime
        }
        startGate.unlock()
        let name = (job.inputPath as NSString).lastPathComponent
        if name == faults.crashOnDecode {
            log.critical("test hook SEGD_TEST_CRASH_ON: aborting while decoding", metadata: ["input": "\(job.inputPath)"])
            abort()
        }
        if let ms = faults.decodeDelayMs { usleep(useconds_t(ms) * 1000) }
        if name == faults.hangOnDecode {
            log.critical("test hook SEGD_TEST_HANG_ON: decoding never returns", metadata: ["input": "\(job.inputPath)"])
            while true { sleep(3600) }
        }
    }

    /// Write queue, after the outputs are written (or the job failed).
    private func jobFinished(_ job: Job) {
        guard let item = flight.withLock({ submitted[job.id] }) else { return }
        let id = item.id
        defer {
            let idle = flight.withLock {
                submitted[job.id] = nil
                started.remove(job.id)
                lastProgress = Daemon.uptime
                flight.broadcast()
                return submitted.isEmpty
            }
            // Nothing in flight: the feature maps kept for the next image go back.
            if idle { Device.cpu.releaseCachedMemory() }
        }
        var recorded = true
        switch job.failure {
        case .badInput(_, incomplete: true)? where watcher != nil && mayStillBeWritten(item):
            // Ends early, but young or changed since it was taken: its writer may not be
            // done (closed and reopens to append). Back to waiting, attempt not counted, held
            // until the watcher sees it complete again (Intake lifts the hold).
            persist("return \(item.path) to the queue") { try life.requeue([item.input], holdFor: .infinity) }
            log.info("input ends early but may still be being written; waiting until it is complete", metadata: [
                "input": "\(item.path)", "job": "\(id)", "reason": "\(job.failure!)"])
            watcher?.retake(FoundFile(path: item.path, root: item.root, relative: item.relative, origin: .stable))
            return
        case let .outputUnwritable(reason)?:
            // Not the input's fault: back to the queue (the attempt not counted), claimable
            // again after a delay that doubles while writes keep failing.
            let delay = flight.withLock { () -> Double in
                outputRetryDelay = min(max(outputRetryDelay * 2, 1), 60)
                return outputRetryDelay
            }
            persist("return \(item.path) to the queue") { try life.requeue([item.input], holdFor: delay) }
            log.warning("cannot write outputs; input kept queued, retrying", metadata: [
                "input": "\(item.path)", "job": "\(id)", "reason": "\(reason)", "retry_in_s": "\(Int(delay))"])
            return
        case let failure?:
            persist("record the failure of \(item.path)") {
                recorded = try life.fail(item.input, failure, timings: job.timingsByName, batchSize: job.batchSize)
            }
            if recorded { log.warning("failed", metadata: ["input": "\(item.path)", "job": "\(id)", "reason": "\(failure)"]) }
        case nil:
            persist("record the result of \(item.path)") {
                recorded = try life.succeed(item.input, outputs: job.outputs, timings: job.timingsByName, batchSize: job.batchSize)
            }
            flight.withLock { outputRetryDelay = 0 }
            if recorded {
                log.info("done", metadata: ["input": "\(item.path)", "job": "\(id)", "instances": "\(job.result?.instances.count ?? 0)",
                                            "batch": "\(job.batchSize)", "ms": "\(Int(job.timings.values.reduce(0, +)))"])
            }
        }
        if !recorded {
            // The lease lapsed (this node was frozen or cut off) and another node took the job
            // over: its result stands, this one is not recorded and the input not moved.
            log.warning("result discarded: this node lost its claim on the job (lease expired; another node took it over)",
                        metadata: ["input": "\(item.path)", "job": "\(id)"])
            return
        }
        stats.record(ok: job.failure == nil)
    }

    /// Whether an input that ended early may still be being written: it changed since it
    /// was taken, is younger than stable_ms, or a writer holds it open.
    private func mayStillBeWritten(_ item: ReadyItem) -> Bool {
        guard let st = Sys.status(item.path), (st.st_mode & S_IFMT) == S_IFREG else { return false }
        let mtime = Sys.mtimeNs(st)
        let ageMs = (Date().timeIntervalSince1970 - Double(mtime) / 1e9) * 1000
        return Int64(st.st_size) != item.size || mtime != item.mtimeNs || ageMs < Double(config.inputs.stableMs)
            || Sys.isOpenForWriting(item.path) == true
    }

    /// Stops the watcher and intake; the feeder ends after the submit it may be blocked in.
    /// False when that did not happen by `deadline`.
    @discardableResult
    func stopIntake(until deadline: Date = .distantFuture) -> Bool {
        watcher?.stop()
        intake.stop()
        stopLock.withLock { feedStopped = true }
        life.journal.wake()
        let wait = deadline == .distantFuture ? DispatchTime.distantFuture : .now() + max(0, deadline.timeIntervalSinceNow)
        return feederDone.wait(timeout: wait) == .success
    }

    /// Waits for every submitted job to finish; false when `deadline` passed first.
    func drain(until deadline: Date) -> Bool {
        let done = DispatchSemaphore(value: 0)
        let pipeline = pipeline!
        Thread.detachNewThread {
            pipeline.drain()
            done.signal()
        }
        let wait = deadline == .distantFuture ? DispatchTime.distantFuture : .now() + max(0, deadline.timeIntervalSinceNow)
        return done.wait(timeout: wait) == .success
    }

    /// After the stop bound: no job starts from now on; returns those submitted and not
    /// finished (their journal rows say processing under this worker).
    func closeStartsAndListUnfinished() -> [JobInput] {
        startGate.withLock {
            startsClosed = true
            return flight.withLock { submitted.values.map(\.input) }
        }
    }

    func progress() -> (outstanding: Int, lastProgress: Double) { flight.withLock { (submitted.count, lastProgress) } }
}
