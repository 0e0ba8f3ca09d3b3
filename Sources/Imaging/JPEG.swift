// JPEG through TurboJPEG (libjpeg-turbo 2.1).
//
// Before TurboJPEG sees a file, a small marker walk reads what TurboJPEG does not expose
// or would act on too late: the frame size (checked against the pixel limit before any
// buffer exists), the EXIF orientation (APP1), and the Adobe APP14 marker that says
// whether CMYK samples are stored inverted.
//
// Warnings: libjpeg "recovers" from a truncated or damaged scan by padding with grey and
// calling it a warning. segd must not segment half an image, so decoding stops at the
// first warning (TJFLAG_STOPONWARNING). The one harmless, common warning — stray bytes
// between segments, written by some camera firmware — gets a second, tolerant decode,
// accepted only if an EOI marker follows the scan data.

import CTurboJPEG

/// A TurboJPEG instance; tjDestroy in deinit. Not thread-safe (TurboJPEG handles are
/// not), so each decode or encode makes its own.
final class TurboJPEG {
    enum Role { case decompressor, compressor }
    /// What a failing call was doing: decides which error a failure becomes.
    enum Context {
        case decoding(file: String, byteCount: Int)
        case encoding
    }

    let handle: tjhandle

    init(_ role: Role) throws {
        guard let handle = role == .decompressor ? tjInitDecompress() : tjInitCompress() else {
            throw ImagingError.codecUnavailable(library: "TurboJPEG", reason: String(cString: tjGetErrorStr2(nil)))
        }
        self.handle = handle
    }

    deinit { tjDestroy(handle) }

    /// The one place TurboJPEG status codes become errors. Returns true when the call
    /// succeeded, false when it stopped on a harmless warning (see the file comment);
    /// throws for everything else.
    func check(_ status: Int32, _ context: Context) throws -> Bool {
        if status == 0 { return true }
        let message = String(cString: tjGetErrorStr2(handle))
        let isWarning = tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue)
        switch context {
        case .encoding:
            throw ImagingError.encodingFailed(format: .jpeg, reason: message)
        case let .decoding(file, byteCount):
            // libjpeg's JWRN_JPEG_EOF: the source ran dry and libjpeg inserted a fake EOI.
            if message.contains("Premature end of JPEG file") {
                throw ImagingError.truncated(file: file, format: .jpeg, byteCount: byteCount)
            }
            // JWRN_EXTRANEOUS_DATA: bytes outside any segment, skipped; the pixels are intact.
            if isWarning && message.contains("extraneous bytes before marker") { return false }
            if message.contains("Unsupported") {
                throw ImagingError.unsupported(file: file, format: .jpeg, reason: message)
            }
            throw ImagingError.corrupt(file: file, format: .jpeg, reason: message)
        }
    }
}

/// What the marker walk learns from the segments before the first scan.
struct JPEGHeader {
    var width = 0
    var height = 0
    var components = 0
    /// APP14 "Adobe" transform byte (0: none/CMYK, 1: YCbCr, 2: YCCK); nil without APP14.
    var adobeTransform: Int?
    var orientation: Orientation?
    /// Offset of the first entropy-coded byte (just past the first SOS segment).
    var scanStart = 0

