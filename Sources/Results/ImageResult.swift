import Foundation
import Imaging
import MaskRCNN

// The per-image JSON result, schema "segd.result/1" (docs/results-schema.json, explained in
// docs/results.md). Keys are snake_case; the writer sorts them, so equal results give equal
// bytes. All coordinates are in the pixels of the image after its EXIF orientation was
// applied, which is the frame the model saw and the annotated image is drawn in.

/// COCO's compressed RLE object: {"size": [height, width], "counts": "..."}.
public struct CompressedRLE: Codable, Sendable, Equatable, Hashable {
    /// [height, width], COCO's order.
    public var size: [Int]
    public var counts: String

    public init(size: [Int], counts: String) {
        self.size = size
        self.counts = counts
    }

    public init(_ rle: RLE) {
        self.size = [rle.height, rle.width]
        self.counts = rleToString(rle)
    }

    /// Parses the counts back into runs, checking them against `size`.
    public func rle() throws -> RLE {
        guard size.count == 2 else {
            throw ResultsError.invalidValue(field: "size", reason: "expected [height, width], got \(size)")
        }
        return try rleFromString(counts, height: size[0], width: size[1])
    }
}

/// One image's result, as written to `<output>/<name>.json`.
public struct ImageResult: Codable, Sendable, Equatable {
    public static let schemaVersion = "segd.result/1"

    /// The input file.
    public struct Source: Codable, Sendable, Equatable {
        /// The path as it was given (CLI argument or watched-folder path).
        public var path: String
        /// Its last component, which COCO ground truth files use as `file_name`.
        public var fileName: String
        /// Multi-page TIFF only (nil otherwise): the page (1-based) and the file's page count.
        public var page: Int?
        public var pageCount: Int?

        public init(path: String, fileName: String, page: Int? = nil, pageCount: Int? = nil) {
            self.path = path
            self.fileName = fileName
            self.page = page
            self.pageCount = pageCount
        }

        /// `fileName` is the last path component of `path`; page and count only when
        /// `pageCount` > 1.
        public init(path: String, page: Int = 1, pageCount: Int = 1) {
            self.path = path
            self.fileName = path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
            if pageCount > 1 {
                self.page = page
                self.pageCount = pageCount
            }
        }

        enum CodingKeys: String, CodingKey {
            case path
            case fileName = "file_name"
            case page
            case pageCount = "page_count"
        }
    }

    /// The image the results refer to.
    public struct ImageInfo: Codable, Sendable, Equatable {
        /// Size after the EXIF orientation was applied: the frame of boxes, masks, polygons.
        public var width: Int
        public var height: Int
        /// The EXIF orientation (1...8) that was applied to the decoded pixels; 1 when the file
        /// has none. For 5...8 the stored image is `height` wide and `width` high.
        public var orientation: Int
        /// Animated WebP only (nil otherwise): the animation's frame count; the first frame
        /// is what was segmented.
        public var frameCount: Int?

        public init(width: Int, height: Int, orientation: Int = 1, frameCount: Int? = nil) {
            self.width = width
            self.height = height
            self.orientation = orientation
            self.frameCount = frameCount
        }

        enum CodingKeys: String, CodingKey {
            case width, height, orientation
            case frameCount = "frame_count"
        }
    }

    /// The model that produced the result.
    public struct ModelInfo: Codable, Sendable, Equatable {
        public var name: String
        /// SHA-256 of the weights file, 64 lowercase hex digits.
        public var sha256: String
        /// The model's class names; index 0 is the background class, which never labels an
        /// instance. An instance's `category_id` indexes this list.
        public var classes: [String]

        public init(name: String, sha256: String, classes: [String]) {
            self.name = name
            self.sha256 = sha256
            self.classes = classes
        }
    }

