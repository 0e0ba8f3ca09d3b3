// `segd model info`: the architecture found in a weights file, and a per-layer table of
// output size, parameters and FLOPs on a given input size.
//
// Conventions (those of torchvision's own FLOP counts, so totals compare):
// - output size by the convolution formula ⌊(W + 2P − D(F−1) − 1)/S⌋ + 1;
// - parameters (F·F·C/G + 1)·K for a convolution with bias, F·F·C/G·K without (ResNet
//   convolutions have none: frozen BN's γ, β, μ, σ² are buffers, not parameters);
// - FLOPs = 2 × multiply-adds; the box head runs on postNMSTopN proposals and the mask
//   head on detectionsPerImage detections (the full-load case of WORKLOAD.md W1).
import Tensor

public struct LayerSummary: Sendable {
    public var name: String
    public var kind: String
    public var stage: String
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
    public func flops(stage: String) -> Double { layers.filter { $0.stage == stage }.reduce(0) { $0 + $1.flops } }
    public static let stages = ["backbone", "rpn", "roi_heads"]
}

extension MaskRCNN {
    /// The per-layer summary for a padded input of height×width (default: the padded size
    /// torchvision's transform gives a 1216×800 image, 800×1216).
    public func summary(height: Int = 800, width: Int = 1216) -> ModelSummary {
        var layers: [LayerSummary] = []
        func conv(_ name: String, _ c: Conv2d, stage: String, input: [Int], bias: Bool, instances: Int = 1) -> [Int] {
            let g = c.geometry
            let out = c.outputShape([1] + input).dropFirst().map { $0 }
            let weights = g.kernel * g.kernel * g.inChannels / g.groups * g.outChannels
            let params = weights + (bias ? g.outChannels : 0)
            // Each weight is one multiply-add per output position; for a transposed conv,
            // per *input* position.
            let positions = c.transposed ? input[1] * input[2] : out[1] * out[2]
            let macs = Double(weights) * Double(positions)
            layers.append(LayerSummary(name: name, kind: c.transposed ? "ConvTranspose2d \(g.kernel)×\(g.kernel)/\(g.stride)" : "Conv2d \(g.kernel)×\(g.kernel)/\(g.stride)\(g.groups > 1 ? " g\(g.groups)" : "")",
                                       stage: stage, output: out, parameters: params, flops: 2 * macs * Double(instances)))
            return out
        }
        func linear(_ name: String, _ l: Linear, stage: String, instances: Int) {
            layers.append(LayerSummary(name: name, kind: "Linear", stage: stage, output: [l.outFeatures],
                                       parameters: (l.inFeatures + 1) * l.outFeatures, flops: 2 * Double(l.inFeatures * l.outFeatures) * Double(instances)))
        }
        var x = [3, height, width]
        x = conv("backbone.body.conv1", body.stem, stage: "backbone", input: x, bias: false)
        x = [x[0], (x[1] + 2 - 3) / 2 + 1, (x[2] + 2 - 3) / 2 + 1]  // max pool 3/2, padding 1
        var stageOutputs: [[Int]] = []
        for (s, blocks) in body.stages.enumerated() {
            for (b, block) in blocks.enumerated() {
                let p = "backbone.body.layer\(s + 1).\(b)"
                var y = x
                for (i, c) in block.convs.enumerated() { y = conv("\(p).conv\(i + 1)", c, stage: "backbone", input: y, bias: false) }
                if let d = block.downsample { _ = conv("\(p).downsample.0", d, stage: "backbone", input: x, bias: false) }
                x = y
            }
            stageOutputs.append(x)
        }
        var levels: [[Int]] = []
        for (i, c) in fpn.inner.enumerated() { _ = conv("backbone.fpn.inner_blocks.\(i).0", c, stage: "backbone", input: stageOutputs[i], bias: true) }
        for (i, c) in fpn.layer.enumerated() {
            levels.append(conv("backbone.fpn.layer_blocks.\(i).0", c, stage: "backbone", input: [fpn.outChannels] + stageOutputs[i].dropFirst(), bias: true))
        }
        let p5 = levels.last!
        levels.append([p5[0], (p5[1] - 1) / 2 + 1, (p5[2] - 1) / 2 + 1])
        for (l, f) in levels.enumerated() {
            var y = f
            for (i, c) in rpn.head.convs.enumerated() { y = conv("rpn.head.conv.\(i).0 [P\(l + 2)]", c, stage: "rpn", input: y, bias: true) }
            _ = conv("rpn.head.cls_logits+bbox_pred [P\(l + 2)]", rpn.head.predictor, stage: "rpn", input: y, bias: true)
        }
        let r = config.rpn.postNMSTopN, d = config.box.detectionsPerImage
        linear("roi_heads.box_head.fc6", boxHead.fc6, stage: "roi_heads", instances: r)
        linear("roi_heads.box_head.fc7", boxHead.fc7, stage: "roi_heads", instances: r)
        linear("roi_heads.box_predictor (cls_score+bbox_pred)", boxHead.predictor, stage: "roi_heads", instances: r)
        var m = [fpn.outChannels, 14, 14]
        for (i, c) in maskHead.convs.enumerated() { m = conv("roi_heads.mask_head.\(i).0", c, stage: "roi_heads", input: m, bias: true, instances: d) }
        m = conv("roi_heads.mask_predictor.conv5_mask", maskHead.deconv, stage: "roi_heads", input: m, bias: true, instances: d)
        _ = conv("roi_heads.mask_predictor.mask_fcn_logits", maskHead.logits, stage: "roi_heads", input: m, bias: true, instances: d)
        return ModelSummary(architecture: architecture, inputHeight: height, inputWidth: width, layers: layers)
    }
}
