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
    /// The page of the input this job is for (1-based). A multi-page TIFF is one job per
    /// page: the input's job is page 1, and the decode stage adds the others, which share
    /// its id and input and are finished with it (all pages' outputs or none).
    public let page: Int
    /// Page 1's job, on the jobs of pages 2...
    let parent: Job?
    /// The jobs of pages 2... (on page 1's job), in page order; set before page 1 leaves
    /// the decode stage.
    public internal(set) var pageJobs: [Job] = []
    /// Pages of this input not yet through the write stage (page 1's job counts them).
    private var pendingPages = 1
    private let pagesLock = NSLock()

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
    /// When it was handed to the pipeline (uptime, ns), for the request duration metrics.
    var submittedAt: UInt64 = 0

    public init(id: Int, inputPath: String, outputStem: String) {
        self.id = id
        self.inputPath = inputPath
        self.outputStem = outputStem
        self.page = 1
        self.parent = nil
    }

    /// The job of page `page` (2...) of `parent`'s input, written as <stem>_p<page>.
    init(page: Int, of parent: Job) {
        self.id = parent.id
        self.inputPath = parent.inputPath
        self.outputStem = Job.pageStem(parent.outputStem, page: page)
        self.page = page
        self.parent = parent
    }

    /// Output stem of page `page`: page 1 keeps the input's stem, so a single-page TIFF
    /// is named like any other image.
    public static func pageStem(_ stem: String, page: Int) -> String {
        page == 1 ? stem : stem + "_p\(page)"
    }

    /// The results of all of the input's pages, in page order.
    public var results: [ImageResult] { ([self] + pageJobs).compactMap(\.result) }

    /// Sets the pages that will follow page 1 (called once, before page 1 can finish).
    func expectPages(_ jobs: [Job]) {
        pagesLock.withLock {
            pageJobs = jobs
            pendingPages += jobs.count
        }
    }

    /// Counts one page through; true when it was the input's last.
    func pageFinished() -> Bool {
        pagesLock.withLock {
            pendingPages -= 1
            return pendingPages == 0
        }
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