    /// The settings that shaped the result.
    public struct Settings: Codable, Sendable, Equatable {
        /// Detections scoring below this were dropped (torchvision's `box_score_thresh`).
        /// Float, as the model compares it: encoded as the shortest decimal that reads back
        /// to the same float32 (0.05, not the Double 0.05000000074505806).
        public var scoreThreshold: Float
        /// Mask probabilities at or above this are set pixels (torchvision uses 0.5).
        public var maskThreshold: Float
        /// At most this many detections per image (`box_detections_per_img`).
        public var maxDetections: Int
        /// Resize target of the shorter side and cap of the longer side (`min_size`, `max_size`).
        public var minSize: Int
        public var maxSize: Int
        /// Compute precision, "fp32" or "bf16".
        public var precision: String

        public init(scoreThreshold: Float, maskThreshold: Float, maxDetections: Int,
                    minSize: Int, maxSize: Int, precision: String) {
            self.scoreThreshold = scoreThreshold
            self.maskThreshold = maskThreshold
            self.maxDetections = maxDetections
            self.minSize = minSize
            self.maxSize = maxSize
            self.precision = precision
        }

        enum CodingKeys: String, CodingKey {
            case scoreThreshold = "score_threshold"
            case maskThreshold = "mask_threshold"
            case maxDetections = "max_detections"
            case minSize = "min_size"
            case maxSize = "max_size"
            case precision
        }
    }

    /// One detected instance.
    public struct Instance: Codable, Sendable, Equatable {
        /// Class name, `model.classes[categoryID]`.
        public var label: String
        public var categoryID: Int
        public var score: Float
        /// [x, y, width, height] of the detected box in image pixels (x1, y1, x2-x1, y2-y1
        /// of the model's box; not the mask's bounding box).
        public var box: [Float]
        /// Set pixels of the mask; absent when the model has no mask head.
        public var area: Int?
        public var mask: CompressedRLE?
        /// Outer contours of the mask, COCO polygons along pixel edges; only when asked for.
        public var polygons: [[Float]]?

        public init(label: String, categoryID: Int, score: Float, box: [Float],
                    area: Int?, mask: CompressedRLE?, polygons: [[Float]]? = nil) {
            self.label = label
            self.categoryID = categoryID
            self.score = score
            self.box = box
            self.area = area
            self.mask = mask
            self.polygons = polygons
        }

        enum CodingKeys: String, CodingKey {
            case label
            case categoryID = "category_id"
            case score, box, area, mask, polygons
        }
    }

    /// What the conversion adds beyond the required fields.
    public struct Options: Sendable, Equatable {
        /// Trace outer mask contours into `polygons`.
        public var polygons: Bool

        public init(polygons: Bool = false) { self.polygons = polygons }
    }

    public var schema: String
    public var source: Source
    public var image: ImageInfo
    public var model: ModelInfo
    public var settings: Settings
    public var instances: [Instance]
    /// Wall time per pipeline stage for this image, in milliseconds (stage names are the
    /// pipeline's: decode, preprocess, backbone, rpn, detect, mask, paste, write, ...).
    public var timingsMs: [String: Double]
    /// Number of images in the batch this image ran in; a stage that runs on the whole batch
    /// at once spends its time on this many images.
    public var batchSize: Int

    public init(source: Source, image: ImageInfo, model: ModelInfo, settings: Settings,
                instances: [Instance], timingsMs: [String: Double], batchSize: Int) {
        self.schema = Self.schemaVersion
        self.source = source
        self.image = image
        self.model = model
        self.settings = settings
        self.instances = instances
        self.timingsMs = timingsMs
        self.batchSize = batchSize
    }

    enum CodingKeys: String, CodingKey {
        case schema, source, image, model, settings, instances
        case timingsMs = "timings_ms"
        case batchSize = "batch_size"
    }

