// Shapes: R detections of one image. Boxes are (x1, y1, x2, y2) in the pixels of the
// image as it was handed to the model (torchvision's `postprocess` output frame).

/// One image's detections, as torchvision's `MaskRCNN.forward` returns them in eval mode,
/// except that masks stay as M×M probability grids until they are pasted: 100 pasted
/// full-image float masks of an 800×1216 image are 389 MB, the grids 0.3 MB.
public struct Detections: Sendable {
    /// R×4, (x1, y1, x2, y2), original-image pixels, row-major.
    public var boxes: [Float]
    /// R, softmax class scores, descending.
    public var scores: [Float]
    /// R, index into the model's class names; 0 (background) never occurs.
    public var labels: [Int]
    /// R×M×M sigmoid mask probabilities of the labelled class (torchvision's
    /// `maskrcnn_inference`), in the frame of the box; empty when the model has no mask head.
    public var maskProbabilities: [Float]
    /// M, the mask grid side (28 for torchvision's head).
    public var maskSize: Int
    /// Size of the image the boxes refer to.
    public var imageHeight: Int
    public var imageWidth: Int

    public init(boxes: [Float], scores: [Float], labels: [Int], maskProbabilities: [Float],
                maskSize: Int, imageHeight: Int, imageWidth: Int) {
        self.boxes = boxes
        self.scores = scores
        self.labels = labels
        self.maskProbabilities = maskProbabilities
        self.maskSize = maskSize
        self.imageHeight = imageHeight
        self.imageWidth = imageWidth
    }

    public var count: Int { scores.count }

    public func box(_ i: Int) -> (x1: Float, y1: Float, x2: Float, y2: Float) {
        (boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3])
    }
}

/// A binary instance mask in image coordinates, stored only over the region where it can
/// be non-zero (the pasted box), so that 100 instances of a large image stay small.
public struct InstanceMask: Sendable, Equatable {
    public let imageWidth: Int
    public let imageHeight: Int
    /// Region [x0, x0+width) × [y0, y0+height) inside the image; outside it the mask is 0.
    public let x0: Int
    public let y0: Int
    public let width: Int
    public let height: Int
    /// width×height, row-major, 0 or 1.
    public var pixels: [UInt8]

    public init(imageWidth: Int, imageHeight: Int, x0: Int, y0: Int, width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height, "InstanceMask: pixels must be width×height")
        precondition(x0 >= 0 && y0 >= 0 && x0 + width <= imageWidth && y0 + height <= imageHeight,
                     "InstanceMask: region must lie inside the image")
        self.imageWidth = imageWidth
        self.imageHeight = imageHeight
        self.x0 = x0
        self.y0 = y0
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Value at image pixel (x, y).
    @inlinable public subscript(x: Int, y: Int) -> UInt8 {
        let lx = x - x0, ly = y - y0
        guard lx >= 0, ly >= 0, lx < width, ly < height else { return 0 }
        return pixels[ly * width + lx]
    }

    /// Number of pixels set.
    public var area: Int { pixels.reduce(0) { $0 + Int($1) } }
}
