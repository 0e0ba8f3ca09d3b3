// Image: the one pixel container every stage shares. RGB8, interleaved, rows top to
// bottom, no row padding — the layout TurboJPEG and libspng read and write directly, and
// the one the model's preprocessing converts to NCHW float in a single pass.

/// The file formats segd reads; detected from signature bytes on input. JPEG and PNG are
/// also the two it writes (annotated images).
public enum ImageFormat: String, Sendable, CaseIterable {
    case jpeg = "JPEG"
    case png = "PNG"
    case webp = "WebP"
    case tiff = "TIFF"
    case heic = "HEIC"
    case avif = "AVIF"

    /// Whether annotated images can be written in this format.
    public var isWritable: Bool { self == .jpeg || self == .png }
}

/// An 8-bit sRGB colour.
public struct RGB: Sendable, Hashable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    public static let black = RGB(0, 0, 0)
    public static let white = RGB(255, 255, 255)
}

/// An RGB8 image: `pixels` holds width×height×3 bytes, R G B per pixel, row-major.
public struct Image: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// width×height×3 bytes; index of pixel (x, y) is `3 * (y * width + x)`.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "Image: negative size \(width)×\(height)")
        precondition(pixels.count == width * height * 3,
                     "Image: \(pixels.count) bytes for \(width)×\(height) RGB (needs \(width * height * 3))")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public init(width: Int, height: Int, fill: RGB = .black) {
        precondition(width >= 0 && height >= 0, "Image: negative size \(width)×\(height)")
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        if fill != .black {
            for i in stride(from: 0, to: pixels.count, by: 3) {
                pixels[i] = fill.r
                pixels[i + 1] = fill.g
                pixels[i + 2] = fill.b
            }
        }
        self.init(width: width, height: height, pixels: pixels)
    }

    /// The pixel at column x, row y (both must lie inside the image).
    public subscript(x: Int, y: Int) -> RGB {
        get {
            precondition(x >= 0 && y >= 0 && x < width && y < height, "Image: (\(x), \(y)) outside \(width)×\(height)")
            let i = 3 * (y * width + x)
            return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
        }
        set {
            precondition(x >= 0 && y >= 0 && x < width && y < height, "Image: (\(x), \(y)) outside \(width)×\(height)")
            let i = 3 * (y * width + x)
            pixels[i] = newValue.r
            pixels[i + 1] = newValue.g
            pixels[i + 2] = newValue.b
        }
    }
}

/// The EXIF orientation (TIFF tag 0x0112): how the stored pixels must be transformed to
/// show the picture upright. Raw values are the EXIF ones, so they can go into JSON as is.
public enum Orientation: Int, Sendable, CaseIterable {
    /// 1: stored upright.
    case identity = 1
    /// 2: mirror left↔right.
    case mirrorHorizontal = 2
    /// 3: rotate 180°.
    case rotate180 = 3
    /// 4: mirror top↔bottom.
    case mirrorVertical = 4
    /// 5: mirror across the main diagonal (x↔y).
    case transpose = 5
    /// 6: rotate 90° clockwise (a phone held upright, home button right).
    case rotate90 = 6
    /// 7: mirror across the anti-diagonal.
    case transverse = 7
    /// 8: rotate 90° counter-clockwise.
    case rotate270 = 8

    /// Whether applying it swaps width and height.
    public var swapsDimensions: Bool { rawValue >= 5 }
}

extension Image {
    /// The image as it should be shown for `orientation`; width and height swap for 5–8.
    public func applying(_ orientation: Orientation) -> Image {
        if orientation == .identity { return self }
        let w = width, h = height
        let (ow, oh) = orientation.swapsDimensions ? (h, w) : (w, h)
        // For each output pixel (x, y) the source is origin + x·dx + y·dy, in source pixel
        // indices: one affine map per orientation keeps the copy loop free of switches.
        let (origin, dx, dy): (Int, Int, Int)
        switch orientation {
        case .identity:         (origin, dx, dy) = (0, 1, w)
        case .mirrorHorizontal: (origin, dx, dy) = (w - 1, -1, w)
        case .rotate180:        (origin, dx, dy) = ((h - 1) * w + w - 1, -1, -w)
        case .mirrorVertical:   (origin, dx, dy) = ((h - 1) * w, 1, -w)
        case .transpose:        (origin, dx, dy) = (0, w, 1)
        case .rotate90:         (origin, dx, dy) = ((h - 1) * w, -w, 1)
        case .transverse:       (origin, dx, dy) = ((h - 1) * w + w - 1, -w, -1)
        case .rotate270:        (origin, dx, dy) = (w - 1, w, -1)
        }
        let out = [UInt8](unsafeUninitializedCapacity: ow * oh * 3) { dst, count in
            pixels.withUnsafeBufferPointer { src in
                var o = 0
                for y in 0..<oh {
                    var s = origin + y * dy
                    for _ in 0..<ow {
                        dst[o] = src[3 * s]
                        dst[o + 1] = src[3 * s + 1]
                        dst[o + 2] = src[3 * s + 2]
                        o += 3
                        s += dx
                    }
                }
            }
            count = ow * oh * 3
        }
        return Image(width: ow, height: oh, pixels: out)
    }
}

extension Image {
    /// The image as `format` bytes (JPEG at `jpegQuality`), for the Writer to store.
    public func encoded(as format: ImageFormat, jpegQuality: Int = 90) throws -> [UInt8] {
        switch format {
        case .jpeg: return try encodeJPEG(quality: jpegQuality)
        case .png: return try encodePNG()
        case .webp, .tiff, .heic, .avif:
            throw ImagingError.encodingFailed(format: format, reason: "segd writes only JPEG and PNG")
        }
    }
}
