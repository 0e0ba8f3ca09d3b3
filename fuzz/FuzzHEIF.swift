// libFuzzer harness: segd's HEIC/AVIF input path (ftyp brand check, libheif's box parser
// and the HEVC/AV1 decoders with segd's size limits, clap/irot/imir, alpha, segd's own
// irot/imir reader), as `ImageDecoder().decode(_:name:)` runs it. See FuzzJPEG.swift.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHEIF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // "ftyp" with the generic major brand "mif1": the compatible brands (heic or avif,
    // left to mutation) then say which codec, as in real files.
    if bytes.count >= 12 {
        bytes.replaceSubrange(4..<12, with: Array("ftypmif1".utf8))
    }
    _ = try? FuzzSupport.decoder.decode(bytes, name: "fuzz.heic")
    return 0
}
