// The daemon's HTTP endpoint (service.http_listen): Hummingbird on SwiftNIO's own event-loop
// threads, one listener per address, every answer built from a `DaemonSnapshot` (taken
// under the daemon's lock, no waiting on a stage) and the journal facts of `JournalView`
// (read on its own queue, cached for 2 s). So a slow or busy scraper costs CPU time only,
// never a stage's turn.
//
//   GET /metrics        Prometheus text format (swift-metrics → swift-prometheus)
//   GET /healthz        200 "ok", or 503 and why (Daemon.healthProblem)
//   GET /readyz         200 once the initial scan is queued, else 503
//   GET /               the status page (StatusPage.swift)
//   GET /status         the daemon's view as JSON (`segd status --url`)
//   GET /jobs/ID        a job's record as JSON, its outputs linked
//   GET /jobs/ID/outputs/N, /jobs/ID/thumbnail   a job's output file, a small JPEG of its image
//
// Files are found by job id through the journal, never by a path from the URL, and served
// only when they resolve to a regular file inside outputs.directory or state_directory.
import Foundation
import Hummingbird
import Logging
import Pipeline
import Prometheus

public enum StatusServerError: Error, CustomStringConvertible {
    case cannotListen(ListenAddress, String)

    public var description: String {
        switch self {
        case let .cannotListen(a, reason): return "cannot listen on \(a): \(reason)"
        }
    }
}

public final class StatusServer: Sendable {
    let daemon: Daemon
    let addresses: [ListenAddress]
    let log: Logger
    let registry: PrometheusCollectorRegistry
    let gauges: ScrapeGauges
    let journalView = JournalView()
    let thumbnails = Thumbnails()
    let build = BuildInfo.current

    public init(daemon: Daemon, addresses: [ListenAddress], log: Logger, registry: PrometheusCollectorRegistry = SegdMetricsBackend.registry) {
        self.daemon = daemon
        self.addresses = addresses
        self.log = log
        self.registry = registry
        gauges = ScrapeGauges(registry: registry)
    }

    /// Binds every address and serves in the background; returns once all listen, or throws
    /// the first address that could not be bound.
    public func start(timeout: Double = 30) throws {
        let router = makeRouter()
        for address in addresses {
            try prepare(address)
            let started = StartSignal()
            let bind: BindAddress
            switch address {
            case let .unix(p): bind = .unixDomainSocket(path: p)
            case let .tcp(h, p): bind = .hostname(h, port: p)
            }
            let log = self.log
            let app = Application(router: router, configuration: .init(address: bind, serverName: "segd"),
                                  onServerRunning: { channel in
                                      if case let .unix(p) = address { chmod(p, 0o660) }
                                      let bound = channel.localAddress.map { "\($0)" } ?? "\(address)"
                                      log.info("http: listening", metadata: ["address": "\(address)", "bound": "\(bound)",
                                                                             "port": "\(channel.localAddress?.port ?? 0)"])
                                      started.finish(nil)
                                  },
                                  logger: log)
            Task.detached {
                do { try await app.run() } catch {
                    log.error("http: server stopped", metadata: ["address": "\(address)", "error": "\(error)"])
                    started.finish("\(error)")
                }
            }
            switch started.wait(timeout: timeout) {
            case .none: break
            case let .some(reason): throw StatusServerError.cannotListen(address, reason)
            }
        }
    }

