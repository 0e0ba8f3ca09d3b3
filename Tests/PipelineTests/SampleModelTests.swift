// The shipped sample model on two sample images against torchvision's detections on the
// same weights (Tests/PipelineTests/Fixtures/sample_reference.json, made by
// tools/shapes/make_sample_fixture.py). Through segd's own decoder, model and mask paste.
//
// Tolerances: detections with score ≥ 0.1 (away from the 0.05 threshold, where a 1e-6
// difference can add or drop one) are matched one-to-one with the same label, |Δscore| ≤
// 1e-3, every box coordinate within 2 px and mask IoU ≥ 0.95; nothing segd finds at that
// score goes unmatched. Few pixels, not 0.01 px: the JPEG goes through TurboJPEG here and
// Pillow there (the same libjpeg-turbo, but another build may round a DCT differently),
// and oneDNN's kernels differ between CPUs.
import Foundation
import Imaging
import MaskRCNN
import Pipeline
import Results
import Tensor
import XCTest

final class SampleModelTests: XCTestCase {
    struct Reference: Decodable {
        struct Image: Decodable {
            var file: String
            var width: Int
            var height: Int
            var detections: [Detection]
        }
        struct Detection: Decodable {
            var box: [Float]
            var label: Int
            var score: Float
            var mask: CompressedRLE
        }
        var weights: String
        var weights_sha256: String
        var images: [Image]
    }

    func testShippedModelMatchesTorchvisionOnSamples() throws {
        try check(precision: .fp32, minScore: 0.1, scoreTolerance: 1e-3, pixels: 2, maskIoU: 0.95)
    }

    /// bf16 against torchvision's f32 on the same images: every confident detection (score
    /// ≥ 0.3) found with its label. bf16's 8-bit significands move a trained model's logits
    /// by ~1e-2 (measured on these two images, Zen 4 avx512_core_bf16: scores within 0.007,
    /// boxes within 1 px, mask IoU ≥ 0.938), so the bounds leave room for another CPU's
    /// kernels (|Δscore| ≤ 0.04, 3 px, IoU ≥ 0.9); a wrong layer or a lost bias changes
    /// labels and boxes by far more. AP on the 200 held-out scenes is the accuracy figure
    /// (tools/shapes/evaluate.py; docs/design.md).
    func testShippedModelInBF16MatchesTorchvisionOnSamples() throws {
        guard Device.cpu.isa.nativeBF16 else {
            throw XCTSkip("bf16 needs the CPU flag avx512_bf16 or amx_bf16; oneDNN's ISA here is \(Device.cpu.isa)")
        }
        try check(precision: .bf16, minScore: 0.3, scoreTolerance: 0.04, pixels: 3, maskIoU: 0.9)
    }

    func check(precision: Precision, minScore: Float, scoreTolerance: Float, pixels: Float, maskIoU: Double) throws {
        let url = URL(fileURLWithPath: Repo.path("Tests/PipelineTests/Fixtures/sample_reference.json"))
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let weights = Repo.path(ref.weights)
        XCTAssertEqual(try FileHash.sha256(fileAt: weights), ref.weights_sha256,
                       "the fixture was made from another model: regenerate it with tools/shapes/make_sample_fixture.py")
        var settings = InferenceSettings()
        settings.precision = precision
        let segmenter = try Segmenter(weights: weights, settings: settings)
        XCTAssertEqual(segmenter.model.precision.name, precision.rawValue)
        for image in ref.images {
            let decoded = try ImageDecoder().decode(contentsOf: Repo.path(image.file))
            XCTAssertEqual([decoded.image.width, decoded.image.height], [image.width, image.height])
            let d = try segmenter.model([ModelImage(width: decoded.image.width, height: decoded.image.height, rgb: decoded.image.pixels)])[0]
            let expected = image.detections.filter { $0.score >= minScore }
            XCTAssertGreaterThan(expected.count, 3, "\(image.file): the fixture should hold confident detections")
            var used = Set<Int>()
            for e in expected {
                let candidate = (0..<d.count).first { i in
                    let b = d.box(i)
                    return !used.contains(i) && d.labels[i] == e.label && abs(d.scores[i] - e.score) <= scoreTolerance
                        && zip([b.x1, b.y1, b.x2, b.y2], e.box).allSatisfy { abs($0 - $1) <= pixels }
                }
                guard let i = candidate else {
                    XCTFail("\(image.file) \(precision): torchvision's \(e.label) at \(e.box) score \(e.score) has no match in segd's output")
                    continue
                }
                used.insert(i)
                let mine = rleDecode(RLE(d.mask(i)))
                let theirs = rleDecode(try e.mask.rle())
                var inter = 0, union = 0
                for p in 0..<mine.count {
                    if mine[p] != 0 && theirs[p] != 0 { inter += 1 }
                    if mine[p] != 0 || theirs[p] != 0 { union += 1 }
                }
                XCTAssertGreaterThanOrEqual(union == 0 ? 1 : Double(inter) / Double(union), maskIoU, "\(image.file) \(precision): mask of detection \(i)")
            }
            let extra = (0..<d.count).filter { !used.contains($0) && d.scores[$0] >= minScore + scoreTolerance }
            XCTAssertEqual(extra, [], "\(image.file): segd detections torchvision does not have")
        }
    }
}