    /// Builds the result of one image from the model's detections and their pasted masks
    /// (one `InstanceMask` per detection, in detection order; none when the model has no mask
    /// head). Checks that everything refers to the same image and that every value fits the
    /// schema, so a result that is built is one that validates.
    public init(detections: Detections, masks: [InstanceMask], source: Source, image: ImageInfo,
                model: ModelInfo, settings: Settings, timingsMs: [String: Double], batchSize: Int,
                options: Options = Options()) throws {
        let n = detections.count
        guard detections.boxes.count == 4 * n, detections.labels.count == n else {
            throw ResultsError.inconsistentDetections(
                "\(n) scores, \(detections.labels.count) labels, \(detections.boxes.count / 4) boxes")
        }
        guard detections.imageWidth == image.width, detections.imageHeight == image.height else {
            throw ResultsError.inconsistentDetections(
                "detections refer to a \(detections.imageWidth)×\(detections.imageHeight) image, "
                + "the oriented image is \(image.width)×\(image.height)")
        }
        let hasMasks = !(masks.isEmpty && detections.maskProbabilities.isEmpty)
        if hasMasks {
            guard masks.count == n else {
                throw ResultsError.inconsistentDetections("\(n) detections but \(masks.count) pasted masks")
            }
            for (i, m) in masks.enumerated() where m.imageWidth != image.width || m.imageHeight != image.height {
                throw ResultsError.inconsistentDetections(
                    "mask \(i) is for a \(m.imageWidth)×\(m.imageHeight) image, "
                    + "the oriented image is \(image.width)×\(image.height)")
            }
        }
        var instances: [Instance] = []
        instances.reserveCapacity(n)
        for i in 0..<n {
            let label = detections.labels[i]
            guard label >= 1, label < model.classes.count else {
                throw ResultsError.invalidValue(
                    field: "instances[\(i)].category_id",
                    reason: "label \(label) is not a class of the model (1..<\(model.classes.count))")
            }
            let b = detections.box(i)
            let box = [b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1]
            var mask: CompressedRLE?
            var area: Int?
            var polygons: [[Float]]?
            if hasMasks {
                let rle = rleEncode(masks[i])
                mask = CompressedRLE(rle)
                area = rleArea(rle)
                if options.polygons { polygons = outerContours(masks[i]) }
            }
            instances.append(Instance(label: model.classes[label], categoryID: label,
                                      score: detections.scores[i], box: box, area: area,
                                      mask: mask, polygons: polygons))
        }
        self.init(source: source, image: image, model: model, settings: settings,
                  instances: instances, timingsMs: timingsMs, batchSize: batchSize)
        try validate()
    }

