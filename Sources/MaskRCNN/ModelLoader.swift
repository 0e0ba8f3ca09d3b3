// Strict weight consumption: every layer takes its tensors by name and shape, and whatever
// is left over at the end is an error (tinygrad/MLX style), so a file for another
// architecture can never half-load.
import Tensor

/// Errors of building a model from a state dict; each names the file and the key.
public enum ModelError: Error, CustomStringConvertible {
    case missingKey(path: String, key: String, expected: [Int]?)
    case shapeMismatch(path: String, key: String, expected: [Int], found: [Int])
    case unusedKeys(path: String, keys: [String])
    case architecture(path: String, reason: String)
    /// A list of class names whose length is not the model's number of classes
    /// (`namesFile` nil: the names came from the weights file's metadata).
    case classCount(path: String, namesFile: String?, names: Int, classes: Int)
    /// A --labels / model.labels file that cannot be read or parsed.
    case labelsFile(path: String, reason: String)
    case invalidInput(reason: String)

    public var description: String {
        switch self {
        case let .missingKey(path, key, expected):
            return "\(path): missing weight \(key)\(expected.map { " (expected shape \($0))" } ?? "")"
        case let .shapeMismatch(path, key, expected, found):
            return "\(path): weight \(key) has shape \(found), the model needs \(expected)"
        case let .unusedKeys(path, keys):
            let shown = keys.prefix(8).joined(separator: ", ")
            return "\(path): \(keys.count) weight(s) not used by the model: \(shown)\(keys.count > 8 ? ", …" : "")"
        case let .architecture(path, reason):
            return "\(path): \(reason)"
        case let .classCount(path, namesFile, names, classes):
            let source = namesFile.map { "the labels file \($0)" } ?? "its metadata"
            return "\(path): the model has \(classes) classes (background included), \(source) names \(names)"
        case let .labelsFile(path, reason):
            return "labels file \(path): \(reason)"
        case let .invalidInput(reason):
            return "model input: \(reason)"
        }
    }
}

/// Hands out a state dict's tensors by name, checking shapes, and remembers which were used.
final class WeightLoader {
    let state: StateDict
    private(set) var used: Set<String> = []

    init(_ state: StateDict) { self.state = state }

    var path: String { state.path }

    func has(_ key: String) -> Bool { state.tensors[key] != nil }

    /// The shape of `key`, or an error naming it.
    func shape(_ key: String) throws -> [Int] {
        guard let t = state.tensors[key] else { throw ModelError.missingKey(path: path, key: key, expected: nil) }
        return t.shape
    }

    /// The values of `key`, which must have exactly `shape`.
    func take(_ key: String, _ shape: [Int]) throws -> [Float] {
        guard let t = state.tensors[key] else { throw ModelError.missingKey(path: path, key: key, expected: shape) }
        guard t.shape == shape else { throw ModelError.shapeMismatch(path: path, key: key, expected: shape, found: t.shape) }
        used.insert(key)
        return t.values
    }

    /// Fails on every key no layer took.
    func finish() throws {
        let unused = state.tensors.keys.filter { !used.contains($0) }.sorted()
        if !unused.isEmpty { throw ModelError.unusedKeys(path: path, keys: unused) }
    }

    /// A BatchNorm's γ, β, μ, σ² (each C), and its `num_batches_tracked` training counter
    /// when the file has one: a 0-d tensor that eval-mode BN never reads, accepted here by
    /// name and shape (so a stray counter elsewhere is still an unused key).
    func batchNorm(_ prefix: String, channels c: Int) throws -> (gamma: [Float], beta: [Float], mean: [Float], variance: [Float]) {
        let counter = prefix + ".num_batches_tracked"
        if has(counter) { _ = try take(counter, []) }
        return (try take(prefix + ".weight", [c]), try take(prefix + ".bias", [c]),
                try take(prefix + ".running_mean", [c]), try take(prefix + ".running_var", [c]))
    }

    /// A convolution (optionally with bias) whose output goes through a BatchNorm `bn`
    /// (FrozenBatchNorm2d in v1, eval-mode nn.BatchNorm2d in v2: both the affine map
    /// y = (x − μ)·γ/√(σ²+ε) + β): the BN is folded into the weights and bias at load time,
    /// w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε) (+ b·γ/√(σ²+ε)), as torchvision's
    /// FrozenBatchNorm2d computes scale = γ·rsqrt(σ²+ε), bias = β − μ·scale.
    func conv(_ prefix: String, _ g: ConvGeometry, bn: String? = nil, bias: Bool = false, eps: Float = 0,
              relu: Bool, transposed: Bool = false) throws -> Conv2d {
        let wshape = transposed
            ? [g.inChannels, g.outChannels / g.groups, g.kernel, g.kernel]
            : [g.outChannels, g.inChannels / g.groups, g.kernel, g.kernel]
        var w = try take(prefix + ".weight", wshape)
        var b: [Float]? = bias ? try take(prefix + ".bias", [g.outChannels]) : nil
        if let bn {
            let c = g.outChannels
            let (gamma, beta, mean, variance) = try batchNorm(bn, channels: c)
            let perOut = w.count / c
            var fb = [Float](repeating: 0, count: c)
            for o in 0..<c {
                let scale = gamma[o] * (1 / (variance[o] + eps).squareRoot())
                for i in 0..<perOut { w[o * perOut + i] *= scale }
                fb[o] = beta[o] - mean[o] * scale + (b?[o] ?? 0) * scale
            }
            b = fb
        }
        return try Conv2d(g, weight: w, bias: b, relu: relu, transposed: transposed)
    }

    func linear(_ prefix: String, in i: Int, out o: Int, relu: Bool) throws -> Linear {
        try Linear(inFeatures: i, outFeatures: o, weight: take(prefix + ".weight", [o, i]),
                   bias: take(prefix + ".bias", [o]), relu: relu)
    }
}
