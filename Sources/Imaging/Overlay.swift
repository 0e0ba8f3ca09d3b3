// The annotated image, after detectron2's Visualizer.draw_instance_predictions:
// translucent mask fills in a per-class colour (large instances first, so small ones stay
// visible on top), a darker contour along each mask's edge, the box outline, and a label
// on a filled tag of the class colour. Labels are drawn last so no mask covers them.
//
// Deliberate differences from detectron2: colours come from the class, not at random per
// call, so the same class looks the same in every output; and the label sits on an opaque
// tag above the box with black or white text, whichever contrasts more, because labels
// must stay readable on any photo.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A binary mask over a region of the image: `pixels` is width×height, row-major, and
/// any non-zero value is inside. Outside the region the mask is empty.
public struct OverlayMask: Sendable, Equatable {
    public var x0: Int
    public var y0: Int
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(x0: Int, y0: Int, width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height,
                     "OverlayMask: \(pixels.count) pixels for a \(width)×\(height) region")
        self.x0 = x0
        self.y0 = y0
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Whether image pixel (x, y) is inside the mask.
    @inlinable public func contains(_ x: Int, _ y: Int) -> Bool {
        let lx = x - x0, ly = y - y0
        return lx >= 0 && ly >= 0 && lx < width && ly < height && pixels[ly * width + lx] != 0
    }

    public var area: Int { pixels.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
}

/// A box in image pixel coordinates (x1, y1) top-left, (x2, y2) bottom-right, exclusive,
/// as torchvision returns them.
public struct OverlayBox: Sendable, Equatable {
    public var x1: Float
    public var y1: Float
    public var x2: Float
    public var y2: Float

    public init(x1: Float, y1: Float, x2: Float, y2: Float) {
        self.x1 = x1
        self.y1 = y1
        self.x2 = x2
        self.y2 = y2
    }
}

/// One instance to draw; independent of the model's types (the Writer adapts Detections).
public struct OverlayInstance: Sendable, Equatable {
    public var mask: OverlayMask?
    public var box: OverlayBox
    /// Drawn as given, e.g. "circle 97%"; empty for no label.
    public var label: String
    /// Picks the colour: `Palette.color(forClass:)`.
    public var classIndex: Int

    public init(mask: OverlayMask?, box: OverlayBox, label: String, classIndex: Int) {
        self.mask = mask
        self.box = box
        self.label = label
        self.classIndex = classIndex
    }
}

public struct OverlayStyle: Sendable, Equatable {
    /// Opacity of the mask fill (detectron2: 0.5).
    public var maskAlpha: Float
    public var drawContours: Bool
    public var drawBoxes: Bool
    public var drawLabels: Bool
    /// Label text height in px; nil: max(10, min(width, height) / 50).
    public var fontPixelSize: Int?

