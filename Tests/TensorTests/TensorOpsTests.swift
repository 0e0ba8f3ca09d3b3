// Every Tensor op and kernel against torch on the same inputs (Fixtures/ops.safetensors,
// written by tools/reference/make_op_fixtures.py), as ggml's test-backend-ops does.
//
// Tolerances, and why:
// - conv2d / conv_transpose2d / linear: max|Δ| ≤ 1e-5·max|y|. oneDNN accumulates the K
//   products of an output (K = C_in/G·k², at most 147 here) in another order than ATen
//   (blocked, vectorized, several partial sums). Reordering a float32 sum of K terms
//   changes it by about √K·2⁻²⁴·Σ|w·x|; with weights scaled 1/√K, Σ|w·x| ≈ 0.8√K while
//   max|y| ≈ 3–4, so ≈ K·2⁻²⁴/4 ≲ 2e-6 of max|y| (measured: ≤ 4e-7, half the cases
//   bit-identical). A real defect —
//   one missing tap, a wrong pad, stride or group, a missing bias — moves outputs by
//   |w·x| ≈ 1/√K ≳ 0.08, i.e. ≥ 2e-2 of max|y|, three orders above the bound.
// - max_pool2d, nearest ×2 upsample + add, reorders: bit-exact. A max, a copy and a single
//   float add round the same way in any implementation.
// - bilinear resize (Resize.bilinear vs F.interpolate, align_corners=False). ATen has two
//   float kernels, and torch's AVX2 build lets the compiler contract a·b + c into FMAs
//   (checked by emulating both in numpy: bit-identical on every fixture case):
//   * generic (used when out h + w > 128 and C ≠ 3 on one thread): the expression
//     Resize.bilinear uses, h0·(w0·a + w1·b) + h1·(w0·c + w1·d), but each x·p + y·q as
//     fma(x, p, y·q). The FMA skips one rounding of a product ≤ max|x|, three times:
//     |Δ| ≤ 2 ulp(max|x|) (measured 1 ulp).
//   * channels-last (out h + w ≤ 128, or C = 3 on one thread): the source coordinate as
//     fma(scale, o + 0.5, −0.5), so λ may differ by ulp(coordinate) ≤ ulp(max(h, w)), and
//     fma(d, w11, fma(c, w10, fma(a, w00, b·w01))) with w_ij = h_i·w_j. A λ error moves the
//     output by Δλ·|x_i1 − x_i0| ≤ Δλ·2max|x| per axis, the sum order a few ulp:
//     |Δ| ≤ 4·ulp(max(h, w))·max|x| + 4 ulp(max|x|) (≈ 1e-5·max|x| for 30 px; measured ≤ 3e-6).
//   A wrong tap or weight moves outputs by ~λ·|x_i1 − x_i0| ≈ 0.1–1, 10⁴ above either bound.
// - sigmoid, softmax: ATen's vectorized exp (Sleef, ≤ 1 ulp) vs glibc expf (≤ 1 ulp),
//   then 1 + e and a division (softmax: a sum of 7 and a division per element), each
//   rounding once: ≤ 4 ulp per element (measured ≤ 2), plus 1e-12 absolute for values
//   that underflow towards subnormals, whose ulp is meaningless.
// - topK: values identical and in the same order; indices identical except among equal
//   values, whose order torch.topk leaves to std::nth_element/std::sort (unspecified);
//   there, the index sets must agree wherever a run of equal values lies wholly inside
//   the top k, and Swift's own documented tie rule (lower index first) is checked.
import CDNNL
@testable import Tensor
import XCTest

final class TensorOpsTests: XCTestCase {
    static let fixture = Result { try Fixture("ops.safetensors") }
    var f: Fixture { get throws { try Self.fixture.get() } }

    static let convTolerance: Float = 1e-5

    // These check the direct method against torch, call after call; winograd is checked
    // against direct in PrecisionTests.
    private var savedWinograd = WinogradPolicy.measured
    override func setUp() { savedWinograd = Device.cpu.winograd; Device.cpu.winograd = .off }
    override func tearDown() { Device.cpu.winograd = savedWinograd }

    // MARK: convolution

    func conv(_ name: String) throws -> Conv2d { try f.conv(name) }

