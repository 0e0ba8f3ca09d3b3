// A throw-away PostgreSQL for the cluster tests: initdb into a temporary folder, pg_ctl on a
// free loopback port (trust authentication, fsync off: nothing here outlives the test
// process), a database per test, stopped at the end. Debian's `postgresql` package provides
// the binaries (`make test` installs it). initdb refuses to run as root, so as root the
// server runs as the package's `postgres` user.
import Foundation
import Pipeline
import XCTest

final class PostgresServer: @unchecked Sendable {
    let bin: String
    let dataDir: String
    let port: Int
    private let asUser: String?
    private let logFile: String
    private var databases = 0

    /// The newest /usr/lib/postgresql/N/bin.
    static func findBinaries() -> String? {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        return versions.reversed().map { "\(base)/\($0)/bin" }.first { FileManager.default.isExecutableFile(atPath: $0 + "/pg_ctl") }
    }

    init() throws {
        guard let bin = Self.findBinaries() else {
            throw XCTSkip("PostgreSQL is not installed (Debian: apt-get install postgresql; `make test` does it)")
        }
        self.bin = bin
        asUser = getuid() == 0 ? "postgres" : nil
        let root = "/tmp/segd-pg-\(getpid())-\(UUID().uuidString.prefix(6))"
        dataDir = root + "/data"
        logFile = root + "/server.log"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        if let user = asUser, let pw = getpwnam(user) {
            chown(root, pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
        port = Self.freePort()
        try runTool("initdb", ["-D", dataDir, "-U", "segd", "-A", "trust", "--no-sync", "-E", "UTF8"])
        let conf = """
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = '\(root)'
            fsync = off
            synchronous_commit = off
            full_page_writes = off
            max_connections = 100
            """
        let confPath = dataDir + "/postgresql.conf"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: confPath))
        handle.seekToEndOfFile()
        handle.write(Data(("\n" + conf + "\n").utf8))
        try handle.close()
        try start()
    }

    deinit { stop() }

    func start() throws {
        try runTool("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "start"])
    }

    /// `fast`: clients are disconnected, as in a restart for maintenance.
    func stop(mode: String = "fast") {
        _ = try? runTool("pg_ctl", ["-D", dataDir, "-m", mode, "-w", "stop"])
    }

    func restart() throws {
        try runTool("pg_ctl", ["-D", dataDir, "-l", logFile, "-m", "fast", "-w", "-t", "60", "restart"])
    }

    /// A new empty database; its settings for pipeline.yml and the journal.
    func createDatabase() throws -> DatabaseSettings {
        databases += 1
        let name = "t\(databases)_\(UUID().uuidString.prefix(6).lowercased())"
        try runTool("psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "segd", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                             "-qc", "CREATE DATABASE \(name)"])
        return DatabaseSettings(user: "segd", host: "127.0.0.1", port: port, database: name)
    }

    /// Runs one of the server's tools; throws with its output when it fails. posix_spawn and
    /// waitpid rather than Foundation's Process: pg_ctl leaves the server running as a
    /// grandchild, and Process's exit detection was seen to hang on that here.
    @discardableResult
    func runTool(_ tool: String, _ args: [String]) throws -> String {
        // In /tmp: the postgres user may not be able to enter the test's working directory.
        let argv = ["/usr/bin/env", "-C", "/tmp"] + (asUser.map { ["/usr/sbin/runuser", "-u", $0, "--"] } ?? []) + [bin + "/" + tool] + args
        let outPath = "/tmp/segd-pg-tool-\(getpid())-\(UUID().uuidString.prefix(6)).out"
        defer { unlink(outPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cargs, environ)
        guard rc == 0 else { throw NSError(domain: "PostgresServer", code: Int(rc), userInfo: [NSLocalizedDescriptionKey: "cannot run \(argv[0])"]) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0, code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
            throw NSError(domain: "PostgresServer", code: Int(code),
                          userInfo: [NSLocalizedDescriptionKey: "\(tool) \(args.joined(separator: " ")): \(out)\n\(log.suffix(2000))"])
        }
        return out
    }

    /// A port nothing listens on now (bound to 0, read back, released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
