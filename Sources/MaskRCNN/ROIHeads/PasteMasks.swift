// torchvision's paste_masks_in_image for one detection: the M×M probabilities are padded
// by one zero cell (M+2 square), the box is expanded by (M+2)/M about its centre and
// truncated to integers, the padded grid is resized bilinearly (align_corners=False) to
// the box's integer size, and the part inside the image is kept. Thresholding happens
// here (probability ≥ threshold) so only the binary box region is ever stored.
import Tensor

public enum MaskPaste {
    public static func paste(probabilities: UnsafeBufferPointer<Float>, maskSize m: Int, box: (Float, Float, Float, Float),
                             imageHeight: Int, imageWidth: Int, threshold: Float) -> InstanceMask {
        let padded = m + 2
        var grid = [Float](repeating: 0, count: padded * padded)
        for y in 0..<m { for x in 0..<m { grid[(y + 1) * padded + x + 1] = probabilities[y * m + x] } }
        let scale = Float(Double(m + 2) / Double(m))
        var wHalf = (box.2 - box.0) * 0.5, hHalf = (box.3 - box.1) * 0.5
        let xc = (box.2 + box.0) * 0.5, yc = (box.3 + box.1) * 0.5
        wHalf *= scale
        hHalf *= scale
        // .to(torch.int64) truncates toward zero.
        let b0 = Int(xc - wHalf), b1 = Int(yc - hHalf), b2 = Int(xc + wHalf), b3 = Int(yc + hHalf)
        let w = max(b2 - b0 + 1, 1), h = max(b3 - b1 + 1, 1)
        let x0 = max(b0, 0), x1 = min(b2 + 1, imageWidth)
        let y0 = max(b1, 0), y1 = min(b3 + 1, imageHeight)
        guard x1 > x0, y1 > y0 else {
            return InstanceMask(imageWidth: imageWidth, imageHeight: imageHeight, x0: 0, y0: 0, width: 0, height: 0, pixels: [])
        }
        var resized = [Float](repeating: 0, count: w * h)
        grid.withUnsafeBufferPointer { g in
            resized.withUnsafeMutableBufferPointer { r in
                Resize.bilinear(g, channels: 1, height: padded, width: padded, outHeight: h, outWidth: w, into: r)
            }
        }
        let rw = x1 - x0, rh = y1 - y0
        var pixels = [UInt8](repeating: 0, count: rw * rh)
        for y in 0..<rh {
            let row = (y + y0 - b1) * w + (x0 - b0)
            for x in 0..<rw where resized[row + x] >= threshold { pixels[y * rw + x] = 1 }
        }
        return InstanceMask(imageWidth: imageWidth, imageHeight: imageHeight, x0: x0, y0: y0, width: rw, height: rh, pixels: pixels)
    }
}

extension Detections {
    /// Instance i's binary mask at `threshold`, pasted as torchvision does.
    public func mask(_ i: Int, threshold: Float = 0.5) -> InstanceMask {
        let plane = maskSize * maskSize
        return maskProbabilities.withUnsafeBufferPointer { p in
            MaskPaste.paste(probabilities: UnsafeBufferPointer(rebasing: p[(i * plane)..<((i + 1) * plane)]), maskSize: maskSize,
                            box: box(i), imageHeight: imageHeight, imageWidth: imageWidth, threshold: threshold)
        }
    }
}