    func testConv2d() throws {
        let f = try f
        let names = ["c1x1", "c3x3_relu", "c7s2p3", "c7s2p3_nobias", "c3x3_nobias", "g2", "g4s2_relu", "dw_x2",
                     "dil2", "dil2_g2", "res", "res_relu", "res_relu_s2", "t2s2_relu", "t2s2_g2", "t3s2p1_nobias"]
        for name in names {
            let p = "conv.\(name).", layer = try conv(name)
            let x = try f.tensor(p + "x")
            let residual = try f.has(p + "r") ? f.tensor(p + "r") : nil
            XCTAssertEqual(try f.ints(p + "geom")[10] == 1, residual != nil, name)
            let y = try layer(x, adding: residual)
            XCTAssertEqual(y.shape, try f.shape(p + "y"), name)
            XCTAssertEqual(layer.outputShape(x.shape), try f.shape(p + "y"), "\(name) outputShape")
            let expected = try f.floats(p + "y")
            assertClose(try y.toArray(), expected, scaled: Self.convTolerance, "conv \(name)")
            // A second call runs the cached primitive (and reordered weights) again.
            let again = try layer(x, adding: residual.map { Tensor(shape: $0.shape, values: try $0.toArray()) })
            assertIdentical(try again.toArray(), try y.toArray(), "conv \(name), second call")
        }
    }

    /// The residual is itself a convolution's output (blocked), so the sum post-op
    /// accumulates into its storage: y = relu(conv3×3(x) + conv1×1(x)), a ResNet block.
    func testConvResidualInPlace() throws {
        let f = try f
        let x = try f.tensor("chain.x")
        let a = try Conv2d(ConvGeometry(inChannels: 8, outChannels: 16, kernel: 1),
                           weight: f.floats("chain.wa"), bias: f.floats("chain.ba"))
        let b = try Conv2d(ConvGeometry(inChannels: 8, outChannels: 16, kernel: 3, padding: 1),
                           weight: f.floats("chain.wb"), bias: f.floats("chain.bb"), relu: true)
        let shortcut = try a(x)
        let y = try b(x, adding: shortcut)
        assertClose(try y.toArray(), try f.floats("chain.y"), scaled: Self.convTolerance, "conv residual in place")
    }

    func testConvRejectsBadShapes() throws {
        XCTAssertThrowsError(try Conv2d(ConvGeometry(inChannels: 4, outChannels: 8, kernel: 3), weight: [Float](repeating: 0, count: 10), bias: nil))
        let c = try Conv2d(ConvGeometry(inChannels: 4, outChannels: 8, kernel: 1), weight: [Float](repeating: 0, count: 32), bias: nil)
        XCTAssertThrowsError(try c(Tensor(zeros: [1, 3, 4, 4])))
        XCTAssertThrowsError(try c(Tensor(zeros: [1, 4, 4, 4]), adding: Tensor(zeros: [1, 8, 4, 5])))
    }

    // MARK: linear

    func testLinear() throws {
        let f = try f
        for name in ["rows", "rows_relu", "one_row", "flatten4d"] {
            let p = "linear.\(name)."
            let w = try f.shape(p + "w")
            let layer = try Linear(inFeatures: w[1], outFeatures: w[0], weight: f.floats(p + "w"), bias: f.floats(p + "b"),
                                   relu: f.ints(p + "relu")[0] == 1)
            let y = try layer(f.tensor(p + "x"))
            XCTAssertEqual(y.shape, try f.shape(p + "y"), name)
            assertClose(try y.toArray(), try f.floats(p + "y"), scaled: Self.convTolerance, "linear \(name)")
        }
    }

    // MARK: pooling and upsampling

