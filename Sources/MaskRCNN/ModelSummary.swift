// `segd model info`: the architecture found in a weights file, and a per-layer table of
// output size, parameters and FLOPs on a given input size.
//
// Conventions (those of torchvision's own FLOP counts, so totals compare):
// - output size by the convolution formula ⌊(W + 2P − D(F−1) − 1)/S⌋ + 1;
// - parameters (F·F·C/G + 1)·K for a convolution with bias, F·F·C/G·K without (ResNet
//   convolutions have none: frozen BN's γ, β, μ, σ² are buffers, not parameters); a
//   v2 convolution's BatchNorm2d (folded into it at load) adds its γ and β, 2K, which
//   torchvision's count includes (μ, σ² are buffers there too);
// - FLOPs = 2 × multiply-adds; the box head runs on postNMSTopN proposals and the mask
//   head on detectionsPerImage detections (the full-load case of WORKLOAD.md W1).
import Foundation
import Tensor

public struct LayerSummary: Sendable {
    public var name: String
    public var kind: String
    public var stage: PipelineStage
    /// Output shape, without the batch dimension (C×H×W, or features for a Linear).
    public var output: [Int]
    public var parameters: Int
    public var flops: Double
}

public struct ModelSummary: Sendable {
    public var architecture: ModelArchitecture
    public var inputHeight: Int
    public var inputWidth: Int
    public var layers: [LayerSummary]

    public var totalParameters: Int { layers.reduce(0) { $0 + $1.parameters } }
    public var totalFLOPs: Double { layers.reduce(0) { $0 + $1.flops } }
    public func flops(stage: PipelineStage) -> Double { layers.filter { $0.stage == stage }.reduce(0) { $0 + $1.flops } }
    public static let stages: [PipelineStage] = [.backbone, .rpn, .detect, .mask]
}

extension MaskRCNN {
    /// The per-layer summary for a padded input of height×width (default: the padded size
    /// torchvision's transform gives a 1216×800 image, 800×1216).
    public func summary(height: Int = 800, width: Int = 1216, proposals: Int? = nil, detections: Int? = nil) -> ModelSummary {
        var layers: [LayerSummary] = []
        func conv(_ name: String, _ c: Conv2d, stage: PipelineStage, input: [Int], bias: Bool, norm: Bool = false,
                  instances: Int = 1, shared: Bool = false) -> [Int] {
            let g = c.geometry
            let out = c.outputShape([1] + input).dropFirst().map { $0 }
            let weights = g.kernel * g.kernel * g.inChannels / g.groups * g.outChannels
            // A layer applied again (the RPN head on each level) adds FLOPs, not parameters.
            let params = shared ? 0 : weights + (norm ? 2 * g.outChannels : bias ? g.outChannels : 0)
            // Each weight is one multiply-add per output position; for a transposed conv,
            // per *input* position.
            let positions = c.transposed ? input[1] * input[2] : out[1] * out[2]
            let macs = Double(weights) * Double(positions)
            layers.append(LayerSummary(name: name, kind: c.transposed ? "ConvTranspose2d \(g.kernel)×\(g.kernel)/\(g.stride)" : "Conv2d \(g.kernel)×\(g.kernel)/\(g.stride)\(g.groups > 1 ? " g\(g.groups)" : "")",
                                       stage: stage, output: out, parameters: params, flops: 2 * macs * Double(instances)))
            return out
        }
        func linear(_ name: String, _ l: Linear, stage: PipelineStage, instances: Int) {
            layers.append(LayerSummary(name: name, kind: "Linear", stage: stage, output: [l.outFeatures],
                                       parameters: (l.inFeatures + 1) * l.outFeatures, flops: 2 * Double(l.inFeatures * l.outFeatures) * Double(instances)))
        }
        let bodyNorm = architecture.layout == .v2  // nn.BatchNorm2d, not FrozenBatchNorm2d
        var x = [3, height, width]
        x = conv("backbone.body.conv1", body.stem, stage: .backbone, input: x, bias: false, norm: bodyNorm)
        x = [x[0], (x[1] + 2 - 3) / 2 + 1, (x[2] + 2 - 3) / 2 + 1]  // max pool 3/2, padding 1
        var stageOutputs: [[Int]] = []
        for (s, blocks) in body.stages.enumerated() {
            for (b, block) in blocks.enumerated() {
                let p = "backbone.body.layer\(s + 1).\(b)"
                var y = x
                for (i, c) in block.convs.enumerated() { y = conv("\(p).conv\(i + 1)", c, stage: .backbone, input: y, bias: false, norm: bodyNorm) }
                if let d = block.downsample { _ = conv("\(p).downsample.0", d, stage: .backbone, input: x, bias: false, norm: bodyNorm) }
                x = y
            }
            stageOutputs.append(x)
        }
        var levels: [[Int]] = []
        for (i, c) in fpn.inner.enumerated() {
            _ = conv("backbone.fpn.inner_blocks.\(i).0", c, stage: .backbone, input: stageOutputs[i], bias: true, norm: fpn.norm)
        }
        for (i, c) in fpn.layer.enumerated() {
            levels.append(conv("backbone.fpn.layer_blocks.\(i).0", c, stage: .backbone, input: [fpn.outChannels] + stageOutputs[i].dropFirst(),
                               bias: true, norm: fpn.norm))
        }
        let p5 = levels.last!
        levels.append([p5[0], (p5[1] - 1) / 2 + 1, (p5[2] - 1) / 2 + 1])
        for (l, f) in levels.enumerated() {
            var y = f
            for (i, c) in rpn.head.convs.enumerated() { y = conv("rpn.head.conv.\(i).0 [P\(l + 2)]", c, stage: .rpn, input: y, bias: true, shared: l > 0) }
            _ = conv("rpn.head.cls_logits+bbox_pred [P\(l + 2)]", rpn.head.predictor, stage: .rpn, input: y, bias: true, shared: l > 0)
        }
        let r = proposals ?? config.rpn.postNMSTopN, d = detections ?? config.box.detectionsPerImage
        var b = [fpn.outChannels, 7, 7]
        for (i, c) in boxHead.convs.enumerated() {
            b = conv("roi_heads.box_head.\(i).0", c, stage: .detect, input: b, bias: true, norm: boxHead.convNorm, instances: r)
        }
        for (name, fc) in zip(boxHead.fcNames, boxHead.fcs) { linear(name, fc, stage: .detect, instances: r) }
        linear("roi_heads.box_predictor (cls_score+bbox_pred)", boxHead.predictor, stage: .detect, instances: r)
        if let maskHead {
            var m = [fpn.outChannels, 14, 14]
            for (i, c) in maskHead.convs.enumerated() {
                m = conv("roi_heads.mask_head.\(i).0", c, stage: .mask, input: m, bias: true, norm: maskHead.norm, instances: d)
            }
            m = conv("roi_heads.mask_predictor.conv5_mask", maskHead.deconv, stage: .mask, input: m, bias: true, instances: d)
            _ = conv("roi_heads.mask_predictor.mask_fcn_logits", maskHead.logits, stage: .mask, input: m, bias: true, instances: d)
        }
        return ModelSummary(architecture: architecture, inputHeight: height, inputWidth: width, layers: layers)
    }
}

