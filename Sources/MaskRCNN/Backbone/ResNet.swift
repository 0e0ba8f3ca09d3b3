// Shapes: N images, C channels, H×W the padded input size. The ResNet body returns
// C2..C5 at strides 4, 8, 16, 32 (torchvision's IntermediateLayerGetter layer1..layer4).
//
// Everything about the network is read from the state dict: block type (BasicBlock has
// no conv3), blocks per stage, every width, ResNeXt groups (conv2's input channels vs its
// block width). Frozen BN is folded into each convolution at load time, and ReLU and the
// residual add run as oneDNN post-ops, so a block is 2-3 primitives and no elementwise pass.
import Tensor

/// What the state dict says the ResNet is.
public struct ResNetArchitecture: Sendable, Equatable {
    public enum Block: String, Sendable { case basic = "BasicBlock", bottleneck = "Bottleneck" }
    public var block: Block
    public var stemChannels: Int
    public var blocksPerStage: [Int]
    /// Output channels of each stage (C2..C5).
    public var stageChannels: [Int]
    /// Inner (3×3) width of each stage's blocks.
    public var stageWidths: [Int]
    public var groups: Int

    public var name: String {
        let depth = blocksPerStage.reduce(0, +) * (block == .bottleneck ? 3 : 2) + 2
        let base = groups > 1 ? "ResNeXt-\(depth) \(groups)×\(stageWidths[0] / groups)d" : "ResNet-\(depth)"
        return base
    }
}

/// torchvision's BasicBlock / Bottleneck with frozen BN folded.
final class ResidualBlock {
    let convs: [Conv2d]  // the last one adds the identity and applies ReLU
    let downsample: Conv2d?

    init(_ w: WeightLoader, prefix p: String, arch: ResNetArchitecture, inChannels: Int, stage: Int, stride: Int, eps: Float) throws {
        let out = arch.stageChannels[stage], width = arch.stageWidths[stage]
        switch arch.block {
        case .bottleneck:
            // torchvision ResNet v1.5: the stride sits on the 3×3 conv.
            convs = [
                try w.conv(p + ".conv1", ConvGeometry(inChannels: inChannels, outChannels: width, kernel: 1), bn: p + ".bn1", eps: eps, relu: true),
                try w.conv(p + ".conv2", ConvGeometry(inChannels: width, outChannels: width, kernel: 3, stride: stride, padding: 1, groups: arch.groups),
                           bn: p + ".bn2", eps: eps, relu: true),
                try w.conv(p + ".conv3", ConvGeometry(inChannels: width, outChannels: out, kernel: 1), bn: p + ".bn3", eps: eps, relu: true),
            ]
        case .basic:
            convs = [
                try w.conv(p + ".conv1", ConvGeometry(inChannels: inChannels, outChannels: out, kernel: 3, stride: stride, padding: 1),
                           bn: p + ".bn1", eps: eps, relu: true),
                try w.conv(p + ".conv2", ConvGeometry(inChannels: out, outChannels: out, kernel: 3, padding: 1), bn: p + ".bn2", eps: eps, relu: true),
            ]
        }
        if w.has(p + ".downsample.0.weight") {
            downsample = try w.conv(p + ".downsample.0", ConvGeometry(inChannels: inChannels, outChannels: out, kernel: 1, stride: stride),
                                    bn: p + ".downsample.1", eps: eps, relu: false)
        } else {
            guard stride == 1, inChannels == out else {
                throw ModelError.architecture(path: w.path, reason: "\(p) changes shape but has no downsample")
            }
            downsample = nil
        }
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let identity = try downsample?(x) ?? x
        var y = x
        for conv in convs.dropLast() { y = try conv(y) }
        // relu(conv(y) + identity): the add and ReLU are post-ops of the last convolution.
        // When there is no downsample, `identity` is the block's input, which nobody reads
        // again, so its storage can take the sum.
        return try convs.last!(y, adding: identity)
    }
}

public final class ResNet {
    public let architecture: ResNetArchitecture
    let stem: Conv2d
    let stages: [[ResidualBlock]]

    /// Reads the architecture from `backbone.body.*` keys.
    static func architecture(_ w: WeightLoader, prefix: String) throws -> ResNetArchitecture {
        let stem = try w.shape(prefix + ".conv1.weight")
        guard stem.count == 4, stem[1] == 3 else {
            throw ModelError.architecture(path: w.path, reason: "\(prefix).conv1.weight has shape \(stem), expected C×3×7×7")
        }
        let bottleneck = w.has(prefix + ".layer1.0.conv3.weight")
        var blocks: [Int] = [], channels: [Int] = [], widths: [Int] = []
        var groups = 1
        for s in 1...4 {
            var n = 0
            while w.has("\(prefix).layer\(s).\(n).conv1.weight") { n += 1 }
            guard n > 0 else { throw ModelError.architecture(path: w.path, reason: "no blocks in \(prefix).layer\(s)") }
            blocks.append(n)
            let last = bottleneck ? "conv3" : "conv2"
            channels.append(try w.shape("\(prefix).layer\(s).0.\(last).weight")[0])
            let c2 = try w.shape("\(prefix).layer\(s).0.conv2.weight")
            widths.append(bottleneck ? c2[0] : channels.last!)
            if bottleneck {
                guard c2[1] > 0, c2[0] % c2[1] == 0 else {
                    throw ModelError.architecture(path: w.path, reason: "\(prefix).layer\(s).0.conv2.weight shape \(c2) gives no whole number of groups")
                }
                groups = c2[0] / c2[1]
            }
        }
        return ResNetArchitecture(block: bottleneck ? .bottleneck : .basic, stemChannels: stem[0],
                                  blocksPerStage: blocks, stageChannels: channels, stageWidths: widths, groups: groups)
    }

    init(_ w: WeightLoader, prefix: String, eps: Float) throws {
        let arch = try Self.architecture(w, prefix: prefix)
        architecture = arch
        stem = try w.conv(prefix + ".conv1", ConvGeometry(inChannels: 3, outChannels: arch.stemChannels, kernel: 7, stride: 2, padding: 3),
                          bn: prefix + ".bn1", eps: eps, relu: true)
        var inC = arch.stemChannels
        var stages: [[ResidualBlock]] = []
        for s in 0..<4 {
            var blocks: [ResidualBlock] = []
            for b in 0..<arch.blocksPerStage[s] {
                blocks.append(try ResidualBlock(w, prefix: "\(prefix).layer\(s + 1).\(b)", arch: arch, inChannels: inC, stage: s,
                                                stride: (b == 0 && s > 0) ? 2 : 1, eps: eps))
                inC = arch.stageChannels[s]
            }
            stages.append(blocks)
        }
        self.stages = stages
    }

    /// x: N×3×H×W → [C2, C3, C4, C5].
    func callAsFunction(_ x: Tensor) throws -> [Tensor] {
        var y = try Pooling.maxPool2d(stem(x), kernel: 3, stride: 2, padding: 1)
        var outs: [Tensor] = []
        for stage in stages {
            for block in stage { y = try block(y) }
            outs.append(y)
        }
        return outs
    }
}
