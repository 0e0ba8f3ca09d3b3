// The one error type of the Imaging module. Every case names the file (or what was being
// made) and says why in words a user can act on; the Pipeline writes `description` into
// the failed job's .error.json, and the CLI maps cases to exit codes.

public enum ImagingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// open(2) or fstat(2) failed; `reason` is strerror's text.
    case cannotOpen(file: String, reason: String)
    /// A directory, FIFO, socket or device: decoding reads regular files only.
    case notARegularFile(file: String, kind: String)
    case fileTooLarge(file: String, bytes: Int, limit: Int)
    case emptyFile(file: String)
    case readFailed(file: String, reason: String)
    /// The first bytes are no signature of a format segd reads (the extension is not consulted).
    case unknownFormat(file: String, leadingBytes: [UInt8])
    /// The header declares more pixels than the decode limit; detected before allocating.
    case tooManyPixels(file: String, width: Int, height: Int, limit: Int)
    /// A multi-page file (TIFF) with more pages than the page limit; counted before decoding.
    case tooManyPages(file: String, limit: Int)
    /// A page was asked for that the file does not have.
    case noSuchPage(file: String, page: Int, pageCount: Int)
    /// The data stops before the image does; `byteCount` is how many bytes there were.
    case truncated(file: String, format: ImageFormat, byteCount: Int)
    /// Malformed data (bad marker, bad checksum, bad compressed stream); `reason` from the codec.
    case corrupt(file: String, format: ImageFormat, reason: String)
    /// Well-formed but a feature segd cannot decode (12-bit JPEG, height given by DNL).
    case unsupported(file: String, format: ImageFormat, reason: String)
    /// A decoder resource limit other than the pixel count (PNG chunk size, chunk cache).
    case limitExceeded(file: String, format: ImageFormat, reason: String)
    case encodingFailed(format: ImageFormat, reason: String)
    /// A codec library could not even create its context (out of memory).
    case codecUnavailable(library: String, reason: String)
    /// The label font could not be loaded; `path` is the file (or the list of files) tried.
    case fontUnavailable(path: String, reason: String)
    case textRenderingFailed(reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "\(file): cannot open (\(reason))"
        case let .notARegularFile(file, kind):
            return "\(file): not a regular file (\(kind))"
        case let .fileTooLarge(file, bytes, limit):
            return "\(file): file is \(formatBytes(bytes)), over the \(formatBytes(limit)) limit"
        case let .emptyFile(file):
            return "\(file): file is empty (0 bytes)"
        case let .readFailed(file, reason):
            return "\(file): read failed (\(reason))"
        case let .unknownFormat(file, leading):
            return "\(file): not a JPEG, PNG, WebP, TIFF, HEIC or AVIF image (starts with \(describeLeadingBytes(leading)))"
        case let .tooManyPixels(file, width, height, limit):
            let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
            return "\(file): \(width)×\(height) = \(formatMegapixels(overflow ? Int.max : pixels)) megapixels "
                + "exceeds the \(formatMegapixels(limit))-megapixel limit"
        case let .tooManyPages(file, limit):
            return "\(file): more than \(limit) pages, the page limit"
        case let .noSuchPage(file, page, pageCount):
            return "\(file): no page \(page) (the file has \(pageCount))"
        case let .truncated(file, format, byteCount):
            return "\(file): \(format.rawValue) data ends early (truncated at byte \(byteCount))"
        case let .corrupt(file, format, reason):
            return "\(file): corrupt \(format.rawValue) data (\(reason))"
        case let .unsupported(file, format, reason):
            return "\(file): unsupported \(format.rawValue) (\(reason))"
        case let .limitExceeded(file, format, reason):
            return "\(file): \(format.rawValue) exceeds a decoder limit (\(reason))"
        case let .encodingFailed(format, reason):
            return "\(format.rawValue) encoding failed: \(reason)"
        case let .codecUnavailable(library, reason):
            return "\(library) unavailable: \(reason)"
        case let .fontUnavailable(path, reason):
            return "font \(path): \(reason)"
        case let .textRenderingFailed(reason):
            return "text rendering failed: \(reason)"
        }
    }
}

/// "3600", "100", "0.5", "100.01": exact enough that a value just over a limit never prints
/// as the limit itself.
func formatMegapixels(_ pixels: Int) -> String {
    // Rounded without adding first: Int.max (an overflowing product) must not trap.
    let hundredths = pixels / 10_000 + (pixels % 10_000 >= 5_000 ? 1 : 0)
    let whole = hundredths / 100, frac = hundredths % 100
    if frac == 0 { return "\(whole)" }
    if frac % 10 == 0 { return "\(whole).\(frac / 10)" }
    return "\(whole).\(frac < 10 ? "0" : "")\(frac)"
}

func formatBytes(_ bytes: Int) -> String {
    let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (size, name) in units where bytes >= size {
        let tenths = (bytes * 10 + size / 2) / size
        return tenths % 10 == 0 ? "\(tenths / 10) \(name)" : "\(tenths / 10).\(tenths % 10) \(name)"
    }
    return "\(bytes) bytes"
}

/// Printable ASCII as a quoted string (a text file shows its first words), anything else
/// as hex (a GIF, a TIFF, a zip shows its signature).
private func describeLeadingBytes(_ bytes: [UInt8]) -> String {
    if !bytes.isEmpty, bytes.allSatisfy({ (0x20...0x7E).contains($0) || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
        var text = ""
        for byte in bytes {
            switch byte {
            case 0x09: text += "\\t"
            case 0x0A: text += "\\n"
            case 0x0D: text += "\\r"
            default: text.append(Character(Unicode.Scalar(byte)))
            }
        }
        return "\"\(text)\""
    }
    return bytes.map { byte in
        let hex = String(byte, radix: 16, uppercase: true)
        return hex.count == 1 ? "0" + hex : hex
    }.joined(separator: " ")
}
