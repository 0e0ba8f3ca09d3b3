// Conv2d and ConvTranspose2d on oneDNN, with bias, ReLU and a residual add fused as
// post-ops. Activations: N×C×H×W in whatever layout oneDNN prefers (format `any`), so a
// chain of convolutions runs without reorders between layers.
import CDNNL
import Foundation

/// Geometry of a 2-D convolution, PyTorch's parameter names.
public struct ConvGeometry: Hashable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int = 1
    public var padding: Int = 0
    public var dilation: Int = 1
    public var groups: Int = 1

    public init(inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
    }

    /// ⌊(W + 2P − D(F−1) − 1)/S⌋ + 1, PyTorch's Conv2d output size.
    public func outputSize(_ w: Int) -> Int { (w + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1 }
    /// (W − 1)S − 2P + D(F−1) + 1, PyTorch's ConvTranspose2d output size (output_padding 0).
    public func transposedOutputSize(_ w: Int) -> Int { (w - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 }
}

/// One created convolution for one input layout: the primitive, the weights reordered
/// to the layout it wants, and its output layout.
final class ConvPlan: @unchecked Sendable {
    let primitive: Primitive
    let srcDesc: dnnl_memory_desc_t
    let dstDesc: dnnl_memory_desc_t
    let weights: Tensor
    let outShape: [Int]
    let algorithm: ConvAlgorithm

    init(primitive: Primitive, weights: Tensor, outShape: [Int], algorithm: ConvAlgorithm) {
        self.primitive = primitive
        srcDesc = primitive.md(dnnl_query_src_md)
        dstDesc = primitive.md(dnnl_query_dst_md)
        self.weights = weights
        self.outShape = outShape
        self.algorithm = algorithm
    }
}

/// How a convolution is computed. oneDNN's winograd F(4×4, 3×3) (`jit_wino_4x3`, f32 on
/// AVX-512 only in oneDNN 2.6) does 3×3 stride-1 layers in about half the multiplies of
/// the direct method, but its transforms cost memory traffic that small maps do not repay.
public enum ConvAlgorithm: String, Sendable {
    /// oneDNN's direct kernel (brgconv, jit).
    case direct
    /// oneDNN's winograd kernel (AVX-512 only).
    case winograd
    /// segd's own winograd F(4×4, 3×3): Swift SIMD transforms around one oneDNN batched
    /// matmul (`WinogradMatmul`), for any CPU, so AVX2-only machines have one too.
    case winogradMatmul = "winograd-matmul"
}

/// Which algorithm eligible layers use. `.measured` times direct and the CPU's winograd on
/// a layer's first two calls at each spatial size and keeps the faster (measured on a
/// 2-core Zen 4 EPYC: oneDNN's winograd 1.9× direct for the mask head's 100×256×14×14,
/// 1.4× for a 64-channel 200×304 map, 0.6× for a 256-channel 25×38 one: no fixed rule
/// fits every layer). The CPU's winograd is oneDNN's where it has one (AVX-512), segd's
/// own (`WinogradMatmul`) elsewhere.
public enum WinogradPolicy: String, Sendable {
    case measured, off
    /// The CPU's winograd wherever it can run (oneDNN's, else segd's).
    case always
    /// segd's own winograd wherever it can run, on any CPU (to compare with oneDNN's).
    case own
}

/// The per-layer choice between direct and winograd at one spatial size.
final class AlgorithmChoice: @unchecked Sendable {
    private var timings: [ConvAlgorithm: Double] = [:]
    private var candidates: [ConvAlgorithm] = []
    private let lock = NSLock()

    /// The algorithm the next call should run: each candidate once, then the fastest.
    func next(_ candidates: [ConvAlgorithm]) -> ConvAlgorithm {
        lock.withLock {
            self.candidates = candidates
            if let untried = candidates.first(where: { timings[$0] == nil }) { return untried }
            return candidates.min { timings[$0]! < timings[$1]! }!
        }
    }

    func record(_ a: ConvAlgorithm, seconds: Double) {
        lock.withLock { if timings[a] == nil { timings[a] = seconds } }
    }

    var decided: ConvAlgorithm? {
        lock.withLock {
            candidates.isEmpty || candidates.contains { timings[$0] == nil } ? nil : timings.min { $0.value < $1.value }!.key
        }
    }
}

/// A convolution layer (or a transposed one) with its post-ops fixed at construction.
/// Primitives are created on first use for each input shape and cached: a model runs with
/// no primitive creation after its first image of a given size.
public final class Conv2d: @unchecked Sendable {
    public let geometry: ConvGeometry
    public let transposed: Bool
    public let relu: Bool
    /// PyTorch layout: O×(I/G)×K×K for Conv2d, I×(O/G)×K×K for ConvTranspose2d.
    private let weight: WeightCopy
    let bias: Tensor?
    private let plans = PrimitiveCache<ConvPlan>()
    /// Per spatial size (H, W, dtype), the measured choice between direct and winograd.
    private let choices = PrimitiveCache<AlgorithmChoice>()
    public let device: Device
    /// A transposed convolution whose kernel equals its stride (Mask R-CNN's 2×2/2
    /// upsampler) writes each input pixel to its own k×k output block, so it is a 1×1
    /// convolution to O·k² channels followed by a depth-to-space shuffle. oneDNN's
    /// deconvolution took 3.2 s for the mask head's 100×256×14×14 input on this
    /// machine; the 1×1 convolution does the same 5.1 G multiply-adds at the direct rate.
    private let pointwise: Conv2d?
    /// The layer's own-winograd form (its matmul primitives), made when first tried.
    private var ownWinograd: WinogradMatmul?
    private let ownWinogradLock = NSLock()

    /// - Parameters:
    ///   - weight: values in PyTorch's layout for the layer kind.
    ///   - relu: apply ReLU after the bias (and after the residual add, when given).
    public init(_ g: ConvGeometry, weight: [Float], bias: [Float]?, relu: Bool = false, transposed: Bool = false,
                on device: Device = .cpu) throws {
        self.device = device
        let expected = transposed
            ? g.inChannels * (g.outChannels / g.groups) * g.kernel * g.kernel
            : g.outChannels * (g.inChannels / g.groups) * g.kernel * g.kernel
        guard weight.count == expected else {
            throw TensorError.invalidArgument(op: "Conv2d", reason: "\(weight.count) weights for \(g), expected \(expected)")
        }
        if let bias, bias.count != g.outChannels {
            throw TensorError.invalidArgument(op: "Conv2d", reason: "\(bias.count) biases for \(g.outChannels) output channels")
        }
        geometry = g
        self.transposed = transposed
        self.relu = relu
        let wshape = g.groups == 1
            ? [g.outChannels, g.inChannels, g.kernel, g.kernel]
            : [g.groups, g.outChannels / g.groups, g.inChannels / g.groups, g.kernel, g.kernel]
        // PyTorch's ConvTranspose2d weight (I, O/G, K, K) is oneDNN's (O, I, K, K) stored iohw.
        let tag: dnnl_format_tag_t = transposed ? (g.groups == 1 ? dnnl_iohw : dnnl_giohw) : (g.groups == 1 ? dnnl_oihw : dnnl_goihw)
        let w = Tensor(desc: try MD.make(wshape, tag), shape: wshape)
        weight.withUnsafeBytes { w.data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        self.weight = WeightCopy(w)
        self.bias = bias.map { Tensor(shape: [g.outChannels], values: $0) }
        if transposed && g.kernel == g.stride && g.padding == 0 && g.dilation == 1 && g.groups == 1 {
            // PyTorch weight (I, O, k, k) seen as I × (O·k²) is exactly the transpose of the
            // 1×1 weight (O·k², I); channel c = o·k² + dy·k + dx.
            let kk = g.kernel * g.kernel, oc = g.outChannels * kk
            var pw = [Float](repeating: 0, count: oc * g.inChannels)
            for i in 0..<g.inChannels { for c in 0..<oc { pw[c * g.inChannels + i] = weight[i * oc + c] } }
            let pb = bias.map { b in (0..<oc).map { b[$0 / kk] } }
            pointwise = try Conv2d(ConvGeometry(inChannels: g.inChannels, outChannels: oc, kernel: 1), weight: pw, bias: pb, relu: relu, on: device)
        } else {
            pointwise = nil
        }
    }

    public func outputShape(_ inShape: [Int]) -> [Int] {
        let g = geometry
        return transposed
            ? [inShape[0], g.outChannels, g.transposedOutputSize(inShape[2]), g.transposedOutputSize(inShape[3])]
            : [inShape[0], g.outChannels, g.outputSize(inShape[2]), g.outputSize(inShape[3])]
    }

    /// oneDNN's winograd trades memory for multiplies: its transformed weights are 4× the layer's
    /// (kept beside the direct copy) and its scratchpad holds the transformed input and
    /// output tiles (2.25× each). Unbounded, R50 at 800×1216 peaked at 1.16 GB against
    /// 0.56 GB direct (Zen 4), most of it for P2's FPN and RPN convolutions, the mask head
    /// and layer4's 512-channel weights; a layer over either budget stays direct. (On that
    /// Zen 4 EPYC, quiet, W1 fp32 took 2.90 s with winograd unbounded, 2.94 s direct: its
    /// brgconv f32 kernels leave winograd little to win; the issue's Sapphire Rapids
    /// measured winograd at 2× direct for a 256-channel 200×336 layer.)
    static let winogradScratchpadBudget = 24 << 20
    static let winogradWeightBudget = 12 << 20

    /// The algorithms that can compute this layer for input `x` with output `outputType`:
    /// winograd for 3×3, stride-1, undilated, ungrouped f32 layers only (oneDNN 2.6 has no
    /// bf16 winograd): oneDNN's where the CPU has AVX-512, else segd's own for layers with
    /// channels in multiples of 8.
    private func candidates(_ x: Tensor, _ outputType: DType) -> [ConvAlgorithm] {
        let g = geometry
        let policy = device.winograd
        guard !transposed, g.kernel == 3, g.stride == 1, g.dilation == 1, g.groups == 1, x.dtype == .f32,
              outputType == .f32, policy != .off else { return [.direct] }
        let own = WinogradMatmul.eligible(g)
        switch policy {
        case .own, .always where !device.isa.hasAVX512, .measured where !device.isa.hasAVX512:
            return own ? [.direct, .winogradMatmul] : [.direct]
        default:
            return [.direct, .winograd]
        }
    }

    private func plan(for x: Tensor, sum: Bool, outputType: DType, algorithm: ConvAlgorithm) throws -> ConvPlan {
        try plans.get(MD.key(x.desc) + [sum ? 1 : 0, Int(outputType.dnnl.rawValue), algorithm == .winograd ? 1 : 0]) {
            let g = geometry
            let outShape = outputShape(x.shape)
            var src = try MD.any(x.shape, x.dtype)
            var wei = try MD.any(weight.shape, x.dtype)
            var dst = try MD.any(outShape, outputType)
            let strides = MD.dims([g.stride, g.stride])
            let dil = MD.dims([g.dilation - 1, g.dilation - 1])
            let pad = MD.dims([g.padding, g.padding])
            let attr = try Attr(sum: sum, relu: relu)
            let what = "\(transposed ? "ConvTranspose2d" : "Conv2d") \(g) on \(x.shape) \(x.dtype)"
            let prim: Primitive
            if transposed {
                var d = dnnl_deconvolution_desc_t()
                try withOptionalPointer(to: bias?.desc) { b in
                    try check(dnnl_dilated_deconvolution_forward_desc_init(
                        &d, dnnl_forward_inference, dnnl_deconvolution_direct, &src, &wei,
                        b, &dst, strides, dil, pad, pad), "dnnl_dilated_deconvolution_forward_desc_init", what)
                }
                prim = try Primitive.make(d, attr: attr, on: device, what: what)
            } else {
                var d = dnnl_convolution_desc_t()
                let alg = algorithm == .winograd ? dnnl_convolution_winograd : dnnl_convolution_direct
                try withOptionalPointer(to: bias?.desc) { b in
                    try check(dnnl_dilated_convolution_forward_desc_init(
                        &d, dnnl_forward_inference, alg, &src, &wei,
                        b, &dst, strides, dil, pad, pad), "dnnl_dilated_convolution_forward_desc_init", what)
                }
                prim = try Primitive.make(d, attr: attr, on: device, what: what)
                if algorithm == .winograd, device.winograd == .measured {
                    let weightBytes = MD.size(prim.md(dnnl_query_weights_md))
                    if prim.scratchpadBytes > Self.winogradScratchpadBudget || weightBytes > Self.winogradWeightBudget {
                        throw TensorError.dnnl(status: dnnl_unimplemented, call: "winograd memory budget",
                                               context: "\(what): \(prim.scratchpadBytes >> 20) MiB scratchpad, \(weightBytes >> 20) MiB weights")
                    }
                }
            }
            return ConvPlan(primitive: prim, weights: try weight.reordered(to: prim.md(dnnl_query_weights_md), what: what),
                            outShape: outShape, algorithm: algorithm)
        }
    }

    /// The algorithm for this call: direct, or winograd where the device's policy and (for
    /// `.measured`) this layer's timings at this spatial size say so.
    private func chooseAlgorithm(for x: Tensor, sum: Bool, outputType: DType) -> (ConvAlgorithm, AlgorithmChoice?) {
        let c = candidates(x, outputType)
        guard c.count > 1 else { return (.direct, nil) }
        if device.winograd == .always || device.winograd == .own { return (c[1], nil) }
        let choice = choices.get([x.shape[2], x.shape[3], sum ? 1 : 0]) { AlgorithmChoice() }
        return (choice.next(c), choice)
    }

    /// The oneDNN plan for `algorithm` (direct or oneDNN's winograd). A CPU without a
    /// winograd kernel, or a layer over its budget (oneDNN reports unimplemented), stays
    /// direct, and the measured choice learns it.
    private func oneDNNPlan(for x: Tensor, sum: Bool, outputType: DType, algorithm: ConvAlgorithm,
                            choice: AlgorithmChoice?) throws -> ConvPlan {
        do {
            return try plan(for: x, sum: sum, outputType: outputType, algorithm: algorithm)
        } catch TensorError.dnnl(status: dnnl_unimplemented, _, _) where algorithm == .winograd {
            choice?.record(.winograd, seconds: .infinity)
            return try plan(for: x, sum: sum, outputType: outputType, algorithm: .direct)
        }
    }

    /// The own-winograd form, made on first use.
    private func winogradMatmul() -> WinogradMatmul {
        ownWinogradLock.withLock {
            if let w = ownWinograd { return w }
            let w = WinogradMatmul(geometry, bias: bias, relu: relu, device: device)
            ownWinograd = w
            return w
        }
    }

    /// The algorithm this layer settled on for inputs of spatial size h×w (nil while
    /// undecided or when the layer is not a winograd candidate).
    public func algorithm(height h: Int, width w: Int, residual: Bool = false) -> ConvAlgorithm? {
        choices.peek([h, w, residual ? 1 : 0])?.decided
    }

    /// For a transposed convolution with kernel == stride: its output before the
    /// depth-to-space shuffle, N×(O·k²)×H×W as a channel-blocked f32 host tensor
    /// (`channelBlocked`), channel o·k² + dy·k + dx holding output pixel
    /// (k·y + dy, k·x + dx) of channel o. Lets a following per-pixel op (Mask R-CNN's 1×1
    /// class logits) read it without the shuffle, and without transposing the convolution's
    /// channels-last output (100×1024×14×14 for a full mask batch: 100–215 ms on 2 cores).
    public func preShuffleOutput(_ x: Tensor) throws -> Tensor {
        guard let pointwise else {
            throw TensorError.invalidArgument(op: "ConvTranspose2d \(geometry)", reason: "no pre-shuffle form (kernel ≠ stride)")
        }
        return try pointwise(x, outputType: .f32).hostChannelBlocked()
    }

    /// y = conv(x) + bias [+ residual] [then ReLU].
    /// - Parameter residual: N×O×H'×W'; when given, it is added (oneDNN sum post-op) and its
    ///   storage is reused for the result when its layout already matches, so the caller
    ///   must not read `residual` afterwards.
    /// - Parameter outputType: the output's element type; the input's when nil (a bf16
    ///   model's heads ask for f32 logits, which Swift code reads).
    public func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil, outputType: DType? = nil) throws -> Tensor {
        let g = geometry
        guard x.shape.count == 4, x.shape[1] == g.inChannels else {
            throw TensorError.shapeMismatch(op: "Conv2d \(g)", expected: [-1, g.inChannels, -1, -1], got: x.shape)
        }
        let outputType = outputType ?? x.dtype
        if let pointwise, residual == nil {
            return try depthToSpace(pointwise(x, outputType: .f32).host(), factor: g.kernel).converted(to: outputType)
        }
        var (algorithm, choice) = chooseAlgorithm(for: x, sum: residual != nil, outputType: outputType)
        if algorithm == .winogradMatmul {
            let own = winogradMatmul()
            try own.prepare(for: x.shape)
            let start = DispatchTime.now().uptimeNanoseconds
            let y = try own(x, adding: residual, weights: weight.copy(tag: WinogradMatmul.weightTag))
            choice?.record(.winogradMatmul, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(max(x.shape[0], 1)))
            return y
        }
        let p = try oneDNNPlan(for: x, sum: residual != nil, outputType: outputType, algorithm: algorithm, choice: choice)
        algorithm = p.algorithm
        let src = try x.reordered(to: p.srcDesc)
        let dst: Tensor
        if let residual {
            guard residual.shape == p.outShape else {
                throw TensorError.shapeMismatch(op: "Conv2d residual", expected: p.outShape, got: residual.shape)
            }
            dst = MD.equal(residual.desc, p.dstDesc) ? residual : try residual.copy(to: p.dstDesc)
        } else {
            dst = Tensor(desc: p.dstDesc, shape: p.outShape, device: device)
        }
        var args: [(Int32, Tensor)] = [(DNNL_ARG_SRC, src), (DNNL_ARG_WEIGHTS, p.weights), (DNNL_ARG_DST, dst)]
        if let bias { args.append((DNNL_ARG_BIAS, bias)) }
        let start = DispatchTime.now().uptimeNanoseconds
        try p.primitive.execute(args)
        // Per image: the mask head's batch (N = detections) changes from call to call.
        choice?.record(algorithm, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(max(x.shape[0], 1)))
        return dst
    }

    /// The name of the kernel that would run at this input: oneDNN's (e.g.
    /// `brgconv:avx512_core_bf16`), or `winograd-matmul` with the matmul's.
    public func implementation(for x: Tensor) throws -> String {
        let (algorithm, choice) = chooseAlgorithm(for: x, sum: false, outputType: x.dtype)
        if algorithm == .winogradMatmul {
            return "winograd-matmul (\(try winogradMatmul().implementation(for: x.shape)))"
        }
        return try oneDNNPlan(for: x, sum: false, outputType: x.dtype, algorithm: algorithm, choice: choice).primitive.implementation
    }
}

/// (N, O·k², H, W) → (N, O, H·k, W·k), channel o·k² + dy·k + dx going to offset (dy, dx).
func depthToSpace(_ y: Tensor, factor k: Int) -> Tensor {
    let n = y.shape[0], c = y.shape[1] / (k * k), h = y.shape[2], w = y.shape[3]
    let out = Tensor.uninitialized([n, c, h * k, w * k])
    let src = y.floats, dst = out.floats
    Parallel.forEach(n * c, minChunk: 8) { plane in
        for dy in 0..<k {
            for dx in 0..<k {
                let s = (plane * k * k + dy * k + dx) * h * w
                for yy in 0..<h {
                    let row = ((plane * h + yy) * k + dy) * w * k + dx
                    for xx in 0..<w { dst[row + xx * k] = src[s + yy * w + xx] }
                }
            }
        }
    }
    return withExtendedLifetime(y) { out }
}
