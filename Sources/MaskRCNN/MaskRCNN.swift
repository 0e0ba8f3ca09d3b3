// Shapes: N images, Hi×Wi original sizes, hi×wi resized sizes, Hp×Wp the padded batch
// size (multiple of 32), P2..P6 feature maps, R proposals, D detections per image.
//
// torchvision's MaskRCNN and FasterRCNN (GeneralizedRCNN; Faster R-CNN is the same model
// without the mask head, so `masks` returns none) in eval mode, split into the stages the
// pipeline runs on its own queues (PipelineStage.model: preprocess → backbone → rpn →
// detect → mask → postprocess). Every stage takes and returns plain values, so each can be run (and
// checked against the reference) on its own.
import Foundation
import Tensor

/// An RGB8 image handed to the model: row-major, 3 bytes a pixel.
public struct ModelImage: Sendable {
    public var width: Int
    public var height: Int
    public var rgb: [UInt8]
    public init(width: Int, height: Int, rgb: [UInt8]) {
        self.width = width
        self.height = height
        self.rgb = rgb
    }
}

/// The preprocessed batch: normalized, resized, zero-padded to a multiple of 32.
public struct ImageBatch: @unchecked Sendable {
    /// N×3×Hp×Wp, plain.
    public var tensor: Tensor
    /// Resized (unpadded) (h, w) per image.
    public var imageSizes: [(Int, Int)]
    /// Original (H, W) per image.
    public var originalSizes: [(Int, Int)]
    public var paddedSize: (Int, Int) { (tensor.shape[2], tensor.shape[3]) }

    public init(tensor: Tensor, imageSizes: [(Int, Int)], originalSizes: [(Int, Int)]) {
        self.tensor = tensor
        self.imageSizes = imageSizes
        self.originalSizes = originalSizes
    }
}

/// The FPN outputs P2..P6 in oneDNN's layout (and the model's element type), and P2..P5
/// as channel-blocked f32 host tensors that RoIAlign reads (made once per batch, shared by the box
/// and mask heads).
public final class FeatureMaps: @unchecked Sendable {
    public let levels: [Tensor]
    private var plainCache: [Tensor]?
    private let lock = NSLock()
    public init(_ levels: [Tensor]) { self.levels = levels }

    /// P2..P5 as channel-blocked f32 host tensors (no copy for f32 convolution outputs; a
    /// widening copy for bf16).
    public func poolerInputs() throws -> [Tensor] {
        lock.lock()
        defer { lock.unlock() }
        if let p = plainCache { return p }
        let p = try levels.prefix(4).map { try $0.hostChannelBlocked() }
        plainCache = p
        return p
    }
}

public struct ModelArchitecture: Sendable {
    /// torchvision's two detection layouts. v1 (maskrcnn_resnet50_fpn,
    /// fasterrcnn_resnet50_fpn): FrozenBatchNorm2d in the ResNet only, biased FPN convs,
    /// one RPN conv, TwoMLPHead. v2 (the _v2 builders, from "Benchmarking Detection Transfer
    /// Learning with Vision Transformers"): BatchNorm2d in the ResNet, the FPN and the heads,
    /// two RPN convs, FastRCNNConvFCHead. Told apart by the FPN's BatchNorm keys; each
    /// head then reads its own layout from its keys.
    public enum Layout: String, Sendable { case v1, v2 }
    public var layout: Layout
    public var resnet: ResNetArchitecture
    public var fpnChannels: Int
    public var rpnConvs: Int
    public var anchorsPerLocation: Int
    /// FastRCNNConvFCHead's conv widths (empty for TwoMLPHead) and the FC widths.
    public var boxConvLayers: [Int]
    public var boxFCLayers: [Int]
    public var boxRepresentationSize: Int
    /// False for Faster R-CNN (no mask head in the file): detections have boxes only.
    public var hasMasks: Bool
    public var maskLayers: [Int]
    public var maskDimReduced: Int
    public var numClasses: Int

