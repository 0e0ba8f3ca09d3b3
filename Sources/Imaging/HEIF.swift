// HEIC (HEVC) and AVIF (AV1) through libheif 1.15, whose Debian build has libde265 and
// dav1d/aom built in. The primary image is decoded; other top-level images (bursts,
// thumbnails, depth maps) are not results.
//
// Orientation: in HEIF the item properties irot (rotation) and imir (mirror) are the
// orientation, and readers must not apply an EXIF orientation on top (MIAF §7.3.6.7;
// iPhones write both, equal, and applying both rotates twice). libheif applies them, with
// the clean-aperture crop (clap: encoders pad small or odd-sized pictures to whole coding
// blocks, a 32×24 picture is coded 64×64, and clap cuts it back). segd reads irot/imir
// itself as well, as their EXIF equivalent, so that the JSON's `orientation` says what was
// done and `applyOrientation: false` can undo it.
//
// Limits: libheif's own per-side limit is set, and the pixel limit is checked against
// the ispe (stored size) property before heif_decode_image allocates anything.

import CHeif

/// A heif_context over caller-owned bytes; heif_context_free in deinit.
final class HEIFContext {
    let ctx: OpaquePointer

    private static let initialized: Void = { _ = heif_init(nil) }()

    init() throws {
        _ = Self.initialized
        guard let ctx = heif_context_alloc() else {
            throw ImagingError.codecUnavailable(library: "libheif", reason: "cannot allocate a context")
        }
        self.ctx = ctx
    }

    deinit { heif_context_free(ctx) }
}

/// A primary image handle; heif_image_handle_release in deinit.
final class HEIFImageHandle {
    let handle: OpaquePointer
    init(_ handle: OpaquePointer) { self.handle = handle }
    deinit { heif_image_handle_release(handle) }
}

/// A decoded heif_image; heif_image_release in deinit.
final class HEIFImage {
    let image: OpaquePointer
    init(_ image: OpaquePointer) { self.image = image }
    deinit { heif_image_release(image) }
}