    func testMaxPool2d() throws {
        let f = try f
        for name in ["k3s2p1", "k3s2p1_even", "k1s2p0", "k1s2p0_even"] {
            let p = "pool.\(name).", ksp = try f.ints(p + "kspad")
            let y = try Pooling.maxPool2d(f.tensor(p + "x"), kernel: ksp[0], stride: ksp[1], padding: ksp[2])
            XCTAssertEqual(y.shape, try f.shape(p + "y"), name)
            assertIdentical(try y.toArray(), try f.floats(p + "y"), "max_pool2d \(name)")
        }
        // On a convolution's blocked output (the ResNet stem: conv then pool 3/2/1).
        let c = try conv("c1x1")(f.tensor("conv.c1x1.x"))
        XCTAssertFalse(c.isPlain, "conv output expected in a blocked layout")
        let y = try Pooling.maxPool2d(c, kernel: 3, stride: 2, padding: 1)
        // Bit-exact given the same conv output: compare with the pool of Swift's own conv
        // output (exact) and with torch's chain (conv tolerance).
        let own = try c.toArray()
        let ownPooled = try Pooling.maxPool2d(Tensor(shape: c.shape, values: own), kernel: 3, stride: 2, padding: 1)
        assertIdentical(try y.toArray(), try ownPooled.toArray(), "max_pool2d blocked vs plain")
        assertClose(try y.toArray(), try f.floats("pool.after_conv.y"), scaled: Self.convTolerance, "conv → max_pool2d")
    }

    func testAddUpsampledNearest() throws {
        let f = try f
        let lateral = try f.tensor("up.plain.lateral")
        let y = try Pooling.addUpsampledNearest(f.tensor("up.plain.top"), into: lateral)
        XCTAssertTrue(y === lateral, "the sum is written into lateral's storage")
        assertIdentical(try y.toArray(), try f.floats("up.plain.y"), "nearest ×2 + add, plain")

        // FPN: both operands from 1×1 convolutions (blocked layout).
        let convT = try Conv2d(ConvGeometry(inChannels: 8, outChannels: 16, kernel: 1), weight: f.floats("up.conv.wt"), bias: f.floats("up.conv.bt"))
        let convL = try Conv2d(ConvGeometry(inChannels: 12, outChannels: 16, kernel: 1), weight: f.floats("up.conv.wl"), bias: f.floats("up.conv.bl"))
        let top = try convT(f.tensor("up.conv.xt")), lat = try convL(f.tensor("up.conv.xl"))
        XCTAssertFalse(top.isPlain || lat.isPlain, "conv outputs expected in a blocked layout")
        let topValues = try top.toArray(), latValues = try lat.toArray()
        let fused = try Pooling.addUpsampledNearest(top, into: lat)
        assertClose(try fused.toArray(), try f.floats("up.conv.y"), scaled: Self.convTolerance, "FPN top-down (blocked)")
        // Exactly inner + upsample(top) of the operands Swift computed.
        let (n, c, h, w) = (top.shape[0], top.shape[1], top.shape[2], top.shape[3])
        var expected = latValues
        for i in 0..<(n * c) { for y in 0..<(2 * h) { for x in 0..<(2 * w) {
            expected[(i * 2 * h + y) * 2 * w + x] += topValues[(i * h + y / 2) * w + x / 2]
        } } }
        assertIdentical(try fused.toArray(), expected, "FPN top-down (blocked), exact")

        // Mixed layouts: a plain top into a blocked lateral.
        let lat2 = try convL(f.tensor("up.conv.xl"))
        let mixed = try Pooling.addUpsampledNearest(Tensor(shape: top.shape, values: topValues), into: lat2)
        assertIdentical(try mixed.toArray(), expected, "nearest ×2 + add, plain top into blocked lateral")
        let top3 = try convT(f.tensor("up.conv.xt"))
        let mixed2 = try Pooling.addUpsampledNearest(top3, into: Tensor(shape: lat.shape, values: latValues))
        assertIdentical(try mixed2.toArray(), expected, "nearest ×2 + add, blocked top into plain lateral")

        XCTAssertThrowsError(try Pooling.addUpsampledNearest(Tensor(zeros: [1, 2, 3, 3]), into: Tensor(zeros: [1, 2, 6, 5])))
    }

    // MARK: resize

