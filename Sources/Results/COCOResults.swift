import Foundation

// The COCO results of a batch run, in the format pycocotools' `COCO.loadRes` reads:
//
//   coco_results.json    [{"image_id", "category_id", "bbox": [x, y, w, h], "score",
//                          "segmentation": {"size": [h, w], "counts": "..."}}, ...]
//   coco_image_ids.json  [{"id", "file_name", "width", "height"}, ...]
//
// `loadRes` requires every image_id to be an image of the ground truth. With a ground truth
// file, ids come from its "images" list, matched by file name; without one, images are
// numbered 1, 2, ... in the order they are added and coco_image_ids.json says which is
// which (remap with it, or build the ground truth's "images" from it).
//
// Both files are streamed: each image's records are written when it is added, one record
// per line, under a temporary name; `finish()` closes the arrays and renames the files into
// place. A batch of any size holds only the ground-truth name → id table in memory.

/// One line of coco_results.json.
public struct COCODetection: Codable, Sendable, Equatable {
    public var imageID: Int
    public var categoryID: Int
    /// [x, y, w, h] in image pixels.
    public var bbox: [Float]
    public var score: Float
    public var segmentation: CompressedRLE?

    public init(imageID: Int, categoryID: Int, bbox: [Float], score: Float, segmentation: CompressedRLE?) {
        self.imageID = imageID
        self.categoryID = categoryID
        self.bbox = bbox
        self.score = score
        self.segmentation = segmentation
    }

    enum CodingKeys: String, CodingKey {
        case imageID = "image_id"
        case categoryID = "category_id"
        case bbox, score, segmentation
    }
}

/// One entry of coco_image_ids.json (the fields of a COCO ground truth "images" entry).
public struct COCOImageEntry: Codable, Sendable, Equatable {
    public var id: Int
    public var fileName: String
    public var width: Int
    public var height: Int

    public init(id: Int, fileName: String, width: Int, height: Int) {
        self.id = id
        self.fileName = fileName
        self.width = width
        self.height = height
    }

    enum CodingKeys: String, CodingKey {
        case id
        case fileName = "file_name"
        case width, height
    }
}

/// Streams a batch's COCO results to a directory. Safe to call from several threads: calls
/// are serialized on an internal lock, and each `add` writes whole lines.
public final class COCOResultsWriter: @unchecked Sendable {
    public static let resultsFileName = "coco_results.json"
    public static let imageIDsFileName = "coco_image_ids.json"

    public let resultsPath: String
    public let imageIDsPath: String
    private let lock = NSLock()
    private let groundTruthIDs: [String: Int]?
    private var results: AppendingFile?
    private var imageIDs: AppendingFile?
    private var usedIDs = Set<Int>()
    private var nextID = 1
    private var imageCountValue = 0
    private var detectionCountValue = 0
    private let encoder: JSONEncoder

    /// - Parameters:
    ///   - directory: where coco_results.json and coco_image_ids.json go (created if needed).
    ///   - groundTruthImageIDs: file name → image id of the ground truth the results will be
    ///     evaluated against (see `loadGroundTruthImageIDs`); nil numbers images 1, 2, ...
    public init(directory: String, groundTruthImageIDs: [String: Int]? = nil) throws {
        resultsPath = (directory as NSString).appendingPathComponent(Self.resultsFileName)
        imageIDsPath = (directory as NSString).appendingPathComponent(Self.imageIDsFileName)
        self.groundTruthIDs = groundTruthImageIDs
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let results = try AppendingFile(creatingTemporaryFor: resultsPath)
        let imageIDs = try AppendingFile(creatingTemporaryFor: imageIDsPath)
        try results.write("[")
        try imageIDs.write("[")
        self.results = results
        self.imageIDs = imageIDs
    }

    /// Images and detections written so far.
    public var imageCount: Int { lock.withLock { imageCountValue } }
    public var detectionCount: Int { lock.withLock { detectionCountValue } }

    /// Appends one image's instances and its id entry; returns the image id it was given.
    /// - Parameter fileName: the name to match against the ground truth and to record;
    ///   defaults to `result.source.fileName`. Pass a relative path when the ground truth
    ///   names images by path.
    @discardableResult
    public func add(_ result: ImageResult, fileName: String? = nil) throws -> Int {
        let name = fileName ?? result.source.fileName
        return try lock.withLock {
            guard let results, let imageIDs else { throw ResultsError.writerFinished(path: resultsPath) }
            let id: Int
            if let groundTruthIDs {
                guard let gtID = groundTruthIDs[name] else { throw ResultsError.unknownImage(fileName: name) }
                id = gtID
            } else {
                id = nextID
            }
            guard !usedIDs.contains(id) else { throw ResultsError.duplicateImage(fileName: name, imageID: id) }

            // Encode everything before writing anything, so a failure leaves the files valid.
            var lines = Data()
            for inst in result.instances {
                let det = COCODetection(imageID: id, categoryID: inst.categoryID, bbox: inst.box,
                                        score: inst.score, segmentation: inst.mask)
                let first = detectionCountValue == 0 && lines.isEmpty
                lines.append(contentsOf: (first ? "\n" : ",\n").utf8)
                lines.append(try encode(det))
            }
            let entry = COCOImageEntry(id: id, fileName: name, width: result.image.width, height: result.image.height)
            var entryLine = Data((imageCountValue == 0 ? "\n" : ",\n").utf8)
            entryLine.append(try encode(entry))

            try results.write(lines)
            try imageIDs.write(entryLine)
            usedIDs.insert(id)
            if groundTruthIDs == nil { nextID += 1 }
            imageCountValue += 1
            detectionCountValue += result.instances.count
            return id
        }
    }

    /// Closes both arrays and moves the files into place. Until then neither file exists
    /// under its final name; a writer dropped without `finish()` removes its temporary files.
    public func finish() throws {
        try lock.withLock {
            guard let results, let imageIDs else { throw ResultsError.writerFinished(path: resultsPath) }
            self.results = nil
            self.imageIDs = nil
            do {
                try results.write("\n]\n")
                try imageIDs.write("\n]\n")
                try results.commit()
                try imageIDs.commit()
            } catch {
                results.discard()
                imageIDs.discard()
                throw error
            }
        }
    }

    private func encode<T: Encodable>(_ value: T) throws -> Data {
        do { return try encoder.encode(value) } catch {
            throw ResultsError.json(path: resultsPath, reason: "cannot encode \(T.self): \(error)")
        }
    }

    /// Reads the "images" list of a COCO ground truth file: file_name → id.
    public static func loadGroundTruthImageIDs(from path: String) throws -> [String: Int] {
        struct GroundTruth: Decodable {
            struct Image: Decodable {
                let id: Int
                let file_name: String
            }
            let images: [Image]
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ResultsError.json(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let gt: GroundTruth
        do { gt = try JSONDecoder().decode(GroundTruth.self, from: data) } catch {
            throw ResultsError.json(path: path, reason: "not a COCO ground truth file: \(error)")
        }
        var ids: [String: Int] = [:]
        for image in gt.images {
            if let other = ids.updateValue(image.id, forKey: image.file_name), other != image.id {
                throw ResultsError.json(path: path, reason: "file name '\(image.file_name)' has ids \(other) and \(image.id)")
            }
        }
        return ids
    }
}
