// libFuzzer harness: segd's JPEG input path (signature check, marker walk, TurboJPEG,
// CMYK conversion, EXIF orientation), exactly as `ImageDecoder().decode(_:name:)` runs it.
// Built by fuzz/build.sh together with Sources/Imaging/*.swift (one module, so no
// package build is needed). Any thrown ImagingError is a correct outcome; a crash, an
// ASan report, a leak, a timeout or an RSS blow-up is a bug.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // Keep the fuzzer on the JPEG path: mutations that break the three signature bytes
    // only exercise detectFormat, which the PNG harness covers as well.
    if bytes.count >= 3 { bytes[0] = 0xFF; bytes[1] = 0xD8; bytes[2] = 0xFF }
    _ = try? FuzzSupport.decoder.decode(bytes, name: "fuzz.jpg")
    return 0
}
