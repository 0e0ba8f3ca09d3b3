// Reading the reference tensors that tools/reference/make_fixtures.py wrote from
// torchvision, and the comparisons every stage test uses.
import Foundation
import MaskRCNN
import Tensor
import XCTest

/// One fixture model: its weights and the reference output of every stage.
struct ReferenceCase {
    let weightsPath: String
    let stages: StateDict

    init(_ name: String) throws {
        let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
        // tiny/basic are read from their safetensors; the other layouts' fixtures are .pth only.
        let safetensors = dir.appendingPathComponent("weights.safetensors").path
        weightsPath = FileManager.default.fileExists(atPath: safetensors) ? safetensors : dir.appendingPathComponent("weights.pth").path
        stages = try WeightsFile.load(dir.appendingPathComponent("stages.safetensors").path)
    }

    func tensor(_ key: String) throws -> HostTensor {
        guard let t = stages[key] else { throw XCTSkip("fixture has no \(key)") }
        return t
    }

    func images() throws -> [ModelImage] {
        var out: [ModelImage] = []
        var i = 0
        while let t = stages["image.\(i)"] {
            out.append(ModelImage(width: t.shape[1], height: t.shape[0], rgb: t.values.map { UInt8($0) }))
            i += 1
        }
        return out
    }

    var imageCount: Int { (try? images().count) ?? 0 }
}

/// ‖a − b‖∞ / ‖b‖∞: the error relative to the tensor's scale, which is what "relative
/// error ≤ 1e-4" means for activations that cross zero (an elementwise relative error
/// is undefined there).
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var diff: Float = 0, scale: Float = 0
    for i in 0..<a.count {
        diff = max(diff, abs(a[i] - b[i]))
        scale = max(scale, abs(b[i]))
    }
    return scale == 0 ? diff : diff / scale
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var d: Float = 0
    for i in 0..<a.count { d = max(d, abs(a[i] - b[i])) }
    return d
}

func assertClose(_ a: [Float], _ b: [Float], relative tol: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): sizes", file: file, line: line)
    guard a.count == b.count else { return }
    let e = relativeError(a, b)
    XCTAssertLessThanOrEqual(e, tol, "\(what): relative error \(e)", file: file, line: line)
}

/// Detections (boxes, scores, labels) equal within the stated tolerances, in order.
func assertSameDetections(boxes: [Float], scores: [Float], labels: [Int], reference ref: (HostTensor, HostTensor, HostTensor),
                          boxTolerance: Float = 0.01, scoreTolerance: Float = 1e-4, _ what: String,
                          file: StaticString = #filePath, line: UInt = #line) {
    let (rb, rs, rl) = ref
    XCTAssertEqual(scores.count, rs.count, "\(what): number of detections", file: file, line: line)
    guard scores.count == rs.count else { return }
    XCTAssertEqual(labels, rl.values.map { Int($0) }, "\(what): labels in order", file: file, line: line)
    XCTAssertLessThanOrEqual(maxAbsDiff(boxes, rb.values), boxTolerance, "\(what): boxes (px)", file: file, line: line)
    XCTAssertLessThanOrEqual(maxAbsDiff(scores, rs.values), scoreTolerance, "\(what): scores", file: file, line: line)
}

extension HostTensor {
    var tensor: Tensor { Tensor(shape: shape, values: values) }
}

/// Each detection's pasted mask against the reference's (same image size; IoU ≥ 0.99).
func assertMasks(_ d: Detections, _ refMasks: HostTensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    let (n, h, w) = (refMasks.shape[0], refMasks.shape[1], refMasks.shape[2])
    XCTAssertEqual([h, w], [d.imageHeight, d.imageWidth], what, file: file, line: line)
    for j in 0..<min(n, d.count) {
        let mask = d.mask(j)
        var inter = 0, union = 0
        for y in 0..<h {
            for x in 0..<w {
                let a = mask[x, y] != 0, b = refMasks.values[(j * h + y) * w + x] != 0
                if a && b { inter += 1 }
                if a || b { union += 1 }
            }
        }
        XCTAssertGreaterThanOrEqual(union == 0 ? 1 : Double(inter) / Double(union), 0.99, "\(what) mask \(j) IoU", file: file, line: line)
    }
}
