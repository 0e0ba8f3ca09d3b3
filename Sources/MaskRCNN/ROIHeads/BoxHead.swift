// Shapes: R proposals (all images of the batch together), C FPN channels, K classes
// (background included), D ≤ detectionsPerImage detections per image.
//
// torchvision's TwoMLPHead (fc6, fc7 with ReLU) or, in the _v2 models, FastRCNNConvFCHead
// (four 3×3 conv + BN + ReLU, flatten, one FC of 1024 + ReLU), then FastRCNNPredictor
// (cls_score, bbox_pred — fused into one Linear with K + 4K outputs), run on every RoI of the batch
// at once, then postprocess_detections per image: decode with weights (10, 10, 5, 5),
// softmax, clip, drop background, score > threshold, remove boxes < 0.01 px, batched NMS
// per class, keep the best detectionsPerImage.
import Tensor

public struct BoxHeadSettings: Sendable {
    public var scoreThreshold: Float = 0.05
    /// Double, as torchvision's NMS compares the IoU with it (see BoxOps.nms).
    public var nmsThreshold: Double = 0.5
    public var detectionsPerImage = 100
    public init() {}
}

/// One image's detections in the resized frame, before masks and postprocess.
public struct ROIDetections: Sendable {
    public var boxes: [Float]
    public var scores: [Float]
    public var labels: [Int]
    public var count: Int { scores.count }
    public init(boxes: [Float], scores: [Float], labels: [Int]) {
        self.boxes = boxes
        self.scores = scores
        self.labels = labels
    }
}

public final class BoxHead {
    public let numClasses: Int
    public let representationSize: Int
    let pooler = MultiScaleROIAlign(outputSize: 7)
    /// FastRCNNConvFCHead's 3×3 conv (+ BatchNorm) + ReLU layers on the 7×7 RoI features,
    /// `roi_heads.box_head.i.0` (+ `.i.1`); none in TwoMLPHead.
    let convs: [Conv2d]
    /// Whether those convs carry a BatchNorm (v2: its γ, β count as parameters).
    public let convNorm: Bool
    /// The fully connected layers (+ ReLU) after flattening: TwoMLPHead's fc6, fc7, or
    /// FastRCNNConvFCHead's `box_head.(n+1)`, `.(n+3)`… (after n convs and the Flatten).
    let fcs: [Linear]
    let fcNames: [String]
    let predictor: Linear
    let coder = BoxCoder(weights: (10, 10, 5, 5))
    public var settings: BoxHeadSettings
    /// The convs and FC layers run in this type (RoIAlign's f32 output is narrowed first); the predictor
    /// always writes f32 logits for the f32 decoding, scores and NMS.
    var computeType: DType = .f32

    init(_ w: WeightLoader, channels: Int, settings: BoxHeadSettings, bnEps: Float) throws {
        let p = "roi_heads.box_head"
        var convs: [Conv2d] = [], fcs: [Linear] = [], names: [String] = []
        var c = channels
        if w.has(p + ".fc6.weight") {
            // TwoMLPHead (maskrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn).
            let fc6Shape = try w.shape(p + ".fc6.weight")
            guard fc6Shape.count == 2, fc6Shape[1] == channels * 49 else {
                throw ModelError.architecture(path: w.path, reason: "\(p).fc6.weight has shape \(fc6Shape), expected R×\(channels * 49) for \(channels) FPN channels × 7×7")
            }
            fcs.append(try w.linear(p + ".fc6", in: channels * 49, out: fc6Shape[0], relu: true))
            fcs.append(try w.linear(p + ".fc7", in: fc6Shape[0], out: try w.shape(p + ".fc7.weight")[0], relu: true))
            names = [p + ".fc6", p + ".fc7"]
            convNorm = false
        } else if w.has(p + ".0.0.weight") {
            // FastRCNNConvFCHead (the _v2 models): Sequential(conv blocks…, Flatten, (Linear, ReLU)…).
            convNorm = w.has(p + ".0.1.weight")
            while w.has("\(p).\(convs.count).0.weight") {
                let i = convs.count, shape = try w.shape("\(p).\(i).0.weight")
                let g = ConvGeometry(inChannels: c, outChannels: shape[0], kernel: 3, padding: 1)
                convs.append(convNorm ? try w.conv("\(p).\(i).0", g, bn: "\(p).\(i).1", eps: bnEps, relu: true)
                                      : try w.conv("\(p).\(i).0", g, bias: true, relu: true))
                c = shape[0]
            }
            var index = convs.count + 1, inFeatures = c * 49
            while w.has("\(p).\(index).weight") {
                let out = try w.shape("\(p).\(index).weight")[0]
                fcs.append(try w.linear("\(p).\(index)", in: inFeatures, out: out, relu: true))
                names.append("\(p).\(index)")
                inFeatures = out
                index += 2
            }
            guard !fcs.isEmpty else {
                throw ModelError.missingKey(path: w.path, key: "\(p).\(convs.count + 1).weight", expected: [1024, c * 49])
            }
        } else {
            throw ModelError.missingKey(path: w.path, key: p + ".fc6.weight", expected: nil)
        }
        let rep = fcs.last!.outFeatures
        representationSize = rep
        let k = try w.shape("roi_heads.box_predictor.cls_score.weight")[0]
        numClasses = k
        let cw = try w.take("roi_heads.box_predictor.cls_score.weight", [k, rep]), cb = try w.take("roi_heads.box_predictor.cls_score.bias", [k])
        let bw = try w.take("roi_heads.box_predictor.bbox_pred.weight", [4 * k, rep]), bb = try w.take("roi_heads.box_predictor.bbox_pred.bias", [4 * k])
        predictor = try Linear(inFeatures: rep, outFeatures: 5 * k, weight: cw + bw, bias: cb + bb)
        self.convs = convs
        self.fcs = fcs
        fcNames = names
        self.settings = settings
    }