    /// The torchvision builder this layout is, e.g. "maskrcnn_resnet50_fpn_v2",
    /// "fasterrcnn_resnet50_fpn" (other depths and widths name their ResNet).
    public var name: String {
        let r = resnet
        let depth = r.blocksPerStage.reduce(0, +) * (r.block == .bottleneck ? 3 : 2) + 2
        let body = r.groups > 1 ? "resnext\(depth)_\(r.groups)x\(r.stageWidths[0] / r.groups)d" : "resnet\(depth)"
        return (hasMasks ? "maskrcnn" : "fasterrcnn") + "_\(body)_fpn" + (layout == .v2 ? "_v2" : "")
    }
}

public final class MaskRCNN: @unchecked Sendable {
    public private(set) var config: ModelConfig
    public let architecture: ModelArchitecture
    let body: ResNet
    let fpn: FPN
    let rpn: RPN
    let boxHead: BoxHead
    /// nil for Faster R-CNN.
    let maskHead: MaskHead?
    /// What the convolutions and FC layers compute in, and why (the CPU's ISA or the request).
    public private(set) var precision: ResolvedPrecision

    /// Builds the model from a state dict (torchvision key names, old or new), strictly:
    /// every key must be used, with the shape the architecture read from the dict implies.
    /// - Parameters:
    ///   - frozenBNEpsilon: overrides the file's (or the 0.0 default's) ε of the v1 ResNet's
    ///     FrozenBatchNorm2d.
    ///   - precision: fp32 (torchvision's arithmetic) or bf16, resolved by the caller
    ///     (`Precision.candidates(on:)`; auto's choice between them is measured on the model).
    ///   - classNames: the class names (background first), overriding the file's; their
    ///     number must be the model's.
    public init(stateDict: StateDict, config base: ModelConfig = ModelConfig(), frozenBNEpsilon: Float? = nil,
                precision: ResolvedPrecision = .fp32, classNames: ClassNames? = nil) throws {
        self.precision = precision
        var config = base
        try config.apply(metadata: stateDict.metadata, path: stateDict.path)
        if let e = frozenBNEpsilon { config.frozenBNEpsilon = e }
        let w = WeightLoader(stateDict.normalizedTorchvisionKeys())
        let layout: ModelArchitecture.Layout = w.has("backbone.fpn.inner_blocks.0.1.weight") ? .v2 : .v1
        // v2's ResNet has nn.BatchNorm2d (ε 1e-5 unless the file says otherwise), v1's FrozenBatchNorm2d.
        body = try ResNet(w, prefix: "backbone.body", eps: layout == .v2 ? config.batchNormEpsilon : config.frozenBNEpsilon)
        fpn = try FPN(w, prefix: "backbone.fpn", inChannels: body.architecture.stageChannels, bnEps: config.batchNormEpsilon)
        rpn = try RPN(w, channels: fpn.outChannels, anchors: config.anchors, settings: config.rpn)
        boxHead = try BoxHead(w, channels: fpn.outChannels, settings: config.box, bnEps: config.batchNormEpsilon)
        maskHead = try MaskHead.load(w, channels: fpn.outChannels, numClasses: boxHead.numClasses, bnEps: config.batchNormEpsilon)
        try w.finish()
        boxHead.computeType = self.precision.dtype
        maskHead?.computeType = self.precision.dtype
        if let names = classNames {
            guard names.names.count == boxHead.numClasses else {
                throw ModelError.classCount(path: stateDict.path, namesFile: names.source, names: names.names.count, classes: boxHead.numClasses)
            }
            config.classNames = names.names
        } else if stateDict.metadata["classes"] == nil, boxHead.numClasses != config.classNames.count {
            // A .pth carries no names: COCO's when it has 91 classes, else numbered ones.
            config.classNames = ["__background__"] + (1..<boxHead.numClasses).map { "class\($0)" }
        }
        guard config.classNames.count == boxHead.numClasses else {
            throw ModelError.classCount(path: stateDict.path, namesFile: nil, names: config.classNames.count, classes: boxHead.numClasses)
        }
        self.config = config
        architecture = ModelArchitecture(layout: layout, resnet: body.architecture, fpnChannels: fpn.outChannels, rpnConvs: rpn.head.convs.count,
                                         anchorsPerLocation: rpn.head.anchorsPerLocation, boxConvLayers: boxHead.convLayers,
                                         boxFCLayers: boxHead.fcLayers, boxRepresentationSize: boxHead.representationSize,
                                         hasMasks: maskHead != nil, maskLayers: maskHead?.layers ?? [], maskDimReduced: maskHead?.dimReduced ?? 0,
                                         numClasses: boxHead.numClasses)
    }

