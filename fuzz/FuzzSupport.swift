// Shared by both harnesses. The pixel limit is lowered from segd's default 100 MP to
// 4 MP: a header declaring 100 MP is valid and segd would decode it (300 MB, seconds),
// which at fuzzing speed is only a slow path through code the limit check already
// covers; 4 MP keeps each execution in milliseconds and RSS under libFuzzer's limit.
// Everything else (file size, PNG chunk limits) is segd's default.

enum FuzzSupport {
    static let decoder = ImageDecoder(options: DecodeOptions(limits: DecodeLimits(maxPixels: 4_000_000)))
}
