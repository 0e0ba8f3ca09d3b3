// The one list of stages an image goes through, in order, and the one name each has
// everywhere: the result JSON's `timings_ms` keys, the journal's timings, `segd bench`'s
// rows, the model summary's FLOP split and the pipeline's queue labels. preprocess …
// postprocess are MaskRCNN's methods of the same names (detect: the box head, mask: the
// mask head); decode, paste and write are the Pipeline's.
public enum PipelineStage: String, CaseIterable, Sendable, Codable {
    case decode, preprocess, backbone, rpn, detect, mask, postprocess, paste, write

    /// The stages MaskRCNN runs, in order (what `segd bench` times).
    public static let model: [PipelineStage] = [.preprocess, .backbone, .rpn, .detect, .mask, .postprocess]
}