    public init(maskAlpha: Float = 0.5, drawContours: Bool = true, drawBoxes: Bool = true,
                drawLabels: Bool = true, fontPixelSize: Int? = nil) {
        self.maskAlpha = maskAlpha
        self.drawContours = drawContours
        self.drawBoxes = drawBoxes
        self.drawLabels = drawLabels
        self.fontPixelSize = fontPixelSize
    }
}

/// Class colours: detectron2's `_COLORS` (utils/colormap.py), indexed by class.
public enum Palette {
    public static let colors: [RGB] = {
        let unit: [Float] = [
            0.000, 0.447, 0.741, 0.850, 0.325, 0.098, 0.929, 0.694, 0.125, 0.494, 0.184, 0.556,
            0.466, 0.674, 0.188, 0.301, 0.745, 0.933, 0.635, 0.078, 0.184, 0.300, 0.300, 0.300,
            0.600, 0.600, 0.600, 1.000, 0.000, 0.000, 1.000, 0.500, 0.000, 0.749, 0.749, 0.000,
            0.000, 1.000, 0.000, 0.000, 0.000, 1.000, 0.667, 0.000, 1.000, 0.333, 0.333, 0.000,
            0.333, 0.667, 0.000, 0.333, 1.000, 0.000, 0.667, 0.333, 0.000, 0.667, 0.667, 0.000,
            0.667, 1.000, 0.000, 1.000, 0.333, 0.000, 1.000, 0.667, 0.000, 1.000, 1.000, 0.000,
            0.000, 0.333, 0.500, 0.000, 0.667, 0.500, 0.000, 1.000, 0.500, 0.333, 0.000, 0.500,
            0.333, 0.333, 0.500, 0.333, 0.667, 0.500, 0.333, 1.000, 0.500, 0.667, 0.000, 0.500,
            0.667, 0.333, 0.500, 0.667, 0.667, 0.500, 0.667, 1.000, 0.500, 1.000, 0.000, 0.500,
            1.000, 0.333, 0.500, 1.000, 0.667, 0.500, 1.000, 1.000, 0.500, 0.000, 0.333, 1.000,
            0.000, 0.667, 1.000, 0.000, 1.000, 1.000, 0.333, 0.000, 1.000, 0.333, 0.333, 1.000,
            0.333, 0.667, 1.000, 0.333, 1.000, 1.000, 0.667, 0.000, 1.000, 0.667, 0.333, 1.000,
            0.667, 0.667, 1.000, 0.667, 1.000, 1.000, 1.000, 0.000, 1.000, 1.000, 0.333, 1.000,
            1.000, 0.667, 1.000, 0.333, 0.000, 0.000, 0.500, 0.000, 0.000, 0.667, 0.000, 0.000,
            0.833, 0.000, 0.000, 1.000, 0.000, 0.000, 0.000, 0.167, 0.000, 0.000, 0.333, 0.000,
            0.000, 0.500, 0.000, 0.000, 0.667, 0.000, 0.000, 0.833, 0.000, 0.000, 1.000, 0.000,
            0.000, 0.000, 0.167, 0.000, 0.000, 0.333, 0.000, 0.000, 0.500, 0.000, 0.000, 0.667,
            0.000, 0.000, 0.833, 0.000, 0.000, 1.000, 0.000, 0.000, 0.000, 0.143, 0.143, 0.143,
            0.857, 0.857, 0.857, 1.000, 1.000, 1.000,
        ]
        func byte(_ v: Float) -> UInt8 { UInt8((v * 255).rounded()) }
        var colors: [RGB] = []
        for i in stride(from: 0, to: unit.count, by: 3) {
            colors.append(RGB(byte(unit[i]), byte(unit[i + 1]), byte(unit[i + 2])))
        }
        return colors
    }()

    /// The colour of class `index` (any integer; the palette repeats after 74 classes).
    public static func color(forClass index: Int) -> RGB {
        let n = colors.count
        return colors[((index % n) + n) % n]
    }
}

extension RGB {
    /// detectron2's `_change_color_brightness`: scale HLS lightness by (1 + factor),
    /// factor in -1...1; keeps the hue, unlike mixing with black or white.
    public func adjustingBrightness(_ factor: Float) -> RGB {
        let r = Float(self.r) / 255, g = Float(self.g) / 255, b = Float(self.b) / 255
        let maxc = max(r, g, b), minc = min(r, g, b)
        var l = (maxc + minc) / 2
        var h: Float = 0, s: Float = 0
        if maxc != minc {
            let d = maxc - minc
            s = l <= 0.5 ? d / (maxc + minc) : d / (2 - maxc - minc)
            let rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d
            if r == maxc { h = bc - gc } else if g == maxc { h = 2 + rc - bc } else { h = 4 + gc - rc }
            h = (h / 6).truncatingRemainder(dividingBy: 1)
            if h < 0 { h += 1 }
        }
        l = min(max(l + factor * l, 0), 1)
        func channel(_ m1: Float, _ m2: Float, _ hue: Float) -> Float {
            var hue = hue.truncatingRemainder(dividingBy: 1)
            if hue < 0 { hue += 1 }
            if hue < 1 / 6 { return m1 + (m2 - m1) * hue * 6 }
            if hue < 0.5 { return m2 }
            if hue < 2 / 3 { return m1 + (m2 - m1) * (2 / 3 - hue) * 6 }
            return m1
        }
        let out: (Float, Float, Float)
        if s == 0 {
            out = (l, l, l)
        } else {
            let m2 = l <= 0.5 ? l * (1 + s) : l + s - l * s
            let m1 = 2 * l - m2
            out = (channel(m1, m2, h + 1 / 3), channel(m1, m2, h), channel(m1, m2, h - 1 / 3))
        }
        func byte(_ v: Float) -> UInt8 { UInt8(min(max(v * 255, 0), 255).rounded()) }
        return RGB(byte(out.0), byte(out.1), byte(out.2))
    }

