// PNG through libspng 0.7.
//
// Every PNG flavour (1–16 bit, grey, palette, RGB, with alpha or tRNS, Adam7-interlaced)
// is decoded by libspng to RGBA8 or RGB8, then alpha is composited onto the chosen
// background. libspng checks CRCs of critical chunks (IHDR, PLTE, IDAT) and errors on a
// mismatch; ancillary chunks with a bad CRC are dropped, which costs nothing since segd
// uses none but eXIf. Its chunk limits bound memory for hostile ancillary chunks, the
// pixel limit (checked on IHDR, before allocating) bounds the image.

import CSPNG

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An spng_ctx (decoder or encoder); spng_ctx_free in deinit.
final class SPNGContext {
    /// What a failing call was doing: decides which error a failure becomes.
    enum Context {
        case decoding(file: String, byteCount: Int)
        case encoding
    }

    let ctx: OpaquePointer
    let context: Context

    init(_ context: Context) throws {
        let flags: Int32
        switch context {
        case .decoding: flags = 0
        case .encoding: flags = Int32(SPNG_CTX_ENCODER.rawValue)
        }
        guard let ctx = spng_ctx_new(flags) else {
            throw ImagingError.codecUnavailable(library: "libspng", reason: "cannot allocate a context")
        }
        self.ctx = ctx
        self.context = context
    }

    deinit { spng_ctx_free(ctx) }

    /// For spng_get_<chunk>: true when the chunk is there, false when the file has none
    /// (SPNG_ECHUNKAVAIL); any other status is a real error, e.g. a limit hit while
    /// reading the chunks before the image data.
    func lookUp(_ status: Int32) throws -> Bool {
        if status == Int32(SPNG_ECHUNKAVAIL.rawValue) { return false }
        try check(status)
        return true
    }

    /// The one place libspng status codes become errors.
    func check(_ status: Int32) throws {
        guard status != 0 else { return }
        let reason = String(cString: spng_strerror(status))
        guard case let .decoding(file, byteCount) = context else {
            throw ImagingError.encodingFailed(format: .png, reason: reason)
        }
        switch status {
        case SPNG_IO_EOF.rawValue, Int32(SPNG_EOF.rawValue):
            throw ImagingError.truncated(file: file, format: .png, byteCount: byteCount)
        case Int32(SPNG_ECHUNK_CRC.rawValue):
            throw ImagingError.corrupt(file: file, format: .png, reason: "chunk checksum (CRC) mismatch")
        case Int32(SPNG_ECHUNK_LIMITS.rawValue):
            throw ImagingError.limitExceeded(file: file, format: .png,
                                             reason: "a chunk or the decompressed ancillary chunks are too large")
        case Int32(SPNG_EUSER_WIDTH.rawValue), Int32(SPNG_EUSER_HEIGHT.rawValue):
            throw ImagingError.limitExceeded(file: file, format: .png, reason: reason)
        default:
            throw ImagingError.corrupt(file: file, format: .png, reason: reason)
        }
    }
}

enum PNGDecoder {
    static func decode(_ bytes: [UInt8], name: String, limits: DecodeLimits,
                       background: AlphaBackground) throws -> (Image, Orientation?) {
        let png = try SPNGContext(.decoding(file: name, byteCount: bytes.count))
        return try bytes.withUnsafeBufferPointer { input in
            // libspng reads from `input` in every call below, so all of them stay inside
            // this closure, where the buffer is pinned.
            try png.check(spng_set_png_buffer(png.ctx, input.baseAddress, input.count))
            // Per-side limits are libspng's own early check; the product is checked below.
            let side = UInt32(clamping: min(limits.maxPixels, Int(Int32.max)))
            try png.check(spng_set_image_limits(png.ctx, side, side))
            // libspng rejects a chunk limit above the cache limit (one chunk must fit the cache).
            try png.check(spng_set_chunk_limits(png.ctx, min(limits.maxPNGChunkBytes, limits.maxPNGChunkCacheBytes),
                                                limits.maxPNGChunkCacheBytes))

            var ihdr = spng_ihdr()
            try png.check(spng_get_ihdr(png.ctx, &ihdr))
            let w = Int(ihdr.width), h = Int(ihdr.height)
            try limits.check(width: w, height: h, file: name)

            // Colour types 4 and 6 carry alpha; grey, RGB and palette images may have it
            // through a tRNS chunk. Opaque images decode straight to RGB8.
            var trns = spng_trns()
            let hasAlpha = try ihdr.color_type == 4 || ihdr.color_type == 6 || png.lookUp(spng_get_trns(png.ctx, &trns))
            let format = Int32(hasAlpha ? SPNG_FMT_RGBA8.rawValue : SPNG_FMT_RGB8.rawValue)
            let channels = hasAlpha ? 4 : 3
            var size = 0
            try png.check(spng_decoded_image_size(png.ctx, format, &size))
            guard size == w * h * channels else {
                throw ImagingError.corrupt(file: name, format: .png, reason: "decoded size \(size) for \(w)×\(h)")
            }
            var pixels = try [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                try png.check(spng_decode_image(png.ctx, buffer.baseAddress, size, format,
                                                Int32(SPNG_DECODE_TRNS.rawValue)))
                count = size
            }
            // Read the chunks after the image data up to IEND: a file cut after its last
            // IDAT is truncated too, and an eXIf chunk may come after the pixels.
            try png.check(spng_decode_chunks(png.ctx))
            // libspng accepts an IEND whose CRC is missing; a file cut there is still cut.
            guard endsWithCompleteIEND(input) else {
                throw ImagingError.truncated(file: name, format: .png, byteCount: bytes.count)
            }

            if hasAlpha { compositeInPlace(&pixels, onto: background) }
            var exif = spng_exif()
            var orientation: Orientation? = nil
            if try png.lookUp(spng_get_exif(png.ctx, &exif)), let data = exif.data {
                let tiff = UnsafeRawBufferPointer(start: data, count: exif.length)
                orientation = EXIF.orientation(tiff: Array(tiff)[...])
            }
            return (Image(width: w, height: h, pixels: pixels), orientation)
        }
    }