    /// Loads a weights file (.pth zip or legacy, .safetensors).
    public convenience init(contentsOf path: String, config: ModelConfig = ModelConfig(), frozenBNEpsilon: Float? = nil,
                            precision: ResolvedPrecision = .fp32, classNames: ClassNames? = nil) throws {
        try self.init(stateDict: WeightsFile.load(path), config: config, frozenBNEpsilon: frozenBNEpsilon, precision: precision,
                      classNames: classNames)
    }

    /// Restates why this model's precision runs (auto's measured choice); the type stays.
    public func explainPrecision(_ reason: String) {
        precision = ResolvedPrecision(dtype: precision.dtype, reason: reason)
    }

    /// Thresholds that may change between runs without reloading weights.
    public func setInferenceOptions(scoreThreshold: Float? = nil, detectionsPerImage: Int? = nil, maskThreshold: Float? = nil) {
        if let s = scoreThreshold { config.box.scoreThreshold = s; boxHead.settings.scoreThreshold = s }
        if let d = detectionsPerImage { config.box.detectionsPerImage = d; boxHead.settings.detectionsPerImage = d }
        if let m = maskThreshold { config.maskThreshold = m }
    }

    /// Resize targets (torchvision's min_size / max_size).
    public func setSizes(minSize: Int?, maxSize: Int?) {
        if let m = minSize { config.minSize = m }
        if let m = maxSize { config.maxSize = m }
    }

    // MARK: stages

    /// The resized size torchvision's transform gives an H×W image:
    /// scale = min(minSize / min(H, W), maxSize / max(H, W)) in double, size = ⌊side·scale⌋.
    public func resizedSize(height: Int, width: Int) -> (Int, Int) {
        let scale = min(Double(config.minSize) / Double(min(height, width)), Double(config.maxSize) / Double(max(height, width)))
        return (Int(Double(height) * scale), Int(Double(width) * scale))
    }

    /// GeneralizedRCNNTransform: x/255, (x − mean)/std, bilinear resize, zero-pad to /32.
    public func preprocess(_ images: [ModelImage]) throws -> ImageBatch {
        guard !images.isEmpty else { throw ModelError.invalidInput(reason: "empty batch") }
        for im in images where im.width < 1 || im.height < 1 || im.rgb.count != im.width * im.height * 3 {
            throw ModelError.invalidInput(reason: "image \(im.width)×\(im.height) with \(im.rgb.count) bytes")
        }
        let sizes = images.map { resizedSize(height: $0.height, width: $0.width) }
        let d = Double(config.sizeDivisible)
        let hp = Int((Double(sizes.map(\.0).max()!) / d).rounded(.up) * d)
        let wp = Int((Double(sizes.map(\.1).max()!) / d).rounded(.up) * d)
        let batch = Tensor(zeros: [images.count, 3, hp, wp])
        let out = batch.floats
        for (n, im) in images.enumerated() {
            let (h, w) = sizes[n]
            let plane = im.width * im.height
            var planar = [Float](repeating: 0, count: 3 * plane)
            for c in 0..<3 {
                let mean = config.imageMean[c], std = config.imageStd[c]
                for p in 0..<plane { planar[c * plane + p] = (Float(im.rgb[3 * p + c]) / 255 - mean) / std }
            }
            var resized = [Float](repeating: 0, count: 3 * h * w)
            planar.withUnsafeBufferPointer { src in
                resized.withUnsafeMutableBufferPointer { dst in
                    Resize.bilinear(src, channels: 3, height: im.height, width: im.width, outHeight: h, outWidth: w, into: dst)
                }
            }
            for c in 0..<3 {
                for y in 0..<h {
                    let o = ((n * 3 + c) * hp + y) * wp
                    for x in 0..<w { out[o + x] = resized[(c * h + y) * w + x] }
                }
            }
        }
        return ImageBatch(tensor: batch, imageSizes: sizes, originalSizes: images.map { ($0.height, $0.width) })
    }