    /// WCAG relative luminance, 0 (black) ... 1 (white).
    var relativeLuminance: Float {
        func linear(_ c: UInt8) -> Float {
            let v = Float(c) / 255
            return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4)
        }
        return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    }

    /// Black or white, whichever has the higher WCAG contrast ratio against this colour.
    var contrastingTextColor: RGB {
        let l = relativeLuminance
        return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? .black : .white
    }
}

extension Image {
    /// The label text size for an image of this size: max(10, min(width, height) / 50) px.
    public var defaultLabelPixelSize: Int { max(10, min(width, height) / 50) }

    /// Draws `instances` onto the image. `font` renders the labels; load it once and
    /// reuse it (it parses a 700 KB font file). Labels of instances earlier in the list
    /// are drawn over later ones: pass them best score first.
    public mutating func drawOverlay(_ instances: [OverlayInstance], font: Font,
                                     style: OverlayStyle = OverlayStyle()) throws {
        guard width > 0, height > 0 else { return }
        let fontSize = style.fontPixelSize ?? defaultLabelPixelSize
        // Line widths grow with the image as detectron2's do (its polygon edges are
        // font size/15, its boxes font size/4 at half opacity, i.e. about size/8 opaque):
        // contours 1 px up to ~1500 px images; boxes 2 px (1 px of saturated colour all but
        // vanishes under JPEG's 4:2:0 chroma subsampling) growing to 3–4 px on photos.
        let contourWidth = max(1, fontSize / 15)
        let boxWidth = max(2, (fontSize + 4) / 8)

        // Large areas first, so that a small instance on a large one is not washed out.
        let order = instances.indices.sorted { a, b in
            let (aa, ab) = (instances[a].drawingArea, instances[b].drawingArea)
            return aa != ab ? aa > ab : a < b
        }
        for i in order {
            let instance = instances[i]
            let color = Palette.color(forClass: instance.classIndex)
            if let mask = instance.mask {
                fillMask(mask, color: color, alpha: style.maskAlpha)
                if style.drawContours {
                    // detectron2 darkens polygon edges with _change_color_brightness(−0.7)
                    // when the fill is opaque; −0.5 keeps the hue visible at alpha 0.5.
                    drawContour(mask, color: color.adjustingBrightness(-0.5), lineWidth: contourWidth)
                }
            }
            if style.drawBoxes { drawBoxOutline(instance.box, color: color, lineWidth: boxWidth) }
        }
        guard style.drawLabels else { return }

        // Place labels in priority order, each avoiding those already placed when it can;
        // then draw them lowest priority first so the best one ends up on top.
        var placed: [(rect: PixelRect, layout: TextLayout, color: RGB)] = []
        for instance in instances where !instance.label.isEmpty {
            let layout = try font.layout(instance.label, pixelSize: fontSize)
            let color = Palette.color(forClass: instance.classIndex)
            let rect = labelRect(for: instance.box, layout: layout, fontSize: fontSize,
                                 avoiding: placed.map(\.rect))
            placed.append((rect, layout, color))
        }
        for (rect, layout, color) in placed.reversed() {
            fillRect(rect, color: color)
            drawText(layout, in: rect, color: color.contrastingTextColor)
        }
    }