    /// Whether the chunk sequence, followed by its length fields, reaches an IEND chunk
    /// that lies wholly inside the data (bytes after it are allowed, as in libpng).
    static func endsWithCompleteIEND(_ data: UnsafeBufferPointer<UInt8>) -> Bool {
        var at = 8  // past the signature
        while at + 12 <= data.count {
            let length = Int(data[at]) << 24 | Int(data[at + 1]) << 16 | Int(data[at + 2]) << 8 | Int(data[at + 3])
            if data[at + 4] == 0x49, data[at + 5] == 0x45, data[at + 6] == 0x4E, data[at + 7] == 0x44 {  // IEND
                return true
            }
            at += 12 + length
        }
        return false
    }

    /// RGBA8 → RGB8 in the same buffer (pixel i's RGB lands at 3i ≤ 4i, so a forward pass
    /// never overwrites an unread pixel), out = α·c + (1 − α)·background, or c + (1 − α)·background
    /// for `premultiplied` colour (libtiff's RGBA raster). In place because at 100 megapixels
    /// a second buffer would be another 300 MB. Shared by every decoder with alpha.
    static func compositeInPlace(_ pixels: inout [UInt8], onto background: AlphaBackground,
                                 premultiplied: Bool = false) {
        let count = pixels.count / 4
        let bg: UInt32 = background == .white ? 255 : 0
        pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<count {
                let a = UInt32(p[4 * i + 3])
                let inv = 255 - a
                // (x + 127) / 255 rounds the product of two 8-bit fractions.
                let scale: UInt32 = premultiplied ? 255 : a
                let r = (UInt32(p[4 * i]) * scale + bg * inv + 127) / 255
                let g = (UInt32(p[4 * i + 1]) * scale + bg * inv + 127) / 255
                let b = (UInt32(p[4 * i + 2]) * scale + bg * inv + 127) / 255
                // min: premultiplied colour above its alpha is malformed but must not wrap.
                p[3 * i] = UInt8(min(r, 255))
                p[3 * i + 1] = UInt8(min(g, 255))
                p[3 * i + 2] = UInt8(min(b, 255))
            }
        }
        pixels.removeLast(count)
    }
}

extension Image {
    /// PNG bytes: 8-bit RGB, non-interlaced, libspng's adaptive filtering, zlib level
    /// `compressionLevel` 0...9 (6, zlib's default balance of size and time, by default).
    public func encodePNG(compressionLevel: Int = 6) throws -> [UInt8] {
        guard (0...9).contains(compressionLevel) else {
            throw ImagingError.encodingFailed(format: .png, reason: "compression level \(compressionLevel) is outside 0...9")
        }
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max) else {
            throw ImagingError.encodingFailed(format: .png, reason: "\(width)×\(height) cannot be stored as PNG")
        }
        let png = try SPNGContext(.encoding)
        try png.check(spng_set_option(png.ctx, SPNG_ENCODE_TO_BUFFER, 1))
        try png.check(spng_set_option(png.ctx, SPNG_IMG_COMPRESSION_LEVEL, Int32(compressionLevel)))
        var ihdr = spng_ihdr(width: UInt32(width), height: UInt32(height), bit_depth: 8,
                             color_type: UInt8(SPNG_COLOR_TYPE_TRUECOLOR.rawValue),
                             compression_method: 0, filter_method: 0, interlace_method: 0)
        try png.check(spng_set_ihdr(png.ctx, &ihdr))
        try pixels.withUnsafeBufferPointer {
            try png.check(spng_encode_image(png.ctx, $0.baseAddress, $0.count, Int32(SPNG_FMT_PNG.rawValue),
                                            Int32(SPNG_ENCODE_FINALIZE.rawValue)))
        }
        var length = 0
        var status: Int32 = 0
        // The buffer is malloc'd by libspng and now ours to free.
        guard let buffer = spng_get_png_buffer(png.ctx, &length, &status) else {
            try png.check(status)
            throw ImagingError.encodingFailed(format: .png, reason: "no output buffer")
        }
        defer { free(buffer) }
        return Array(UnsafeRawBufferPointer(start: buffer, count: length))
    }
}
