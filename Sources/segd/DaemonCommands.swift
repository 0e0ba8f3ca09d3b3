// `segd watch`, `segd status`, `segd check-config`: the daemon's command line. The work is
// in Pipeline (Daemon, Journal, PipelineConfig).
import ArgumentParser
import Foundation
import Logging
import Pipeline
import StatusServer

extension ExitCodes {
    /// EX_CONFIG: pipeline.yml is invalid (systemd does not restart on it in a loop of
    /// successes: Restart=on-failure still applies, and the log names the key and line).
    static let config: Int32 = 78
}

enum DaemonDefaults {
    static let config = "/etc/segd/pipeline.yml"
}

/// Loads pipeline.yml, printing the error (key and line) and exiting 78 when invalid.
/// SEGD_DATABASE_PASSWORD: the CLI is the only place it is read (Pipeline reads no environment).
var databasePasswordFromEnvironment: String? { ProcessInfo.processInfo.environment["SEGD_DATABASE_PASSWORD"] }

/// The configured PostgreSQL journal, its password from password_file or the environment.
func openPostgresJournal(_ db: DatabaseSettings, migrate: Bool, listen: Bool) throws -> PostgresJournal {
    try PostgresJournal(db, password: try db.password(environment: databasePasswordFromEnvironment),
                        log: Logger(label: "segd"), migrate: migrate, listen: listen)
}

func loadConfig(_ path: String) throws -> PipelineConfig {
    do { return try PipelineConfig.load(path: path) } catch {
        FileHandle.standardError.write(Data("segd: \(error)\n".utf8))
        throw ExitCode(ExitCodes.config)
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the service: watch the input folders and segment every image that arrives.",
        discussion: "SIGTERM finishes images in flight and exits 0; SIGHUP re-reads the configuration (an invalid file is reported and the running configuration kept). Under systemd (Type=notify) it reports READY=1, STATUS= and feeds the watchdog.")

    @Option(help: "pipeline.yml (every key optional; see the documented one in the repository).")
    var config: String = DaemonDefaults.config

    func run() throws {
        let c = try loadConfig(config)
        OpenMPEnvironment.ensure(threads: c.workers)
        DaemonLogHandler.bootstrap(level: c.logLevel.loggerLevel)
        // Before the daemon exists: its metrics bind to the backend when they are made.
        SegdMetricsBackend.bootstrap()
        let log = Logger(label: "segd")
        let daemon = Daemon(configPath: config, config: c, log: log, faults: faultsFromEnvironment(),
                            databasePassword: databasePasswordFromEnvironment)
        if !c.httpAddresses.isEmpty {
            do { try StatusServer(daemon: daemon, addresses: c.httpAddresses, log: log).start() } catch {
                log.critical("cannot start the HTTP endpoint (service.http_listen; a TCP address needs the unit's drop-in, docs/daemon.md)",
                             metadata: ["error": "\(error)"])
                throw ExitCode(ExitCodes.fatal)
            }
        }
        let code = daemon.run()
        for case let .unix(path) in c.httpAddresses { unlink(path) }
        if code != 0 { throw ExitCode(code) }
    }
}

/// The tests' fault hook (docs/daemon.md, "Test hooks"): empty unless SEGD_TEST_* is set.
func faultsFromEnvironment() -> FaultHook {
    let env = ProcessInfo.processInfo.environment
    return FaultHook(crashOnDecode: env["SEGD_TEST_CRASH_ON"], hangOnDecode: env["SEGD_TEST_HANG_ON"],
                     inotifyError: env["SEGD_TEST_INOTIFY_ERROR"].map { $0 == "EMFILE" ? EMFILE : ENOSPC },
                     unwatchable: env["SEGD_TEST_UNWATCHABLE"], decodeDelayMs: env["SEGD_TEST_DECODE_DELAY_MS"].flatMap { Int($0) },
                     crashAfterFinish: env["SEGD_TEST_CRASH_AFTER_FINISH"], holdReadyUntil: env["SEGD_TEST_HOLD_READY_UNTIL"])
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What the service's journal says: jobs per status, throughput, recent failures and why (--url: what the running daemon says).")

    @Option(help: "pipeline.yml naming the state directory.")
    var config: String = DaemonDefaults.config

    @Option(name: .customLong("state-dir"), help: "The state directory (instead of reading it from --config).")
    var stateDir: String?

    @Option(help: "How many recent failures to list.")
    var failures = 10

    @Option(help: "Ask the running daemon instead of reading the journal: unix:PATH or HOST:PORT (one of service.http_listen).")
    var url: String?

    @Flag(help: "Ask the running daemon at the first address of the config's service.http_listen.")
    var live = false

    func run() throws {
        if url != nil || live {
            let address: ListenAddress
            if let url {
                guard let a = ListenAddress(url) else { throw ValidationError("--url must be unix:PATH or HOST:PORT") }
                address = a
            } else {
                guard let a = try loadConfig(config).httpAddresses.first else {
                    throw ValidationError("service.http_listen is [] in \(config): the daemon serves no status; leave out --live to read the journal")
                }
                address = a
            }
            try Segd.guarded { print(try StatusClient.statusText(address), terminator: "") }
            return
        }
        let c = try stateDir == nil ? loadConfig(config) : nil
        try Segd.guarded {
            let journal: any JobJournal
            if let db = c?.stateDatabase {
                journal = try openPostgresJournal(db, migrate: false, listen: false)
            } else {
                journal = try Journal(directory: stateDir ?? c!.stateDirectory, readOnly: true)
            }
            print(try StatusReport.text(journal: journal, failures: failures), terminator: "")
        }
    }
}

struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a pipeline.yml without running anything (exit 0 valid, 78 invalid).")

    @Argument(help: "The file to check.")
    var file: String

    func run() throws {
        let c = try loadConfig(file)
        var lines = ["\(file): valid"]
        lines.append("  watch: \(c.inputs.directories.joined(separator: ", "))\(c.inputs.recursive ? " (recursive)" : "")")
        lines.append("  outputs: \(c.outputs.directory); inputs afterwards: \(c.after.success.rawValue) on success, \(c.after.failure.rawValue) on failure")
        lines.append("  model: \(c.model.weights); batches of up to \(c.batching.maxBatch), \(c.batching.maxDelayMs) ms")
        if let db = c.stateDatabase {
            // The URL holds no password; where the password comes from is said, never what it is.
            let source = db.passwordFile.map { "password_file \($0)" }
                ?? (databasePasswordFromEnvironment != nil ? "SEGD_DATABASE_PASSWORD" : "no password")
            lines.append("  journal: \(db.display) (\(source); shared by the cluster, lease \(c.service.leaseS) s)")
        } else {
            lines.append("  journal: \(c.stateDirectory)")
        }
        print(lines.joined(separator: "\n"))
        if !FileManager.default.fileExists(atPath: c.model.weights) {
            FileHandle.standardError.write(Data("segd: warning: model.weights \(c.model.weights) does not exist (yet); the service will not start without it\n".utf8))
        }
        if let db = c.stateDatabase {
            // Unreachable now is not an invalid file: the service waits for the database.
            do {
                _ = try openPostgresJournal(db, migrate: false, listen: false)
            } catch {
                FileHandle.standardError.write(Data("segd: warning: state_database: \(error)\n".utf8))
            }
        }
    }
}