    // MARK: - Primitives

    /// out = dst + α·(color − dst) for every mask pixel inside the image.
    private mutating func fillMask(_ mask: OverlayMask, color: RGB, alpha: Float) {
        let a = Int32((min(max(alpha, 0), 1) * 256).rounded())
        let xs = max(mask.x0, 0)..<min(mask.x0 + mask.width, width)
        let ys = max(mask.y0, 0)..<min(mask.y0 + mask.height, height)
        guard !xs.isEmpty, !ys.isEmpty else { return }
        let c = (Int32(color.r), Int32(color.g), Int32(color.b))
        let w = width
        pixels.withUnsafeMutableBufferPointer { p in
            mask.pixels.withUnsafeBufferPointer { m in
                for y in ys {
                    let mrow = (y - mask.y0) * mask.width - mask.x0
                    for x in xs where m[mrow + x] != 0 {
                        let i = 3 * (y * w + x)
                        p[i] = UInt8(Int32(p[i]) + ((c.0 - Int32(p[i])) * a + 128) >> 8)
                        p[i + 1] = UInt8(Int32(p[i + 1]) + ((c.1 - Int32(p[i + 1])) * a + 128) >> 8)
                        p[i + 2] = UInt8(Int32(p[i + 2]) + ((c.2 - Int32(p[i + 2])) * a + 128) >> 8)
                    }
                }
            }
        }
    }

    /// Mask pixels within `lineWidth` (along rows and columns) of a pixel outside the mask,
    /// i.e. an inner contour: the outline never spills outside the object.
    private mutating func drawContour(_ mask: OverlayMask, color: RGB, lineWidth: Int) {
        let xs = max(mask.x0, 0)..<min(mask.x0 + mask.width, width)
        let ys = max(mask.y0, 0)..<min(mask.y0 + mask.height, height)
        for y in ys {
            for x in xs where mask.contains(x, y) {
                var edge = false
                for d in 1...lineWidth where !edge {
                    edge = !mask.contains(x - d, y) || !mask.contains(x + d, y)
                        || !mask.contains(x, y - d) || !mask.contains(x, y + d)
                }
                if edge { self[x, y] = color }
            }
        }
    }

    /// The box's pixel rectangle: the pixels whose centres lie inside it, at least 1×1.
    private func pixelRect(_ box: OverlayBox) -> PixelRect {
        let left = Int((box.x1).rounded()), top = Int((box.y1).rounded())
        let right = max(Int((box.x2).rounded()), left + 1), bottom = max(Int((box.y2).rounded()), top + 1)
        return PixelRect(left: left, top: top, right: right, bottom: bottom)
    }

    /// Outline drawn inside the box rectangle, so a box at the image border stays visible.
    private mutating func drawBoxOutline(_ box: OverlayBox, color: RGB, lineWidth: Int) {
        let r = pixelRect(box)
        let t = min(lineWidth, (r.right - r.left + 1) / 2, (r.bottom - r.top + 1) / 2)
        fillRect(PixelRect(left: r.left, top: r.top, right: r.right, bottom: r.top + t), color: color)
        fillRect(PixelRect(left: r.left, top: r.bottom - t, right: r.right, bottom: r.bottom), color: color)
        fillRect(PixelRect(left: r.left, top: r.top, right: r.left + t, bottom: r.bottom), color: color)
        fillRect(PixelRect(left: r.right - t, top: r.top, right: r.right, bottom: r.bottom), color: color)
    }

    private mutating func fillRect(_ rect: PixelRect, color: RGB) {
        let r = rect.clamped(width: width, height: height)
        guard r.left < r.right, r.top < r.bottom else { return }
        for y in r.top..<r.bottom {
            for x in r.left..<r.right { self[x, y] = color }
        }
    }

