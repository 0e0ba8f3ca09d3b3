// Linear (PyTorch nn.Linear) as a oneDNN inner product: x (N×I, plain) · Wᵀ + b, with an
// optional fused ReLU, in the input's element type (bf16 weights for a bf16 input, f32
// accumulation and bias). Input and output stay plain row-major: the box head's inputs
// come from RoIAlign and its outputs are read by Swift code.
import CDNNL
import Foundation

public final class Linear: @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let relu: Bool
    /// O×I.
    private let weight: WeightCopy
    let bias: Tensor
    private let plans = PrimitiveCache<(Primitive, Tensor)>()
    public let device: Device

    public init(inFeatures: Int, outFeatures: Int, weight: [Float], bias: [Float], relu: Bool = false, on device: Device = .cpu) throws {
        self.device = device
        guard weight.count == inFeatures * outFeatures, bias.count == outFeatures else {
            throw TensorError.invalidArgument(op: "Linear", reason: "\(weight.count) weights and \(bias.count) biases for \(inFeatures)→\(outFeatures)")
        }
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.relu = relu
        self.weight = WeightCopy(Tensor(shape: [outFeatures, inFeatures], values: weight))
        self.bias = Tensor(shape: [outFeatures], values: bias)
    }

    /// x: N×I (any tensor with N×I elements per row is flattened first, as torch.flatten(x, 1)).
    /// - Parameter outputType: the output's element type; the input's when nil.
    public func callAsFunction(_ x: Tensor, outputType: DType? = nil) throws -> Tensor {
        let n = x.shape[0]
        guard x.count == n * inFeatures else {
            throw TensorError.shapeMismatch(op: "Linear \(inFeatures)→\(outFeatures)", expected: [n, inFeatures], got: x.shape)
        }
        let outputType = outputType ?? x.dtype
        let src = try x.shape == [n, inFeatures] ? x.plain() : x.reshaped([n, inFeatures])
        let out = Tensor(desc: try MD.make([n, outFeatures], dnnl_ab, outputType), shape: [n, outFeatures], device: device)
        if n == 0 { return out }
        let (prim, w) = try plans.get([n, Int(src.dtype.dnnl.rawValue), Int(outputType.dnnl.rawValue)]) {
            var s = src.desc
            var wd = try MD.any([outFeatures, inFeatures], src.dtype)
            var b = bias.desc
            var d = out.desc
            var desc = dnnl_inner_product_desc_t()
            let what = "Linear \(inFeatures)→\(outFeatures) on \(n) rows \(src.dtype)"
            try check(dnnl_inner_product_forward_desc_init(&desc, dnnl_forward_inference, &s, &wd, &b, &d),
                      "dnnl_inner_product_forward_desc_init", what)
            let prim = try Primitive.make(desc, attr: try Attr(relu: relu), on: device, what: what)
            return (prim, try weight.reordered(to: prim.md(dnnl_query_weights_md), what: what))
        }
        try prim.execute([(DNNL_ARG_SRC, src), (DNNL_ARG_WEIGHTS, w), (DNNL_ARG_BIAS, bias), (DNNL_ARG_DST, out)])
        return out
    }
}
