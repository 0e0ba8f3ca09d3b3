// Every op a bf16 model runs, in bf16 against the f32 reference (torch's f32 outputs in
// Fixtures/ops.safetensors), and winograd against the direct method: the backend-against-
// reference check of ggml's test-backend-ops, for the second precision and algorithm.
//
// Tolerances, and why:
// - bf16 conv / linear / deconv: max|Δ| ≤ 2e-2·max|y|, mean|Δ| ≤ 2e-3·max|y|. Inputs and
//   weights are rounded to bf16 (8 significant bits: relative error ≤ 2⁻⁹ each, so ≤ 2⁻⁸
//   per product); the K = C_in/G·k² ≤ 147 products accumulate in f32, so the worst case is
//   2⁻⁸·Σ|w·x| ≈ 2⁻⁸·0.8√K ≈ 0.04 against max|y| ≈ 3 (1.3e-2), plus the output's own
//   rounding to bf16 (2⁻⁹·max|y|). Random-sign errors average out: the mean sits near
//   2⁻⁸·√K·|w·x|/√K, an order below. A real defect (a wrong tap, bias, stride) moves
//   outputs by ≳ 2e-2·max|y| *everywhere*, which the mean bound catches. Measured on a
//   Zen 4 EPYC (avx512_core_bf16): max ≤ 6e-3, mean ≤ 8e-4.
// - bf16 max pool and nearest ×2 + add: exact against the same ops in f32 on the
//   bf16-rounded input (a max and a copy do not round; the add rounds once to bf16).
// - winograd F(4×4, 3×3) against direct, f32: max|Δ| ≤ 1e-4·max|y|. Its input and output
//   transforms multiply by constants up to 16 (oneDNN's 4×3 tiles), which costs
//   about 2 decimal digits of f32 against the direct sum (measured ≤ 3e-6 here); a wrong
//   tile border or a missing bias moves outputs by ≥ 1e-2·max|y|.
@testable import Tensor
import XCTest

final class PrecisionTests: XCTestCase {
    var f: Fixture { get throws { try TensorOpsTests.fixture.get() } }

    static let bf16MaxTolerance: Float = 2e-2
    static let bf16MeanTolerance: Float = 2e-3

    func requireNativeBF16() throws {
        let isa = Device.cpu.isa
        guard isa.nativeBF16 else {
            throw XCTSkip("bf16 needs the CPU flag avx512_bf16 or amx_bf16; oneDNN's ISA here is \(isa)")
        }
    }

    func conv(_ name: String) throws -> Conv2d { try f.conv(name) }

    func assertBF16Close(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        assertClose(a, b, scaled: Self.bf16MaxTolerance, what, file: file, line: line)
        let scale = b.map(abs).max() ?? 0
        let mean = zip(a, b).map { abs($0 - $1) }.reduce(0, +) / Float(max(b.count, 1))
        XCTAssert(mean <= Self.bf16MeanTolerance * max(scale, 1e-30), "\(what): mean error \(mean / scale) relative to max|expected| > \(Self.bf16MeanTolerance)",
                  file: file, line: line)
        // bf16 really ran: the rounding of 8-bit significands shows somewhere.
        XCTAssertNotEqual(a, b, "\(what): bf16 result identical to f32: was bf16 computed at all?", file: file, line: line)
    }

    /// The values a tensor holds once rounded to bf16 (round to nearest even, as oneDNN).
    func roundedToBF16(_ x: [Float]) -> [Float] {
        x.map { v in
            let bits = v.bitPattern
            let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
            return Float(bitPattern: rounded)
        }
    }

    // MARK: precision resolution (pure: runs on every CPU)

