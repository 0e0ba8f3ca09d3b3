// Shared by the harnesses. The pixel limit is lowered from segd's default 100 MP to
// 4 MP: a header declaring 100 MP is valid and segd would decode it (300 MB, seconds),
// which at fuzzing speed is only a slow path through code the limit check already
// covers; 4 MP keeps each execution in milliseconds and RSS under libFuzzer's limit.
// Everything else (file size, PNG chunk limits) is segd's default.

enum FuzzSupport {
    static let decoder = ImageDecoder(options: DecodeOptions(limits: DecodeLimits(maxPixels: 4_000_000)))
    /// 16 pages instead of 100: the last page of a chain is decoded too, and a 100-page
    /// chain of tiny directories only repeats the directory code at 1/100 of the speed.
    static let tiffDecoder = ImageDecoder(options: DecodeOptions(limits: DecodeLimits(maxPixels: 4_000_000, maxPages: 16)))
}
