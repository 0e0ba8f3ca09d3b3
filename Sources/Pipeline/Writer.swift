// The write stage: masks pasted and thresholded, the JSON result (COCO RLE), the
// annotated image, each written atomically (temp file, fsync, rename) so that an
// interrupted run never leaves a truncated file that looks complete.
import Foundation
import Imaging
import MaskRCNN
import Results

/// The format of annotated images.
public enum AnnotatedFormat: String, Sendable, CaseIterable {
    /// JPEG for JPEG inputs; PNG for every other format (PNG, WebP, TIFF, HEIC, AVIF): a
    /// lossless copy of what was drawn, where a lossy re-encode of a lossless or
    /// high-bit-depth input would add artefacts of segd's own.
    case auto
    case jpeg
    case png

    /// The format written for an input of `input` format.
    public func format(for input: ImageFormat) -> ImageFormat {
        switch self {
        case .auto: return input == .jpeg ? .jpeg : .png
        case .jpeg: return .jpeg
        case .png: return .png
        }
    }
}

public struct OutputOptions: Sendable {
    public var directory = "out"
    public var writeJSON = true
    public var annotate = true
    public var jpegQuality = 90
    public var annotatedFormat = AnnotatedFormat.auto
    public var polygons = false
    /// Instances drawn on the annotated image score at least this: the JSON keeps every
    /// detection above the model's threshold (0.05), but a picture with dozens of
    /// low-confidence outlines hides the detections people look for (detectron2's demo
    /// draws from 0.5 as well).
    public var annotateMinScore: Float = 0.5
    public init() {}
}

final class Writer: @unchecked Sendable {
    let segmenter: Segmenter
    let options: OutputOptions
    private let font: Font?

    init(segmenter: Segmenter, options: OutputOptions) throws {
        self.segmenter = segmenter
        self.options = options
        font = options.annotate ? try Font() : nil
    }

    /// Paths a job's outputs go to (JSON, annotated image).
    func paths(for job: Job, format: ImageFormat) -> (json: String, image: String) {
        let base = (options.directory as NSString).appendingPathComponent(job.outputStem)
        return (base + ".json", base + (options.annotatedFormat.format(for: format) == .png ? ".png" : ".jpg"))
    }

    func write(_ job: Job) throws {
        guard let decoded = job.decoded, let det = job.detections else { return }
        let threshold = segmenter.model.config.maskThreshold
        // A model without a mask head (Faster R-CNN) gives boxes only: no masks to paste.
        let hasMasks = !det.maskProbabilities.isEmpty
        let (masks, pasteMs) = timed { hasMasks ? (0..<det.count).map { det.mask($0, threshold: threshold) } : [] }
        job.timings[.paste] = pasteMs
        let (jsonPath, imagePath) = paths(for: job, format: decoded.format)
        var timings = job.timingsByName
        timings[PipelineStage.write.rawValue] = nil  // still running
        let result = try ImageResult(
            detections: det, masks: masks,
            source: ImageResult.Source(path: job.inputPath, page: decoded.page, pageCount: decoded.pageCount),
            image: ImageResult.ImageInfo(width: decoded.image.width, height: decoded.image.height,
                                         orientation: decoded.appliedOrientation.rawValue,
                                         frameCount: decoded.frameCount > 1 ? decoded.frameCount : nil),
            model: segmenter.modelInfo, settings: segmenter.settings, timingsMs: timings, batchSize: job.batchSize,
            options: ImageResult.Options(polygons: options.polygons))
        job.result = result
        if options.writeJSON {
            try AtomicFile.createParentDirectory(of: jsonPath)
            try AtomicFile.write(result.jsonData(), to: jsonPath)
            job.outputs.append(jsonPath)
        }
        if options.annotate, let font {
            var image = decoded.image
            let classes = segmenter.modelInfo.classes
            let overlay = (0..<det.count).filter { det.scores[$0] >= options.annotateMinScore }.map { i -> OverlayInstance in
                let b = det.box(i)
                let mask = hasMasks ? masks[i] : nil
                return OverlayInstance(mask: mask.map { OverlayMask(x0: $0.x0, y0: $0.y0, width: $0.width, height: $0.height, pixels: $0.pixels) },
                                       box: OverlayBox(x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2),
                                       label: "\(classes[det.labels[i]]) \(Int((det.scores[i] * 100).rounded()))%",
                                       classIndex: det.labels[i])
            }
            // FreeType faces are not thread-safe: the write stage's serial queue is what
            // keeps one overlay drawing at a time (a second lock here only duplicated it).
            try image.drawOverlay(overlay, font: font)
            let bytes = options.annotatedFormat.format(for: decoded.format) == .png
                ? try image.encodePNG() : try image.encodeJPEG(quality: options.jpegQuality)
            try AtomicFile.createParentDirectory(of: imagePath)
            try AtomicFile.write(Data(bytes), to: imagePath)
            job.outputs.append(imagePath)
        }
    }
}
