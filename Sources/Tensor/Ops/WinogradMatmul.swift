// Winograd F(4×4, 3×3) for 3×3 stride-1 f32 convolutions, built from Swift SIMD transforms
// and one oneDNN batched matmul (Lavin & Gray 2016, the arrangement NNPACK uses). oneDNN
// 2.6 has a winograd kernel for AVX-512 only; on AVX2-only CPUs this is the one there is.
//
// Each 4×4 output tile needs a 6×6 input tile. Per tile and channel the input transform
// V = Bᵀ d B and the weight transform U = G g Gᵀ (6×6 each) turn the convolution into 36
// independent products M[k] = V[k] · U[k] of (tiles × C) by (C × O) matrices, and the
// output transform Y = Aᵀ M A gives the 4×4 outputs: 36 multiply-adds per 16 outputs and
// channel pair instead of 144. The 36 products are one oneDNN matmul with batch 36.
//
// Activations stay in the convolution chain's layout: channels-last (AVX-512 brgconv) or
// blocked by 8 or 16 channels (AVX2's nChw8c), any of which holds 8 consecutive channels
// contiguously, one SIMD8 load.
import CDNNL
import Foundation

/// One layer's winograd form: per tile-block size, the batched matmul. The transformed
/// weights U are made afresh on every call, from the layer's own weights, and freed after
/// it: kept, they are 4× the layer's (9.4 MB for a 256-channel layer, 38 MB for a 512 one;
/// R50's eligible layers together 240 MB, peak RSS 727 MB against 486 MB direct), while
/// making them costs a read of the 3×3 weights and a write of U, about 1 ms for 256×256
/// on 2 cores, against the 12 ms winograd saves on the smallest backbone map it runs on
/// (256 channels, 50×76) — measured on a 2-core AVX2 EPYC (Zen 3).
final class WinogradMatmul: @unchecked Sendable {
    let geometry: ConvGeometry
    let relu: Bool
    let device: Device
    private let bias: [Float]
    private let matmuls = PrimitiveCache<Primitive>()

    /// Tiles per matmul: the transformed input of one block (36 × tiles × C floats) and its
    /// products (36 × tiles × O) are the memory this algorithm adds beside U, bounded here.
    static let blockBudget = 4 << 20

    /// The weights' layout `callAsFunction` reads: C × 3 × 3 × O (`ihwo`), so that eight
    /// output channels of one tap are one SIMD8 load.
    static let weightTag = dnnl_ihwo

    static func eligible(_ g: ConvGeometry) -> Bool {
        g.kernel == 3 && g.stride == 1 && g.dilation == 1 && g.groups == 1 && g.padding <= 2
            && g.inChannels % 8 == 0 && g.outChannels % 8 == 0
    }

    init(_ g: ConvGeometry, bias: Tensor?, relu: Bool, device: Device) {
        precondition(Self.eligible(g), "WinogradMatmul: \(g) is not a 3×3 stride-1 layer with channels in multiples of 8")
        geometry = g
        self.relu = relu
        self.device = device
        self.bias = bias.map { b in b.withFloats { Array($0) } } ?? [Float](repeating: 0, count: g.outChannels)
    }

    // MARK: Weight transform

    /// U = G g Gᵀ for every (c, o) into `u`, 36 × C × O plain f32, from weights `w` in
    /// C × 3 × 3 × O order; eight output channels at a time, in f32 (G's entries are
    /// 1, ¼, ⅙, 1⁄12, 1⁄24: rounding them costs ≤ 1 ulp of each U, far below the
    /// transforms' own error).
    static func transformWeights(_ w: UnsafePointer<Float>, channels C: Int, outputs O: Int,
                                 into u: UnsafeMutablePointer<Float>) {
        nonisolated(unsafe) let (w, u) = (w, u)
        Parallel.forEach(C, minChunk: 4) { c in
            for o in stride(from: 0, to: O, by: 8) {
                @inline(__always) func tap(_ i: Int, _ j: Int) -> SIMD8<Float> {
                    UnsafeRawPointer(w + (c * 9 + i * 3 + j) * O + o).loadUnaligned(as: SIMD8<Float>.self)
                }
                // Columns: t = G g (6×3), then rows: U = t Gᵀ (6×6).
                let t0 = gt(tap(0, 0), tap(1, 0), tap(2, 0))
                let t1 = gt(tap(0, 1), tap(1, 1), tap(2, 1))
                let t2 = gt(tap(0, 2), tap(1, 2), tap(2, 2))
                let t = [t0, t1, t2]
                for i in 0..<6 {
                    let r = gt(six(t[0], i), six(t[1], i), six(t[2], i))
                    let base = u + ((i * 6) * C + c) * O + o
                    store(r.0, base)
                    store(r.1, base + C * O)
                    store(r.2, base + 2 * C * O)
                    store(r.3, base + 3 * C * O)
                    store(r.4, base + 4 * C * O)
                    store(r.5, base + 5 * C * O)
                }
            }
        }
    }

