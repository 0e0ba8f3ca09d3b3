import MaskRCNN

// COCO run-length encoding, byte for byte as pycocotools' common/maskApi.c (2.0.11):
// `rleEncode`, `rleDecode`, `rleArea`, `rleToBbox`, `rleToString`, `rleFrString`.
//
// Layout: an h×w mask is read in column-major order (x outer, y inner: index x*h + y, as
// pycocotools reads a Fortran-ordered numpy array), and stored as alternating run lengths
// of 0s and 1s, always starting with a (possibly empty) run of 0s. The runs sum to h*w.
// An image of zero pixels has the single run [0], as in maskApi.c.

/// A mask as COCO run lengths (pycocotools' `RLE` struct: h, w, cnts).
public struct RLE: Sendable, Equatable, Hashable {
    public let height: Int
    public let width: Int
    /// Alternating run lengths, first of 0s; sum == height*width.
    public let counts: [UInt32]

    /// Validating initializer: the runs must add up to height×width.
    public init(height: Int, width: Int, counts: [UInt32]) throws {
        guard height >= 0, width >= 0 else {
            throw ResultsError.invalidRLECounts(reason: "negative size", height: height, width: width)
        }
        let total = counts.reduce(0) { $0 + Int($1) }
        guard total == height * width else {
            throw ResultsError.invalidRLECounts(
                reason: "runs add up to \(total) pixels, expected \(height * width)",
                height: height, width: width)
        }
        self.init(unchecked: height, width, counts)
    }

    init(unchecked height: Int, _ width: Int, _ counts: [UInt32]) {
        self.height = height
        self.width = width
        self.counts = counts
    }

    /// Encodes an instance mask over its full image (pycocotools' `encode`).
    public init(_ mask: InstanceMask) { self = rleEncode(mask) }

    /// Parses pycocotools' compressed string (`rleFrString`).
    public init(string: String, height: Int, width: Int) throws {
        self = try rleFromString(string, height: height, width: width)
    }

    /// The compressed string form (`rleToString`), as in COCO JSON `"counts"`.
    public var string: String { rleToString(self) }
    /// Number of pixels set (`rleArea`).
    public var area: Int { rleArea(self) }
    /// Tight bounding box of the set pixels (`rleToBbox`); all zero for an empty mask.
    public var bbox: PixelBox { rleToBbox(self) }
}

/// An integer box in pixels, x and y of the top-left pixel, width and height in pixels;
/// pycocotools' `toBbox` returns the same numbers as floats.
public struct PixelBox: Sendable, Equatable, Hashable {
    public var x: Int
    public var y: Int
    public var width: Int
    public var height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    /// [x, y, w, h], as pycocotools' `toBbox` and COCO's `bbox`.
    public var xywh: [Double] { [Double(x), Double(y), Double(width), Double(height)] }
}

/// Accumulates column-major runs exactly as maskApi.c's `rleEncode` loop does: a new run
/// starts whenever the value changes, the first run counts 0s, the last run is always
/// emitted (so an all-zero mask is one run, an all-one mask is [0, h*w]).
struct RunAccumulator {
    private(set) var counts: [UInt32] = []
    private var value: Bool = false
    private var run: Int = 0

    init(reservingCapacity n: Int = 0) { counts.reserveCapacity(n) }

    @inline(__always)
    mutating func append(_ bit: Bool, count n: Int) {
        guard n > 0 else { return }
        if bit != value {
            counts.append(UInt32(run))
            run = 0
            value = bit
        }
        run += n
    }

    mutating func finish() -> [UInt32] {
        counts.append(UInt32(run))
        return counts
    }
}

/// pycocotools' `rleEncode` of an `InstanceMask`, computed from the stored region alone:
/// the columns left and right of the region and the rows above and below it are runs of 0s
/// appended in O(1), so the cost is O(region area + image width), not O(image area).
/// A pixel counts as set when it is non-zero.
public func rleEncode(_ mask: InstanceMask) -> RLE {
    let h = mask.imageHeight, w = mask.imageWidth
    precondition(h * w <= Int(UInt32.max), "rleEncode: image of \(w)×\(h) pixels exceeds COCO's 32-bit runs")
    var acc = RunAccumulator(reservingCapacity: 2 * mask.width + 2)
    // Columns 0..<x0, then y0 rows above the region in its first column: one run of 0s.
    acc.append(false, count: mask.x0 * h)
    let below = h - mask.y0 - mask.height
    mask.pixels.withUnsafeBufferPointer { px in
        for lx in 0..<mask.width {
            acc.append(false, count: mask.y0)
            var i = lx
            for _ in 0..<mask.height {
                acc.append(px[i] != 0, count: 1)
                i += mask.width
            }
            acc.append(false, count: below)
        }
    }
    acc.append(false, count: (w - mask.x0 - mask.width) * h)
    return RLE(unchecked: h, w, acc.finish())
}

/// pycocotools' `rleEncode` of a full-image mask stored row-major (index y*width + x).
public func rleEncode(rowMajor pixels: [UInt8], height: Int, width: Int) -> RLE {
    precondition(pixels.count == height * width, "rleEncode: pixels must be height×width")
    precondition(height * width <= Int(UInt32.max), "rleEncode: image exceeds COCO's 32-bit runs")
    var acc = RunAccumulator()
    pixels.withUnsafeBufferPointer { px in
        for x in 0..<width {
            var i = x
            for _ in 0..<height {
                acc.append(px[i] != 0, count: 1)
                i += width
            }
        }
    }
    return RLE(unchecked: height, width, acc.finish())
}