    /// A Unix socket's folder exists; a socket file left by a segd that died is removed
    /// (one that answers belongs to a running process: that is an error).
    private func prepare(_ address: ListenAddress) throws {
        guard case let .unix(path) = address else { return }
        guard path.utf8.count < 108 else { throw StatusServerError.cannotListen(address, "the path is longer than a Unix socket address allows (107 bytes)") }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw StatusServerError.cannotListen(address, "\(path) exists and is not a socket") }
        if (try? StatusClient.get(address, "/readyz", timeout: 2)) != nil {
            throw StatusServerError.cannotListen(address, "another process is serving on it")
        }
        unlink(path)
    }

    // MARK: Routes

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/metrics") { _, _ in try await self.metrics() }
        router.get("/healthz") { _, _ in
            let s = self.daemon.snapshot()
            if let p = s.healthProblem { return Self.text(p + "\n", status: .serviceUnavailable) }
            return Self.text("ok\n")
        }
        router.get("/readyz") { _, _ in
            self.daemon.snapshot().ready ? Self.text("ready\n") : Self.text("starting: the initial scan is not queued yet\n", status: .serviceUnavailable)
        }
        router.get("/status") { _, _ in try await self.statusJSON() }
        router.get("/") { _, _ in try await self.page() }
        router.get("/jobs/:id") { _, context in try await self.job(context.parameters.get("id")) }
        router.get("/jobs/:id/outputs/:n") { _, context in
            try await self.output(context.parameters.get("id"), index: context.parameters.get("n"))
        }
        router.get("/jobs/:id/thumbnail") { _, context in try await self.thumbnail(context.parameters.get("id")) }
        return router
    }

    static func text(_ s: String, status: HTTPResponse.Status = .ok, type: String = "text/plain; charset=utf-8") -> Response {
        bytes(Array(s.utf8), status: status, type: type)
    }

    static func bytes(_ b: [UInt8], status: HTTPResponse.Status = .ok, type: String, cache: String = "no-store") -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = cache
        headers[.init("X-Content-Type-Options")!] = "nosniff"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: b)))
    }

    static let notFound = text("not found\n", status: .notFound)

    func metrics() async throws -> Response {
        let s = daemon.snapshot()
        let facts = try? await journalView.facts(daemon.journalForStatus)
        gauges.update(s, jobs: facts?.summary.counts, build: build)
        return Self.bytes(registry.emitToBuffer(), type: "text/plain; version=0.0.4; charset=utf-8")
    }

    func statusJSON() async throws -> Response {
        let s = daemon.snapshot()
        let facts = try await journalView.facts(daemon.journalForStatus)
        let doc = StatusDocument(daemon: s, journal: facts.map(StatusDocument.Journal.init))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Self.bytes(Array(try enc.encode(doc)), type: "application/json")
    }

    func page() async throws -> Response {
        let s = daemon.snapshot()
        let facts: JournalFacts?
        var journalError: String?
        do { facts = try await journalView.facts(daemon.journalForStatus) } catch {
            facts = nil
            journalError = "\(error)"
        }
        let html = StatusPage(snapshot: s, facts: facts, journalError: journalError).render()
        var r = Self.text(html, type: "text/html; charset=utf-8")
        // The page needs nothing but itself and this server's images: say so to the browser.
        r.headers[.init("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'"
        return r
    }

    // MARK: Jobs and their files

    /// A job id as the URL gives it: digits only, else nothing is looked up.
    static func jobID(_ text: String?) -> Int64? {
        guard let text, !text.isEmpty, text.count <= 18, text.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return nil }
        return Int64(text)
    }

    func job(_ idText: String?) async throws -> Response {
        guard let id = Self.jobID(idText), let e = try await journalView.entry(daemon.journalForStatus, id: id) else { return Self.notFound }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Self.bytes(Array(try enc.encode(JobDocument(e))), type: "application/json")
    }

    func output(_ idText: String?, index: String?) async throws -> Response {
        guard let id = Self.jobID(idText), let n = index.flatMap(Self.jobID).map(Int.init),
              let e = try await journalView.entry(daemon.journalForStatus, id: id) else { return Self.notFound }
        let outputs = JobDocument.outputs(of: e)
        guard n < outputs.count, let path = servable(outputs[n]) else { return Self.notFound }
        // Read off the event loop and the concurrency pool: an annotated image can be megabytes.
        let read: Data? = await withCheckedContinuation { c in
            DispatchQueue.global(qos: .utility).async { c.resume(returning: FileManager.default.contents(atPath: path)) }
        }
        guard let data = read else { return Self.notFound }
        return Self.bytes(Array(data), type: Self.contentType(path), cache: "private, max-age=3600")
    }

    func thumbnail(_ idText: String?) async throws -> Response {
        guard let id = Self.jobID(idText), let e = try await journalView.entry(daemon.journalForStatus, id: id),
              let image = JobDocument.outputs(of: e).first(where: JobDocument.isImage), let path = servable(image) else { return Self.notFound }
        do {
            let jpeg = try await thumbnails.thumbnail(of: path, key: "\(id)")
            return Self.bytes(jpeg, type: "image/jpeg", cache: "private, max-age=3600")
        } catch {
            return Self.text("cannot make a thumbnail: \(error)\n", status: .internalServerError)
        }
    }

    /// `path` resolved (symbolic links followed) when it is a regular file inside the
    /// outputs or state folder; nil otherwise.
    func servable(_ path: String) -> String? {
        let s = daemon.snapshot()
        guard let real = Self.realPath(path) else { return nil }
        var st = stat()
        guard stat(real, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        for dir in [s.outputsDirectory, s.stateDirectory] {
            guard let root = Self.realPath(dir) else { continue }
            if real.hasPrefix(root.hasSuffix("/") ? root : root + "/") { return real }
        }
        return nil
    }

    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    static func contentType(_ path: String) -> String {
        switch (path as NSString).pathExtension.lowercased() {
        case "json": return "application/json"
        case "jpg", "jpeg": return "image/jpeg"
        case "png": return "image/png"
        default: return "application/octet-stream"
        }
    }
}

/// Set once by whichever comes first: the server running (nil) or its error.
final class StartSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var result: String??
    private let sem = DispatchSemaphore(value: 0)

    func finish(_ error: String?) {
        let first = lock.withLock { () -> Bool in
            guard result == nil else { return false }
            result = .some(error)
            return true
        }
        if first { sem.signal() }
    }

    /// nil: running; a reason otherwise.
    func wait(timeout: Double) -> String? {
        guard sem.wait(timeout: .now() + timeout) == .success else { return "not listening after \(Int(timeout)) s" }
        return lock.withLock { result! }
    }
}