    @inline(__always) private static func six(_ t: Six, _ i: Int) -> SIMD8<Float> {
        switch i {
        case 0: t.0
        case 1: t.1
        case 2: t.2
        case 3: t.3
        case 4: t.4
        default: t.5
        }
    }

    /// G·(a, b, c) for F(4×4, 3×3): three taps to six transformed values.
    @inline(__always) static func gt(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>) -> Six {
        let ac = a + c
        return (0.25 * a, (-1.0 / 6) * (ac + b), (-1.0 / 6) * (ac - b),
                (1.0 / 24) * a + (1.0 / 12) * b + (1.0 / 6) * c, (1.0 / 24) * a - (1.0 / 12) * b + (1.0 / 6) * c, c)
    }

    private func matmul(tiles: Int) throws -> Primitive {
        let C = geometry.inChannels, O = geometry.outChannels
        return try matmuls.get([tiles]) {
            var src = try MD.make([36, tiles, C], dnnl_abc)
            var wei = try MD.make([36, C, O], dnnl_abc)
            var dst = try MD.make([36, tiles, O], dnnl_abc)
            var d = dnnl_matmul_desc_t()
            let what = "winograd matmul 36×\(tiles)×\(C)·\(C)×\(O)"
            try check(dnnl_matmul_desc_init(&d, &src, &wei, nil, &dst), "dnnl_matmul_desc_init", what)
            return try Primitive.make(d, attr: nil, on: device, what: what)
        }
    }

    /// Tile blocks for an input: `perBlock` tiles per matmul, the last block `last`.
    private func blocking(_ shape: [Int]) -> (total: Int, perBlock: Int, last: Int) {
        let g = geometry
        let oh = shape[2] + 2 * g.padding - 2, ow = shape[3] + 2 * g.padding - 2
        let total = shape[0] * ((oh + 3) / 4) * ((ow + 3) / 4)
        guard total > 0 else { return (0, 0, 0) }
        let maxBlock = max(16, Self.blockBudget / (36 * max(g.inChannels, g.outChannels) * 4))
        let blocks = (total + maxBlock - 1) / maxBlock
        let perBlock = (total + blocks - 1) / blocks
        return (total, perBlock, total - (blocks - 1) * perBlock)
    }

    /// Creates the matmuls an input of `shape` needs, so that a timed call measures the
    /// computation only (the weight transform, which every call does, included).
    func prepare(for shape: [Int]) throws {
        let (total, perBlock, last) = blocking(shape)
        guard total > 0 else { return }
        _ = try matmul(tiles: perBlock)
        _ = try matmul(tiles: last)
    }

    /// oneDNN's matmul kernel for an input of `shape`.
    func implementation(for shape: [Int]) throws -> String {
        let (total, perBlock, _) = blocking(shape)
        return total == 0 ? "empty" : try matmul(tiles: perBlock).implementation
    }

    // MARK: Forward

