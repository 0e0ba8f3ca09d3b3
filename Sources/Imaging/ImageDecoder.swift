// Decoding entry point: file → bytes → format by signature → codec → RGB8, upright.
// Limits are checked against the header before any pixel buffer exists, so a 60000×60000
// JPEG of 600 bytes costs nothing but its error message.

/// Resource limits for one decode. A file over a limit is an error naming the limit.
public struct DecodeLimits: Sendable, Equatable {
    /// Largest width×height accepted (100 megapixels: an 8-bit RGB buffer of 300 MB).
    public var maxPixels: Int
    /// Largest input file read.
    public var maxFileBytes: Int
    /// Largest decompressed PNG ancillary chunk (zTXt, iTXt, iCCP; libspng's chunk size
    /// limit): what turns a 47 KB zTXt "bomb" into an error instead of 48 MB of RAM. Real
    /// ICC profiles and texts are at most a few MB. Image data (IDAT) is bounded by the
    /// pixel limit instead.
    public var maxPNGChunkBytes: Int
    /// Largest total of ancillary chunk data libspng keeps while decoding (texts, EXIF,
    /// ICC profile, unknown chunks; libspng's chunk cache limit).
    public var maxPNGChunkCacheBytes: Int

    public init(maxPixels: Int = 100_000_000, maxFileBytes: Int = 256 << 20,
                maxPNGChunkBytes: Int = 16 << 20, maxPNGChunkCacheBytes: Int = 32 << 20) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
        self.maxPNGChunkBytes = maxPNGChunkBytes
        self.maxPNGChunkCacheBytes = maxPNGChunkCacheBytes
    }

    func check(width: Int, height: Int, file: String) throws {
        // width and height are at most 2^32 each, so the product cannot overflow Int64.
        if width * height > maxPixels {
            throw ImagingError.tooManyPixels(file: file, width: width, height: height, limit: maxPixels)
        }
    }
}

/// What transparent PNG pixels are composited onto (the output is RGB).
public enum AlphaBackground: Sendable, Equatable {
    case black
    case white
}

public struct DecodeOptions: Sendable, Equatable {
    public var limits: DecodeLimits
    /// Background for PNG alpha. White, because that is what a viewer on a white page
    /// shows, and so what a user expects the detections to be drawn on.
    public var alphaBackground: AlphaBackground
    /// Rotate/mirror to the EXIF orientation, as viewers do; the boxes in the JSON then
    /// refer to the upright picture, and `DecodedImage.appliedOrientation` says so.
    public var applyOrientation: Bool

    public init(limits: DecodeLimits = DecodeLimits(), alphaBackground: AlphaBackground = .white,
                applyOrientation: Bool = true) {
        self.limits = limits
        self.alphaBackground = alphaBackground
        self.applyOrientation = applyOrientation
    }
}

public struct DecodedImage: Sendable {
    /// The pixels, upright when orientation was applied.
    public var image: Image
    public let format: ImageFormat
    /// Orientation tag found in the file's EXIF (JPEG APP1 or PNG eXIf); nil when absent.
    public let exifOrientation: Orientation?
    /// The transform applied to the stored pixels to give `image`: `.identity` when there
    /// was no tag or applying was switched off. The JSON states this so that a consumer
    /// knows which frame the boxes are in.
    public let appliedOrientation: Orientation
    /// Size as stored in the file, before orientation.
    public let storedWidth: Int
    public let storedHeight: Int
}

/// Decodes JPEG and PNG into RGB8. A value type holding only options, so any thread or
/// queue may use it; the codec handles it creates live for one call (creating them costs
/// microseconds, the decode milliseconds).
public struct ImageDecoder: Sendable {
    public var options: DecodeOptions

    public init(options: DecodeOptions = DecodeOptions()) {
        self.options = options
    }

    /// Reads and decodes the file at `path`; errors name `path`.
    public func decode(contentsOf path: String) throws -> DecodedImage {
        let bytes = try FileReader.read(path: path, maxBytes: options.limits.maxFileBytes)
        return try decode(bytes, name: path)
    }

    /// Decodes an in-memory file; `name` is what errors call it.
    public func decode(_ bytes: [UInt8], name: String) throws -> DecodedImage {
        guard !bytes.isEmpty else { throw ImagingError.emptyFile(file: name) }
        if bytes.count > options.limits.maxFileBytes {
            throw ImagingError.fileTooLarge(file: name, bytes: bytes.count, limit: options.limits.maxFileBytes)
        }
        guard let format = ImageDecoder.detectFormat(bytes) else {
            throw ImagingError.unknownFormat(file: name, leadingBytes: Array(bytes.prefix(8)))
        }
        let stored: Image
        let orientation: Orientation?
        switch format {
        case .jpeg:
            (stored, orientation) = try JPEGDecoder.decode(bytes, name: name, limits: options.limits)
        case .png:
            (stored, orientation) = try PNGDecoder.decode(bytes, name: name, limits: options.limits,
                                                         background: options.alphaBackground)
        }
        let applied = options.applyOrientation ? (orientation ?? .identity) : .identity
        return DecodedImage(image: stored.applying(applied), format: format, exifOrientation: orientation,
                            appliedOrientation: applied, storedWidth: stored.width, storedHeight: stored.height)
    }

    /// The format from the signature bytes; the file name's extension is never consulted.
    public static func detectFormat(_ bytes: [UInt8]) -> ImageFormat? {
        // JPEG: SOI (FF D8) followed by the first marker's FF.
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        return nil
    }
}