    func testPrecisionResolution() throws {
        let avx2 = CPUISA(raw: CPUISA.avx2), zen4 = CPUISA(raw: CPUISA.avx512CoreBF16), spr = CPUISA(raw: CPUISA.avx512CoreAMX)
        func dtypes(_ p: Precision, _ isa: CPUISA) throws -> [DType] { try p.candidates(on: isa).map(\.dtype) }
        XCTAssertEqual(try dtypes(.auto, avx2), [.f32])
        XCTAssertTrue(try Precision.auto.candidates(on: avx2)[0].reason.contains("no native bf16"))
        // Native bf16: both, bf16 first, for the caller to measure (PrecisionChoiceTests).
        XCTAssertEqual(try dtypes(.auto, zen4), [.bf16, .f32])
        XCTAssertEqual(try dtypes(.auto, spr), [.bf16, .f32])
        XCTAssertEqual(try dtypes(.fp32, spr), [.f32])
        XCTAssertEqual(try Precision.bf16.candidates(on: zen4).map(\.name), ["bf16"])
        XCTAssertThrowsError(try Precision.bf16.candidates(on: avx2)) { e in
            let message = "\(e)"
            XCTAssertTrue(message.contains("avx512_bf16") && message.contains("amx_bf16") && message.contains("avx2"), message)
        }
        XCTAssertTrue(spr.hasAMX && spr.hasAVX512BF16 && spr.hasAVX512)
        XCTAssertTrue(!zen4.hasAMX && zen4.hasAVX512BF16)
        XCTAssertTrue(!avx2.hasAVX512 && !avx2.nativeBF16)
        XCTAssertEqual(Precision(rawValue: "bf16"), .bf16)
        XCTAssertNil(Precision(rawValue: "fp16"))
    }

    // MARK: conversions

    func testConvertRoundTrip() throws {
        let values: [Float] = [1, -2.5, 3.14159265, 1e-3, 65504, -0.0, 1.0 / 3.0, 300.7]
        let x = Tensor(shape: [2, 4], values: values)
        let b = try x.converted(to: .bf16)
        XCTAssertEqual(b.dtype, .bf16)
        XCTAssertFalse(b.isHost, "a bf16 tensor is not host memory Swift may index")
        let back = try b.host()
        XCTAssertEqual(back.dtype, .f32)
        // Zero's sign aside: oneDNN 2.6's reorder without AVX-512 (DNNL_MAX_CPU_ISA=AVX2 on a
        // Zen 4) turns −0.0 into +0.0, which no later op can tell apart.
        let unsigned: ([Float]) -> [Float] = { $0.map { $0 == 0 ? 0 : $0 } }
        assertIdentical(unsigned(try back.toArray()), unsigned(roundedToBF16(values)), "f32 → bf16 → f32 rounds to nearest even")
        // A blocked bf16 tensor keeps its layout through a type change (a bf16 convolution
        // makes one: oneDNN 2.6 has none without AVX-512).
        try requireNativeBF16()
        let c = try conv("c1x1")
        let y = try c(f.tensor("conv.c1x1.x").converted(to: .bf16))
        XCTAssertEqual(y.dtype, .bf16)
        let widened = try y.converted(to: .f32)
        XCTAssertEqual(widened.dtype, .f32)
        assertIdentical(try widened.toArray(), try y.toArray(), "bf16 blocked → f32 blocked")
    }

    // MARK: bf16 ops against f32

    func testConv2dBF16() throws {
        try requireNativeBF16()
        let f = try f
        for name in ["c1x1", "c3x3_relu", "c7s2p3", "c3x3_nobias", "g2", "dil2", "res", "res_relu", "res_relu_s2", "t2s2_relu"] {
            let p = "conv.\(name).", layer = try conv(name)
            let x = try f.tensor(p + "x").converted(to: .bf16)
            let residual = try f.has(p + "r") ? f.tensor(p + "r").converted(to: .bf16) : nil
            let y = try layer(x, adding: residual)
            XCTAssertEqual(y.dtype, .bf16, name)
            XCTAssertEqual(y.shape, try f.shape(p + "y"), name)
            assertBF16Close(try y.toArray(), try f.floats(p + "y"), "bf16 conv \(name)")
            if !layer.transposed {
                let impl = try layer.implementation(for: x)
                XCTAssertTrue(impl.contains("bf16") || impl.contains("amx"), "\(name): oneDNN ran \(impl), not a native bf16 kernel")
            }
        }
    }

