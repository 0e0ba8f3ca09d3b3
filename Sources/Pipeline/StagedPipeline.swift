// The staged pipeline (docs/design.md); stage names are PipelineStage's:
//
//   submit → decode → batcher → backbone (preprocess, backbone) → rpn → detect → mask
//   (mask, postprocess) → write (paste, write) → onFinished
//
// Each stage is its own labelled serial queue with a bounded inbox. The model stages share
// oneDNN's threads; decode and write (RLE, drawing, JPEG encoding, fsync) overlap with
// inference of the next batch. A job that fails anywhere skips the rest and reaches
// onFinished with its reason; nothing is lost and the pipeline goes on.
import Dispatch
import Foundation
import Imaging
import MaskRCNN
import Results

/// How full one stage queue is.
public struct QueueLevel: Sendable, Equatable {
    public var name: String
    public var depth: Int
    public var capacity: Int
}

public struct PipelineOptions: Sendable {
    public var maxBatch = 1
    public var maxDelayMs = 50
    /// Items waiting per stage at most.
    public var queueBound = 2
    public var output = OutputOptions()
    public var decode = DecodeOptions()
    public init() {}
}

/// One model batch moving through the model stages.
final class ModelBatch: @unchecked Sendable {
    let jobs: [Job]
    var batch: ImageBatch?
    var features: FeatureMaps?
    var proposals: [Proposals] = []
    var detections: [ROIDetections] = []
    init(jobs: [Job]) { self.jobs = jobs }
}

public final class StagedPipeline: @unchecked Sendable {
    public let segmenter: Segmenter
    public let options: PipelineOptions
    private let onStarted: (@Sendable (Job) -> Void)?
    private let onFinished: @Sendable (Job) -> Void
    private let inFlight = DispatchGroup()
    private var decodeStage: Stage<Job>!
    private var batcher: Batcher!
    private var backboneStage: Stage<ModelBatch>!
    private var rpnStage: Stage<ModelBatch>!
    private var detectStage: Stage<ModelBatch>!
    private var maskStage: Stage<ModelBatch>!
    private var writeStage: Stage<Job>!
    private let writer: Writer
    /// One model batch at a time between the backbone's start and the mask head's end:
    /// the model stages all run oneDNN's OpenMP team, and two teams on 2 cores spin
    /// against each other instead of overlapping; it also bounds memory to one batch's
    /// feature maps (P2–P6 of an 800×1216 image: 83 MB, twice with RoIAlign's plain copy).
    /// Decode and write, single-threaded, still overlap with inference.
    private let modelGate = DispatchSemaphore(value: 1)
    private let metrics = DaemonMetrics.shared

    /// - Parameters:
    ///   - onStarted: called on the decode queue just before a job's file is read (the
    ///     daemon's journal marks it `processing` there, so a crash is charged to the jobs
    ///     that had really started).
    ///   - onFinished: called once per job, failed or not, after its outputs are written.
    public init(segmenter: Segmenter, options: PipelineOptions, onStarted: (@Sendable (Job) -> Void)? = nil,
                onFinished: @escaping @Sendable (Job) -> Void) throws {
        self.segmenter = segmenter
        self.options = options
        self.onStarted = onStarted
        self.onFinished = onFinished
        writer = try Writer(segmenter: segmenter, options: options.output)
        let bound = options.queueBound
        let decoder = ImageDecoder(options: options.decode)
        let model = segmenter.model

        writeStage = Stage(.write, capacity: bound * max(1, options.maxBatch)) { [unowned self] job in
            if !job.failed {
                do {
                    let (_, ms) = try timed { try writer.write(job) }
                    job.timings[.write] = ms
                } catch {
                    job.failure = .writing(error)
                    // All of a job's outputs or none: a JSON without its annotated image
                    // (the disk filled up between the two) is removed again.
                    for path in job.outputs { try? Sys.unlink(path) }
                    job.outputs = []
                }
            }
            finish(job)
        }
        maskStage = Stage(.mask, capacity: bound) { [unowned self] b in
            run(b, .mask) { b in
                let masks = try model.masks(b.features!, b.batch!, detections: b.detections)
                let dets = model.postprocess(b.batch!, detections: b.detections, masks: masks)
                for (job, d) in zip(b.jobs, dets) { job.detections = d }
            }
            if !b.jobs.contains(where: \.failed) { metrics.executed(batch: b.jobs.count) }
            // Release the batch's tensors before writing: the writer needs only detections.
            b.features = nil
            b.batch = nil
            modelGate.signal()
            for job in b.jobs { writeStage.submit(job) }
        }
        detectStage = Stage(.detect, capacity: bound) { [unowned self] b in
            run(b, .detect) { b in b.detections = try model.detect(b.features!, b.batch!, proposals: b.proposals) }
            forward(b, to: maskStage)
        }
        rpnStage = Stage(.rpn, capacity: bound) { [unowned self] b in
            run(b, .rpn) { b in b.proposals = try model.proposals(b.features!, b.batch!) }
            forward(b, to: detectStage)
        }
        backboneStage = Stage(.backbone, capacity: bound) { [unowned self] b in
            modelGate.wait()
            run(b, .preprocess) { b in b.batch = try model.preprocess(b.jobs.map { $0.modelImage }) }
            run(b, .backbone) { b in b.features = try model.backbone(b.batch!) }
            forward(b, to: rpnStage)
        }
        batcher = Batcher(maxBatch: options.maxBatch, maxDelayMs: options.maxDelayMs) { [unowned self] jobs in
            for job in jobs { job.batchSize = jobs.count }
            backboneStage.submit(ModelBatch(jobs: jobs))
        }
        decodeStage = Stage(.decode, capacity: bound * max(1, options.maxBatch)) { [unowned self] job in
            onStarted?(job)
            var bytes: [UInt8] = []
            do {
                let (d, ms) = try timed { () throws -> DecodedImage in
                    bytes = try decoder.readFile(job.inputPath)
                    return try decoder.decode(bytes, name: job.inputPath)
                }
                job.decoded = d
                job.timings[.decode] = ms
                // A multi-page TIFF: pages 2... become jobs of their own, decoded here one
                // after the other from the same bytes, each held back by the batcher's
                // bound like any input, so memory is what one page costs.
                let pageJobs = d.pageCount > 1 ? (2...d.pageCount).map { Job(page: $0, of: job) } : []
                job.expectPages(pageJobs)
                batcher.add(job)
                // No onStarted for them: the input was marked started with page 1.
                for pageJob in pageJobs {
                    do {
                        let name = "\(job.inputPath) (page \(pageJob.page) of \(d.pageCount))"
                        let (p, ms) = try timed { try decoder.decode(bytes, name: name, page: pageJob.page) }
                        pageJob.decoded = p
                        pageJob.timings[.decode] = ms
                        batcher.add(pageJob)
                    } catch {
                        pageJob.failure = .decoding(error)
                        writeStage.submit(pageJob)
                    }
                }
            } catch {
                job.failure = .decoding(error)
                writeStage.submit(job)
            }
        }
    }

