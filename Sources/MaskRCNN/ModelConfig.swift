// Everything about a model that is not a weight: class names, preprocessing and the
// inference thresholds. Defaults are torchvision's maskrcnn_resnet50_fpn inference
// defaults; a segd safetensors file overrides them from its metadata, and the caller
// (CLI, pipeline.yml) may override again.
import Foundation

public struct ModelConfig: Sendable {
    public var name = "maskrcnn"
    /// Index 0 is the background class.
    public var classNames: [String] = COCO.categoryNames
    /// Frozen-BN ε: 0.0 for torchvision's COCO checkpoint (it calls overwrite_eps(model, 0.0)),
    /// 1e-5 for a freshly built torchvision model (FrozenBatchNorm2d's default).
    public var frozenBNEpsilon: Float = 0.0
    /// ε of the BatchNorm2d layers of the v2 models (backbone, FPN, heads): nn.BatchNorm2d's
    /// default, which torchvision's _v2 builders keep.
    public var batchNormEpsilon: Float = 1e-5
    public var minSize = 800
    public var maxSize = 1333
    public var imageMean: [Float] = [0.485, 0.456, 0.406]
    public var imageStd: [Float] = [0.229, 0.224, 0.225]
    public var sizeDivisible = 32
    public var anchors = AnchorGenerator()
    public var rpn = RPNSettings()
    public var box = BoxHeadSettings()
    public var maskThreshold: Float = 0.5

    public init() {}

    /// Applies the `__metadata__` of a segd safetensors file (keys written by tools/).
    /// Unknown keys are ignored (the file may carry provenance such as "trained_by").
    public mutating func apply(metadata m: [String: String], path: String) throws {
        func number<T: LosslessStringConvertible>(_ key: String) throws -> T? {
            guard let s = m[key] else { return nil }
            guard let v = T(s.trimmingCharacters(in: .whitespaces)) else {
                throw ModelError.architecture(path: path, reason: "metadata \(key)=\"\(s)\" is not a number")
            }
            return v
        }
        func floats(_ key: String) throws -> [Float]? {
            guard let s = m[key] else { return nil }
            guard let a = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [NSNumber] else {
                throw ModelError.architecture(path: path, reason: "metadata \(key)=\"\(s)\" is not a JSON list of numbers")
            }
            return a.map { $0.floatValue }
        }
        if let s = m["name"] { name = s }
        if let s = m["classes"] {
            guard let a = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String], !a.isEmpty else {
                throw ModelError.architecture(path: path, reason: "metadata classes is not a JSON list of names")
            }
            classNames = a
        }
        if let v: Float = try number("frozen_bn_eps") { frozenBNEpsilon = v }
        if let v: Float = try number("batch_norm_eps") { batchNormEpsilon = v }
        if let v: Int = try number("min_size") { minSize = v }
        if let v: Int = try number("max_size") { maxSize = v }
        if let v = try floats("image_mean") { imageMean = v }
        if let v = try floats("image_std") { imageStd = v }
        if let v: Float = try number("box_score_thresh") { box.scoreThreshold = v }
        if let v: Double = try number("box_nms_thresh") { box.nmsThreshold = v }
        if let v: Int = try number("box_detections_per_img") { box.detectionsPerImage = v }
        if let v: Int = try number("rpn_pre_nms_top_n_test") { rpn.preNMSTopN = v }
        if let v: Int = try number("rpn_post_nms_top_n_test") { rpn.postNMSTopN = v }
        if let v: Double = try number("rpn_nms_thresh") { rpn.nmsThreshold = v }
        if let v = try floats("anchor_sizes") { anchors.sizes = v }
        if let v = try floats("aspect_ratios") { anchors.aspectRatios = v }
        guard imageMean.count == 3, imageStd.count == 3 else {
            throw ModelError.architecture(path: path, reason: "image_mean and image_std need 3 values")
        }
    }
}

/// Class names from a labels file (`segd batch --labels`, pipeline.yml `model.labels`):
/// either a JSON list of strings, or a text file with one name per line. Either way the
/// first name is the background class (torchvision's index 0), as in the detection
/// tutorial's `num_classes = 2  # 1 class (person) + background`.
public struct ClassNames: Sendable, Equatable {
    public var names: [String]
    /// The file they came from, for error messages.
    public var source: String

    public init(names: [String], source: String) {
        self.names = names
        self.source = source
    }

    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.labelsFile(path: path, reason: "cannot read it")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ModelError.labelsFile(path: path, reason: "not UTF-8 text")
        }
        try self.init(parsing: text, source: path)
    }

    /// Text starting with "[" (after white space) is JSON; anything else is one name a line.
    /// Trailing white space and a trailing "\r" are not part of a name; blank lines at the
    /// end are ignored, a blank line between names is an error (it would shift every index).
    public init(parsing text: String, source: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var names: [String]
        if trimmed.hasPrefix("[") {
            guard let list = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [Any] else {
                throw ModelError.labelsFile(path: source, reason: "starts with '[' but is not a JSON list")
            }
            names = []
            for (i, item) in list.enumerated() {
                guard let name = item as? String else {
                    throw ModelError.labelsFile(path: source, reason: "item \(i) of the JSON list is not a string")
                }
                names.append(name)
            }
        } else {
            // "\r\n" is one Character in Swift, so it is normalized before splitting.
            var lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
                .map { String($0).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r"))) }
            while lines.last?.isEmpty == true { lines.removeLast() }
            names = lines
        }
        if let i = names.firstIndex(where: { $0.isEmpty }) {
            throw ModelError.labelsFile(path: source, reason: "name \(i + 1) is empty")
        }
        guard names.count >= 2 else {
            throw ModelError.labelsFile(path: source, reason: "\(names.count) name(s); it needs the background class first, then at least one class")
        }
        self.names = names
        self.source = source
    }
}