extension ModelSummary {
    /// The architecture, the per-layer table and the totals, as `segd model info` prints them.
    public func table() -> String {
        let a = architecture
        var s = """
        architecture: \(a.name) (\(a.layout.rawValue) layout): \(a.resnet.name) (\(a.resnet.block.rawValue), blocks \(a.resnet.blocksPerStage), \
        widths \(a.resnet.stageWidths), out channels \(a.resnet.stageChannels), stem \(a.resnet.stemChannels)\(a.layout == .v2 ? ", BatchNorm2d" : ", FrozenBatchNorm2d")), \
        FPN \(a.fpnChannels)\(a.layout == .v2 ? " + BN" : ""), RPN \(a.rpnConvs) conv × \(a.anchorsPerLocation) anchors, \
        box head \(a.boxConvLayers.isEmpty ? "TwoMLPHead" : "FastRCNNConvFCHead convs \(a.boxConvLayers)") FC \(a.boxFCLayers), \
        \(a.hasMasks ? "mask head \(a.maskLayers) → \(a.maskDimReduced)" : "no mask head (boxes only)"), \(a.numClasses) classes
        input: 3×\(inputHeight)×\(inputWidth)

        """
        func pad(_ t: String, _ n: Int, left: Bool = false) -> String {
            t.count >= n ? t : (left ? String(repeating: " ", count: n - t.count) + t : t + String(repeating: " ", count: n - t.count))
        }
        let nameWidth = max(40, layers.map(\.name.count).max() ?? 0)
        s += pad("layer", nameWidth) + "  " + pad("kind", 24) + pad("output", 18, left: true) + pad("params", 14, left: true) + pad("GFLOP", 12, left: true) + "\n"
        for l in layers {
            s += pad(l.name, nameWidth) + "  " + pad(l.kind, 24) + pad(l.output.map(String.init).joined(separator: "×"), 18, left: true)
                + pad(grouped(l.parameters), 14, left: true) + pad(String(format: "%.3f", l.flops / 1e9), 12, left: true) + "\n"
        }
        s += "\n"
        for stage in Self.stages {
            s += pad("\(stage.rawValue) GFLOP", 24) + String(format: "%10.2f", flops(stage: stage) / 1e9) + "\n"
        }
        s += pad("heads GFLOP", 24) + String(format: "%10.2f", (flops(stage: .detect) + flops(stage: .mask)) / 1e9) + "\n"
        s += pad("total GFLOP", 24) + String(format: "%10.2f", totalFLOPs / 1e9) + "\n"
        s += pad("total parameters", 24) + pad(grouped(totalParameters), 10, left: true) + "\n"
        return s
    }
}

/// 44401393 → "44,401,393" (independent of the locale).
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return (n < 0 ? "-" : "") + out
}
