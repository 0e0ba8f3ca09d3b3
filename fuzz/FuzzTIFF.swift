// libFuzzer harness: segd's TIFF input path (the page-chain walk and its loop and page
// checks, libtiff from memory with segd's allocation cap and error handlers, the RGBA
// reader for every photometric, compression and layout, orientation), as
// `ImageDecoder().decode(_:name:page:)` runs it for the first and, when there are several,
// the last page. See FuzzJPEG.swift.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTIFF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    // A valid byte-order mark and version (42, or 43 for BigTIFF), chosen by the input's
    // own bits, so that mutations reach the directory parsing.
    if bytes.count >= 8 {
        let big = bytes[0] & 1 == 1, version: UInt8 = bytes[2] & 1 == 1 ? 43 : 42
        bytes.replaceSubrange(0..<4, with: big ? [0x4D, 0x4D, 0, version] : [0x49, 0x49, version, 0])
    }
    if let first = try? FuzzSupport.tiffDecoder.decode(bytes, name: "fuzz.tif"), first.pageCount > 1 {
        _ = try? FuzzSupport.tiffDecoder.decode(bytes, name: "fuzz.tif", page: first.pageCount)
    }
    return 0
}
