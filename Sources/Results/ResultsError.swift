#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything that can go wrong while building or writing results. Each case carries the
/// context a user needs to act: the file, the instance, the offending value.
public enum ResultsError: Error, Equatable, Sendable {
    /// A compressed RLE string that pycocotools' `rleFrString` would misread: a byte outside
    /// '0'...'o', a value cut off at the end of the string, or more chunks than fit 64 bits.
    case invalidRLEString(reason: String, offset: Int)
    /// Run lengths that do not add up to height×width, or a run outside UInt32.
    case invalidRLECounts(reason: String, height: Int, width: Int)
    /// Detections, masks and image description that do not fit together.
    case inconsistentDetections(String)
    /// A value that the result schema does not allow (NaN score, unknown label, bad hash).
    case invalidValue(field: String, reason: String)
    /// A file name that is not in the ground-truth image list, or was already written.
    case unknownImage(fileName: String)
    case duplicateImage(fileName: String, imageID: Int)
    /// The COCO results writer was used after `finish()`.
    case writerFinished(path: String)
    /// A system call on a results file failed.
    case io(path: String, operation: String, errno: Int32)
    /// JSON could not be produced or read.
    case json(path: String, reason: String)
}

extension ResultsError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .invalidRLEString(reason, offset):
            return "invalid COCO RLE string at byte \(offset): \(reason)"
        case let .invalidRLECounts(reason, height, width):
            return "invalid COCO RLE for a \(height)×\(width) mask: \(reason)"
        case let .inconsistentDetections(reason):
            return "detections do not match the image: \(reason)"
        case let .invalidValue(field, reason):
            return "invalid value for \(field): \(reason)"
        case let .unknownImage(fileName):
            return "image '\(fileName)' is not in the ground-truth image list"
        case let .duplicateImage(fileName, imageID):
            return "image '\(fileName)' (id \(imageID)) was already added to the COCO results"
        case let .writerFinished(path):
            return "COCO results in \(path) were already finished"
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        case let .json(path, reason):
            return "\(path): \(reason)"
        }
    }
}