    /// y = conv(x) + bias [+ residual] [then ReLU], in x's layout (one of
    /// `ChannelBlockedLayout`'s; others are reordered to channels-last first).
    /// - Parameter weights: the layer's 3×3 weights as f32 in `weightTag`'s order.
    func callAsFunction(_ x: Tensor, adding residual: Tensor?, weights: Tensor) throws -> Tensor {
        let g = geometry
        let n = x.shape[0], C = g.inChannels, O = g.outChannels, h = x.shape[2], w = x.shape[3]
        let oh = h + 2 * g.padding - 2, ow = w + 2 * g.padding - 2
        let src = try x.hostChannelBlocked()
        let tag = src.channelBlockedLayout!.tag
        let outShape = [n, O, oh, ow]
        let outDesc = try MD.make(outShape, tag, .f32)
        let dst: Tensor
        if let residual {
            dst = try residual.reordered(to: outDesc)  // reused in place when it matches
        } else {
            dst = Tensor(desc: outDesc, shape: outShape, device: device)
        }
        let inL = ChannelBlockedLayout(tag: tag, channels: C, height: h, width: w)!
        let outL = ChannelBlockedLayout(tag: tag, channels: O, height: oh, width: ow)!
        let tilesY = (oh + 3) / 4, tilesX = (ow + 3) / 4
        let (total, perBlock, _) = blocking(x.shape)
        if total == 0 { return dst }
        let weightDesc = try MD.make([O, C, 3, 3], Self.weightTag, .f32)
        precondition(MD.equal(weights.desc, weightDesc),
                     "WinogradMatmul: weights must be O×C×3×3 f32 in ihwo order")
        let u = Tensor.uninitialized([36, C, O])
        Self.transformWeights(weights.data.assumingMemoryBound(to: Float.self), channels: C, outputs: O,
                              into: u.data.assumingMemoryBound(to: Float.self))
        let vBuf = Tensor.uninitialized([36, perBlock, C])
        let mBuf = Tensor.uninitialized([36, perBlock, O])
        let s = src.data.assumingMemoryBound(to: Float.self)
        let d = dst.data.assumingMemoryBound(to: Float.self)
        let v = vBuf.data.assumingMemoryBound(to: Float.self)
        let m = mBuf.data.assumingMemoryBound(to: Float.self)
        nonisolated(unsafe) let (sp, dp, vp, mp) = (s, d, v, m)
        let pad = g.padding, hasResidual = residual != nil, relu = self.relu
        try bias.withUnsafeBufferPointer { biasBuf in
            nonisolated(unsafe) let bp = biasBuf.baseAddress!
            for first in stride(from: 0, to: total, by: perBlock) {
                let count = min(perBlock, total - first)
                let prim = try matmul(tiles: count)
                Parallel.forEach(count, minChunk: 4) { t in
                    let tile = first + t
                    let img = tile / (tilesY * tilesX), ty = tile / tilesX % tilesY, tx = tile % tilesX
                    Self.inputTransform(sp, inL, n: img, y0: ty * 4 - pad, x0: tx * 4 - pad, height: h, width: w,
                                        channels: C, into: vp + t * C, planeStride: count * C)
                }
                // The 36 products, views of the block buffers at this block's tile count.
                let vView = Tensor(viewOf: vBuf, shape: [36, count, C])
                let mView = Tensor(viewOf: mBuf, shape: [36, count, O])
                try prim.execute([(DNNL_ARG_SRC, vView), (DNNL_ARG_WEIGHTS, u), (DNNL_ARG_DST, mView)])
                Parallel.forEach(count, minChunk: 4) { t in
                    let tile = first + t
                    let img = tile / (tilesY * tilesX), ty = tile / tilesX % tilesY, tx = tile % tilesX
                    Self.outputTransform(mp + t * O, planeStride: count * O, bias: bp, into: dp, outL, n: img,
                                         y0: ty * 4, x0: tx * 4, height: oh, width: ow, channels: O,
                                         residual: hasResidual, relu: relu)
                }
            }
        }
        return withExtendedLifetime((src, u, weights, vBuf, mBuf)) { dst }
    }

