// segd's own winograd F(4×4, 3×3) (Ops/WinogradMatmul.swift) against oneDNN's direct
// convolution of the same layer: it runs on every CPU, so these run everywhere.
//
// Tolerance: max|Δ| ≤ 1e-4·max|y|, as for oneDNN's winograd (PrecisionTests): the input
// and output transforms multiply by constants up to 8 and 5 (Aᵀ's 8, Bᵀ's 5) and sum 6
// terms per pass, which costs about two decimal digits of f32 against the direct sum
// (measured ≤ 2e-6·max|y| on a Zen 4 EPYC); a wrong tile border, tap or a missing bias
// moves outputs by ≥ 1e-2·max|y|.
import CDNNL
@testable import Tensor
import XCTest

final class WinogradMatmulTests: XCTestCase {
    static let tolerance: Float = 1e-4

    struct Case {
        var n, c, o, h, w: Int
        var padding = 1
    }

    /// Random weights, bias and input for `k`, and the layer's direct output (winograd off).
    func layer(_ k: Case, relu: Bool, residual: Bool)
        -> (g: ConvGeometry, weights: [Float], bias: [Float], input: Tensor, residual: [Float]?) {
        var rng = SystemRandomNumberGenerator()
        let g = ConvGeometry(inChannels: k.c, outChannels: k.o, kernel: 3, padding: k.padding)
        let scale = 1 / Float(9 * k.c).squareRoot()
        let weights = (0..<(k.o * k.c * 9)).map { _ in Float.random(in: -1...1, using: &rng) * scale }
        let bias = (0..<k.o).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
        let input = Tensor(shape: [k.n, k.c, k.h, k.w], values: (0..<(k.n * k.c * k.h * k.w)).map { _ in Float.random(in: -1...1, using: &rng) })
        let outCount = k.n * k.o * g.outputSize(k.h) * g.outputSize(k.w)
        let res = residual ? (0..<outCount).map { _ in Float.random(in: -1...1, using: &rng) } : nil
        return (g, weights, bias, input, res)
    }

    func direct(_ g: ConvGeometry, _ weights: [Float], _ bias: [Float], relu: Bool, _ x: Tensor, residual: [Float]?) throws -> [Float] {
        let device = Device.cpu
        let saved = device.winograd
        defer { device.winograd = saved }
        device.winograd = .off
        let conv = try Conv2d(g, weight: weights, bias: bias, relu: relu)
        let out = conv.outputShape(x.shape)
        return try conv(x, adding: residual.map { Tensor(shape: out, values: $0) }).toArray()
    }

    func own(_ g: ConvGeometry, _ weights: [Float], _ bias: [Float], relu: Bool, _ x: Tensor, residual: [Float]?) throws -> Tensor {
        let wm = WinogradMatmul(g, bias: Tensor(shape: [g.outChannels], values: bias), relu: relu, device: .cpu)
        let plain = Tensor(shape: [g.outChannels, g.inChannels, 3, 3], values: weights)
        let out = [x.shape[0], g.outChannels, g.outputSize(x.shape[2]), g.outputSize(x.shape[3])]
        try wm.prepare(for: x.shape)
        return try wm(x, adding: residual.map { Tensor(shape: out, values: $0) },
                      weights: plain.copy(to: MD.make(plain.shape, WinogradMatmul.weightTag)))
    }