    func testBilinearResize() throws {
        let f = try f
        for name in ["up_frac", "down_frac", "up_int", "same", "mixed", "mask_up", "mask_down", "big_down"] {
            let p = "resize.\(name).", s = try f.shape(p + "x"), o = try f.shape(p + "y")
            let x = try f.floats(p + "x"), expected = try f.floats(p + "y")
            var y = [Float](repeating: .nan, count: expected.count)
            x.withUnsafeBufferPointer { src in
                y.withUnsafeMutableBufferPointer { dst in
                    Resize.bilinear(src, channels: s[0], height: s[1], width: s[2], outHeight: o[1], outWidth: o[2], into: dst)
                }
            }
            let scale = x.map(abs).max()!, generic = try f.ints(p + "path")[0] == 0
            let tol = generic ? 2 * scale.ulp : 4 * Float(max(s[1], s[2])).ulp * scale + 4 * scale.ulp
            let err = zip(y, expected).map { abs($0 - $1) }.max()!
            XCTAssert(err <= tol, "bilinear \(name) (ATen \(generic ? "generic" : "channels-last") kernel): max error \(err) > \(tol)")
        }
    }

    // MARK: kernels

    func testSigmoid() throws {
        let f = try f
        let x = try f.floats("sigmoid.x"), expected = try f.floats("sigmoid.y")
        for (i, v) in x.enumerated() {
            let y = Kernels.sigmoid(v)
            XCTAssert(ulpDistance(y, expected[i]) <= 4 || abs(y - expected[i]) <= 1e-12,
                      "sigmoid(\(v)) = \(y), torch \(expected[i]) (\(ulpDistance(y, expected[i])) ulp)")
        }
    }

    func testSoftmaxRows() throws {
        let f = try f
        let s = try f.shape("softmax.x"), x = try f.floats("softmax.x"), expected = try f.floats("softmax.y")
        let y = x.withUnsafeBufferPointer { Kernels.softmaxRows($0, rows: s[0], cols: s[1]) }
        XCTAssertEqual(y.count, expected.count)
        for i in 0..<min(y.count, expected.count) {
            XCTAssert(ulpDistance(y[i], expected[i]) <= 4 || abs(y[i] - expected[i]) <= 1e-12,
                      "softmax row \(i / s[1]) col \(i % s[1]): \(y[i]) vs torch \(expected[i]) (\(ulpDistance(y[i], expected[i])) ulp)")
        }
    }

    func testTopK() throws {
        let f = try f
        for name in ["random", "random_half", "ties", "ties_many", "all_equal", "k_gt_n", "k_eq_n", "neg"] {
            let p = "topk.\(name).", x = try f.floats(p + "x"), k = try f.ints(p + "k")[0]
            let values = try f.floats(p + "values"), indices = try f.ints(p + "indices")
            let got = x.withUnsafeBufferPointer { Kernels.topK($0, k) }
            XCTAssertEqual(got.count, indices.count, "\(name): count (k \(k), n \(x.count))")
            guard got.count == indices.count else { continue }
            // Values in the same order, bit for bit.
            assertIdentical(got.map { x[$0] }, values, "topk \(name) values")
            // Indices: equal outside ties; among equal values, equal as sets unless the run
            // of equal values crosses the k boundary (then torch's choice is arbitrary).
            var start = 0
            while start < got.count {
                var end = start
                while end < got.count, values[end] == values[start] { end += 1 }
                let run = values[start]
                let inInput = x.filter { $0 == run }.count
                if inInput == end - start {
                    XCTAssertEqual(Set(got[start..<end]), Set(indices[start..<end]), "\(name): indices of value \(run)")
                } else {
                    XCTAssertEqual(end, got.count, "\(name): a partial run of \(run) must end the top k")
                }
                // Swift's tie rule: lower index first, and the lowest indices win at the boundary.
                XCTAssertEqual(Array(got[start..<end]), x.indices.filter { x[$0] == run }.prefix(end - start).map { $0 },
                               "\(name): equal values in index order")
                start = end
            }
        }
        XCTAssertEqual([Float]().withUnsafeBufferPointer { Kernels.topK($0, 5) }, [])
        XCTAssertEqual([Float(1), 2].withUnsafeBufferPointer { Kernels.topK($0, 0) }, [])
    }

    // MARK: layouts

