// libFuzzer harness: segd's PNG input path (signature check, libspng with segd's chunk
// limits, 1–16-bit/palette/grey/alpha/interlaced conversion to RGB8, eXIf orientation),
// exactly as `ImageDecoder().decode(_:name:)` runs it. See FuzzJPEG.swift.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPNG(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    if bytes.count >= 8 { bytes.replaceSubrange(0..<8, with: signature) }
    _ = try? FuzzSupport.decoder.decode(bytes, name: "fuzz.png")
    return 0
}