    /// Checks the constraints of the schema that the Swift types do not express.
    public func validate() throws {
        func bad(_ field: String, _ reason: String) -> ResultsError {
            .invalidValue(field: field, reason: reason)
        }
        guard schema == Self.schemaVersion else { throw bad("schema", "expected \(Self.schemaVersion), got \(schema)") }
        guard !source.path.isEmpty, !source.fileName.isEmpty else { throw bad("source", "empty path or file name") }
        guard image.width >= 0, image.height >= 0 else { throw bad("image", "negative size") }
        if source.page != nil || source.pageCount != nil {
            guard let page = source.page, let count = source.pageCount, count >= 2, (1...count).contains(page) else {
                throw bad("source.page", "page \(source.page.map(String.init) ?? "none") of \(source.pageCount.map(String.init) ?? "none")")
            }
        }
        if let frames = image.frameCount, frames < 2 {
            throw bad("image.frame_count", "\(frames) frames (only animations have the field)")
        }
        guard (1...8).contains(image.orientation) else {
            throw bad("image.orientation", "EXIF orientation \(image.orientation) outside 1...8")
        }
        guard model.sha256.count == 64, model.sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw bad("model.sha256", "expected 64 lowercase hex digits, got '\(model.sha256)'")
        }
        guard !model.classes.isEmpty else { throw bad("model.classes", "empty (index 0 is the background)") }
        guard settings.scoreThreshold.isFinite, settings.maskThreshold.isFinite else {
            throw bad("settings", "non-finite threshold")
        }
        guard settings.maxDetections >= 0, settings.minSize > 0, settings.maxSize >= settings.minSize else {
            throw bad("settings", "max_detections \(settings.maxDetections), min_size \(settings.minSize), max_size \(settings.maxSize)")
        }
        guard ["fp32", "bf16"].contains(settings.precision) else {
            throw bad("settings.precision", "'\(settings.precision)' is not fp32 or bf16")
        }
        guard batchSize >= 1 else { throw bad("batch_size", "\(batchSize) < 1") }
        for (stage, ms) in timingsMs where !(ms.isFinite && ms >= 0) {
            throw bad("timings_ms.\(stage)", "\(ms) is not a finite, non-negative duration")
        }
        for (i, inst) in instances.enumerated() {
            let field = "instances[\(i)]"
            guard inst.categoryID >= 1, inst.categoryID < model.classes.count,
                  inst.label == model.classes[inst.categoryID] else {
                throw bad("\(field).category_id", "\(inst.categoryID) '\(inst.label)' is not a class of the model")
            }
            guard inst.score.isFinite, (0...1).contains(inst.score) else {
                throw bad("\(field).score", "\(inst.score) outside [0, 1]")
            }
            guard inst.box.count == 4, inst.box.allSatisfy(\.isFinite), inst.box[2] >= 0, inst.box[3] >= 0 else {
                throw bad("\(field).box", "expected finite [x, y, w, h] with w, h ≥ 0, got \(inst.box)")
            }
            guard (inst.mask == nil) == (inst.area == nil) else {
                throw bad(field, "mask and area must come together")
            }
            if let mask = inst.mask {
                guard mask.size == [image.height, image.width] else {
                    throw bad("\(field).mask.size", "\(mask.size), image is [\(image.height), \(image.width)]")
                }
                let rle: RLE
                do { rle = try mask.rle() } catch let e as ResultsError {
                    throw bad("\(field).mask.counts", e.description)
                }
                guard rleArea(rle) == inst.area else {
                    throw bad("\(field).area", "\(inst.area ?? -1), the mask has \(rleArea(rle)) pixels")
                }
            }
            if let polygons = inst.polygons {
                for (k, p) in polygons.enumerated() where p.count < 6 || p.count % 2 != 0 || !p.allSatisfy(\.isFinite) {
                    throw bad("\(field).polygons[\(k)]", "expected ≥ 3 finite (x, y) pairs, got \(p.count) numbers")
                }
            }
        }
    }
}

// MARK: - JSON

extension ImageResult {
    /// The JSON text of the result: keys sorted (stable bytes for equal results), objects
    /// indented, arrays of numbers on one line, slashes unescaped, a final newline.
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            var text = JSONLayout.pretty([UInt8](try encoder.encode(self)))
            text.append(0x0A)
            return Data(text)
        } catch {
            throw ResultsError.json(path: source.path, reason: "cannot encode result: \(error)")
        }
    }

    /// Writes the JSON to `path` atomically (temporary file, fsync, rename, fsync of the
    /// directory), creating missing parent directories.
    public func write(to path: String) throws {
        try AtomicFile.write(try jsonData(), to: path)
    }

    /// Reads a result back, checking its schema version.
    public static func read(from path: String) throws -> ImageResult {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ResultsError.json(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let result: ImageResult
        do { result = try JSONDecoder().decode(ImageResult.self, from: data) } catch {
            throw ResultsError.json(path: path, reason: "not a \(schemaVersion) result: \(error)")
        }
        try result.validate()
        return result
    }
}

// MARK: - Imaging glue

extension ImageResult.ImageInfo {
    /// The oriented size and the EXIF orientation the decoder applied.
    public init(width: Int, height: Int, orientation: Orientation) {
        self.init(width: width, height: height, orientation: orientation.rawValue)
    }
}