    /// A tensor goes through oneDNN's blocked layout (13 channels: padded 8-channel
    /// blocks) via an identity 1×1 convolution and comes back unchanged.
    func testReorderRoundTrip() throws {
        let f = try f
        let x = try f.tensor("reorder.x"), values = try f.floats("reorder.x")
        let c = x.shape[1]
        var eye = [Float](repeating: 0, count: c * c)
        for i in 0..<c { eye[i * c + i] = 1 }
        let identity = try Conv2d(ConvGeometry(inChannels: c, outChannels: c, kernel: 1), weight: eye, bias: nil)
        let y = try identity(x)
        XCTAssertFalse(y.isPlain, "a convolution's output is expected in a blocked layout (nChw8c/16c) on x86")
        XCTAssertGreaterThanOrEqual(y.byteCount, x.count * 4)
        assertIdentical(try y.toArray(), values, "blocked → plain")
        assertIdentical(try y.plain().withFloats { Array($0) }, values, "plain()")
        let r = try y.reshaped([2, c * 30])
        XCTAssertTrue(r.isPlain)
        XCTAssertEqual(r.shape, [2, c * 30])
        assertIdentical(try r.toArray(), values, "reshaped blocked")
        XCTAssertThrowsError(try y.reshaped([5, 5]))
        // Blocked input into ops that take any layout: conv, linear (flatten).
        let x8 = try f.tensor("conv.c3x3_relu.x")
        var eye8 = [Float](repeating: 0, count: 64)
        for i in 0..<8 { eye8[i * 8 + i] = 1 }
        let blocked8 = try Conv2d(ConvGeometry(inChannels: 8, outChannels: 8, kernel: 1), weight: eye8, bias: nil)(x8)
        XCTAssertFalse(blocked8.isPlain)
        let y8 = try conv("c3x3_relu")(blocked8)
        assertClose(try y8.toArray(), try f.floats("conv.c3x3_relu.y"), scaled: Self.convTolerance, "conv on a blocked input")
        let x4 = try f.tensor("linear.flatten4d.x")
        var eye4 = [Float](repeating: 0, count: 16)
        for i in 0..<4 { eye4[i * 4 + i] = 1 }
        let blocked4 = try Conv2d(ConvGeometry(inChannels: 4, outChannels: 4, kernel: 1), weight: eye4, bias: nil)(x4)
        let w = try f.shape("linear.flatten4d.w")
        let lin = try Linear(inFeatures: w[1], outFeatures: w[0], weight: f.floats("linear.flatten4d.w"), bias: f.floats("linear.flatten4d.b"), relu: true)
        assertClose(try lin(blocked4).toArray(), try f.floats("linear.flatten4d.y"), scaled: Self.convTolerance, "linear on a blocked input")
    }

    /// `hostChannelBlocked()` keeps channels-last, nChw8c and nChw16c as they are (13
    /// channels: padded blocks) and copies anything else to channels-last; its layout's
    /// offsets address every value.
    func testChannelBlockedHostTransfer() throws {
        let n = 2, c = 13, h = 3, w = 5
        let values = (0..<(n * c * h * w)).map { Float($0) }
        let x = Tensor(shape: [n, c, h, w], values: values)
        for (tag, kept) in [(dnnl_abcd, false), (dnnl_acdb, true), (dnnl_aBcd8b, true), (dnnl_aBcd16b, true)] {
            let t = try x.copy(to: MD.make(x.shape, tag))
            let b = try t.hostChannelBlocked()
            XCTAssertEqual(b === t, kept, "layout \(tag.rawValue) kept as it is")
            let (v, layout) = b.channelBlocked
            var read: [Float] = []
            for i in 0..<n { for ch in 0..<c { for y in 0..<h { for xx in 0..<w { read.append(v[layout.offset(n: i, c: ch, y: y, x: xx)]) } } } }
            assertIdentical(read, values, "offsets in layout \(tag.rawValue)")
        }
        // A 1×1 map (P6 of a small image): channels-last is also plain there.
        let p6 = try Tensor(shape: [1, 16, 1, 1], values: (0..<16).map { Float($0) }).copy(to: MD.make([1, 16, 1, 1], dnnl_acdb))
        let (v, layout) = try p6.hostChannelBlocked().channelBlocked
        assertIdentical((0..<16).map { v[layout.offset(n: 0, c: $0, y: 0, x: 0)] }, (0..<16).map { Float($0) }, "1×1 map")
    }
}
