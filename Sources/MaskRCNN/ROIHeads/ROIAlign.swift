// Shapes: R RoIs over N images, C channels, S×S output (7 for boxes, 14 for masks),
// levels P2..P5 (torchvision's MultiScaleRoIAlign over featmap names "0".."3").
//
// torchvision.ops.roi_align with aligned=False and sampling_ratio=2 (CPU kernel:
// bilinear weights precomputed per RoI, averaged over the 2×2 samples of each bin),
// and MultiScaleRoIAlign's LevelMapper: level = floor(4 + log2(√area / 224) + 1e-6),
// clamped to the levels present. Parallel over RoIs.
import Foundation
import Tensor

public struct MultiScaleROIAlign: Sendable {
    public var outputSize: Int
    public var samplingRatio: Int = 2
    public init(outputSize: Int, samplingRatio: Int = 2) {
        self.outputSize = outputSize
        self.samplingRatio = samplingRatio
    }

    /// - Parameters:
    ///   - features: N×C×Hl×Wl tensors for P2..P5, in any layout and type; read with each
    ///     pixel's channels in contiguous blocks (`hostChannelBlocked()`, free for f32
    ///     convolution outputs).
    ///   - boxes: per image, R_i×4 boxes in the resized frame.
    ///   - imageSizes: resized (unpadded) sizes, used as torchvision does to infer each
    ///     level's scale (2^round(log2(Hl / max h))).
    /// - Returns: (ΣR_i)×C×S×S, plain.
    public func callAsFunction(_ features: [Tensor], boxes: [[Float]], imageSizes: [(Int, Int)]) throws -> Tensor {
        let features = try features.map { try $0.hostChannelBlocked() }
        let c = features[0].shape[1], s = outputSize
        let rois = boxes.enumerated().flatMap { (i, b) in (0..<(b.count / 4)).map { (i, Array(b[(4 * $0)..<(4 * $0 + 4)])) } }
        let out = Tensor.uninitialized([rois.count, c, s, s])
        if rois.isEmpty { return out }
        let maxH = imageSizes.map(\.0).max()!
        let scales: [Float] = features.map { f in
            Float(pow(2.0, (log2(Double(f.shape[2]) / Double(maxH))).rounded(.toNearestOrEven)))
        }
        // LevelMapper's k_min/k_max come from the first and last scales.
        let kMin = -log2(scales.first!), kMax = -log2(scales.last!)
        let dst = out.floats
        let feats = features.map { $0.channelBlocked }
        Parallel.forEach(rois.count) { r in
            let (img, b) = rois[r]
            let area = (b[2] - b[0]) * (b[3] - b[1])
            var lvl = (Float(4) + log2f(area.squareRoot() / 224) + Float(1e-6)).rounded(.down)
            lvl = min(max(lvl, kMin), kMax)
            let l = Int(lvl - kMin)
            let f = features[l]
            roiAlign(feats[l].values, feats[l].layout, image: img, channels: c, height: f.shape[2], width: f.shape[3],
                     scale: scales[l], box: b, into: dst.baseAddress! + r * c * s * s)
        }
        return withExtendedLifetime(features) { out }
    }

    private struct Tap { var pos: (Int, Int, Int, Int); var w: (Float, Float, Float, Float) }

    /// One RoI, all channels: torchvision roi_align_forward_kernel_impl's arithmetic.
    func roiAlign(_ input: UnsafeBufferPointer<Float>, _ layout: ChannelBlockedLayout, image: Int, channels: Int, height: Int, width: Int,
                  scale: Float, box: [Float], into out: UnsafeMutablePointer<Float>) {
        let s = outputSize
        let startW = box[0] * scale, startH = box[1] * scale
        let endW = box[2] * scale, endH = box[3] * scale
        let roiW = max(endW - startW, 1), roiH = max(endH - startH, 1)
        let binH = roiH / Float(s), binW = roiW / Float(s)
        let gridH = samplingRatio, gridW = samplingRatio
        let count = Float(max(gridH * gridW, 1))
        var taps: [Tap] = []
        taps.reserveCapacity(s * s * gridH * gridW)
        for ph in 0..<s {
            for pw in 0..<s {
                for iy in 0..<gridH {
                    let yy = startH + Float(ph) * binH + Float(Double(iy) + 0.5) * binH / Float(gridH)
                    for ix in 0..<gridW {
                        let xx = startW + Float(pw) * binW + Float(Double(ix) + 0.5) * binW / Float(gridW)
                        var y = yy, x = xx
                        if y < -1.0 || y > Float(height) || x < -1.0 || x > Float(width) {
                            taps.append(Tap(pos: (0, 0, 0, 0), w: (0, 0, 0, 0)))
                            continue
                        }
                        if y <= 0 { y = 0 }
                        if x <= 0 { x = 0 }
                        var yLow = Int(y), xLow = Int(x)
                        let yHigh: Int, xHigh: Int
                        if yLow >= height - 1 { yLow = height - 1; yHigh = yLow; y = Float(yLow) } else { yHigh = yLow + 1 }
                        if xLow >= width - 1 { xLow = width - 1; xHigh = xLow; x = Float(xLow) } else { xHigh = xLow + 1 }
                        let ly = y - Float(yLow), lx = x - Float(xLow)
                        let hy = 1 - ly, hx = 1 - lx
                        taps.append(Tap(pos: (yLow * width + xLow, yLow * width + xHigh, yHigh * width + xLow, yHigh * width + xHigh),
                                        w: (hy * hx, hy * lx, ly * hx, ly * lx)))
                    }
                }
            }
        }
        // Channel-blocked input: each tap reads each block's contiguous values, summed per
        // channel in torchvision's order (Σ over taps of w₀a + w₁b + w₂c + w₃d, then ÷ count),
        // so the result is bit-identical to the planar loop it replaced.
        let perBin = gridH * gridW
        let src = input.baseAddress! + layout.offset(n: image, c: 0, y: 0, x: 0)
        let block = layout.block, blocks = layout.blocks(channels: channels)
        var acc = [Float](repeating: 0, count: channels)
        acc.withUnsafeMutableBufferPointer { acc in
            var t = 0
            for bin in 0..<(s * s) {
                for ch in 0..<channels { acc[ch] = 0 }
                for _ in 0..<perBin {
                    let tap = taps[t]
                    for cb in 0..<blocks {
                        let base = src + cb * layout.blockStride, first = cb * block
                        let p0 = base + tap.pos.0 * block, p1 = base + tap.pos.1 * block
                        let p2 = base + tap.pos.2 * block, p3 = base + tap.pos.3 * block
                        for i in 0..<min(block, channels - first) {
                            acc[first + i] += tap.w.0 * p0[i] + tap.w.1 * p1[i] + tap.w.2 * p2[i] + tap.w.3 * p3[i]
                        }
                    }
                    t += 1
                }
                for ch in 0..<channels { out[ch * s * s + bin] = acc[ch] / count }
            }
        }
    }
}
