// WebP through libwebp 1.2 (lossy VP8, lossless VP8L, with or without alpha).
//
// WebPGetFeatures reads only the RIFF header and the first chunk, so the pixel limit is
// checked before libwebp allocates anything; still images then decode straight into a
// buffer segd allocates (RGB8, or RGBA8 composited in place as PNG alpha is). An animated
// WebP is decoded through libwebpdemux's animation decoder up to its first frame, which
// it renders onto the full canvas; `frameCount` tells the JSON how many frames were left.

import CWebP

enum WebPDecoder {
    static func decode(_ bytes: [UInt8], name: String, limits: DecodeLimits,
                       background: AlphaBackground) throws -> CodecOutput {
        var features = WebPBitstreamFeatures()
        let status = bytes.withUnsafeBufferPointer {
            WebPGetFeaturesInternal($0.baseAddress, $0.count, &features, WEBP_DECODER_ABI_VERSION)
        }
        try check(status, name: name, byteCount: bytes.count)
        let w = Int(features.width), h = Int(features.height)
        try limits.check(width: w, height: h, file: name)
        if features.has_animation != 0 {
            return try decodeFirstFrame(bytes, name: name, width: w, height: h, background: background)
        }
        let alpha = features.has_alpha != 0
        let channels = alpha ? 4 : 3
        let size = w * h * channels
        var pixels = try [UInt8](unsafeUninitializedCapacity: size) { out, count in
            // The Into variants decode into our buffer, so the pixel limit is the whole cost.
            let done = bytes.withUnsafeBufferPointer { input in
                alpha
                    ? WebPDecodeRGBAInto(input.baseAddress, input.count, out.baseAddress, size, Int32(w * 4))
                    : WebPDecodeRGBInto(input.baseAddress, input.count, out.baseAddress, size, Int32(w * 3))
            }
            guard done != nil else {
                // The simple API says only "failed"; the incremental one says why.
                throw reason(bytes, name: name, rgba: alpha, width: w)
            }
            count = size
        }
        if alpha { PNGDecoder.compositeInPlace(&pixels, onto: background) }
        return CodecOutput(image: Image(width: w, height: h, pixels: pixels), orientation: nil)
    }

    /// The first frame of an animation, composited on its canvas (frames may be smaller than
    /// the canvas and offset; the canvas size is what WebPGetFeatures reported and checked).
    private static func decodeFirstFrame(_ bytes: [UInt8], name: String, width: Int, height: Int,
                                         background: AlphaBackground) throws -> CodecOutput {
        try bytes.withUnsafeBufferPointer { input in
            var data = WebPData(bytes: input.baseAddress, size: input.count)
            var options = WebPAnimDecoderOptions()
            guard WebPAnimDecoderOptionsInitInternal(&options, WEBP_DEMUX_ABI_VERSION) != 0 else {
                throw ImagingError.codecUnavailable(library: "libwebpdemux", reason: "ABI version mismatch")
            }
            options.color_mode = MODE_RGBA
            options.use_threads = 0
            guard let decoder = WebPAnimDecoderNewInternal(&data, &options, WEBP_DEMUX_ABI_VERSION) else {
                throw ImagingError.corrupt(file: name, format: .webp, reason: "malformed animation (chunks or frame headers)")
            }
            defer { WebPAnimDecoderDelete(decoder) }
            var info = WebPAnimInfo()
            guard WebPAnimDecoderGetInfo(decoder, &info) != 0,
                  Int(info.canvas_width) == width, Int(info.canvas_height) == height else {
                throw ImagingError.corrupt(file: name, format: .webp, reason: "animation canvas differs from the header")
            }
            var frame: UnsafeMutablePointer<UInt8>?
            var timestamp: Int32 = 0
            guard WebPAnimDecoderGetNext(decoder, &frame, &timestamp) != 0, let frame else {
                throw ImagingError.corrupt(file: name, format: .webp, reason: "the first animation frame does not decode")
            }
            // The canvas belongs to the decoder (freed by WebPAnimDecoderDelete): copy it out.
            var pixels = Array(UnsafeBufferPointer(start: frame, count: width * height * 4))
            PNGDecoder.compositeInPlace(&pixels, onto: background)
            return CodecOutput(image: Image(width: width, height: height, pixels: pixels), orientation: nil,
                               frameCount: max(1, Int(info.frame_count)))
        }
    }

    /// Why a still image failed: the incremental decoder's status for the same input,
    /// into a scratch buffer of one row (it stops at the first error, or at the first row
    /// it cannot place: either way it reports the state before allocating the image).
    private static func reason(_ bytes: [UInt8], name: String, rgba: Bool, width: Int) -> ImagingError {
        var config = WebPDecoderConfig()
        guard WebPInitDecoderConfigInternal(&config, WEBP_DECODER_ABI_VERSION) != 0 else {
            return .codecUnavailable(library: "libwebp", reason: "ABI version mismatch")
        }
        let status = bytes.withUnsafeBufferPointer { WebPDecode($0.baseAddress, $0.count, &config) }
        WebPFreeDecBuffer(&config.output)
        do { try check(status, name: name, byteCount: bytes.count) } catch let error as ImagingError { return error } catch {}
        return .corrupt(file: name, format: .webp, reason: "libwebp could not decode the image data")
    }

    /// The one place libwebp status codes become errors.
    static func check(_ status: VP8StatusCode, name: String, byteCount: Int) throws {
        switch status {
        case VP8_STATUS_OK: return
        case VP8_STATUS_NOT_ENOUGH_DATA:
            throw ImagingError.truncated(file: name, format: .webp, byteCount: byteCount)
        case VP8_STATUS_OUT_OF_MEMORY:
            throw ImagingError.limitExceeded(file: name, format: .webp, reason: "libwebp ran out of memory")
        case VP8_STATUS_UNSUPPORTED_FEATURE:
            throw ImagingError.unsupported(file: name, format: .webp, reason: "libwebp: unsupported feature")
        case VP8_STATUS_INVALID_PARAM:
            throw ImagingError.corrupt(file: name, format: .webp, reason: "libwebp: invalid parameter")
        default:
            throw ImagingError.corrupt(file: name, format: .webp, reason: "libwebp: bitstream error")
        }
    }
}
