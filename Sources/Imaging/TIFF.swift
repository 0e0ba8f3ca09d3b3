// TIFF through libtiff 4.5: 1–16 bits per sample; grey, RGB, RGBA, palette, CMYK, YCbCr;
// strips or tiles; every compression libtiff was built with (none, LZW, Deflate, JPEG,
// PackBits, ...). libtiff's RGBA reader (TIFFRGBAImage) does the conversion to 8-bit
// RGBA, with associated (premultiplied) alpha, which is composited onto the background.
//
// Hostile files: the page chain is walked here, bounded by the page limit and checked for
// loops, before libtiff reads a single directory past the first; the pixel limit is
// checked on the directory's ImageWidth × ImageLength before the raster exists; libtiff's
// single allocations (strip and tile buffers) are capped by TIFFOpenOptions; and libtiff's
// error and warning messages go to a handler per TIFF handle (TIFFOpenOptions' *ExtR
// handlers, thread-safe), whose first error becomes the failed job's reason instead of a
// line on stderr.

import CTIFF

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open TIFF reading from memory; TIFFClose in deinit. The bytes must outlive it.
final class TIFFHandle {
    /// The read position and the messages libtiff reported for this handle.
    final class Stream {
        let base: UnsafePointer<UInt8>
        let count: Int
        /// The name libtiff was given; codecs report it as their "module", which the
        /// error already names.
        let name: String
        var offset = 0
        var errors: [String] = []

        init(_ buffer: UnsafeBufferPointer<UInt8>, name: String) {
            base = buffer.baseAddress!
            count = buffer.count
            self.name = name
        }
    }

    let tif: OpaquePointer
    let stream: Stream
    private let options: OpaquePointer

    /// libtiff's process-wide handlers print to stderr; the per-handle ones below stop the
    /// messages from reaching them, and these catch what libtiff reports before a handle
    /// exists. Set once, before the first open.
    private static let silenceGlobalHandlers: Void = {
        _ = TIFFSetErrorHandler(nil)
        _ = TIFFSetWarningHandler(nil)
    }()

    init(_ buffer: UnsafeBufferPointer<UInt8>, name: String, maxSingleAllocation: Int) throws {
        _ = Self.silenceGlobalHandlers
        stream = Stream(buffer, name: name)
        guard let options = TIFFOpenOptionsAlloc() else {
            throw ImagingError.codecUnavailable(library: "libtiff", reason: "cannot allocate open options")
        }
        self.options = options
        let user = Unmanaged.passUnretained(stream).toOpaque()
        TIFFOpenOptionsSetErrorHandlerExtR(options, { _, user, module, format, args in
            guard let user, let format, let args else { return 1 }
            let stream = Unmanaged<Stream>.fromOpaque(user).takeUnretainedValue()
            var text = [CChar](repeating: 0, count: 512)
            let length = vsnprintf(&text, text.count, format, args)
            let message = String(decoding: text.prefix(min(max(0, Int(length)), text.count - 1)).map { UInt8(bitPattern: $0) },
                                 as: UTF8.self)
            var prefix = module.map { String(cString: $0) } ?? ""
            if prefix == stream.name { prefix = "" }
            // At most 16 messages are kept (only the first is used): a corrupt file can make libtiff
            // report an error per strip.
            if stream.errors.count < 16 { stream.errors.append(prefix.isEmpty ? message : "\(prefix): \(message)") }
            return 1
        }, user)
        // Warnings (unknown tags, odd but readable values) are not failures; they are dropped.
        TIFFOpenOptionsSetWarningHandlerExtR(options, { _, _, _, _, _ in 1 }, user)
        TIFFOpenOptionsSetMaxSingleMemAlloc(options, tmsize_t(maxSingleAllocation))
        let handle = user
        let opened = TIFFClientOpenExt(name, "r", handle, { user, buffer, size in
            let s = Unmanaged<TIFFHandle.Stream>.fromOpaque(user!).takeUnretainedValue()
            let n = max(0, min(Int(size), s.count - s.offset))
            if n > 0, let buffer { memcpy(buffer, s.base + s.offset, n) }
            s.offset += n
            return tmsize_t(n)
        }, { _, _, _ in 0 },  // write: never called in mode "r"
        { user, offset, whence in
            let s = Unmanaged<TIFFHandle.Stream>.fromOpaque(user!).takeUnretainedValue()
            let base: Int
            switch whence {
            case SEEK_SET: base = 0
            case SEEK_CUR: base = s.offset
            case SEEK_END: base = s.count
            default: return UInt64.max
            }
            // Offsets come from the file: anything beyond Int is simply past the end.
            guard offset <= UInt64(Int.max - base) else { return UInt64.max }
            s.offset = base + Int(offset)
            return UInt64(s.offset)
        }, { _ in 0 },  // close: the bytes belong to the caller
        { user in UInt64(Unmanaged<TIFFHandle.Stream>.fromOpaque(user!).takeUnretainedValue().count) },
        { _, _, _ in 0 },  // map: none, libtiff reads through the read procedure
        { _, _, _ in }, options)
        guard let opened else {
            TIFFOpenOptionsFree(options)
            throw ImagingError.corrupt(file: name, format: .tiff, reason: stream.errors.first ?? "libtiff cannot open it")
        }
        tif = opened
    }

