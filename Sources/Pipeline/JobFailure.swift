// Why a job failed, as a type: what happens next (fail the input, retry it later, wait for
// its writer) is decided from the case, never from the text of a message.
import Foundation
import Imaging
import Results

public enum JobFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The input cannot be segmented as it is: not an image, corrupt, too large, gone.
    /// `incomplete`: its data ends early (truncated or empty), which is also what a file
    /// still being written looks like.
    case badInput(String, incomplete: Bool)
    /// The outputs could not be written for a reason that goes away (output file system
    /// full or over quota, made read-only, permissions, an I/O error): not the input's
    /// fault, so the daemon keeps the input queued and retries.
    case outputUnwritable(String)
    /// A model stage failed on the batch this input was in.
    case model(String)
    /// Anything else: an output that cannot be written for a lasting reason, a codec that
    /// cannot start, a bug.
    case `internal`(String)

    /// The reason as recorded in the journal, the log and NAME.error.json.
    public var description: String {
        switch self {
        case let .badInput(m, _), let .outputUnwritable(m), let .model(m), let .internal(m): return m
        }
    }

    /// A decoder's error: the input's fault unless the codec itself could not start.
    static func decoding(_ error: Error) -> JobFailure {
        guard let e = error as? ImagingError else { return .internal("\(error)") }
        switch e {
        case .truncated, .emptyFile: return .badInput(e.description, incomplete: true)
        case .codecUnavailable: return .internal(e.description)
        default: return .badInput(e.description, incomplete: false)
        }
    }

    /// errno values of a failed output write that go away without touching the input.
    static let transientOutputErrnos: Set<Int32> = [ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO]

    /// An error of the write stage (JSON, annotated image).
    static func writing(_ error: Error) -> JobFailure {
        if case let .io(_, _, code) = error as? ResultsError, transientOutputErrnos.contains(code) {
            return .outputUnwritable("\(error)")
        }
        return .internal("\(error)")
    }
}