enum HEIFDecoder {
    static func decode(_ bytes: [UInt8], name: String, format: ImageFormat, limits: DecodeLimits,
                       background: AlphaBackground) throws -> CodecOutput {
        func check(_ error: heif_error) throws {
            guard error.code != heif_error_Ok else { return }
            // libheif ends some messages with a newline: one line, as every reason is.
            let text = error.message.map { String(cString: $0) } ?? "error \(error.code.rawValue)"
            let reason = String(text.split(whereSeparator: \.isNewline).joined(separator: " ").reversed()
                .drop(while: { $0 == " " }).reversed())
            switch (error.code, error.subcode) {
            case (_, heif_suberror_End_of_data):
                throw ImagingError.truncated(file: name, format: format, byteCount: bytes.count)
            case (_, heif_suberror_Security_limit_exceeded), (heif_error_Memory_allocation_error, _):
                throw ImagingError.limitExceeded(file: name, format: format, reason: "libheif: \(reason)")
            case (heif_error_Unsupported_feature, _), (heif_error_Unsupported_filetype, _):
                throw ImagingError.unsupported(file: name, format: format, reason: "libheif: \(reason)")
            default:
                throw ImagingError.corrupt(file: name, format: format, reason: "libheif: \(reason)")
            }
        }
        let context = try HEIFContext()
        // libheif's check is per side (of coded images, grid tiles included); the products
        // are checked below. 65535: no camera or encoder writes a longer side, and it keeps
        // a tile's ispe from declaring a side of 10^8.
        heif_context_set_maximum_image_size_limit(context.ctx, Int32(min(limits.maxPixels, 65535)))
        return try bytes.withUnsafeBufferPointer { input in
            // Without copy: libheif reads from `input` until the context is freed, which
            // happens when `context` goes, after this closure.
            try check(heif_context_read_from_memory_without_copy(context.ctx, input.baseAddress, input.count, nil))
            var primary: OpaquePointer?
            try check(heif_context_get_primary_image_handle(context.ctx, &primary))
            guard let primary else {
                throw ImagingError.corrupt(file: name, format: format, reason: "no primary image")
            }
            let handle = HEIFImageHandle(primary)
            // ispe: the coded size, before clap, which is what the decoder allocates.
            let codedWidth = Int(heif_image_handle_get_ispe_width(handle.handle))
            let codedHeight = Int(heif_image_handle_get_ispe_height(handle.handle))
            guard codedWidth > 0, codedHeight > 0 else {
                throw ImagingError.corrupt(file: name, format: format, reason: "primary image is \(codedWidth)×\(codedHeight)")
            }
            try limits.check(width: codedWidth, height: codedHeight, file: name)
            for canvas in BMFF.derivedCanvases(input) {
                switch canvas {
                case let .derived(_, w, h): try limits.check(width: w, height: h, file: name)
                case let .unreadable(type):
                    throw ImagingError.corrupt(file: name, format: format, reason: "the size of a '\(type)' image cannot be read")
                }
            }
            // The size after clap, irot and imir.
            let width = Int(heif_image_handle_get_width(handle.handle))
            let height = Int(heif_image_handle_get_height(handle.handle))
            guard width > 0, height > 0, width * height <= codedWidth * codedHeight else {
                throw ImagingError.corrupt(file: name, format: format,
                                           reason: "displayed size \(width)×\(height) for a \(codedWidth)×\(codedHeight) picture")
            }

            let alpha = heif_image_handle_has_alpha_channel(handle.handle) != 0
            guard let options = heif_decoding_options_alloc() else {
                throw ImagingError.codecUnavailable(library: "libheif", reason: "cannot allocate decoding options")
            }
            defer { heif_decoding_options_free(options) }
            var decoded: OpaquePointer?
            try check(heif_decode_image(handle.handle, &decoded, heif_colorspace_RGB,
                                        alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, options))
            guard let decoded else { throw ImagingError.corrupt(file: name, format: format, reason: "no image decoded") }
            let image = HEIFImage(decoded)
            let w = Int(heif_image_get_width(image.image, heif_channel_interleaved))
            let h = Int(heif_image_get_height(image.image, heif_channel_interleaved))
            var stride: Int32 = 0
            guard w == width, h == height, let plane = heif_image_get_plane_readonly(image.image, heif_channel_interleaved, &stride) else {
                throw ImagingError.corrupt(file: name, format: format,
                                           reason: "decoded \(w)×\(h), the header says \(width)×\(height)")
            }
            let channels = alpha ? 4 : 3
            let row = width * channels
            guard Int(stride) >= row else {
                throw ImagingError.corrupt(file: name, format: format, reason: "row stride \(stride) below \(row)")
            }
            var pixels = [UInt8](unsafeUninitializedCapacity: row * height) { out, count in
                for y in 0..<height {
                    (out.baseAddress! + y * row).update(from: plane + y * Int(stride), count: row)
                }
                count = row * height
            }
            if alpha {
                PNGDecoder.compositeInPlace(&pixels, onto: background,
                                            premultiplied: heif_image_handle_is_premultiplied_alpha(handle.handle) != 0)
            }
            let orientation = BMFF.primaryOrientation(input)
            return CodecOutput(image: Image(width: width, height: height, pixels: pixels), orientation: orientation,
                               alreadyOriented: true)
        }
    }
}

/// The ISO base media file format boxes segd reads itself: the ftyp brands (to tell HEIC
/// from AVIF from an MP4) and the primary item's irot/imir. Every read is bounds-checked;
/// a malformed structure means "no answer", and libheif reports what is wrong with it.
enum BMFF {
    static let heicBrands: Set<String> = ["heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs"]
    static let avifBrands: Set<String> = ["avif", "avis"]

