// Label text through FreeType: one face, rendered as 8-bit antialiased coverage masks and
// blended by the overlay code. DejaVu Sans is what matplotlib (and so detectron2's
// Visualizer) draws with; Debian's fonts-dejavu-core installs it.

import CFreeType

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A FreeType library instance and one face loaded from a font file; both freed in
/// deinit. FreeType faces are not thread-safe, so every use of the face holds `mutex`;
/// that makes one Font shareable by all the Writer's threads (rendering a label takes
/// microseconds, so they hardly ever wait).
public final class Font: @unchecked Sendable {
    /// Tried in order by `init()`: the bold face reads better at the 10–20 px of labels.
    public static let defaultPaths = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ]

    public let path: String
    private let library: FT_Library
    private let face: FT_Face
    /// Guards `face` and `pixelSize`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var pixelSize = 0

    /// The first of `defaultPaths` that loads.
    public convenience init() throws {
        var reasons: [String] = []
        for path in Font.defaultPaths {
            do {
                try self.init(path: path)
                return
            } catch let ImagingError.fontUnavailable(_, reason) {
                reasons.append(reason)
            }
        }
        throw ImagingError.fontUnavailable(
            path: Font.defaultPaths.joined(separator: ", "),
            reason: "\(reasons.first ?? "not found") (install the fonts-dejavu-core package)")
    }

    public init(path: String) throws {
        var library: FT_Library?
        var status = FT_Init_FreeType(&library)
        guard status == 0, let library else {
            throw ImagingError.fontUnavailable(path: path, reason: Font.describe(status))
        }
        var face: FT_Face?
        status = FT_New_Face(library, path, 0, &face)
        guard status == 0, let face else {
            // deinit does not run for an object that never finished initialising.
            FT_Done_FreeType(library)
            let reason = status == 1 ? "cannot open the file" : Font.describe(status)
            throw ImagingError.fontUnavailable(path: path, reason: reason)
        }
        self.path = path
        self.library = library
        self.face = face
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        FT_Done_Face(face)
        FT_Done_FreeType(library)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// The one place FreeType status codes become errors.
    private func check(_ status: FT_Error, _ what: String) throws {
        guard status != 0 else { return }
        throw ImagingError.textRenderingFailed(reason: "\(what): \(Font.describe(status)) (\(path))")
    }

    private static func describe(_ status: FT_Error) -> String {
        // FT_Error_String is NULL unless FreeType was built with error strings.
        if let text = FT_Error_String(status) { return String(cString: text) }
        return "FreeType error \(status)"
    }

    /// Glyph coverage masks of `text` at `pixelSize` px, laid out on one baseline.
    func layout(_ text: String, pixelSize: Int) throws -> TextLayout {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if pixelSize != self.pixelSize {
            try check(FT_Set_Pixel_Sizes(face, 0, FT_UInt(pixelSize)), "setting size \(pixelSize) px")
            self.pixelSize = pixelSize
        }
        let metrics = face.pointee.size.pointee.metrics
        // 26.6 fixed point → pixels, rounded outward so descenders are never clipped.
        var layout = TextLayout(ascent: Int((metrics.ascender + 63) >> 6), descent: Int((-metrics.descender + 63) >> 6))

        // FT_LOAD_RENDER | FT_LOAD_TARGET_LIGHT (function-like macros, not imported): light
        // hinting snaps only vertically, keeping glyph shapes and spacing true to the design,
        // which reads better than full hinting at small sizes.
        let loadFlags = FT_Int32(1 << 2) | FT_Int32(FT_RENDER_MODE_LIGHT.rawValue & 15) << 16
        let hasKerning = face.pointee.face_flags & (1 << 6) != 0  // FT_FACE_FLAG_KERNING
        var pen = 0  // 26.6
        var previous: FT_UInt = 0
        for scalar in text.unicodeScalars {
            let index = FT_Get_Char_Index(face, FT_ULong(scalar.value))
            if hasKerning && previous != 0 && index != 0 {
                var delta = FT_Vector()
                if FT_Get_Kerning(face, previous, index, FT_UInt(FT_KERNING_DEFAULT.rawValue), &delta) == 0 {
                    pen += Int(delta.x)
                }
            }
            // A character the font lacks renders as its .notdef box (index 0), which at
            // least shows that something is there.
            try check(FT_Load_Glyph(face, index, loadFlags), "rendering U+\(String(scalar.value, radix: 16, uppercase: true))")
            let slot = face.pointee.glyph.pointee
            let bitmap = slot.bitmap
            let rows = Int(bitmap.rows), width = Int(bitmap.width), pitch = Int(bitmap.pitch)
            if rows > 0, width > 0, let buffer = bitmap.buffer,
               bitmap.pixel_mode == UInt8(FT_PIXEL_MODE_GRAY.rawValue) {
                var coverage = [UInt8](repeating: 0, count: rows * width)
                for r in 0..<rows {
                    // A negative pitch means the rows are stored bottom-up.
                    let row = pitch >= 0 ? buffer + r * pitch : buffer + (rows - 1 - r) * (-pitch)
                    for c in 0..<width { coverage[r * width + c] = row[c] }
                }
                let left = (pen + 32) >> 6 + Int(slot.bitmap_left)
                layout.glyphs.append(.init(x: left, top: Int(slot.bitmap_top), width: width, rows: rows,
                                           coverage: coverage))
                layout.inkLeft = min(layout.inkLeft, left)
                layout.inkRight = max(layout.inkRight, left + width)
            }
            pen += Int(slot.advance.x)
            previous = index
        }
        layout.advance = (pen + 32) >> 6
        return layout
    }
}

/// One line of rendered text. x grows right from the pen origin, `top` is a glyph's
/// height above the baseline (FreeType's convention).
struct TextLayout {
    struct Glyph {
        var x: Int
        var top: Int
        var width: Int
        var rows: Int
        /// rows×width, 0 (none) ... 255 (fully covered).
        var coverage: [UInt8]
    }

    /// Font-wide line metrics at this size, so that every label has the same height.
    var ascent: Int
    var descent: Int
    var glyphs: [Glyph] = []
    var advance = 0
    var inkLeft = Int.max
    var inkRight = Int.min

    /// Horizontal extent to reserve: the pen advance, widened where ink overhangs it.
    var width: Int { glyphs.isEmpty ? advance : max(advance, inkRight) - min(0, inkLeft) }
    /// Shift to apply to the pen origin so that no ink falls left of the reserved box.
    var leftOverhang: Int { glyphs.isEmpty ? 0 : max(0, -inkLeft) }
}
