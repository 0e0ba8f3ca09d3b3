// Shapes: L = 4 input levels C2..C5 → P2..P5 (+ P6 by max-pooling P5, torchvision's
// LastLevelMaxPool), all with F channels (256 in torchvision's model).
//
// v1 (maskrcnn_resnet50_fpn): each block is a biased conv (`{block}.i.0`). v2
// (maskrcnn_resnet50_fpn_v2, norm_layer=BatchNorm2d): Conv2dNormActivation with a
// bias-free conv `{block}.i.0` and a BatchNorm2d `{block}.i.1`, folded at load.
import Tensor

public final class FPN {
    public let outChannels: Int
    /// Whether the blocks carry a BatchNorm (v2): its γ, β are parameters in torchvision's count.
    public let norm: Bool
    let inner: [Conv2d]   // 1×1 laterals, per level
    let layer: [Conv2d]   // 3×3 outputs, per level

    init(_ w: WeightLoader, prefix: String, inChannels: [Int], bnEps: Float) throws {
        let f = try w.shape(prefix + ".inner_blocks.0.0.weight")[0]
        outChannels = f
        let norm = w.has(prefix + ".inner_blocks.0.1.weight")
        self.norm = norm
        var inner: [Conv2d] = [], layer: [Conv2d] = []
        func block(_ p: String, _ g: ConvGeometry) throws -> Conv2d {
            norm ? try w.conv(p + ".0", g, bn: p + ".1", eps: bnEps, relu: false) : try w.conv(p + ".0", g, bias: true, relu: false)
        }
        for (i, c) in inChannels.enumerated() {
            inner.append(try block("\(prefix).inner_blocks.\(i)", ConvGeometry(inChannels: c, outChannels: f, kernel: 1)))
            layer.append(try block("\(prefix).layer_blocks.\(i)", ConvGeometry(inChannels: f, outChannels: f, kernel: 3, padding: 1)))
        }
        guard !w.has("\(prefix).inner_blocks.\(inChannels.count).0.weight") else {
            throw ModelError.architecture(path: w.path, reason: "\(prefix) has more levels than the backbone returns")
        }
        self.inner = inner
        self.layer = layer
    }

    /// [C2..C5] → [P2, P3, P4, P5, P6]. Each C_i is released as soon as its lateral has
    /// read it (the caller hands the array over): at P2's 3×3, the peak of the whole model,
    /// C2..C5 no longer coexist with P2's two maps (R50 at 800×1216: 116 MB).
    func callAsFunction(_ xs: consuming [Tensor]) throws -> [Tensor] {
        var pending: [Tensor?] = xs.map { $0 }
        xs = []
        func take(_ i: Int) -> Tensor {
            defer { pending[i] = nil }
            return pending[i]!
        }
        let n = pending.count
        var lastInner = try inner[n - 1](take(n - 1))
        var results = [try layer[n - 1](lastInner)]
        for i in stride(from: n - 2, through: 0, by: -1) {
            // inner_lateral + nearest-upsampled last_inner, the add fused into the upsample.
            lastInner = try Pooling.addUpsampledNearest(lastInner, into: inner[i](take(i)))
            results.insert(try layer[i](lastInner), at: 0)
        }
        results.append(try Pooling.maxPool2d(results.last!, kernel: 1, stride: 2, padding: 0))
        return results
    }
}
