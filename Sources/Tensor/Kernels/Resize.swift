// Bilinear resize with PyTorch's semantics (F.interpolate, mode="bilinear",
// align_corners=False, output size given): the kernel torchvision's transform runs.
public enum Resize {
    /// Resizes a C×H×W planar image to C×outH×outW.
    /// src index = max(0, (dst + 0.5)·(in/out) − 0.5); the +1 neighbour is clamped at the
    /// edge; the arithmetic order follows ATen's upsample_bilinear2d so results are bit-close.
    public static func bilinear(_ src: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int,
                                outHeight: Int, outWidth: Int, into dst: UnsafeMutableBufferPointer<Float>) {
        precondition(src.count >= channels * height * width && dst.count >= channels * outHeight * outWidth)
        let hScale = Float(height) / Float(outHeight)
        let wScale = Float(width) / Float(outWidth)
        struct Tap { var i0: Int; var i1: Int; var l0: Float; var l1: Float }
        func taps(_ n: Int, _ inN: Int, _ scale: Float) -> [Tap] {
            (0..<n).map { o in
                let s = max(scale * (Float(o) + 0.5) - 0.5, 0)
                let i0 = Int(s)
                let i1 = i0 + (i0 < inN - 1 ? 1 : 0)
                let l1 = s - Float(i0)
                return Tap(i0: i0, i1: i1, l0: 1 - l1, l1: l1)
            }
        }
        let ht = taps(outHeight, height, hScale), wt = taps(outWidth, width, wScale)
        Parallel.forEach(channels * outHeight, minChunk: 16) { row in
            let c = row / outHeight, oy = row % outHeight
            let t = ht[oy]
            let r0 = c * height * width + t.i0 * width, r1 = c * height * width + t.i1 * width
            let o = c * outHeight * outWidth + oy * outWidth
            for ox in 0..<outWidth {
                let w = wt[ox]
                dst[o + ox] = t.l0 * (w.l0 * src[r0 + w.i0] + w.l1 * src[r0 + w.i1])
                    + t.l1 * (w.l0 * src[r1 + w.i0] + w.l1 * src[r1 + w.i1])
            }
        }
    }
}