    /// The box head's layer widths: conv channels, then FC widths.
    public var convLayers: [Int] { convs.map(\.geometry.outChannels) }
    public var fcLayers: [Int] { fcs.map(\.outFeatures) }

    /// Class logits (R×K) and box regression (R×4K) for all proposals of the batch.
    public func logits(_ features: [Tensor], proposals: [Proposals], imageSizes: [(Int, Int)]) throws -> (classLogits: [Float], boxRegression: [Float]) {
        var x = try pooler(features, boxes: proposals.map(\.boxes), imageSizes: imageSizes).converted(to: computeType)
        let k = numClasses, r = x.shape[0]
        var cls = [Float](repeating: 0, count: r * k), reg = [Float](repeating: 0, count: r * 4 * k)
        guard r > 0 else { return (cls, reg) }
        for c in convs { x = try c(x) }
        for fc in fcs { x = try fc(x) }
        try predictor(x, outputType: .f32).host().withFloats { y in
            for i in 0..<r {
                for j in 0..<k { cls[i * k + j] = y[i * 5 * k + j] }
                for j in 0..<(4 * k) { reg[i * 4 * k + j] = y[i * 5 * k + k + j] }
            }
        }
        return (cls, reg)
    }

    public func callAsFunction(_ features: [Tensor], proposals: [Proposals], imageSizes: [(Int, Int)]) throws -> [ROIDetections] {
        let (cls, reg) = try logits(features, proposals: proposals, imageSizes: imageSizes)
        var offset = 0
        return proposals.enumerated().map { (i, p) in
            defer { offset += p.count }
            return postprocess(cls: cls, reg: reg, first: offset, proposals: p, imageSize: imageSizes[i])
        }
    }

    /// torchvision's postprocess_detections for the proposals [first, first + P).
    func postprocess(cls: [Float], reg: [Float], first: Int, proposals p: Proposals, imageSize: (Int, Int)) -> ROIDetections {
        let k = numClasses
        let scores = cls.withUnsafeBufferPointer { c in
            Kernels.softmaxRows(UnsafeBufferPointer(rebasing: c[(first * k)..<((first + p.count) * k)]), rows: p.count, cols: k)
        }
        var boxes: [Float] = [], ss: [Float] = [], labels: [Int] = []
        var box = [Float](repeating: 0, count: 4)
        reg.withUnsafeBufferPointer { r in
            p.boxes.withUnsafeBufferPointer { pb in
                for i in 0..<p.count {
                    // Flattened as torchvision's boxes[:, 1:].reshape(-1, 4): RoI-major, class-minor.
                    for j in 1..<k {
                        let s = scores[i * k + j]
                        guard s > settings.scoreThreshold else { continue }
                        coder.decode(r.baseAddress! + (first + i) * 4 * k + 4 * j, reference: pb.baseAddress! + 4 * i, into: &box)
                        box.withUnsafeMutableBufferPointer { BoxOps.clip($0.baseAddress!, height: imageSize.0, width: imageSize.1) }
                        guard box.withUnsafeBufferPointer({ BoxOps.isLargeEnough($0.baseAddress!, minSize: 1e-2) }) else { continue }
                        boxes += box
                        ss.append(s)
                        labels.append(j)
                    }
                }
            }
        }
        let keep = BoxOps.batchedNMS(boxes: boxes, scores: ss, groups: labels, threshold: settings.nmsThreshold).prefix(settings.detectionsPerImage)
        var out = ROIDetections(boxes: [], scores: [], labels: [])
        for i in keep {
            out.boxes += boxes[(4 * i)..<(4 * i + 4)]
            out.scores.append(ss[i])
            out.labels.append(labels[i])
        }
        return out
    }
}
