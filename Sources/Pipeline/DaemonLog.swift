// Log lines on stderr that read well both in a terminal and in journald. Under systemd
// (JOURNAL_STREAM set, stderr connected to the journal) each line starts with the syslog
// priority "<N>", which journald turns into the entry's priority (SyslogLevelPrefix=yes
// is its default) — no timestamp, journald adds its own. In a terminal a line carries an
// ISO 8601 time and the level instead.
import Foundation
import Logging

public struct DaemonLogHandler: LogHandler {
    /// Shared by every logger: `log_level` changes on SIGHUP apply at once.
    final class Level: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Logger.Level = .info
        var current: Logger.Level {
            get { lock.withLock { value } }
            set { lock.withLock { value = newValue } }
        }
    }

    static let sharedLevel = Level()
    static let writeLock = NSLock()
    /// Set when stderr is the journal (systemd sets JOURNAL_STREAM=dev:inode of that stream).
    static let journald: Bool = {
        guard let v = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":").compactMap { UInt64($0) }
        var st = stat()
        guard parts.count == 2, fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == parts[0] && UInt64(st.st_ino) == parts[1]
    }()

    public let label: String
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level {
        get { Self.sharedLevel.current }
        set { Self.sharedLevel.current = newValue }
    }

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Installs this handler for the process (once) and sets the level.
    public static func bootstrap(level: Logger.Level) {
        sharedLevel.current = level
        bootstrapOnce
    }

    private static let bootstrapOnce: Void = { LoggingSystem.bootstrap(DaemonLogHandler.init) }()

    public static func setLevel(_ level: Logger.Level) { sharedLevel.current = level }

    public func log(event: LogEvent) {
        var line = ""
        if Self.journald {
            line = "<\(Self.syslogPriority(event.level))>"
        } else {
            line = Self.timestamp() + " " + event.level.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0) + " "
        }
        // One line per entry: a newline inside a message would start a bogus journal entry.
        line += "\(event.message)".replacingOccurrences(of: "\n", with: " ⏎ ")
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            let value = "\(v)"
            line += " \(k)=" + (value.contains(" ") || value.isEmpty ? "\"\(value)\"" : value).replacingOccurrences(of: "\n", with: " ")
        }
        line += "\n"
        Self.writeLock.withLock { FileHandle.standardError.write(Data(line.utf8)) }
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return iso8601(Double(tv.tv_sec), utc: false) + String(format: ".%03d", Int(tv.tv_usec) / 1000)
    }

    /// "2026-01-31T12:00:00" in local time, or with "Z" in UTC. strftime rather than
    /// Foundation's ISO8601DateFormatter: that one loads ICU time zone data, which crashed
    /// (null memset) when first used on a pipeline queue while other stages were running.
    static func iso8601(_ seconds: Double, utc: Bool) -> String {
        var t = time_t(seconds)
        var tm = tm()
        if utc { gmtime_r(&t, &tm) } else { localtime_r(&t, &tm) }
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%dT%H:%M:%S", &tm)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension PipelineConfig.LogLevel {
    public var loggerLevel: Logger.Level {
        switch self {
        case .trace: return .trace
        case .debug: return .debug
        case .info: return .info
        case .notice: return .notice
        case .warning: return .warning
        case .error: return .error
        case .critical: return .critical
        }
    }
}
