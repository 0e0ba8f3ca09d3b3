// Max pooling and nearest-neighbour upsampling on oneDNN, in the input's own layout.
import CDNNL

public enum Pooling {
    /// PyTorch max_pool2d(x, kernel, stride, padding); padded cells never win (−∞), as in PyTorch.
    public static func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        let oh = (x.shape[2] + 2 * padding - kernel) / stride + 1
        let ow = (x.shape[3] + 2 * padding - kernel) / stride + 1
        let outShape = [x.shape[0], x.shape[1], oh, ow]
        let prim = try x.device.primitives.get([1, kernel, stride, padding] + MD.key(x.desc)) {
            var s = x.desc
            var d = try MD.any(outShape, x.dtype)
            var desc = dnnl_pooling_v2_desc_t()
            let what = "max_pool2d k\(kernel) s\(stride) p\(padding) on \(x.shape)"
            try check(dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_inference, dnnl_pooling_max, &s, &d,
                                                        MD.dims([stride, stride]), MD.dims([kernel, kernel]),
                                                        MD.dims([0, 0]), MD.dims([padding, padding]), MD.dims([padding, padding])),
                      "dnnl_pooling_v2_forward_desc_init", what)
            return try Primitive.make(desc, attr: nil, on: x.device, what: what)
        }
        let out = Tensor(desc: prim.md(dnnl_query_dst_md), shape: outShape, device: x.device)
        try prim.execute([(DNNL_ARG_SRC, x), (DNNL_ARG_DST, out)])
        return out
    }

    /// `lateral += nearest-upsample(top, ×2)`, the FPN top-down step (torchvision:
    /// `inner_lateral + F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")`;
    /// with inputs padded to a multiple of 32 each level is exactly twice the next).
    /// The sum is fused into the resampling as a post-op and written into `lateral`'s storage.
    public static func addUpsampledNearest(_ top: Tensor, into lateral: Tensor) throws -> Tensor {
        guard top.shape[0] == lateral.shape[0], top.shape[1] == lateral.shape[1],
              lateral.shape[2] == 2 * top.shape[2], lateral.shape[3] == 2 * top.shape[3] else {
            throw TensorError.shapeMismatch(op: "FPN top-down ×2", expected: [lateral.shape[0], lateral.shape[1], lateral.shape[2] / 2, lateral.shape[3] / 2], got: top.shape)
        }
        // In the FPN both come from convolutions and share oneDNN's chosen layout. When they
        // do not, oneDNN 2.6 runs its reference resampling, whose sum post-op writes wrong
        // values (TensorTests.testAddUpsampledNearest, plain top into an nChw8c lateral), so
        // `top` is first reordered into lateral's layout.
        var src = top
        if let layout = MD.tag(of: lateral.desc), MD.tag(of: top.desc) != layout || top.dtype != lateral.dtype {
            src = try top.copy(to: MD.make(top.shape, layout, lateral.dtype))
        }
        let prim = try lateral.device.primitives.get([2] + MD.key(src.desc) + MD.key(lateral.desc)) {
            var s = src.desc
            var d = lateral.desc
            var desc = dnnl_resampling_desc_t()
            let what = "nearest ×2 on \(top.shape)"
            try check(dnnl_resampling_forward_desc_init(&desc, dnnl_forward_inference, dnnl_resampling_nearest, nil, &s, &d),
                      "dnnl_resampling_forward_desc_init", what)
            return try Primitive.make(desc, attr: try Attr(sum: true), on: lateral.device, what: what)
        }
        try prim.execute([(DNNL_ARG_SRC, src), (DNNL_ARG_DST, lateral)])
        return lateral
    }
}