    /// The label tag: flush above the box's top-left corner, or just inside the box when
    /// there is no room above (box at the top edge); shifted left to stay inside the image,
    /// and moved below an earlier label it would cover when there is room.
    private func labelRect(for box: OverlayBox, layout: TextLayout, fontSize: Int,
                           avoiding others: [PixelRect]) -> PixelRect {
        let padX = max(2, (fontSize * 3 + 5) / 10)
        let padY = max(1, (fontSize + 5) / 10)
        let w = layout.width + 2 * padX
        let h = layout.ascent + layout.descent + 2 * padY
        let b = pixelRect(box)
        let left = min(max(b.left, 0), max(width - w, 0))
        var candidates = [b.top - h, b.top]  // above the box, then inside its top edge
        if let clash = others.first(where: { $0.intersects(PixelRect(left: left, top: b.top - h, right: left + w, bottom: b.top)) }) {
            candidates.insert(clash.bottom, at: 1)  // under the label in the way
        }
        let fits = { (top: Int) in top >= 0 && top + h <= self.height }
        let top = candidates.first { top in
            fits(top) && !others.contains { $0.intersects(PixelRect(left: left, top: top, right: left + w, bottom: top + h)) }
        } ?? candidates.first(where: fits) ?? max(0, min(b.top, height - h))
        return PixelRect(left: left, top: top, right: left + w, bottom: top + h)
    }

    /// Blends the glyph coverage of `layout` in `color`, centred horizontally and with the
    /// font's line box centred vertically in `rect`; clipped to `rect` and the image.
    private mutating func drawText(_ layout: TextLayout, in rect: PixelRect, color: RGB) {
        let clip = rect.clamped(width: width, height: height)
        let originX = rect.left + (rect.right - rect.left - layout.width) / 2 + layout.leftOverhang
        let lineHeight = layout.ascent + layout.descent
        let baseline = rect.top + (rect.bottom - rect.top - lineHeight) / 2 + layout.ascent
        let c = (Int32(color.r), Int32(color.g), Int32(color.b))
        let w = width
        pixels.withUnsafeMutableBufferPointer { p in
            for glyph in layout.glyphs {
                let gx = originX + glyph.x, gy = baseline - glyph.top
                for row in 0..<glyph.rows {
                    let y = gy + row
                    guard y >= clip.top, y < clip.bottom else { continue }
                    for col in 0..<glyph.width {
                        let x = gx + col
                        guard x >= clip.left, x < clip.right else { continue }
                        let a = Int32(glyph.coverage[row * glyph.width + col])
                        guard a > 0 else { continue }
                        let i = 3 * (y * w + x)
                        // Coverage is linear in area; blending in sRGB values (as FreeType's
                        // own demos and most UIs do) keeps light-on-dark and dark-on-light
                        // text of similar weight at these sizes.
                        p[i] = UInt8(Int32(p[i]) + ((c.0 - Int32(p[i])) * a + 127) / 255)
                        p[i + 1] = UInt8(Int32(p[i + 1]) + ((c.1 - Int32(p[i + 1])) * a + 127) / 255)
                        p[i + 2] = UInt8(Int32(p[i + 2]) + ((c.2 - Int32(p[i + 2])) * a + 127) / 255)
                    }
                }
            }
        }
    }
}

extension OverlayInstance {
    /// Mask area when there is a mask, else box area: the drawing order key.
    fileprivate var drawingArea: Float {
        if let mask { return Float(mask.area) }
        return max(0, box.x2 - box.x1) * max(0, box.y2 - box.y1)
    }
}

/// Half-open pixel rectangle [left, right) × [top, bottom).
struct PixelRect: Equatable {
    var left: Int
    var top: Int
    var right: Int
    var bottom: Int

    func clamped(width: Int, height: Int) -> PixelRect {
        PixelRect(left: max(left, 0), top: max(top, 0), right: min(right, width), bottom: min(bottom, height))
    }

    func intersects(_ other: PixelRect) -> Bool {
        left < other.right && other.left < right && top < other.bottom && other.top < bottom
    }
}