    func testConvF32OutputFromBF16() throws {
        try requireNativeBF16()
        let f = try f
        let layer = try conv("c3x3_relu")
        let y = try layer(f.tensor("conv.c3x3_relu.x").converted(to: .bf16), outputType: .f32)
        XCTAssertEqual(y.dtype, .f32)
        assertBF16Close(try y.toArray(), try f.floats("conv.c3x3_relu.y"), "bf16 conv with f32 output")
    }

    func testLinearBF16() throws {
        try requireNativeBF16()
        let f = try f
        for name in ["rows", "rows_relu"] {  // one_row is all zeros after its ReLU: nothing to round
            let p = "linear.\(name)."
            let w = try f.shape(p + "w")
            let layer = try Linear(inFeatures: w[1], outFeatures: w[0], weight: f.floats(p + "w"), bias: f.floats(p + "b"),
                                   relu: f.ints(p + "relu")[0] == 1)
            let y = try layer(f.tensor(p + "x").converted(to: .bf16), outputType: .f32)
            XCTAssertEqual(y.dtype, .f32)
            assertBF16Close(try y.toArray(), try f.floats(p + "y"), "bf16 linear \(name)")
        }
    }

    func testPoolingAndUpsampleBF16() throws {
        try requireNativeBF16()
        let f = try f
        for name in ["k3s2p1", "k1s2p0_even"] {
            let p = "pool.\(name).", ksp = try f.ints(p + "kspad")
            let x = try f.tensor(p + "x")
            let rounded = Tensor(shape: x.shape, values: roundedToBF16(try x.toArray()))
            let y = try Pooling.maxPool2d(x.converted(to: .bf16), kernel: ksp[0], stride: ksp[1], padding: ksp[2])
            XCTAssertEqual(y.dtype, .bf16)
            let reference = try Pooling.maxPool2d(rounded, kernel: ksp[0], stride: ksp[1], padding: ksp[2])
            assertIdentical(try y.toArray(), try reference.toArray(), "bf16 max_pool2d \(name)")
        }
        let top = try f.tensor("up.plain.top"), lateral = try f.tensor("up.plain.lateral")
        let topR = roundedToBF16(try top.toArray()), latR = roundedToBF16(try lateral.toArray())
        let y = try Pooling.addUpsampledNearest(top.converted(to: .bf16), into: lateral.converted(to: .bf16))
        let reference = try Pooling.addUpsampledNearest(Tensor(shape: top.shape, values: topR), into: Tensor(shape: lateral.shape, values: latR))
        assertIdentical(try y.toArray(), roundedToBF16(try reference.toArray()), "bf16 nearest ×2 + add")
    }

    func testBF16WeightsRefuseAnF32Call() throws {
        try requireNativeBF16()
        let f = try f
        let layer = try conv("c1x1")
        _ = try layer(f.tensor("conv.c1x1.x").converted(to: .bf16))
        XCTAssertThrowsError(try layer(f.tensor("conv.c1x1.x"))) { e in
            XCTAssertTrue("\(e)".contains("narrowed to bf16"), "\(e)")
        }
    }

    // MARK: winograd

    /// A random 3×3 stride-1 layer (c → c, bias, ReLU) and input, and the layer's direct
    /// output, computed with winograd off.
    func random3x3(n: Int, c: Int, h: Int, w: Int, weightScale: Float) throws
        -> (g: ConvGeometry, weights: [Float], bias: [Float], input: Tensor, direct: [Float]) {
        var rng = SystemRandomNumberGenerator()
        let weights = (0..<(c * c * 9)).map { _ in Float.random(in: -1...1, using: &rng) * weightScale }
        let bias = (0..<c).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
        let input = Tensor(shape: [n, c, h, w], values: (0..<(n * c * h * w)).map { _ in Float.random(in: -1...1, using: &rng) })
        let g = ConvGeometry(inChannels: c, outChannels: c, kernel: 3, padding: 1)
        Device.cpu.winograd = .off
        let direct = try Conv2d(g, weight: weights, bias: bias, relu: true)(input).toArray()
        return (g, weights, bias, input, direct)
    }