    /// Each layout it reads (channels-last, 8- and 16-channel blocks), sizes that are not
    /// multiples of the 4×4 tile, two images, bias, residual and ReLU, padding 0 to 2.
    func testAgainstDirectInEachLayoutAndBorder() throws {
        let cases = [Case(n: 2, c: 16, o: 24, h: 13, w: 17), Case(n: 1, c: 8, o: 8, h: 4, w: 4),
                     Case(n: 1, c: 24, o: 16, h: 9, w: 6, padding: 0), Case(n: 1, c: 16, o: 8, h: 7, w: 11, padding: 2)]
        for k in cases {
            for (relu, residual) in [(false, false), (true, false), (true, true)] {
                let (g, weights, bias, input, res) = layer(k, relu: relu, residual: residual)
                let expected = try direct(g, weights, bias, relu: relu, input, residual: res)
                for tag in [dnnl_acdb, dnnl_aBcd8b, dnnl_aBcd16b] {
                    let x = try input.copy(to: MD.make(input.shape, tag))
                    let y = try own(g, weights, bias, relu: relu, x, residual: res)
                    XCTAssertEqual(MD.tag(of: y.desc), tag, "the output keeps the input's layout")
                    assertClose(try y.toArray(), expected, scaled: Self.tolerance,
                                "\(k), relu \(relu), residual \(residual), layout \(tag.rawValue)")
                }
            }
        }
    }

    /// At the shapes R50 runs: a mask-head batch, a P2-like map in several tile blocks.
    func testAgainstDirectAtModelShapes() throws {
        for k in [Case(n: 20, c: 256, o: 256, h: 14, w: 14), Case(n: 1, c: 64, o: 64, h: 100, w: 152)] {
            let (g, weights, bias, input, _) = layer(k, relu: true, residual: false)
            let expected = try direct(g, weights, bias, relu: true, input, residual: nil)
            let y = try own(g, weights, bias, relu: true, input, residual: nil).toArray()
            assertClose(y, expected, scaled: Self.tolerance, "\(k)")
            XCTAssertNotEqual(y, expected, "winograd gave direct's exact sums: did it run?")
        }
    }

    /// `--winograd own` runs it in Conv2d on any CPU; on a CPU without AVX-512 (no oneDNN
    /// winograd) `.measured` times it against direct and keeps the faster.
    func testConv2dRunsIt() throws {
        let device = Device.cpu
        let saved = device.winograd
        defer { device.winograd = saved }
        let k = Case(n: 1, c: 16, o: 16, h: 128, w: 128)  // 16384 output pixels: measured
        let (g, weights, bias, input, _) = layer(k, relu: true, residual: false)
        let expected = try direct(g, weights, bias, relu: true, input, residual: nil)
        device.winograd = .own
        let forced = try Conv2d(g, weight: weights, bias: bias, relu: true)
        let y = try forced(input).toArray()
        assertClose(y, expected, scaled: Self.tolerance, "Conv2d with --winograd own")
        XCTAssertNotEqual(y, expected, "segd's winograd ran")
        let impl = try forced.implementation(for: input)
        XCTAssertTrue(impl.hasPrefix("winograd-matmul"), impl)
        // Channels not a multiple of 8: direct.
        let odd = try Conv2d(ConvGeometry(inChannels: 12, outChannels: 12, kernel: 3, padding: 1),
                             weight: [Float](repeating: 0.01, count: 12 * 12 * 9), bias: nil)
        XCTAssertFalse(try odd.implementation(for: Tensor(zeros: [1, 12, 8, 8])).hasPrefix("winograd-matmul"))

        guard !device.isa.hasAVX512 else {
            throw XCTSkip("this CPU has avx512f, where oneDNN's winograd is the measured one (PrecisionTests); segd's is measured on CPUs without it")
        }
        device.winograd = .measured
        let measured = try Conv2d(g, weight: weights, bias: bias, relu: true)
        let first = try measured(input).toArray()
        XCTAssertNil(measured.algorithm(height: k.h, width: k.w), "undecided after one of two candidates")
        let second = try measured(input).toArray()
        assertIdentical(first, expected, "the first measured call runs direct")
        assertIdentical(second, y, "the second runs segd's winograd")
        let chosen = try XCTUnwrap(measured.algorithm(height: k.h, width: k.w))
        assertIdentical(try measured(input).toArray(), chosen == .direct ? first : second, "later calls keep the faster (\(chosen))")
    }
}