/// pycocotools' `rleDecode`, into a full-image mask stored row-major (index y*width + x),
/// values 0 or 1.
public func rleDecode(_ rle: RLE) -> [UInt8] {
    let h = rle.height, w = rle.width
    var out = [UInt8](repeating: 0, count: h * w)
    out.withUnsafeMutableBufferPointer { dst in
        var t = 0
        for (j, c) in rle.counts.enumerated() {
            let end = t + Int(c)
            if j & 1 == 1 {
                // A run of 1s from column-major index t to end-1: walk it column by column.
                var x = t / h, y = t % h
                var k = t
                while k < end {
                    let n = min(h - y, end - k)
                    var i = y * w + x
                    for _ in 0..<n {
                        dst[i] = 1
                        i += w
                    }
                    k += n
                    x += 1
                    y = 0
                }
            }
            t = end
        }
    }
    return out
}

/// Decodes into an `InstanceMask` whose region is the mask's tight bounding box (the whole
/// image stays described, only the box is stored). An empty mask gets an empty region.
public func rleDecodeInstanceMask(_ rle: RLE) -> InstanceMask {
    let box = rleToBbox(rle)
    let h = rle.height
    var pixels = [UInt8](repeating: 0, count: box.width * box.height)
    var t = 0
    for (j, c) in rle.counts.enumerated() {
        let end = t + Int(c)
        if j & 1 == 1 {
            for k in t..<end {
                let x = k / h - box.x, y = k % h - box.y
                pixels[y * box.width + x] = 1
            }
        }
        t = end
    }
    return InstanceMask(imageWidth: rle.width, imageHeight: rle.height, x0: box.x, y0: box.y,
                        width: box.width, height: box.height, pixels: pixels)
}

/// pycocotools' `rleArea`: the sum of the runs of 1s.
public func rleArea(_ rle: RLE) -> Int {
    var a = 0
    var j = 1
    while j < rle.counts.count {
        a += Int(rle.counts[j])
        j += 2
    }
    return a
}

/// pycocotools' `rleToBbox` (the 2.0.11 version, which skips empty runs of 1s). A run of 1s
/// that crosses a column boundary makes the box span the full height, exactly as in C.
/// A mask with no set pixels gives (0, 0, 0, 0); C returns garbage for the corner case of
/// runs of 1s that are all empty, which `rleEncode` never produces.
public func rleToBbox(_ rle: RLE) -> PixelBox {
    let h = rle.height, w = rle.width
    let m = (rle.counts.count / 2) * 2  // a trailing run of 0s does not matter
    var xs = w, ys = h, xe = 0, ye = 0
    var cc = 0
    var any = false
    for j in 0..<m {
        let start = cc
        cc += Int(rle.counts[j])
        if j % 2 == 0 || rle.counts[j] == 0 { continue }
        any = true
        let yStart = start % h, xStart = start / h
        let yEnd = (cc - 1) % h, xEnd = (cc - 1) / h
        xs = min(xs, xStart)
        xe = max(xe, xEnd)
        if xStart < xEnd {
            ys = 0
            ye = h - 1
        } else {
            ys = min(ys, yStart)
            ye = max(ye, yEnd)
        }
    }
    guard any else { return PixelBox(x: 0, y: 0, width: 0, height: 0) }
    return PixelBox(x: xs, y: ys, width: xe - xs + 1, height: ye - ys + 1)
}

/// pycocotools' `rleToString`: each count (from the fourth on, minus the count two before
/// it) is written as little-endian 5-bit groups of a two's-complement number; a group's
/// 0x20 bit says another follows, and the last group's 0x10 bit is the sign. Each group is
/// stored as the byte 48 + group, so the string is printable ASCII '0'...'o'.
public func rleToString(_ rle: RLE) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(rle.counts.count * 2)
    for i in rle.counts.indices {
        var x = Int(rle.counts[i])
        if i > 2 { x -= Int(rle.counts[i - 2]) }
        var more = true
        while more {
            var c = UInt8(truncatingIfNeeded: x & 0x1f)
            x >>= 5  // arithmetic shift, as C's `long >>=` on the compilers COCO targets
            more = (c & 0x10) != 0 ? x != -1 : x != 0
            if more { c |= 0x20 }
            bytes.append(c + 48)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// pycocotools' `rleFrString`, plus the checks C leaves out: every byte must be in
/// '0'...'o', the last value must be complete, every count must fit UInt32, and the counts
/// must add up to height×width.
public func rleFromString(_ string: String, height: Int, width: Int) throws -> RLE {
    var counts: [UInt32] = []
    var utf8 = Array(string.utf8)
    counts.reserveCapacity(utf8.count / 2)
    var p = 0
    let n = utf8.count
    try utf8.withUnsafeMutableBufferPointer { s in
        while p < n {
            var x = 0
            var k = 0
            var more = true
            let valueStart = p
            while more {
                guard p < n else {
                    throw ResultsError.invalidRLEString(reason: "value cut off at end of string", offset: valueStart)
                }
                let byte = s[p]
                guard byte >= 48, byte < 48 + 64 else {
                    throw ResultsError.invalidRLEString(
                        reason: "byte 0x\(String(byte, radix: 16)) outside '0'...'o'", offset: p)
                }
                guard k < 12 else {
                    throw ResultsError.invalidRLEString(reason: "value longer than 12 groups", offset: valueStart)
                }
                let c = Int(byte - 48)
                x |= (c & 0x1f) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if !more && (c & 0x10) != 0 { x |= -1 << (5 * k) }
            }
            if counts.count > 2 { x += Int(counts[counts.count - 2]) }
            guard x >= 0, x <= Int(UInt32.max) else {
                throw ResultsError.invalidRLEString(reason: "run length \(x) outside UInt32", offset: valueStart)
            }
            counts.append(UInt32(x))
        }
    }
    return try RLE(height: height, width: width, counts: counts)
}
