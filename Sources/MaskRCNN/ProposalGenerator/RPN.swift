// Shapes: N images, L levels (P2..P6), A anchors per location, Hl×Wl a level's grid,
// K = Σ Hl·Wl·A anchors per image.
//
// torchvision's RegionProposalNetwork in eval mode: a shared 3×3 conv + ReLU, then 1×1
// convs for objectness (A) and deltas (4A) — fused here into one 1×1 conv with 5A outputs,
// which is the same arithmetic per output channel. Per image and level, the top
// preNMSTopN logits are kept *before* decoding (decoding the rest is wasted work), then
// sigmoid, clip, remove small, batched NMS by level, keep postNMSTopN.
import Tensor

/// One image's proposals in the resized-image frame.
public struct Proposals: Sendable {
    /// P×4, (x1, y1, x2, y2).
    public var boxes: [Float]
    /// P objectness probabilities, descending.
    public var scores: [Float]
    public var count: Int { scores.count }

    public init(boxes: [Float], scores: [Float]) {
        self.boxes = boxes
        self.scores = scores
    }
}

public struct RPNSettings: Sendable {
    public var preNMSTopN = 1000
    public var postNMSTopN = 1000
    /// Double, as torchvision's NMS compares the IoU with it (see BoxOps.nms).
    public var nmsThreshold: Double = 0.7
    public var minSize: Float = 1e-3
    public var scoreThreshold: Float = 0.0
    public init() {}
}

/// The raw head outputs of one level, plain N×A×Hl×Wl and N×4A×Hl×Wl.
public struct RPNLevelOutput {
    public var objectness: Tensor
    public var deltas: Tensor
}

final class RPNHead {
    let convs: [Conv2d]
    let predictor: Conv2d  // objectness ⊕ deltas
    let anchorsPerLocation: Int

    init(_ w: WeightLoader, prefix: String, channels: Int) throws {
        var convs: [Conv2d] = []
        var i = 0
        while w.has("\(prefix).conv.\(i).0.weight") {
            convs.append(try w.conv("\(prefix).conv.\(i).0", ConvGeometry(inChannels: channels, outChannels: channels, kernel: 3, padding: 1),
                                    bias: true, relu: true))
            i += 1
        }
        guard !convs.isEmpty else { throw ModelError.missingKey(path: w.path, key: "\(prefix).conv.0.0.weight", expected: [channels, channels, 3, 3]) }
        let a = try w.shape(prefix + ".cls_logits.weight")[0]
        anchorsPerLocation = a
        let cw = try w.take(prefix + ".cls_logits.weight", [a, channels, 1, 1]), cb = try w.take(prefix + ".cls_logits.bias", [a])
        let bw = try w.take(prefix + ".bbox_pred.weight", [4 * a, channels, 1, 1]), bb = try w.take(prefix + ".bbox_pred.bias", [4 * a])
        predictor = try Conv2d(ConvGeometry(inChannels: channels, outChannels: 5 * a, kernel: 1), weight: cw + bw, bias: cb + bb)
        self.convs = convs
    }

    /// Per level: N×5A×Hl×Wl plain (objectness channels first, then deltas).
    func callAsFunction(_ features: [Tensor]) throws -> [Tensor] {
        try features.map { f in
            var t = f
            for c in convs { t = try c(t) }
            return try predictor(t, outputType: .f32).host()
        }
    }
}

public final class RPN {
    let head: RPNHead
    public let anchorGenerator: AnchorGenerator
    public var settings: RPNSettings
    let coder = BoxCoder(weights: (1, 1, 1, 1))

    init(_ w: WeightLoader, channels: Int, anchors: AnchorGenerator, settings: RPNSettings) throws {
        head = try RPNHead(w, prefix: "rpn.head", channels: channels)
        guard head.anchorsPerLocation == anchors.anchorsPerLocation else {
            throw ModelError.architecture(path: w.path, reason: "rpn.head predicts \(head.anchorsPerLocation) anchors per location, the anchor generator makes \(anchors.anchorsPerLocation)")
        }
        anchorGenerator = anchors
        self.settings = settings
    }

