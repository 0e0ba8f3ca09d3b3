// Small JPEGs of the annotated images for the status page: made on a low-priority queue of
// their own the first time the page asks (a decode, an area-average downscale, an encode),
// then kept in memory for the most recent jobs. Nothing here runs on the pipeline's queues.
import Dispatch
import Foundation
import Imaging

final class Thumbnails: @unchecked Sendable {
    static let maxSide = 240
    private let queue = DispatchQueue(label: "segd.http.thumbnails", qos: .background)
    private var cache: [String: [UInt8]] = [:]
    private var order: [String] = []
    private let capacity: Int
    private let decoder = ImageDecoder(options: DecodeOptions(limits: DecodeLimits(maxPixels: 100_000_000, maxPages: 1)))

    init(capacity: Int = 64) { self.capacity = capacity }

    /// JPEG bytes of a thumbnail of the image at `path` (already checked to be an output).
    func thumbnail(of path: String, key: String) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8], any Error>) in
            queue.async { [self] in
                if let hit = cache[key] { return c.resume(returning: hit) }
                c.resume(with: Result {
                    let image = try decoder.decode(contentsOf: path).image
                    let jpeg = try Self.downscale(image, maxSide: Self.maxSide).encoded(as: .jpeg, jpegQuality: 80)
                    cache[key] = jpeg
                    order.append(key)
                    if order.count > capacity { cache[order.removeFirst()] = nil }
                    return jpeg
                })
            }
        }
    }

    /// Area average onto at most maxSide × maxSide (aspect kept; never enlarged).
    static func downscale(_ im: Imaging.Image, maxSide: Int) -> Imaging.Image {
        let scale = min(1, Double(maxSide) / Double(max(im.width, im.height)))
        guard scale < 1 else { return im }
        let w = max(1, Int((Double(im.width) * scale).rounded())), h = max(1, Int((Double(im.height) * scale).rounded()))
        var out = [UInt8](repeating: 0, count: w * h * 3)
        im.pixels.withUnsafeBufferPointer { src in
            for y in 0..<h {
                let y0 = y * im.height / h, y1 = max(y0 + 1, (y + 1) * im.height / h)
                for x in 0..<w {
                    let x0 = x * im.width / w, x1 = max(x0 + 1, (x + 1) * im.width / w)
                    var sum = (0, 0, 0)
                    for yy in y0..<y1 {
                        var i = (yy * im.width + x0) * 3
                        for _ in x0..<x1 {
                            sum.0 += Int(src[i]); sum.1 += Int(src[i + 1]); sum.2 += Int(src[i + 2])
                            i += 3
                        }
                    }
                    let n = (y1 - y0) * (x1 - x0), o = (y * w + x) * 3
                    out[o] = UInt8(sum.0 / n); out[o + 1] = UInt8(sum.1 / n); out[o + 2] = UInt8(sum.2 / n)
                }
            }
        }
        return Imaging.Image(width: w, height: h, pixels: out)
    }
}
