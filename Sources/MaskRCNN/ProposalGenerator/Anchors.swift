// Shapes: L levels, A anchors per location (sizes × aspect ratios), Hl×Wl the level's grid.
// torchvision's AnchorGenerator: anchors are ordered (y, x, a) within a level, levels
// concatenated; the grid stride is the padded image size divided by the grid size.

public struct AnchorGenerator: Sendable {
    /// One size per level (torchvision: ((32,), (64,), (128,), (256,), (512,))).
    public var sizes: [Float]
    public var aspectRatios: [Float]

    public init(sizes: [Float] = [32, 64, 128, 256, 512], aspectRatios: [Float] = [0.5, 1, 2]) {
        self.sizes = sizes
        self.aspectRatios = aspectRatios
    }

    public var anchorsPerLocation: Int { aspectRatios.count }

    /// Zero-centred base anchors of one level, rounded half-to-even as torch.round does.
    func baseAnchors(size: Float) -> [Float] {
        var out: [Float] = []
        for ar in aspectRatios {
            let hRatio = ar.squareRoot()
            let wRatio = 1 / hRatio
            let ws = wRatio * size, hs = hRatio * size
            for v in [-ws, -hs, ws, hs] { out.append((v / 2).rounded(.toNearestOrEven)) }
        }
        return out
    }

    /// All anchors of one level for a padded image of paddedHeight×paddedWidth: Hl·Wl·A × 4.
    public func anchors(level: Int, gridHeight: Int, gridWidth: Int, paddedHeight: Int, paddedWidth: Int) -> [Float] {
        let base = baseAnchors(size: sizes[level])
        let a = anchorsPerLocation
        let strideY = paddedHeight / gridHeight, strideX = paddedWidth / gridWidth
        var out = [Float](repeating: 0, count: gridHeight * gridWidth * a * 4)
        var k = 0
        for y in 0..<gridHeight {
            let sy = Float(y * strideY)
            for x in 0..<gridWidth {
                let sx = Float(x * strideX)
                for j in 0..<a {
                    out[k] = sx + base[4 * j]
                    out[k + 1] = sy + base[4 * j + 1]
                    out[k + 2] = sx + base[4 * j + 2]
                    out[k + 3] = sy + base[4 * j + 3]
                    k += 4
                }
            }
        }
        return out
    }
}