    /// Runs one model stage on a batch unless it already failed; a thrown error fails
    /// every job of the batch with it.
    private func run(_ b: ModelBatch, _ name: PipelineStage, _ body: (ModelBatch) throws -> Void) {
        guard !b.jobs.contains(where: \.failed) else { return }
        do {
            let (_, ms) = try timed { try body(b) }
            for job in b.jobs { job.timings[name] = ms }
            metrics.stageRan(name, ms: ms)
        } catch {
            for job in b.jobs { job.failure = .model("\(name.rawValue): \(error)") }
        }
    }

    private func forward(_ b: ModelBatch, to next: Stage<ModelBatch>) {
        if b.jobs.contains(where: \.failed) {
            b.features = nil
            b.batch = nil
            modelGate.signal()
            for job in b.jobs { writeStage.submit(job) }
        } else {
            next.submit(b)
        }
    }

    private func finish(_ job: Job) {
        job.decoded = nil  // the pixels are no longer needed; keep memory flat
        for s in [PipelineStage.decode, .paste, .write] { if let ms = job.timings[s] { metrics.stageRan(s, ms: ms) } }
        let input = job.parent ?? job
        guard input.pageFinished() else { return }
        if !input.pageJobs.isEmpty {
            // All pages' outputs or none, as for one image: a page that failed fails the
            // input (the reason names the page), and the other pages' files go again.
            let pages = [input] + input.pageJobs
            if let failed = pages.first(where: \.failed) {
                if input.failure == nil { input.failure = failed.failure }
                for page in pages {
                    for path in page.outputs { unlink(path) }
                    page.outputs = []
                }
            } else {
                input.outputs += input.pageJobs.flatMap(\.outputs)
            }
        }
        metrics.finished(input, pages: [input] + input.pageJobs)
        onFinished(input)
        input.pageJobs = []  // the pages refer to their input: break the cycle
        inFlight.leave()
    }

    /// Hands a job to the pipeline; blocks while the decode stage is full.
    public func submit(_ job: Job) {
        job.submittedAt = DispatchTime.now().uptimeNanoseconds
        inFlight.enter()
        decodeStage.submit(job)
    }

    /// Sends any partial batch on and waits until every submitted job has finished.
    public func drain() {
        decodeStage.sync {}
        batcher.flush()
        inFlight.wait()
    }

    /// Items queued or running per stage queue, and each queue's bound (the batcher's is
    /// max_batch), in pipeline order.
    public func queueLevels() -> [QueueLevel] {
        let stages: [(String, Int, Int)] = [decodeStage.level, (batcher.label, batcher.pendingCount, options.maxBatch), backboneStage.level,
                                            rpnStage.level, detectStage.level, maskStage.level, writeStage.level]
        return stages.map { QueueLevel(name: $0.0, depth: $0.1, capacity: $0.2) }
    }

    /// Sends a partial batch on without waiting (used by the daemon when input goes quiet).
    public func flushPartialBatch() { batcher.flush() }
}

extension Job {
    var modelImage: ModelImage {
        let im = decoded!.image
        return ModelImage(width: im.width, height: im.height, rgb: im.pixels)
    }
}