    /// V = Bᵀ d B for one tile, 8 channels at a time, written to plane k at v[k·planeStride + c].
    @inline(__always)
    static func inputTransform(_ s: UnsafeMutablePointer<Float>, _ L: ChannelBlockedLayout, n: Int, y0: Int, x0: Int,
                               height h: Int, width w: Int, channels C: Int,
                               into v: UnsafeMutablePointer<Float>, planeStride: Int) {
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 36) { tmp in
            for c in stride(from: 0, to: C, by: 8) {
                // Columns: tmp[i][j] = (Bᵀ d)[i][j].
                for j in 0..<6 {
                    let x = x0 + j
                    var col = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
                    if x >= 0 && x < w {
                        @inline(__always) func load(_ i: Int) -> SIMD8<Float> {
                            let y = y0 + i
                            guard y >= 0 && y < h else { return SIMD8<Float>() }
                            return UnsafeRawPointer(s + L.offset(n: n, c: c, y: y, x: x)).loadUnaligned(as: SIMD8<Float>.self)
                        }
                        col = (load(0), load(1), load(2), load(3), load(4), load(5))
                    }
                    let r = bt(col)
                    tmp[j] = r.0; tmp[6 + j] = r.1; tmp[12 + j] = r.2
                    tmp[18 + j] = r.3; tmp[24 + j] = r.4; tmp[30 + j] = r.5
                }
                // Rows: V[i][·] = Bᵀ applied to row i of tmp.
                for i in 0..<6 {
                    let r = bt((tmp[i * 6], tmp[i * 6 + 1], tmp[i * 6 + 2], tmp[i * 6 + 3], tmp[i * 6 + 4], tmp[i * 6 + 5]))
                    let base = v + (i * 6) * planeStride + c
                    store(r.0, base)
                    store(r.1, base + planeStride)
                    store(r.2, base + 2 * planeStride)
                    store(r.3, base + 3 * planeStride)
                    store(r.4, base + 4 * planeStride)
                    store(r.5, base + 5 * planeStride)
                }
            }
        }
    }

    /// Y = Aᵀ M A for one tile, plus bias [+ the residual already in the output], [ReLU],
    /// written to the output positions inside the image.
    @inline(__always)
    static func outputTransform(_ m: UnsafeMutablePointer<Float>, planeStride: Int, bias: UnsafePointer<Float>,
                                into d: UnsafeMutablePointer<Float>, _ L: ChannelBlockedLayout, n: Int, y0: Int, x0: Int,
                                height h: Int, width w: Int, channels O: Int, residual: Bool, relu: Bool) {
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 28) { tmp in
            for o in stride(from: 0, to: O, by: 8) {
                // Columns: tmp[i][j] = (Aᵀ M)[i][j], i < 4.
                for j in 0..<6 {
                    @inline(__always) func load(_ i: Int) -> SIMD8<Float> {
                        UnsafeRawPointer(m + (i * 6 + j) * planeStride + o).loadUnaligned(as: SIMD8<Float>.self)
                    }
                    let r = at((load(0), load(1), load(2), load(3), load(4), load(5)))
                    tmp[j] = r.0; tmp[6 + j] = r.1; tmp[12 + j] = r.2; tmp[18 + j] = r.3
                }
                let b = UnsafeRawPointer(bias + o).loadUnaligned(as: SIMD8<Float>.self)
                for i in 0..<4 where y0 + i < h {
                    let r = at((tmp[i * 6], tmp[i * 6 + 1], tmp[i * 6 + 2], tmp[i * 6 + 3], tmp[i * 6 + 4], tmp[i * 6 + 5]))
                    tmp[24] = r.0; tmp[25] = r.1; tmp[26] = r.2; tmp[27] = r.3
                    for j in 0..<4 where x0 + j < w {
                        let p = d + L.offset(n: n, c: o, y: y0 + i, x: x0 + j)
                        var y = tmp[24 + j] + b
                        if residual { y += UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
                        if relu { y = y.replacing(with: 0, where: y .< 0) }
                        store(y, p)
                    }
                }
            }
        }
    }

    @inline(__always) private static func store(_ x: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: x, as: SIMD8<Float>.self)
    }

    typealias Six = (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>)

    /// Bᵀ·d for F(4×4, 3×3) (interpolation points 0, ±1, ±2, ∞).
    @inline(__always) static func bt(_ d: Six) -> Six {
        let (d0, d1, d2, d3, d4, d5) = d
        return (4 * d0 - 5 * d2 + d4,
                -4 * d1 - 4 * d2 + d3 + d4,
                4 * d1 - 4 * d2 - d3 + d4,
                -2 * d1 - d2 + 2 * d3 + d4,
                2 * d1 - d2 - 2 * d3 + d4,
                4 * d1 - 5 * d3 + d5)
    }

    /// Aᵀ·m: 6 transformed values back to 4 outputs.
    @inline(__always) static func at(_ m: Six) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        let (m0, m1, m2, m3, m4, m5) = m
        let p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4
        return (m0 + p12 + p34, d12 + 2 * d34, p12 + 4 * p34, d12 + 8 * d34 + m5)
    }
}
