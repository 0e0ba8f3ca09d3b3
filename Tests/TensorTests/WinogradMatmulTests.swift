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
        let plain = { Tensor(shape: [g.outChannels, g.inChannels, 3, 3], values: weights) }
        let out = [x.shape[0], g.outChannels, g.outputSize(x.shape[2]), g.outputSize(x.shape[3])]
        try wm.prepare(for: x.shape, plainWeights: plain)
        return try wm(x, adding: residual.map { Tensor(shape: out, values: $0) }, plainWeights: plain)
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

    /// Conv2d measures its own winograd as one more candidate and keeps the fastest; an
    /// ineligible layer (channels not a multiple of 8) has no such candidate.
    func testConv2dMeasuresItAsACandidate() throws {
        let device = Device.cpu
        let saved = device.winograd
        defer { device.winograd = saved }
        let k = Case(n: 1, c: 16, o: 16, h: 20, w: 24)
        let (g, weights, bias, input, _) = layer(k, relu: true, residual: false)
        let expected = try direct(g, weights, bias, relu: true, input, residual: nil)
        device.winograd = .measured
        let conv = try Conv2d(g, weight: weights, bias: bias, relu: true)
        let candidates = device.isa.hasAVX512 ? 3 : 2
        var outputs: [[Float]] = []
        for _ in 0..<candidates {
            XCTAssertNil(conv.algorithm(height: k.h, width: k.w), "undecided while candidates are untried")
            outputs.append(try conv(input).toArray())
        }
        assertIdentical(outputs[0], expected, "the first measured call runs direct")
        assertClose(outputs[candidates - 1], expected, scaled: Self.tolerance, "the last candidate is segd's winograd")
        XCTAssertNotEqual(outputs[candidates - 1], expected, "segd's winograd ran")
        XCTAssertNotNil(conv.algorithm(height: k.h, width: k.w))

        let odd = try Conv2d(ConvGeometry(inChannels: 12, outChannels: 12, kernel: 3, padding: 1),
                             weight: [Float](repeating: 0.01, count: 12 * 12 * 9), bias: nil)
        let x = Tensor(zeros: [1, 12, 8, 8])
        for _ in 0..<4 { _ = try odd(x) }
        if !device.isa.hasAVX512 { XCTAssertNil(odd.algorithm(height: 8, width: 8), "12 channels: no candidate but direct") }
    }
}
