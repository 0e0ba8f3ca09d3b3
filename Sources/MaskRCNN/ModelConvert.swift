// `segd model convert`: a torchvision .pth (or any weights file segd reads) to a segd
// safetensors file that carries what a .pth cannot: the class names, the BatchNorm ε and
// the architecture, in `__metadata__`. The tensors are written as F32 under today's
// torchvision names (a 2019 checkpoint's old names are renamed), so the file is mmap-ready
// and needs no unpickling.
import Foundation

public struct ModelConversion: Sendable {
    public var architecture: String
    public var classes: Int
    public var tensors: Int
    /// BatchNorm training counters (`num_batches_tracked`) left out: eval-mode BN never reads them.
    public var droppedCounters: Int
    public var bytes: Int
    /// Time to read the tensors (WeightsFile.load), and to read them and build the model,
    /// from the input and from the written file.
    public var inputReadSeconds: Double
    public var inputLoadSeconds: Double
    public var outputReadSeconds: Double
    public var outputLoadSeconds: Double
}

public enum ModelConverter {
    /// Reads `input`, builds the model from it (so a file that would not load is never
    /// converted), writes `output`, then loads `output` back and checks that it builds the
    /// same architecture with the same class names.
    /// - Parameters: minSize, maxSize: torchvision's min_size / max_size, which a .pth cannot
    ///   carry (nil: the input's metadata, else 800 / 1333); recorded with the names and ε.
    public static func convert(input: String, output: String, classNames: ClassNames? = nil, frozenBNEpsilon: Float? = nil,
                               minSize: Int? = nil, maxSize: Int? = nil) throws -> ModelConversion {
        let start = Date()
        let state = try WeightsFile.load(input)
        let inputRead = Date().timeIntervalSince(start)
        let model = try MaskRCNN(stateDict: state, frozenBNEpsilon: frozenBNEpsilon, classNames: classNames)
        model.setSizes(minSize: minSize, maxSize: maxSize)
        let inputSeconds = Date().timeIntervalSince(start)
        let c = model.config, a = model.architecture
        var tensors: [String: HostTensor] = [:]
        var dropped = 0
        for (key, t) in state.normalizedTorchvisionKeys().tensors {
            if key.hasSuffix(".num_batches_tracked") { dropped += 1; continue }
            tensors[key] = t
        }
        func json(_ v: Any) -> String { String(decoding: try! JSONSerialization.data(withJSONObject: v, options: [.withoutEscapingSlashes]), as: UTF8.self) }
        let metadata: [String: String] = [
            "format": "segd-maskrcnn",
            "arch": a.name,
            "layout": a.layout.rawValue,
            "classes": json(c.classNames),
            "frozen_bn_eps": "\(c.frozenBNEpsilon)",
            "batch_norm_eps": "\(c.batchNormEpsilon)",
            "min_size": "\(c.minSize)",
            "max_size": "\(c.maxSize)",
            "box_score_thresh": "\(c.box.scoreThreshold)",
            "box_nms_thresh": "\(c.box.nmsThreshold)",
            "box_detections_per_img": "\(c.box.detectionsPerImage)",
            "image_mean": json(c.imageMean.map(Double.init)),
            "image_std": json(c.imageStd.map(Double.init)),
            "converted_from": (input as NSString).lastPathComponent,
        ]
        let data = try SafeTensorsWriter.encode(tensors, metadata: metadata)
        do { try data.write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
            throw ModelError.architecture(path: output, reason: "cannot write: \(error.localizedDescription)")
        }
        let again = Date()
        let written = try WeightsFile.load(output)
        let outputRead = Date().timeIntervalSince(again)
        let back = try MaskRCNN(stateDict: written)
        let outputSeconds = Date().timeIntervalSince(again)
        guard back.architecture.name == a.name, back.config.classNames == c.classNames,
              back.config.frozenBNEpsilon == c.frozenBNEpsilon, back.summary().totalParameters == model.summary().totalParameters else {
            throw ModelError.architecture(path: output, reason: "the written file does not load back as \(a.name) with the same classes")
        }
        return ModelConversion(architecture: a.name, classes: c.classNames.count, tensors: tensors.count, droppedCounters: dropped,
                               bytes: data.count, inputReadSeconds: inputRead, inputLoadSeconds: inputSeconds,
                               outputReadSeconds: outputRead, outputLoadSeconds: outputSeconds)
    }
}
