// `segd bench`: per-stage timings of the model on this machine, the figure compared with
// ../shared/bench/peer_torchvision.py (`seconds_per_image`: median model time per image,
// decode excluded, one image per call, after one warm-up).
import Foundation
import Imaging
import MaskRCNN

public struct BenchReport: Sendable {
    public var stages = PipelineStage.model
    /// Per stage, one time (s) per timed image.
    public var times: [PipelineStage: [Double]] = [:]
    public var totals: [Double] = []
    public var detections: [Int] = []
    /// GFLOP per stage for each timed image (from the model summary at its padded size
    /// and actual proposal/detection counts).
    public var gflop: [PipelineStage: [Double]] = [:]
    /// Images per model call.
    public var batchSize = 1

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    public var secondsPerImage: Double { Self.median(totals) }

    public func report() -> String {
        // Per image: a batch's stage time is divided among its images.
        var s = "stage            median s   share    GFLOP   GFLOP/s\n"
        let total = stages.map { Self.median(times[$0] ?? []) }.reduce(0, +)
        for name in stages {
            let t = Self.median(times[name] ?? [])
            let g = Self.median(gflop[name] ?? [])
            s += name.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)
                + String(format: "%11.4f %6.1f%% %8.1f %9.1f\n", t, total > 0 ? 100 * t / total : 0, g, t > 0 && g > 0 ? g / t : 0)
        }
        s += "batch size \(batchSize)\n"
        s += String(format: "images %d, detections/image %.1f\n", totals.count, detections.isEmpty ? 0 : Double(detections.reduce(0, +)) / Double(detections.count))
        s += String(format: "seconds_per_image %.3f\n", secondsPerImage)
        return s
    }
}

public enum Bench {
    /// Decodes all images first, runs one warm-up, then `repeat` passes over the images, in
    /// model calls of `batch` images (the images cycle to fill the last batch of a pass);
    /// every figure is per image.
    public static func run(model: MaskRCNN, imagePaths: [String], repeat passes: Int, batch batchSize: Int = 1,
                           log: (String) -> Void = { _ in }) throws -> BenchReport {
        let decoder = ImageDecoder()
        let images = try imagePaths.map { p -> ModelImage in
            let im = try decoder.decode(contentsOf: p).image
            return ModelImage(width: im.width, height: im.height, rgb: im.pixels)
        }
        guard !images.isEmpty else { throw PipelineError.noInputs(reason: "bench needs at least one image") }
        let b = max(1, batchSize)
        let groups = (0..<((images.count + b - 1) / b)).map { g in (0..<b).map { images[(g * b + $0) % images.count] } }
        _ = try model(groups[0])
        var report = BenchReport()
        report.batchSize = b
        for pass in 0..<max(1, passes) {
            for (i, group) in groups.enumerated() {
                var t: [PipelineStage: Double] = [:]
                func time<R>(_ name: PipelineStage, _ body: () throws -> R) rethrows -> R {
                    let (r, ms) = try timed(body)
                    t[name] = ms / 1000 / Double(b)
                    return r
                }
                let batch = try time(.preprocess) { try model.preprocess(group) }
                let features = try time(.backbone) { try model.backbone(batch) }
                let props = try time(.rpn) { try model.proposals(features, batch) }
                let dets = try time(.detect) { try model.detect(features, batch, proposals: props) }
                let masks = try time(.mask) { try model.masks(features, batch, detections: dets) }
                let out = time(.postprocess) { model.postprocess(batch, detections: dets, masks: masks) }
                for (k, v) in t { report.times[k, default: []].append(v) }
                report.totals.append(t.values.reduce(0, +))
                report.detections.append(out[0].count)
                let summary = model.summary(height: batch.paddedSize.0, width: batch.paddedSize.1,
                                            proposals: props[0].count, detections: dets[0].count)
                for stage in ModelSummary.stages { report.gflop[stage, default: []].append(summary.flops(stage: stage) / 1e9) }
                log(String(format: "pass %d batch %d: %.3f s/image, %d proposals, %d detections (first image)", pass + 1, i + 1, report.totals.last!, props[0].count, out[0].count))
            }
        }
        return report
    }
}
