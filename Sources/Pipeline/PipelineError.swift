// The Pipeline module's errors: each names the file (input, output, config) and the reason.
import Foundation

public enum PipelineError: Error, CustomStringConvertible {
    case io(path: String, reason: String)
    case noInputs(reason: String)
    case unsafeOutputName(input: String, reason: String)
    case config(path: String, line: Int?, key: String?, reason: String)
    /// The daemon's SQLite journal (the database file and what failed).
    case journal(path: String, reason: String)
    /// The shared journal's server cannot be reached (down, restarting, network): callers
    /// pause and retry; nothing is lost.
    case databaseUnavailable(location: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .noInputs(reason): return "no input images: \(reason)"
        case let .unsafeOutputName(input, reason): return "\(input): cannot derive a safe output name (\(reason))"
        case let .config(path, line, key, reason):
            var s = path
            if let line { s += ":\(line)" }
            if let key { s += ": \(key)" }
            return s + ": " + reason
        case let .journal(path, reason): return "journal \(path): \(reason)"
        case let .databaseUnavailable(location, reason): return "database \(location) unavailable: \(reason)"
        }
    }

    /// errno as text.
    static func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }
}
