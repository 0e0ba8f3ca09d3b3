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
    /// Why the job failed (nil: it has not).
    public internal(set) var failure: JobFailure?
    /// Milliseconds per stage.
    public internal(set) var timings: [PipelineStage: Double] = [:]
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

    public var failed: Bool { failure != nil }

    /// `timings` keyed by stage name, as the JSON and the journal record them.
    var timingsByName: [String: Double] { Dictionary(uniqueKeysWithValues: timings.map { ($0.key.rawValue, $0.value) }) }
}

/// Times a closure in milliseconds.
@inline(__always)
func timed<R>(_ body: () throws -> R) rethrows -> (R, Double) {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let r = try body()
    return (r, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
}