    func testWinogradAgainstDirect() throws {
        guard Device.cpu.isa.hasAVX512 else {
            throw XCTSkip("oneDNN 2.6's winograd needs the CPU flag avx512f; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        let device = Device.cpu
        let saved = device.winograd
        defer { device.winograd = saved }
        // A 3×3 stride-1 layer at the sizes the model runs (64 → 64 channels, 2 images).
        let c = 64, h = 40, w = 56
        let (g, weights, bias, input, direct) = try random3x3(n: 2, c: c, h: h, w: w, weightScale: 1 / Float(3 * 8))
        device.winograd = .always
        let wino = try Conv2d(g, weight: weights, bias: bias, relu: true)
        let y = try wino(input)
        let impl = try wino.implementation(for: input)
        XCTAssertTrue(impl.contains("wino"), impl)
        assertClose(try y.toArray(), direct, scaled: 1e-4, "winograd vs direct")
        XCTAssertNotEqual(try y.toArray(), direct, "winograd gave direct's exact sums: did it run?")

        // `.measured` tries both once per spatial size, then keeps the faster.
        device.winograd = .measured
        let measured = try Conv2d(g, weight: weights, bias: bias, relu: true)
        XCTAssertNil(measured.algorithm(height: h, width: w))
        let first = try measured(input).toArray(), second = try measured(input).toArray()
        assertIdentical(first, direct, "the first measured call runs direct")
        assertClose(second, direct, scaled: 1e-4, "the second measured call runs winograd")
        XCTAssertNotEqual(second, first, "the second measured call runs winograd (from weights already reordered for direct)")
        let chosen = try XCTUnwrap(measured.algorithm(height: h, width: w))
        let third = try measured(input).toArray()
        assertIdentical(third, chosen == .direct ? first : second, "later calls keep the faster (\(chosen))")
        // Not a candidate: stride 2 stays direct with no measurement.
        let s2 = try Conv2d(ConvGeometry(inChannels: c, outChannels: c, kernel: 3, stride: 2, padding: 1), weight: weights, bias: bias)
        _ = try s2(input)
        XCTAssertNil(s2.algorithm(height: h, width: w))
    }

    /// oneDNN picks its 4×3 kernel (jit_wino_4x3) for the model's larger layers and a 2×3 one
    /// for small ones: both, at the shapes R50 runs (a mask-head batch, an FPN level).
    func testWinogradKernelsAtModelShapes() throws {
        guard Device.cpu.isa.hasAVX512 else {
            throw XCTSkip("oneDNN 2.6's winograd needs the CPU flag avx512f; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        let device = Device.cpu
        let saved = device.winograd
        defer { device.winograd = saved }
        for (n, c, h, w) in [(20, 256, 14, 14), (1, 64, 100, 152), (1, 256, 25, 38)] {
            let (g, weights, bias, input, direct) = try random3x3(n: n, c: c, h: h, w: w, weightScale: 1 / Float(3 * c).squareRoot())
            device.winograd = .always
            let wino = try Conv2d(g, weight: weights, bias: bias, relu: true)
            let y = try wino(input).toArray()
            let impl = try wino.implementation(for: input)
            assertClose(y, direct, scaled: 1e-4, "winograd (\(impl)) vs direct at \([n, c, h, w])")
        }
    }

    func testAMXKernelsWhereThereIsAMX() throws {
        guard Device.cpu.isa.hasAMX else {
            throw XCTSkip("AMX kernels need the CPU flag amx_bf16; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        let layer = try conv("c3x3_relu")
        let impl = try layer.implementation(for: f.tensor("conv.c3x3_relu.x").converted(to: .bf16))
        XCTAssertTrue(impl.contains("amx"), "oneDNN chose \(impl) on an AMX CPU")
    }
}
