// A job: one input image on its way through the stages, carrying what each stage adds
// and how long each took.
import Foundation
import Imaging
import MaskRCNN
import Results

public final class Job: @unchecked Sendable {
    /// Input file as found (absolute or as given).
    public let inputPath: String
    /// Output path without extension, relative to the output directory ("a/b" for a/b.jpg).
    public let outputStem: String
    /// Assigned in intake order; the COCO image id.
    public let id: Int

    public internal(set) var decoded: DecodedImage?
    public internal(set) var detections: Detections?
    public internal(set) var error: String?
    /// errno of a failed output write (set with `error`): the output side's fault, not the
    /// input's (see `outputFailureIsTransient`).
    public internal(set) var outputErrno: Int32?
    /// Milliseconds per stage ("decode", "preprocess", "backbone", "rpn", "detect", "mask", "write").
    public internal(set) var timings: [String: Double] = [:]
    public internal(set) var batchSize = 1
    /// Files written for this job.
    public internal(set) var outputs: [String] = []
    /// The per-image result, for the run's summary and COCO file.
    public internal(set) var result: ImageResult?

    public init(id: Int, inputPath: String, outputStem: String) {
        self.id = id
        self.inputPath = inputPath
        self.outputStem = outputStem
    }

    public var failed: Bool { error != nil }

    /// The job failed because its outputs could not be written for a reason that goes
    /// away (output file system full or over quota, made read-only, permissions, an I/O
    /// error): the daemon keeps the input queued and retries instead of failing it.
    public var outputFailureIsTransient: Bool {
        guard let e = outputErrno else { return false }
        return [ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO].contains(e)
    }
}

/// Times a closure in milliseconds.
@inline(__always)
func timed<R>(_ body: () throws -> R) rethrows -> (R, Double) {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let r = try body()
    return (r, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
}