    /// Raw head outputs per level (for checking against the reference).
    public func headOutputs(_ features: [Tensor]) throws -> [RPNLevelOutput] {
        let a = head.anchorsPerLocation
        return try head(features).map { t in
            let n = t.shape[0], h = t.shape[2], w = t.shape[3]
            let obj = Tensor.uninitialized([n, a, h, w]), del = Tensor.uninitialized([n, 4 * a, h, w])
            let src = t.floats, o = obj.floats, d = del.floats, plane = h * w
            for i in 0..<n {
                let base = i * 5 * a * plane
                for c in 0..<a { for p in 0..<plane { o[(i * a + c) * plane + p] = src[base + c * plane + p] } }
                for c in 0..<(4 * a) { for p in 0..<plane { d[(i * 4 * a + c) * plane + p] = src[base + (a + c) * plane + p] } }
            }
            return RPNLevelOutput(objectness: obj, deltas: del)
        }
    }

    /// Proposals per image. `imageSizes` are the resized (unpadded) sizes, (h, w).
    public func callAsFunction(_ features: [Tensor], imageSizes: [(Int, Int)], paddedSize: (Int, Int)) throws -> [Proposals] {
        let outs = try head(features)
        let a = head.anchorsPerLocation
        let n = imageSizes.count
        var levelAnchors: [[Float]] = []
        for (l, t) in outs.enumerated() {
            levelAnchors.append(anchorGenerator.anchors(level: l, gridHeight: t.shape[2], gridWidth: t.shape[3],
                                                        paddedHeight: paddedSize.0, paddedWidth: paddedSize.1))
        }
        var result: [Proposals] = []
        for i in 0..<n {
            var boxes: [Float] = [], logits: [Float] = [], levels: [Int] = []
            for (l, t) in outs.enumerated() {
                let h = t.shape[2], w = t.shape[3], plane = h * w
                let src = t.floats
                let base = i * 5 * a * plane
                // Objectness in torchvision's flattened (y, x, a) order.
                var obj = [Float](repeating: 0, count: plane * a)
                for c in 0..<a { for p in 0..<plane { obj[p * a + c] = src[base + c * plane + p] } }
                let top = obj.withUnsafeBufferPointer { Kernels.topK($0, settings.preNMSTopN) }
                levelAnchors[l].withUnsafeBufferPointer { anchors in
                    var delta = [Float](repeating: 0, count: 4), box = [Float](repeating: 0, count: 4)
                    for k in top {
                        let p = k / a, c = k % a
                        for j in 0..<4 { delta[j] = src[base + (a + 4 * c + j) * plane + p] }
                        coder.decode(delta, reference: anchors.baseAddress! + 4 * k, into: &box)
                        boxes += box
                        logits.append(obj[k])
                        levels.append(l)
                    }
                }
            }
            result.append(filter(boxes: boxes, logits: logits, levels: levels, imageSize: imageSizes[i]))
        }
        return result
    }

    /// torchvision's filter_proposals for one image, after the per-level top-k.
    func filter(boxes: [Float], logits: [Float], levels: [Int], imageSize: (Int, Int)) -> Proposals {
        var kb: [Float] = [], ks: [Float] = [], kl: [Int] = []
        var boxes = boxes
        boxes.withUnsafeMutableBufferPointer { b in
            for i in 0..<logits.count {
                let p = b.baseAddress! + 4 * i
                BoxOps.clip(p, height: imageSize.0, width: imageSize.1)
                let s = Kernels.sigmoid(logits[i])
                guard BoxOps.isLargeEnough(p, minSize: settings.minSize), s >= settings.scoreThreshold else { continue }
                kb += [p[0], p[1], p[2], p[3]]
                ks.append(s)
                kl.append(levels[i])
            }
        }
        let keep = BoxOps.batchedNMS(boxes: kb, scores: ks, groups: kl, threshold: settings.nmsThreshold).prefix(settings.postNMSTopN)
        var out = Proposals(boxes: [], scores: [])
        out.boxes.reserveCapacity(keep.count * 4)
        for k in keep {
            out.boxes += kb[(4 * k)..<(4 * k + 4)]
            out.scores.append(ks[k])
        }
        return out
    }
}
