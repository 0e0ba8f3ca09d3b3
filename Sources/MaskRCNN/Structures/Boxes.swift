// Box operations with torchvision's exact float32 arithmetic: box coder decode, clipping,
// small-box removal, NMS and batched NMS. Boxes are (x1, y1, x2, y2), row-major R×4.
import Foundation

/// torchvision's BoxCoder (decode only): weights (wx, wy, ww, wh), dw/dh clamped at
/// log(1000/16) before exp.
public struct BoxCoder: Sendable {
    public var weights: (Float, Float, Float, Float)
    public var clip: Float = Float(log(1000.0 / 16.0))

    public init(weights: (Float, Float, Float, Float)) { self.weights = weights }

    /// Decodes `delta` (4 values at `d`) against reference box `b` (4 values at `r`), writing 4 values at `o`.
    @inline(__always)
    public func decode(_ delta: UnsafePointer<Float>, reference b: UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>) {
        let widths = b[2] - b[0], heights = b[3] - b[1]
        let ctrX = b[0] + 0.5 * widths, ctrY = b[1] + 0.5 * heights
        let dx = delta[0] / weights.0, dy = delta[1] / weights.1
        let dw = min(delta[2] / weights.2, clip), dh = min(delta[3] / weights.3, clip)
        let pcx = dx * widths + ctrX, pcy = dy * heights + ctrY
        let pw = expf(dw) * widths, ph = expf(dh) * heights
        let hw = 0.5 * pw, hh = 0.5 * ph
        o[0] = pcx - hw
        o[1] = pcy - hh
        o[2] = pcx + hw
        o[3] = pcy + hh
    }
}

public enum BoxOps {
    /// clamp x to [0, width], y to [0, height] (torchvision clip_boxes_to_image).
    @inline(__always)
    public static func clip(_ b: UnsafeMutablePointer<Float>, height: Int, width: Int) {
        let w = Float(width), h = Float(height)
        b[0] = min(max(b[0], 0), w)
        b[1] = min(max(b[1], 0), h)
        b[2] = min(max(b[2], 0), w)
        b[3] = min(max(b[3], 0), h)
    }

    /// torchvision remove_small_boxes: both sides ≥ minSize.
    @inline(__always)
    public static func isLargeEnough(_ b: UnsafePointer<Float>, minSize: Float) -> Bool {
        (b[2] - b[0]) >= minSize && (b[3] - b[1]) >= minSize
    }

    /// torchvision.ops.nms (CPU kernel): indices of kept boxes, highest score first; a box
    /// is dropped when its IoU with a kept one is > threshold. Sorts once, suppresses in place.
    ///
    /// `threshold` is a Double, and the float32 IoU is compared with it in double, because
    /// that is what torchvision's kernel does (`double iou_threshold`, `ovr > iou_threshold`).
    /// Comparing with Float(threshold) differs whenever Float(t) > t (0.3, 0.4, 0.6, …): two
    /// integer boxes with IoU 3/5 have float IoU 0.6000000238 = Float(0.6), which torchvision
    /// suppresses at 0.6 and a Float comparison keeps (Tests/MaskRCNNTests/OpTests.testNMS).
    public static func nms(boxes: UnsafePointer<Float>, scores: UnsafePointer<Float>, indices: [Int], threshold: Double) -> [Int] {
        let order = indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        let n = order.count
        var suppressed = [Bool](repeating: false, count: n)
        var keep: [Int] = []
        keep.reserveCapacity(n)
        // Gather the boxes in score order: the inner loop then streams through memory.
        var x1 = [Float](repeating: 0, count: n), y1 = x1, x2 = x1, y2 = x1, area = x1
        for (k, i) in order.enumerated() {
            x1[k] = boxes[4 * i]; y1[k] = boxes[4 * i + 1]; x2[k] = boxes[4 * i + 2]; y2[k] = boxes[4 * i + 3]
            area[k] = (x2[k] - x1[k]) * (y2[k] - y1[k])
        }
        for a in 0..<n where !suppressed[a] {
            keep.append(order[a])
            let ix1 = x1[a], iy1 = y1[a], ix2 = x2[a], iy2 = y2[a], iarea = area[a]
            for b in (a + 1)..<max(n, a + 1) where !suppressed[b] {
                let w = max(0, min(ix2, x2[b]) - max(ix1, x1[b]))
                let h = max(0, min(iy2, y2[b]) - max(iy1, y1[b]))
                let inter = w * h
                if Double(inter / (iarea + area[b] - inter)) > threshold { suppressed[b] = true }
            }
        }
        return keep
    }

    /// torchvision.ops.batched_nms: NMS independently per group id, result by descending
    /// score. torchvision picks between two implementations by size (its "coordinate
    /// trick" offsets each group's boxes by id·(max+1) and runs one NMS, when boxes.numel()
    /// ≤ 4000 on CPU); both are reproduced because the offsets change float rounding.
    public static func batchedNMS(boxes: [Float], scores: [Float], groups: [Int], threshold: Double) -> [Int] {
        let n = scores.count
        if n == 0 { return [] }
        if 4 * n <= 4000 {
            var maxCoord = -Float.infinity
            for v in boxes { maxCoord = max(maxCoord, v) }
            var shifted = boxes
            for i in 0..<n {
                let off = Float(groups[i]) * (maxCoord + 1)
                for k in 0..<4 { shifted[4 * i + k] = boxes[4 * i + k] + off }
            }
            return shifted.withUnsafeBufferPointer { b in
                scores.withUnsafeBufferPointer { s in nms(boxes: b.baseAddress!, scores: s.baseAddress!, indices: Array(0..<n), threshold: threshold) }
            }
        }
        var byGroup: [Int: [Int]] = [:]
        for i in 0..<n { byGroup[groups[i], default: []].append(i) }
        var keep: [Int] = []
        boxes.withUnsafeBufferPointer { b in
            scores.withUnsafeBufferPointer { s in
                for (_, idx) in byGroup { keep += nms(boxes: b.baseAddress!, scores: s.baseAddress!, indices: idx, threshold: threshold) }
            }
        }
        keep.sort { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        return keep
    }
}
