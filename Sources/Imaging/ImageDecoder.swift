// Decoding entry point: file → bytes → format by signature → codec → RGB8, upright.
// Limits are checked against the header before any pixel buffer exists, so a 60000×60000
// JPEG (or WebP, TIFF, HEIC, AVIF) of 600 bytes costs nothing but its error message.

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
    /// Most pages (TIFF directories) a file may have: each page is a model run, so a
    /// 10,000-page fax file is refused up front rather than occupying the daemon for hours.
    /// Counted from the directory chain before any page is decoded.
    public var maxPages: Int

    public init(maxPixels: Int = 100_000_000, maxFileBytes: Int = 256 << 20,
                maxPNGChunkBytes: Int = 16 << 20, maxPNGChunkCacheBytes: Int = 32 << 20,
                maxPages: Int = 100) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
        self.maxPNGChunkBytes = maxPNGChunkBytes
        self.maxPNGChunkCacheBytes = maxPNGChunkCacheBytes
        self.maxPages = maxPages
    }

    func check(width: Int, height: Int, file: String) throws {
        // Sizes come from the file: two 32-bit sides (a HEIF overlay's) overflow Int64,
        // which fuzz-heif found; an overflowing product is over any limit.
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || pixels > maxPixels {
            throw ImagingError.tooManyPixels(file: file, width: width, height: height, limit: maxPixels)
        }
    }
}

/// What transparent pixels (PNG, WebP, TIFF, HEIC/AVIF alpha) are composited onto (the output is RGB).
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
    /// Orientation the file declares: the EXIF tag (JPEG APP1, PNG eXIf), the TIFF
    /// Orientation tag, or the HEIF/AVIF irot/imir properties as the equivalent EXIF
    /// value; nil when absent.
    public let exifOrientation: Orientation?
    /// The transform applied to the stored pixels to give `image`: `.identity` when there
    /// was no tag or applying was switched off. The JSON states this so that a consumer
    /// knows which frame the boxes are in.
    public let appliedOrientation: Orientation
    /// Size as stored in the file, before orientation.
    public let storedWidth: Int
    public let storedHeight: Int
    /// Which page this is, 1-based (multi-page TIFF); 1 for every other format.
    public let page: Int
    /// Pages the file holds (TIFF directories); 1 for every other format.
    public let pageCount: Int
    /// Frames of an animation (animated WebP), of which only the first was decoded; 1 for
    /// still images.
    public let frameCount: Int
}

/// What a codec hands back: stored pixels and what the file says about them.
struct CodecOutput {
    var image: Image
    var orientation: Orientation?
    var pageCount = 1
    var frameCount = 1
    /// `image` is upright already: the codec applied `orientation` itself (libheif, which
    /// must apply the crop and rotation together).
    var alreadyOriented = false
}

/// Decodes JPEG, PNG, WebP, TIFF, HEIC and AVIF into RGB8. A value type holding only options, so any thread or
/// queue may use it; the codec handles it creates live for one call (creating them costs
/// microseconds, the decode milliseconds).
public struct ImageDecoder: Sendable {
    public var options: DecodeOptions

    public init(options: DecodeOptions = DecodeOptions()) {
        self.options = options
    }

    /// Reads and decodes the file at `path`; errors name `path`.
    public func decode(contentsOf path: String) throws -> DecodedImage {
        try decode(readFile(path), name: path)
    }

    /// The bytes of the file at `path`, bounded by the file size limit (for decoding
    /// several pages of one file from one read).
    public func readFile(_ path: String) throws -> [UInt8] {
        try FileReader.read(path: path, maxBytes: options.limits.maxFileBytes)
    }

    /// Decodes an in-memory file; `name` is what errors call it. `page` (1-based) selects
    /// a page of a multi-page TIFF; every other format has only page 1.
    public func decode(_ bytes: [UInt8], name: String, page: Int = 1) throws -> DecodedImage {
        guard !bytes.isEmpty else { throw ImagingError.emptyFile(file: name) }
        if bytes.count > options.limits.maxFileBytes {
            throw ImagingError.fileTooLarge(file: name, bytes: bytes.count, limit: options.limits.maxFileBytes)
        }
        guard let format = ImageDecoder.detectFormat(bytes) else {
            throw ImagingError.unknownFormat(file: name, leadingBytes: Array(bytes.prefix(8)))
        }
        if page != 1 && format != .tiff {
            throw ImagingError.noSuchPage(file: name, page: page, pageCount: 1)
        }
        var out: CodecOutput
        switch format {
        case .jpeg:
            let (image, orientation) = try JPEGDecoder.decode(bytes, name: name, limits: options.limits)
            out = CodecOutput(image: image, orientation: orientation)
        case .png:
            let (image, orientation) = try PNGDecoder.decode(bytes, name: name, limits: options.limits,
                                                             background: options.alphaBackground)
            out = CodecOutput(image: image, orientation: orientation)
        case .webp:
            out = try WebPDecoder.decode(bytes, name: name, limits: options.limits, background: options.alphaBackground)
        case .tiff:
            out = try TIFFDecoder.decode(bytes, name: name, page: page, limits: options.limits,
                                         background: options.alphaBackground)
        case .heic, .avif:
            out = try HEIFDecoder.decode(bytes, name: name, format: format, limits: options.limits,
                                         background: options.alphaBackground)
        }
        let applied = options.applyOrientation ? (out.orientation ?? .identity) : .identity
        var image = out.image.applying(applied)
        var stored = (width: out.image.width, height: out.image.height)
        if out.alreadyOriented {
            let declared = out.orientation ?? .identity
            image = out.image.applying(declared.inverse.then(applied))
            if declared.swapsDimensions { stored = (out.image.height, out.image.width) }
        }
        return DecodedImage(image: image, format: format, exifOrientation: out.orientation,
                            appliedOrientation: applied, storedWidth: stored.width, storedHeight: stored.height,
                            page: page, pageCount: out.pageCount, frameCount: out.frameCount)
    }

    /// The format from the signature bytes; the file name's extension is never consulted.
    public static func detectFormat(_ bytes: [UInt8]) -> ImageFormat? {
        func starts(_ at: Int, _ sig: [UInt8]) -> Bool {
            bytes.count >= at + sig.count && bytes[at..<(at + sig.count)].elementsEqual(sig)
        }
        // JPEG: SOI (FF D8) followed by the first marker's FF.
        if starts(0, [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts(0, [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        // RIFF container (size in bytes 4..<8) of form type "WEBP".
        if starts(0, Array("RIFF".utf8)) && starts(8, Array("WEBP".utf8)) { return .webp }
        // "II" 42 / "MM" 42 (classic TIFF) and 43 (BigTIFF, which libtiff reads too).
        if starts(0, [0x49, 0x49, 0x2A, 0x00]) || starts(0, [0x4D, 0x4D, 0x00, 0x2A])
            || starts(0, [0x49, 0x49, 0x2B, 0x00]) || starts(0, [0x4D, 0x4D, 0x00, 0x2B]) { return .tiff }
        return BMFF.imageFormat(bytes)
    }
}