    /// Walks the marker segments up to the first SOS. Throws for a file that ends inside
    /// them, has no frame header, or declares more pixels than `limits` allow.
    static func parse(_ bytes: [UInt8], name: String, limits: DecodeLimits) throws -> JPEGHeader {
        var header = JPEGHeader()
        var sawFrame = false
        let n = bytes.count
        func truncated() -> ImagingError { .truncated(file: name, format: .jpeg, byteCount: n) }
        func corrupt(_ reason: String) -> ImagingError { .corrupt(file: name, format: .jpeg, reason: reason) }
        func u16(_ at: Int) -> Int { Int(bytes[at]) << 8 | Int(bytes[at + 1]) }

        var i = 2  // past SOI
        while true {
            // libjpeg skips garbage before a marker (with the warning handled above), so
            // this walk does too rather than disagree with the decoder about the file.
            while i < n && bytes[i] != 0xFF { i += 1 }
            while i < n && bytes[i] == 0xFF { i += 1 }  // fill bytes
            guard i < n else { throw truncated() }
            let marker = bytes[i]
            i += 1
            switch marker {
            case 0x01, 0xD0...0xD8:  // TEM, RSTn, SOI: no length field
                continue
            case 0xD9:
                throw corrupt("end-of-image marker before any image data")
            default:
                break
            }
            guard i + 2 <= n else { throw truncated() }
            let length = u16(i)
            guard length >= 2 else { throw corrupt("marker 0x\(String(marker, radix: 16)) has length \(length)") }
            let end = i + length
            guard end <= n else { throw truncated() }
            let payload = bytes[(i + 2)..<end]
            let p = payload.startIndex

            switch marker {
            case 0xC0...0xCF where marker != 0xC4 && marker != 0xC8 && marker != 0xCC:
                // SOFn (C4 DHT, C8 JPG, CC DAC share the range but are not frame headers).
                guard payload.count >= 6 else { throw corrupt("frame header too short") }
                let precision = Int(payload[p])
                header.height = u16(p + 1)
                header.width = u16(p + 3)
                header.components = Int(payload[p + 5])
                if [0xC3, 0xC7, 0xCB, 0xCF].contains(marker) {
                    throw ImagingError.unsupported(file: name, format: .jpeg, reason: "lossless JPEG")
                }
                guard precision == 8 else {
                    throw ImagingError.unsupported(file: name, format: .jpeg, reason: "\(precision)-bit samples")
                }
                guard header.height > 0 else {
                    // The height would come from a DNL marker after the first scan;
                    // libjpeg rejects that too.
                    throw ImagingError.unsupported(file: name, format: .jpeg, reason: "image height defined by a DNL marker")
                }
                guard header.width > 0 else { throw corrupt("frame header declares width 0") }
                guard [1, 3, 4].contains(header.components) else {
                    throw ImagingError.unsupported(file: name, format: .jpeg, reason: "\(header.components) colour components")
                }
                try limits.check(width: header.width, height: header.height, file: name)
                sawFrame = true
            case 0xE1 where header.orientation == nil:
                // APP1 "Exif\0\0" then a TIFF block; XMP also lives in APP1, with another tag.
                if payload.count > 6, payload.prefix(6).elementsEqual([0x45, 0x78, 0x69, 0x66, 0, 0]) {
                    header.orientation = EXIF.orientation(tiff: payload.dropFirst(6))
                }
            case 0xEE:
                // APP14 "Adobe": version(2) flags0(2) flags1(2) transform(1).
                if payload.count >= 12, payload.prefix(5).elementsEqual([0x41, 0x64, 0x6F, 0x62, 0x65]) {
                    header.adobeTransform = Int(payload[p + 11])
                }
            case 0xDA:
                guard sawFrame else { throw corrupt("scan before frame header") }
                header.scanStart = end
                return header
            default:
                break
            }
            i = end
        }
    }
}

enum JPEGDecoder {
    /// Flags for every decompression: the accurate integer IDCT (libjpeg's default, which
    /// torchvision's and Pillow's decoders use, so pixels match the reference tooling), and
    /// libjpeg-turbo's cap on progressive scans (a crafted file with thousands of tiny scans
    /// otherwise takes minutes).
    private static let baseFlags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS

    static func decode(_ bytes: [UInt8], name: String, limits: DecodeLimits) throws -> (Image, Orientation?) {
        let header = try JPEGHeader.parse(bytes, name: name, limits: limits)
        let tj = try TurboJPEG(.decompressor)
        let context = TurboJPEG.Context.decoding(file: name, byteCount: bytes.count)

        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let headerStatus = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(tj.handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        _ = try tj.check(headerStatus, context)
        // TurboJPEG read the same SOF; a disagreement means the walk above misparsed.
        guard Int(width) == header.width, Int(height) == header.height else {
            throw ImagingError.corrupt(file: name, format: .jpeg,
                                       reason: "frame header says \(header.width)×\(header.height), decoder \(width)×\(height)")
        }
        let w = Int(width), h = Int(height)
        let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
        let channels = isCMYK ? 4 : 3
        // TurboJPEG cannot convert CMYK to RGB (it needs a colour model, see below), so CMYK
        // and YCCK files come out as CMYK and are converted here.
        let pixelFormat = Int32(isCMYK ? TJPF_CMYK.rawValue : TJPF_RGB.rawValue)

        var decoded = try [UInt8](unsafeUninitializedCapacity: w * h * channels) { buffer, count in
            func run(_ flags: Int32) -> Int32 {
                bytes.withUnsafeBufferPointer {
                    tjDecompress2(tj.handle, $0.baseAddress, UInt($0.count), buffer.baseAddress,
                                  width, 0, height, pixelFormat, flags)
                }
            }
            if try !tj.check(run(baseFlags | TJFLAG_STOPONWARNING), context) {
                // Stopped on stray bytes between segments: decode again letting warnings
                // pass. Only the first warning's text is kept by libjpeg, so a later
                // truncation would go unseen: require the scan data to end in an EOI.
                _ = try tj.check(run(baseFlags), context)
                guard hasEOI(bytes, from: header.scanStart) else {
                    throw ImagingError.truncated(file: name, format: .jpeg, byteCount: bytes.count)
                }
            }
            count = w * h * channels
        }
        if isCMYK {
            decoded = cmykToRGB(decoded, inverted: header.adobeTransform != nil)
        }
        return (Image(width: w, height: h, pixels: decoded), header.orientation)
    }

    /// Whether an EOI marker (FF D9) follows `start`. Entropy-coded data cannot contain it
    /// (an FF there is always followed by 00 or a restart marker).
    private static func hasEOI(_ bytes: [UInt8], from start: Int) -> Bool {
        var i = start
        while i + 1 < bytes.count {
            if bytes[i] == 0xFF && bytes[i + 1] == 0xD9 { return true }
            i += 1
        }
        return false
    }

    /// CMYK → RGB by the naive subtractive model, R = (1−C)(1−K): without the file's ICC
    /// profile there is nothing better, and it is what browsers do for untagged CMYK.
    /// Files with an Adobe APP14 marker (Photoshop, Pillow, libjpeg's own CMYK writer)
    /// store every sample inverted, 255 − C, so there R = C′·K′/255.
    static func cmykToRGB(_ cmyk: [UInt8], inverted: Bool) -> [UInt8] {
        let pixelCount = cmyk.count / 4
        return [UInt8](unsafeUninitializedCapacity: pixelCount * 3) { rgb, count in
            cmyk.withUnsafeBufferPointer { src in
                for i in 0..<pixelCount {
                    var c = UInt32(src[4 * i]), m = UInt32(src[4 * i + 1])
                    var y = UInt32(src[4 * i + 2]), k = UInt32(src[4 * i + 3])
                    if !inverted { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k }
                    // (a·b + 127) / 255: a rounded product of two 8-bit fractions.
                    rgb[3 * i] = UInt8((c * k + 127) / 255)
                    rgb[3 * i + 1] = UInt8((m * k + 127) / 255)
                    rgb[3 * i + 2] = UInt8((y * k + 127) / 255)
                }
            }
            count = pixelCount * 3
        }
    }
}

extension Image {
    /// JPEG bytes: baseline, 4:2:0 chroma subsampling (what cameras and libjpeg default to;
    /// the annotated output is for looking at), `quality` 1...100.
    public func encodeJPEG(quality: Int = 90) throws -> [UInt8] {
        guard (1...100).contains(quality) else {
            throw ImagingError.encodingFailed(format: .jpeg, reason: "quality \(quality) is outside 1...100")
        }
        guard width > 0, height > 0, width <= 65_535, height <= 65_535 else {
            throw ImagingError.encodingFailed(format: .jpeg,
                                              reason: "\(width)×\(height) is outside JPEG's 1...65535 per side")
        }
        let tj = try TurboJPEG(.compressor)
        var output: UnsafeMutablePointer<UInt8>? = nil  // TurboJPEG allocates and grows it
        var size: UInt = 0
        defer { if let output { tjFree(output) } }
        let status = pixels.withUnsafeBufferPointer {
            tjCompress2(tj.handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(TJPF_RGB.rawValue),
                        &output, &size, Int32(TJSAMP_420.rawValue), Int32(quality), TJFLAG_ACCURATEDCT)
        }
        _ = try tj.check(status, .encoding)
        guard let output else { throw ImagingError.encodingFailed(format: .jpeg, reason: "no output buffer") }
        return Array(UnsafeBufferPointer(start: output, count: Int(size)))
    }
}