    /// ResNet + FPN: P2..P6.
    public func backbone(_ batch: ImageBatch) throws -> FeatureMaps {
        FeatureMaps(try fpn(body(batch.tensor.converted(to: precision.dtype))))
    }

    /// Raw RPN head outputs per level (objectness N×A×h×w, deltas N×4A×h×w).
    public func rpnHeadOutputs(_ features: FeatureMaps) throws -> [RPNLevelOutput] {
        try rpn.headOutputs(features.levels)
    }

    public func proposals(_ features: FeatureMaps, _ batch: ImageBatch) throws -> [Proposals] {
        try rpn(features.levels, imageSizes: batch.imageSizes, paddedSize: batch.paddedSize)
    }

    /// Box head logits for the given proposals (R×K, R×4K), for checking against the reference.
    public func boxHeadLogits(_ features: FeatureMaps, _ batch: ImageBatch, proposals: [Proposals]) throws -> (classLogits: [Float], boxRegression: [Float]) {
        try boxHead.logits(features.poolerInputs(), proposals: proposals, imageSizes: batch.imageSizes)
    }

    /// Detections per image in the resized frame.
    public func detect(_ features: FeatureMaps, _ batch: ImageBatch, proposals: [Proposals]) throws -> [ROIDetections] {
        try boxHead(features.poolerInputs(), proposals: proposals, imageSizes: batch.imageSizes)
    }

    /// M×M mask probabilities of each detection's class, per image; empty for a model
    /// without a mask head (Faster R-CNN).
    public func masks(_ features: FeatureMaps, _ batch: ImageBatch, detections: [ROIDetections]) throws -> [[Float]] {
        guard let maskHead else { return detections.map { _ in [] } }
        return try maskHead(features.poolerInputs(), detections: detections, imageSizes: batch.imageSizes)
    }

    /// Boxes back to original pixels (× original/resized as float32, torchvision's
    /// resize_boxes); masks stay M×M until `Detections.mask(_:)` pastes them.
    public func postprocess(_ batch: ImageBatch, detections: [ROIDetections], masks: [[Float]]) -> [Detections] {
        detections.enumerated().map { (i, d) in
            let (h, w) = batch.imageSizes[i], (oh, ow) = batch.originalSizes[i]
            let rh = Float(oh) / Float(h), rw = Float(ow) / Float(w)
            var boxes = d.boxes
            for j in 0..<d.count {
                boxes[4 * j] *= rw
                boxes[4 * j + 1] *= rh
                boxes[4 * j + 2] *= rw
                boxes[4 * j + 3] *= rh
            }
            return Detections(boxes: boxes, scores: d.scores, labels: d.labels, maskProbabilities: masks[i],
                              maskSize: maskHead?.maskSize ?? 0, imageHeight: oh, imageWidth: ow)
        }
    }

    /// All stages on one batch.
    public func callAsFunction(_ images: [ModelImage]) throws -> [Detections] {
        let batch = try preprocess(images)
        let features = try backbone(batch)
        let props = try proposals(features, batch)
        let dets = try detect(features, batch, proposals: props)
        let m = try masks(features, batch, detections: dets)
        return postprocess(batch, detections: dets, masks: m)
    }
}