    /// HEIC or AVIF from the ftyp box at the start of the file; nil for anything else
    /// (an MP4 or QuickTime file has an ftyp too, with brands of its own).
    static func imageFormat(_ b: [UInt8]) -> ImageFormat? {
        guard b.count >= 16, String(decoding: b[4..<8], as: UTF8.self) == "ftyp" else { return nil }
        let size = Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
        guard size >= 16, size <= b.count else { return nil }
        // Major brand at 8, minor version at 12, compatible brands from 16.
        var brands = [String(decoding: b[8..<12], as: UTF8.self)]
        for at in stride(from: 16, to: size - 3, by: 4) { brands.append(String(decoding: b[at..<(at + 4)], as: UTF8.self)) }
        // The major brand decides when it is one of ours; "mif1"/"msf1" files say the
        // codec among their compatible brands.
        if avifBrands.contains(brands[0]) { return .avif }
        if heicBrands.contains(brands[0]) { return .heic }
        if brands.contains(where: avifBrands.contains) { return .avif }
        if brands.contains(where: heicBrands.contains) { return .heic }
        return nil
    }

    /// A box: its type and the range of its payload.
    struct Box {
        let type: String
        let payload: Range<Int>
    }

    /// The boxes in `range`, in order; stops at the first that does not fit.
    static func boxes(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [Box] {
        var out: [Box] = []
        var at = range.lowerBound
        while at + 8 <= range.upperBound {
            var size = Int(u32(b, at)), header = 8
            if size == 1 {
                guard at + 16 <= range.upperBound else { break }
                let large = UInt64(u32(b, at + 8)) << 32 | UInt64(u32(b, at + 12))
                guard large <= UInt64(range.upperBound - at) else { break }
                size = Int(large)
                header = 16
            } else if size == 0 {
                size = range.upperBound - at
            }
            guard size >= header, size <= range.upperBound - at else { break }
            out.append(Box(type: String(decoding: UnsafeBufferPointer(rebasing: b[(at + 4)..<(at + 8)]), as: UTF8.self),
                           payload: (at + header)..<(at + size)))
            at += size
        }
        return out
    }

    static func u32(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    static func u16(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> Int { Int(b[at]) << 8 | Int(b[at + 1]) }

    /// The primary item's id, from pitm; nil when missing or malformed.
    static func primaryItem(_ b: UnsafeBufferPointer<UInt8>, _ metaChildren: [Box]) -> Int? {
        guard let pitm = metaChildren.first(where: { $0.type == "pitm" }), pitm.payload.count >= 6 else { return nil }
        let p = pitm.payload.lowerBound
        if b[p] == 0 { return u16(b, p + 4) }
        return pitm.payload.count >= 8 ? Int(u32(b, p + 4)) : nil
    }

    /// The meta box's children; nil when the file has none.
    static func metaChildren(_ b: UnsafeBufferPointer<UInt8>) -> [Box]? {
        guard let meta = boxes(b, 0..<b.count).first(where: { $0.type == "meta" }), meta.payload.count >= 4 else { return nil }
        return boxes(b, (meta.payload.lowerBound + 4)..<meta.payload.upperBound)  // full box: skip version+flags
    }

    enum Canvas: Equatable {
        /// A grid or overlay: libheif allocates this output canvas, which no ispe bounds.
        case derived(type: String, width: Int, height: Int)
        /// A grid or overlay whose size cannot be read.
        case unreadable(type: String)
    }

    /// The output canvases libheif may allocate for derived images: every grid ('grid')
    /// and overlay ('iovl') item in the file, not only the primary one (an alpha or depth
    /// image of the primary can be a derived item too, and is decoded with it). They
    /// declare their size in their item data, which no ispe bounds: a 1 KB overlay
    /// declaring a 33971 × 51280 canvas made libheif 1.15 allocate over 10 GB, and one as
    /// the primary's alpha did the same (both found by fuzz-heif). Empty for files of
    /// coded images only.
    static func derivedCanvases(_ b: UnsafeBufferPointer<UInt8>) -> [Canvas] {
        guard let children = metaChildren(b),
              let iinf = children.first(where: { $0.type == "iinf" }), iinf.payload.count >= 6 else { return [] }
        // iinf: full box, entry count (u16 for version 0, u32 after), then infe boxes.
        let entriesStart = iinf.payload.lowerBound + 4 + (b[iinf.payload.lowerBound] == 0 ? 2 : 4)
        guard entriesStart <= iinf.payload.upperBound else { return [] }
        var out: [Canvas] = []
        for infe in boxes(b, entriesStart..<iinf.payload.upperBound) where infe.type == "infe" {
            let p = infe.payload.lowerBound, version = infe.payload.isEmpty ? 0 : b[p]
            guard version >= 2 else { continue }  // versions 0/1 carry no item type
            let idSize = version == 2 ? 2 : 4
            guard infe.payload.count >= 4 + idSize + 2 + 4 else { continue }
            let id = idSize == 2 ? u16(b, p + 4) : Int(u32(b, p + 4))
            let typeAt = p + 4 + idSize + 2
            let type = String(decoding: UnsafeBufferPointer(rebasing: b[typeAt..<(typeAt + 4)]), as: UTF8.self)
            guard type == "grid" || type == "iovl" else { continue }
            out.append(canvas(b, children, item: id, type: type))
        }
        return out
    }

    /// A grid's or overlay's declared output size. grid: version, flags, rows − 1,
    /// columns − 1, then the size; iovl: version, flags, four 16-bit fill values, then the
    /// size. Flags bit 0: 32-bit sizes instead of 16-bit.
    static func canvas(_ b: UnsafeBufferPointer<UInt8>, _ children: [Box], item: Int, type: String) -> Canvas {
        guard let data = itemData(b, children, item: item) else { return .unreadable(type: type) }
        let sizeAt = type == "grid" ? 4 : 10
        guard data.count >= sizeAt + 4 else { return .unreadable(type: type) }
        let wide = b[data.lowerBound + 1] & 1 == 1
        guard !wide || data.count >= sizeAt + 8 else { return .unreadable(type: type) }
        let at = data.lowerBound + sizeAt
        let (w, h) = wide ? (Int(u32(b, at)), Int(u32(b, at + 4))) : (u16(b, at), u16(b, at + 2))
        return .derived(type: type, width: w, height: h)
    }

    /// The bytes of an item, as iloc places them (in the file or in idat); nil when the
    /// item has more than one extent or the location cannot be read.
    static func itemData(_ b: UnsafeBufferPointer<UInt8>, _ children: [Box], item: Int) -> Range<Int>? {
        guard let iloc = children.first(where: { $0.type == "iloc" }), iloc.payload.count >= 8 else { return nil }
        let end = iloc.payload.upperBound
        var at = iloc.payload.lowerBound
        let version = b[at]
        at += 4
        let offsetSize = Int(b[at] >> 4), lengthSize = Int(b[at] & 15)
        let baseSize = Int(b[at + 1] >> 4), indexSize = version >= 1 ? Int(b[at + 1] & 15) : 0
        at += 2
        func read(_ size: Int) -> Int? {
            guard [0, 4, 8].contains(size), at + size <= end else { return nil }
            var v = 0
            for i in 0..<size { v = v << 8 | Int(b[at + i]) }
            at += size
            return v < 0 ? nil : v  // an 8-byte value over Int.max
        }
        guard let count = version < 2 ? (at + 2 <= end ? { let v = u16(b, at); at += 2; return v }() : nil) : read(4) else { return nil }
        for _ in 0..<count {
            guard let id = version < 2 ? (at + 2 <= end ? { let v = u16(b, at); at += 2; return v }() : nil) : read(4) else { return nil }
            var method = 0
            if version >= 1 {
                guard at + 2 <= end else { return nil }
                method = u16(b, at) & 15
                at += 2
            }
            guard at + 2 <= end else { return nil }
            at += 2  // data_reference_index
            guard let base = read(baseSize), at + 2 <= end else { return nil }
            let extents = u16(b, at)
            at += 2
            var ranges: [(Int, Int)] = []
            for _ in 0..<extents {
                if indexSize > 0 { guard read(indexSize) != nil else { return nil } }
                guard let offset = read(offsetSize), let length = read(lengthSize) else { return nil }
                ranges.append((offset, length))
            }
            guard id == item else { continue }
            guard ranges.count == 1, method == 0 || method == 1 else { return nil }
            var start = base.addingReportingOverflow(ranges[0].0).partialValue
            if method == 1 {
                guard let idat = children.first(where: { $0.type == "idat" }) else { return nil }
                start = idat.payload.lowerBound.addingReportingOverflow(start).partialValue
            }
            let length = ranges[0].1
            guard start >= 0, length > 0, start <= b.count, length <= b.count - start else { return nil }
            return start..<(start + length)
        }
        return nil
    }

    /// The orientation that the primary item's irot and imir properties describe, applied
    /// in their ipma order, as an EXIF value; nil when it has neither (or the boxes are
    /// malformed).
    static func primaryOrientation(_ b: UnsafeBufferPointer<UInt8>) -> Orientation? {
        guard let children = metaChildren(b), let primary = primaryItem(b, children),
              let iprp = children.first(where: { $0.type == "iprp" }) else { return nil }
        let iprpChildren = boxes(b, iprp.payload)
        guard let ipco = iprpChildren.first(where: { $0.type == "ipco" }) else { return nil }
        let properties = boxes(b, ipco.payload)
        var transforms: [Orientation] = []
        for ipma in iprpChildren where ipma.type == "ipma" {
            let p = ipma.payload
            guard p.count >= 8 else { return nil }
            let version = b[p.lowerBound], wideIndex = b[p.lowerBound + 3] & 1 == 1
            var at = p.lowerBound + 4
            let entries = Int(u32(b, at))
            at += 4
            for _ in 0..<entries {
                let idSize = version < 1 ? 2 : 4
                guard at + idSize + 1 <= p.upperBound else { return nil }
                let item = idSize == 2 ? u16(b, at) : Int(u32(b, at))
                at += idSize
                let count = Int(b[at])
                at += 1
                let indexSize = wideIndex ? 2 : 1
                guard at + count * indexSize <= p.upperBound else { return nil }
                for _ in 0..<count {
                    let index = wideIndex ? u16(b, at) & 0x7FFF : Int(b[at] & 0x7F)
                    at += indexSize
                    guard item == primary, index >= 1, index <= properties.count else { continue }
                    let property = properties[index - 1]
                    guard !property.payload.isEmpty else { continue }
                    let value = b[property.payload.lowerBound]
                    switch property.type {
                    // irot: angle × 90° anti-clockwise.
                    case "irot": transforms.append([.identity, .rotate270, .rotate180, .rotate90][Int(value & 3)])
                    // imir axis 0: about the vertical axis (left↔right); 1: about the horizontal.
                    case "imir": transforms.append(value & 1 == 0 ? .mirrorHorizontal : .mirrorVertical)
                    default: break
                    }
                }
            }
        }
        guard !transforms.isEmpty else { return nil }
        return transforms.dropFirst().reduce(transforms[0]) { $0.then($1) }
    }
}

extension Orientation {
    /// The orientation that undoes this one.
    var inverse: Orientation { Orientation.allCases.first { self.then($0) == .identity }! }

    /// The single orientation equal to applying `self`, then `next`: found by applying
    /// both to a 3×2 image whose pixels all differ (8 candidates, microseconds), so it
    /// cannot disagree with `Image.applying`.
    func then(_ next: Orientation) -> Orientation {
        let probe = Image(width: 3, height: 2, pixels: (0..<18).map { UInt8($0) })
        let target = probe.applying(self).applying(next)
        return Orientation.allCases.first { probe.applying($0) == target }!
    }
}
