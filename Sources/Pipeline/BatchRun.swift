// `segd batch`: inputs → staged pipeline → outputs, a COCO results file, and a summary.
import Foundation
import Results

public struct BatchSummary: Sendable {
    public var images = 0
    public var succeeded = 0
    public var skipped = 0
    public var failures: [(path: String, reason: String)] = []
    public var instancesPerClass: [String: Int] = [:]
    public var seconds: Double = 0
    public var imagesPerSecond: Double { seconds > 0 ? Double(succeeded + failures.count) / seconds : 0 }

    public func report() -> String {
        var s = "images \(images): \(succeeded) done, \(failures.count) failed, \(skipped) skipped"
        s += String(format: "; %.2f s, %.3f images/s\n", seconds, imagesPerSecond)
        if !instancesPerClass.isEmpty {
            s += "instances: " + instancesPerClass.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
                .map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
        }
        // Reasons from the decoder already start with the file's name.
        for f in failures { s += "failed: " + (f.reason.hasPrefix(f.path) ? f.reason : "\(f.path): \(f.reason)") + "\n" }
        return s
    }
}

public final class BatchRun: @unchecked Sendable {
    public let inputs: [InputFile]
    public let options: PipelineOptions
    public let skipExisting: Bool
    private let lock = NSLock()
    private var summary = BatchSummary()
    private var done = 0

    public init(inputs: [InputFile], options: PipelineOptions, skipExisting: Bool = false) {
        self.inputs = inputs
        self.options = options
        self.skipExisting = skipExisting
    }

    /// Runs every input; `progress(done, total)` is called after each image.
    public func run(segmenter: Segmenter, progress: @escaping @Sendable (Int, Int, Job) -> Void = { _, _, _ in }) throws -> BatchSummary {
        let start = DispatchTime.now().uptimeNanoseconds
        let outDir = options.output.directory
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let coco = try COCOResultsWriter(directory: outDir)
        let relativeNames = Dictionary(uniqueKeysWithValues: inputs.map { ($0.path, $0.relativePath) })
        let total = inputs.count
        let finished: @Sendable (Job) -> Void = { [self] job in
            let count = lock.withLock {
                done += 1
                if let failure = job.failure {
                    summary.failures.append((job.inputPath, failure.description))
                } else {
                    summary.succeeded += 1
                    for r in job.results {
                        for inst in r.instances { summary.instancesPerClass[inst.label, default: 0] += 1 }
                        do { try coco.add(r, fileName: Self.cocoFileName(relativeNames[job.inputPath], r)) } catch {
                            summary.failures.append((job.inputPath, "COCO results: \(error)"))
                        }
                    }
                }
                job.result = nil
                return done
            }
            progress(count, total, job)
        }
        let pipeline = try StagedPipeline(segmenter: segmenter, options: options, onFinished: finished)
        summary.images = inputs.count
        for (i, input) in inputs.enumerated() {
            if let problem = input.problem {
                let job = Job(id: i + 1, inputPath: input.path, outputStem: input.stem)
                job.failure = .badInput("\(input.path): \(problem)", incomplete: false)
                finished(job)
                continue
            }
            if skipExisting && outputsExist(input) {
                // Still part of this run's COCO file: read back the result written before.
                let previous = previousResults(input)
                lock.withLock {
                    summary.skipped += 1
                    done += 1
                    for r in previous { _ = try? coco.add(r, fileName: Self.cocoFileName(input.relativePath, r)) }
                }
                continue
            }
            pipeline.submit(Job(id: i + 1, inputPath: input.path, outputStem: input.stem))
        }
        pipeline.drain()
        try coco.finish()
        summary.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return summary
    }

    /// The COCO file_name of a result: the input's relative path, and for page 2... of a
    /// multi-page TIFF "<path>#p<page>" (page 1 is the file itself, as its JSON is <stem>.json).
    static func cocoFileName(_ relative: String?, _ r: ImageResult) -> String? {
        guard let page = r.source.page, page > 1 else { return relative }
        return (relative ?? r.source.fileName) + "#p\(page)"
    }

    /// The results a previous run wrote for this input: <stem>.json and, for a multi-page
    /// TIFF, <stem>_p2.json ... as its page count says.
    func previousResults(_ input: InputFile) -> [ImageResult] {
        let base = (options.output.directory as NSString).appendingPathComponent(input.stem)
        guard let first = try? ImageResult.read(from: base + ".json") else { return [] }
        let pages = first.source.pageCount ?? 1
        return [first] + (pages > 1 ? (2...pages).compactMap {
            try? ImageResult.read(from: (options.output.directory as NSString)
                .appendingPathComponent(Job.pageStem(input.stem, page: $0)) + ".json")
        } : [])
    }

    /// Whether a previous run already wrote this input's outputs (they are written
    /// atomically, so an existing file is a complete one, and the pages of a multi-page
    /// input all or none).
    func outputsExist(_ input: InputFile) -> Bool {
        let base = (options.output.directory as NSString).appendingPathComponent(input.stem)
        let fm = FileManager.default
        if options.output.writeJSON && !fm.fileExists(atPath: base + ".json") { return false }
        if options.output.annotate && !fm.fileExists(atPath: base + ".jpg") && !fm.fileExists(atPath: base + ".png") { return false }
        return options.output.writeJSON || options.output.annotate
    }
}
