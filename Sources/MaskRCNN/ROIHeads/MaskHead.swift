// Shapes: D detections (all images of the batch), C FPN channels, M = 28 mask side,
// K classes.
//
// torchvision's MaskRCNNHeads (3×3 convs + ReLU on 14×14 RoIAlign features) and
// MaskRCNNPredictor (2×2 stride-2 ConvTranspose2d + ReLU, 1×1 conv to K logits), on all
// detections of the batch at once; maskrcnn_inference keeps the labelled class's channel
// through a sigmoid.
import Tensor

public final class MaskHead {
    let pooler = MultiScaleROIAlign(outputSize: 14)
    let convs: [Conv2d]
    let deconv: Conv2d
    let logits: Conv2d
    public let layers: [Int]
    public let dimReduced: Int

    init(_ w: WeightLoader, channels: Int, numClasses: Int) throws {
        var convs: [Conv2d] = [], layers: [Int] = []
        var inC = channels
        while w.has("roi_heads.mask_head.\(convs.count).0.weight") {
            let shape = try w.shape("roi_heads.mask_head.\(convs.count).0.weight")
            convs.append(try w.conv("roi_heads.mask_head.\(convs.count).0", ConvGeometry(inChannels: inC, outChannels: shape[0], kernel: 3, padding: 1),
                                    bias: true, relu: true))
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
        self.convs = convs
        self.layers = layers
    }

    /// Sigmoid mask probabilities of each detection's labelled class, per image D_i×M×M.
    public func callAsFunction(_ features: [Tensor], detections: [ROIDetections], imageSizes: [(Int, Int)]) throws -> [[Float]] {
        var x = pooler(features, boxes: detections.map(\.boxes), imageSizes: imageSizes)
        guard x.shape[0] > 0 else { return detections.map { _ in [] } }
        for c in convs { x = try c(x) }
        let y = try logits(deconv(x)).plain()
        let k = y.shape[1], m = y.shape[2], plane = m * m
        return y.withFloats { src in
            var out: [[Float]] = []
            var r = 0
            for d in detections {
                var probs = [Float](repeating: 0, count: d.count * plane)
                for i in 0..<d.count {
                    let base = (r * k + d.labels[i]) * plane
                    for p in 0..<plane { probs[i * plane + p] = Kernels.sigmoid(src[base + p]) }
                    r += 1
                }
                out.append(probs)
            }
            return out
        }
    }

    /// M: the deconvolution doubles the 14×14 RoIAlign grid.
    public var maskSize: Int { 2 * pooler.outputSize }
}
