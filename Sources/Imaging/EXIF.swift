// The one EXIF field segd needs: Orientation (tag 0x0112 in IFD0). EXIF is a TIFF
// structure in either byte order ("II" little-endian from most cameras, "MM" big-endian
// from others); it comes from untrusted files, so every offset is bounds-checked and a
// malformed block means "no orientation", never an error: the pixels are still fine.

enum EXIF {
    /// Orientation from a TIFF block (starting at "II*\0" or "MM\0*"); nil when absent,
    /// malformed, or outside 1...8.
    static func orientation(tiff: ArraySlice<UInt8>) -> Orientation? {
        let base = tiff.startIndex
        let count = tiff.count
        guard count >= 8 else { return nil }
        let bigEndian: Bool
        switch (tiff[base], tiff[base + 1]) {
        case (0x49, 0x49): bigEndian = false
        case (0x4D, 0x4D): bigEndian = true
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= count else { return nil }
            let a = Int(tiff[base + at]), b = Int(tiff[base + at + 1])
            return bigEndian ? a << 8 | b : b << 8 | a
        }
        func u32(_ at: Int) -> Int? {
            guard let hi = u16(bigEndian ? at : at + 2), let lo = u16(bigEndian ? at + 2 : at) else { return nil }
            return hi << 16 | lo
        }
        guard u16(2) == 42, let ifd0 = u32(4), let entries = u16(ifd0) else { return nil }
        for i in 0..<entries {
            let entry = ifd0 + 2 + 12 * i
            guard let tag = u16(entry), let type = u16(entry + 2), let n = u32(entry + 4) else { return nil }
            guard tag == 0x0112 else { continue }
            // The value sits inline in the entry's 4-byte value field. SHORT (3) is what the
            // standard says; LONG (4) appears in files from a few writers and costs nothing.
            let value: Int?
            switch type {
            case 3 where n == 1: value = u16(entry + 8)
            case 4 where n == 1: value = u32(entry + 8)
            default: value = nil
            }
            return value.flatMap { Orientation(rawValue: $0) }
        }
        return nil
    }
}
