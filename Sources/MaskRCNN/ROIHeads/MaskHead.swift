// Shapes: D detections (all images of the batch), C FPN channels, M = 28 mask side,
// K classes.
//
// torchvision's MaskRCNNHeads (3×3 convs + ReLU on 14×14 RoIAlign features; in v2 each
// conv is bias-free and followed by a BatchNorm2d, folded at load) and
// MaskRCNNPredictor (2×2 stride-2 ConvTranspose2d + ReLU, 1×1 conv to K logits), on all
// detections of the batch at once; maskrcnn_inference keeps the labelled class's channel
// through a sigmoid.
import Tensor

public final class MaskHead {
    let pooler = MultiScaleROIAlign(outputSize: 14)
    let convs: [Conv2d]
    let deconv: Conv2d
    let logits: Conv2d
    /// mask_fcn_logits as plain K×C weights and K biases: only the labelled class of each
    /// detection is ever read, so it is computed for that class alone (1/K of the work,
    /// and no K×28×28 tensor per detection).
    let logitWeights: [Float], logitBias: [Float]
    public let layers: [Int]
    public let dimReduced: Int
    /// The convolutions run in this type; the logits are computed in f32 from the
    /// deconvolution's f32 output.
    var computeType: DType = .f32

    /// Whether the head's convs carry a BatchNorm (v2, `mask_head.i.1`; its γ, β count as parameters).
    public let norm: Bool

    /// The mask head, or nil when the state dict has none (Faster R-CNN: boxes only).
    static func load(_ w: WeightLoader, channels: Int, numClasses: Int, bnEps: Float) throws -> MaskHead? {
        let any = w.state.tensors.keys.contains { $0.hasPrefix("roi_heads.mask_head.") || $0.hasPrefix("roi_heads.mask_predictor.") }
        return any ? try MaskHead(w, channels: channels, numClasses: numClasses, bnEps: bnEps) : nil
    }

    init(_ w: WeightLoader, channels: Int, numClasses: Int, bnEps: Float) throws {
        var convs: [Conv2d] = [], layers: [Int] = []
        var inC = channels
        norm = w.has("roi_heads.mask_head.0.1.weight")
        while w.has("roi_heads.mask_head.\(convs.count).0.weight") {
            let p = "roi_heads.mask_head.\(convs.count)"
            let shape = try w.shape(p + ".0.weight")
            let g = ConvGeometry(inChannels: inC, outChannels: shape[0], kernel: 3, padding: 1)
            convs.append(norm ? try w.conv(p + ".0", g, bn: p + ".1", eps: bnEps, relu: true) : try w.conv(p + ".0", g, bias: true, relu: true))
            inC = shape[0]
            layers.append(shape[0])
        }
        guard !convs.isEmpty else { throw ModelError.missingKey(path: w.path, key: "roi_heads.mask_head.0.0.weight", expected: nil) }
        let dShape = try w.shape("roi_heads.mask_predictor.conv5_mask.weight")
        dimReduced = dShape[1]
        deconv = try w.conv("roi_heads.mask_predictor.conv5_mask", ConvGeometry(inChannels: inC, outChannels: dimReduced, kernel: 2, stride: 2),
                            bias: true, relu: true, transposed: true)
        logits = try w.conv("roi_heads.mask_predictor.mask_fcn_logits", ConvGeometry(inChannels: dimReduced, outChannels: numClasses, kernel: 1),
                            bias: true, relu: false)
        logitWeights = w.state["roi_heads.mask_predictor.mask_fcn_logits.weight"]!.values
        logitBias = w.state["roi_heads.mask_predictor.mask_fcn_logits.bias"]!.values
        self.convs = convs
        self.layers = layers
    }

    /// Sigmoid mask probabilities of each detection's labelled class, per image D_i×M×M.
    public func callAsFunction(_ features: [Tensor], detections: [ROIDetections], imageSizes: [(Int, Int)]) throws -> [[Float]] {
        var x = try pooler(features, boxes: detections.map(\.boxes), imageSizes: imageSizes)
        guard x.shape[0] > 0 else { return detections.map { _ in [] } }
        x = try x.converted(to: computeType)
        for c in convs { x = try c(x) }
        // The deconvolution's pre-shuffle output: D×(C·4)×14×14 channel-blocked (channels-
        // last on AVX-512, nChw8c on AVX2), channel c·4 + dy·2 + dx holding mask pixel
        // (2y + dy, 2x + dx) of channel c. Each logit sums its C products in channel order,
        // as the planar loop did (bit-identical): blocks in order, every 4th within a block.
        let y = try deconv.preShuffleOutput(x)
        let c = dimReduced, s = y.shape[2], m = 2 * s, plane = s * s
        let labels = detections.flatMap(\.labels)
        var probs = [Float](repeating: 0, count: labels.count * m * m)
        let (src, layout) = y.channelBlocked
        let block = layout.block, blocks = layout.blocks(channels: 4 * c)
        precondition(block % 4 == 0, "mask logits: channel block \(block) splits a pixel's 2×2 outputs")
        probs.withUnsafeMutableBufferPointer { out in
            Parallel.forEach(labels.count) { r in
                let k = labels[r]
                logitWeights.withUnsafeBufferPointer { wk in
                    let w = wk.baseAddress! + k * c
                    for p in 0..<plane {
                        let pixel = src.baseAddress! + layout.offset(n: r, c: 0, y: p / s, x: p % s)
                        for sub in 0..<4 {
                            var acc = logitBias[k]
                            for cb in 0..<blocks {
                                let values = pixel + cb * layout.blockStride, firstChannel = cb * block / 4
                                for i in 0..<min(block / 4, c - firstChannel) { acc += w[firstChannel + i] * values[i * 4 + sub] }
                            }
                            let dy = sub / 2, dx = sub % 2, yy = p / s, xx = p % s
                            out[r * m * m + (2 * yy + dy) * m + 2 * xx + dx] = Kernels.sigmoid(acc)
                        }
                    }
                }
            }
        }
        withExtendedLifetime(y) {}
        var result: [[Float]] = []
        var first = 0
        for d in detections {
            result.append(Array(probs[(first * m * m)..<((first + d.count) * m * m)]))
            first += d.count
        }
        return result
    }

    /// M: the deconvolution doubles the 14×14 RoIAlign grid.
    public var maskSize: Int { 2 * pooler.outputSize }
}