    deinit {
        TIFFClose(tif)
        TIFFOpenOptionsFree(options)
    }

    func field<T: BinaryInteger>(_ tag: Int32, _ type: T.Type, defaulted: Bool = false) -> T? {
        var value: T = 0
        let found = withUnsafeMutablePointer(to: &value) { p in
            withVaList([p]) { defaulted ? TIFFVGetFieldDefaulted(tif, UInt32(tag), $0) : TIFFVGetField(tif, UInt32(tag), $0) }
        }
        return found == 1 ? value : nil
    }

    /// libtiff's first error since the handle was opened, or `fallback`.
    func reason(_ fallback: String) -> String { stream.errors.first ?? fallback }
}

/// The text of a NUL-terminated buffer libtiff filled.
private func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

enum TIFFDecoder {
    static func decode(_ bytes: [UInt8], name: String, page: Int, limits: DecodeLimits,
                       background: AlphaBackground) throws -> CodecOutput {
        let pageCount = try countPages(bytes, name: name, limit: limits.maxPages)
        guard (1...pageCount).contains(page) else {
            throw ImagingError.noSuchPage(file: name, page: page, pageCount: pageCount)
        }
        return try bytes.withUnsafeBufferPointer { input in
            // One strip or tile buffer may hold a whole page at 16 bits × 4 samples; a
            // directory claiming more (a corrupt tile size) is refused by libtiff itself.
            let tiff = try TIFFHandle(input, name: name, maxSingleAllocation: max(64 << 20, limits.maxPixels * 8))
            if page > 1, TIFFSetDirectory(tiff.tif, tdir_t(page - 1)) != 1 {
                throw ImagingError.corrupt(file: name, format: .tiff,
                                           reason: tiff.reason("page \(page) cannot be read"))
            }
            guard let w = tiff.field(TIFFTAG_IMAGEWIDTH, UInt32.self),
                  let h = tiff.field(TIFFTAG_IMAGELENGTH, UInt32.self) else {
                throw ImagingError.corrupt(file: name, format: .tiff, reason: tiff.reason("no ImageWidth or ImageLength"))
            }
            let width = Int(w), height = Int(h)
            guard width > 0, height > 0 else {
                throw ImagingError.corrupt(file: name, format: .tiff, reason: "image is \(width)×\(height)")
            }
            try limits.check(width: width, height: height, file: name)
            let orientation = tiff.field(TIFFTAG_ORIENTATION, UInt16.self).flatMap { Orientation(rawValue: Int($0)) }

            var message = [CChar](repeating: 0, count: 1024)
            guard TIFFRGBAImageOK(tiff.tif, &message) == 1 else {
                throw ImagingError.unsupported(file: name, format: .tiff, reason: cString(message))
            }
            var rgba = TIFFRGBAImage()
            guard TIFFRGBAImageBegin(&rgba, tiff.tif, 1, &message) == 1 else {
                throw ImagingError.unsupported(file: name, format: .tiff, reason: cString(message))
            }
            defer { TIFFRGBAImageEnd(&rgba) }
            // Rows as stored, top first: libtiff's reader would otherwise flip to its own
            // default (bottom-up) or half-apply the Orientation tag (flips only, no
            // rotations); orientation is applied afterwards as for JPEG.
            rgba.req_orientation = UInt16(ORIENTATION_TOPLEFT)
            rgba.orientation = UInt16(ORIENTATION_TOPLEFT)
            let hasAlpha = rgba.alpha != 0
            let size = width * height * 4
            var pixels = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                // The raster is ABGR words: R G B A bytes on a little-endian machine.
                let ok = buffer.withMemoryRebound(to: UInt32.self) {
                    TIFFRGBAImageGet(&rgba, $0.baseAddress, w, h)
                }
                guard ok == 1 else {
                    throw ImagingError.corrupt(file: name, format: .tiff, reason: tiff.reason("the image data does not decode"))
                }
                count = size
            }
            if !tiff.stream.errors.isEmpty {
                // stoponerr = 1 makes TIFFRGBAImageGet fail on a read error, but a few
                // codecs report an error and still return success for the rest.
                throw ImagingError.corrupt(file: name, format: .tiff, reason: tiff.stream.errors[0])
            }
            PNGDecoder.compositeInPlace(&pixels, onto: background, premultiplied: hasAlpha)
            return CodecOutput(image: Image(width: width, height: height, pixels: pixels),
                               orientation: orientation, pageCount: pageCount)
        }
    }

    /// The number of directories (pages), following the chain of next-directory offsets
    /// from the header. Bounded: at most `limit` + 1 are visited, and a loop is an error.
    /// A directory or offset past the end of the file is truncation: a multi-page file cut
    /// short must not pass for one with fewer pages.
    static func countPages(_ b: [UInt8], name: String, limit: Int) throws -> Int {
        let little = b[0] == 0x49
        func uint(_ at: Int, _ size: Int) -> Int? {
            guard at >= 0, size <= 8, at <= b.count - size else { return nil }
            var v: UInt64 = 0
            for i in 0..<size { v |= UInt64(b[at + (little ? i : size - 1 - i)]) << (8 * UInt64(i)) }
            return v > UInt64(Int.max) ? Int.max : Int(v)
        }
        guard let version = uint(2, 2) else { throw ImagingError.truncated(file: name, format: .tiff, byteCount: b.count) }
        let big = version == 43
        guard let first = big ? uint(8, 8) : uint(4, 4) else {
            throw ImagingError.truncated(file: name, format: .tiff, byteCount: b.count)
        }
        var seen = Set<Int>()
        var offset = first
        var pages = 0
        while offset != 0 {
            guard let entries = big ? uint(offset, 8) : uint(offset, 2) else {
                throw ImagingError.truncated(file: name, format: .tiff, byteCount: b.count)
            }
            guard seen.insert(offset).inserted else {
                throw ImagingError.corrupt(file: name, format: .tiff,
                                           reason: "page-offset loop: directory \(pages + 1) is at offset \(offset) again")
            }
            pages += 1
            if pages > limit {
                // Count no further: the limit is what the message needs.
                throw ImagingError.tooManyPages(file: name, limit: limit)
            }
            let (header, entrySize) = big ? (8, 20) : (2, 12)
            guard entries <= (b.count - offset) / entrySize,
                  let next = uint(offset + header + entries * entrySize, big ? 8 : 4) else {
                throw ImagingError.truncated(file: name, format: .tiff, byteCount: b.count)
            }
            offset = next
        }
        guard pages > 0 else {
            throw ImagingError.corrupt(file: name, format: .tiff, reason: "no directory (the first offset is 0)")
        }
        return pages
    }
}
