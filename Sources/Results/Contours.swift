import MaskRCNN

// Outer contours of an instance mask as COCO polygons.
//
// The boundary is traced along pixel edges ("crack following"), not through pixel
// centres: pixel (x, y) is the square [x, x+1]×[y, y+1] and every vertex is a pixel
// corner. Such a polygon rasterises back to exactly the pixels it encloses under
// pycocotools' `frPyObjects` (checked by hand on L-shapes), unlike OpenCV-style contours
// through pixel centres, which lose half a pixel all round.
//
// Every boundary edge is directed with the mask on its right (clockwise in image
// coordinates, y down): top sides run east, right sides south, bottom sides west, left
// sides north. Each vertex has at most two outgoing edges; two only at a saddle (set pixels
// touching diagonally), where the walk turns right, so it stays on the pixel it came along
// and diagonal neighbours become separate polygons (4-connectivity). Outer boundaries then
// have a positive shoelace area, holes a negative one; COCO polygons cannot express holes
// (pycocotools unions the polygons of an instance), so holes are dropped.

/// Outer boundaries of the 4-connected components of `mask`, each a closed polygon as COCO
/// writes it: [x1, y1, x2, y2, ...] in image pixels, corners only, clockwise in image
/// coordinates, starting at the top-left corner of the component's first pixel in row-major
/// order. Components come in that order too.
public func outerContours(_ mask: InstanceMask) -> [[Float]] {
    let w = mask.width, h = mask.height
    guard w > 0, h > 0 else { return [] }
    let vw = w + 1  // vertex grid (w+1)×(h+1), index vy*vw + vx
    let east: UInt8 = 1, south: UInt8 = 2, west: UInt8 = 4, north: UInt8 = 8
    var out = [UInt8](repeating: 0, count: vw * (h + 1))
    mask.pixels.withUnsafeBufferPointer { px in
        @inline(__always) func set(_ x: Int, _ y: Int) -> Bool {
            x >= 0 && y >= 0 && x < w && y < h && px[y * w + x] != 0
        }
        for y in 0..<h {
            for x in 0..<w where px[y * w + x] != 0 {
                if !set(x, y - 1) { out[y * vw + x] |= east }             // top: (x,y)→(x+1,y)
                if !set(x + 1, y) { out[y * vw + x + 1] |= south }        // right: (x+1,y)→(x+1,y+1)
                if !set(x, y + 1) { out[(y + 1) * vw + x + 1] |= west }   // bottom: (x+1,y+1)→(x,y+1)
                if !set(x - 1, y) { out[(y + 1) * vw + x] |= north }      // left: (x,y+1)→(x,y)
            }
        }
    }
    // Direction d as a bit (1 << d) and a vertex step; d+1 (mod 4) is a right turn.
    let step = [1, vw, -1, -vw]
    var polygons: [[Float]] = []
    for start in 0..<out.count where out[start] & east != 0 {
        // Every loop has a top edge in its topmost row; the first unused one in row-major
        // order starts it, and it always sits at a corner of the loop.
        // The start edge stays available until the walk comes back to take it, so the
        // saddle rule also decides the closing turn.
        var corners: [Int] = [start]
        var v = start + step[0]
        var d = 0
        while true {
            let avail = out[v]
            let right = (d + 1) & 3, left = (d + 3) & 3
            let next: Int
            if avail & (1 << right) != 0 {
                next = right
            } else if avail & (1 << d) != 0 {
                next = d
            } else if avail & (1 << left) != 0 {
                next = left
            } else {
                preconditionFailure("outerContours: boundary walk lost at vertex \(v)")
            }
            if v == start && next == 0 { break }
            if next != d { corners.append(v) }
            out[v] &= ~(UInt8(1) << next)
            d = next
            v += step[d]
        }
        out[start] &= ~east
        // Shoelace in image coordinates: > 0 for an outer boundary, < 0 for a hole.
        var twiceArea = 0
        for i in corners.indices {
            let a = corners[i], b = corners[(i + 1) % corners.count]
            twiceArea += (a % vw) * (b / vw) - (b % vw) * (a / vw)
        }
        guard twiceArea > 0 else { continue }
        var poly: [Float] = []
        poly.reserveCapacity(2 * corners.count)
        for c in corners {
            poly.append(Float(mask.x0 + c % vw))
            poly.append(Float(mask.y0 + c / vw))
        }
        polygons.append(poly)
    }
    return polygons
}
