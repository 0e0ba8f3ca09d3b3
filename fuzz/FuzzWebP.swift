// libFuzzer harness: segd's WebP input path (signature check, WebPGetFeatures and the
// pixel limit, lossy/lossless/alpha decoding into segd's buffer, the animation decoder's
// first frame), exactly as `ImageDecoder().decode(_:name:)` runs it. See FuzzJPEG.swift.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Keep the RIFF/WEBP signature so that mutations reach libwebp, not the sniffer.
    if bytes.count >= 12 {
        bytes.replaceSubrange(0..<4, with: Array("RIFF".utf8))
        bytes.replaceSubrange(8..<12, with: Array("WEBP".utf8))
    }
    _ = try? FuzzSupport.decoder.decode(bytes, name: "fuzz.webp")
    return 0
}
