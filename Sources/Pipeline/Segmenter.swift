// The loaded model plus what every result records about it (name, file hash, classes)
// and the settings a run uses.
import Foundation
import MaskRCNN
import Results
import Tensor

/// Run-time settings that shape results (pipeline.yml `model:` and the CLI flags).
public struct InferenceSettings: Sendable {
    public var scoreThreshold: Float?
    public var maskThreshold: Float = 0.5
    public var maxDetections: Int?
    public var frozenBNEpsilon: Float?
    /// A class names file (`--labels`, pipeline.yml `model.labels`): see `ClassNames`.
    public var labels: String?
    public var minSize: Int?
    public var maxSize: Int?
    /// auto: the faster of bf16 and fp32 (measured) where the CPU computes bf16 natively,
    /// fp32 elsewhere.
    public var precision: Precision = .auto
    /// Where auto keeps its measured decisions (`PrecisionDecisions`); nil: measured at
    /// every start. The daemon's is in its state directory.
    public var precisionDecisions: String? = PrecisionDecisions.userDefault
    public init() {}
}

public final class Segmenter: @unchecked Sendable {
    public let model: MaskRCNN
    public let weightsPath: String
    public let modelInfo: ImageResult.ModelInfo
    public let settings: ImageResult.Settings

    public init(weights path: String, settings s: InferenceSettings = InferenceSettings()) throws {
        var base = ModelConfig()
        if let v = s.minSize { base.minSize = v }
        if let v = s.maxSize { base.maxSize = v }
        let names = try s.labels.map { try ClassNames(contentsOf: $0) }
        let sha256 = try FileHash.sha256(fileAt: path)
        func given(_ v: Int?) -> String { v.map(String.init) ?? "file" }
        let request = "min_size=\(given(s.minSize)) max_size=\(given(s.maxSize)) detections=\(given(s.maxDetections))"
        let model = try PrecisionChoice.model(candidates: s.precision.candidates(on: Device.cpu.isa), modelID: sha256,
                                              request: request, decisions: s.precisionDecisions.map(PrecisionDecisions.init(path:))) { precision in
            let model = try MaskRCNN(contentsOf: path, config: base, frozenBNEpsilon: s.frozenBNEpsilon, precision: precision, classNames: names)
            // The file's metadata may set sizes; explicit settings win over it.
            model.setInferenceOptions(scoreThreshold: s.scoreThreshold, detectionsPerImage: s.maxDetections, maskThreshold: s.maskThreshold)
            if s.minSize != nil || s.maxSize != nil { model.setSizes(minSize: s.minSize, maxSize: s.maxSize) }
            return model
        }
        self.model = model
        weightsPath = path
        let c = model.config
        modelInfo = ImageResult.ModelInfo(name: c.name, sha256: sha256, classes: c.classNames)
        settings = ImageResult.Settings(scoreThreshold: c.box.scoreThreshold, maskThreshold: c.maskThreshold,
                                        maxDetections: c.box.detectionsPerImage, minSize: c.minSize, maxSize: c.maxSize, precision: model.precision.name)
    }
}
