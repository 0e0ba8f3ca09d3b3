// Output names mirror the input's path relative to its root, byte for byte, wherever the
// file system can hold them: `-leading-dash.jpg` gives `-leading-dash.json`, spaces,
// quotes, '#', non-ASCII letters and control characters stay. A component is changed only
// where it cannot be written as it is (docs/results.md lists exactly these cases):
//   - "." is dropped and ".." (which would climb out of the output folder) becomes "__";
//   - U+FFFD, what an undecodable byte of an invalid encoding reads as, becomes "_" (the
//     name on disk is not the one written, and two such names would collide);
//   - a last component longer than `maxStemBytes` (NAME_MAX, 255 bytes, less ".json" and
//     the temporary name's ".XXXXXX" and leading dot) is cut at a character boundary.
// A changed component gets "~" and 8 hex digits of the SHA-256 of its original bytes, so
// distinct inputs keep distinct outputs.
import Crypto
import Foundation

public enum OutputLayout {
    /// NAME_MAX (255) less ".json" (5) and what AtomicFile adds for its temporary name
    /// ("." before, ".XXXXXX" after: 8).
    static let maxStemBytes = 255 - 5 - 8

    /// The output stem (relative, no extension) for an input at `relativePath` (relative to
    /// the input root the user named). Throws when nothing remains.
    public static func stem(forRelativePath relativePath: String) throws -> String {
        var parts = relativePath.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        guard let last = parts.popLast() else { throw PipelineError.unsafeOutputName(input: relativePath, reason: "empty name") }
        var base = last
        if let dot = base.lastIndex(of: "."), dot != base.startIndex { base = String(base[..<dot]) }
        return (parts.map { component($0, limit: Int.max) } + [component(base, limit: maxStemBytes)]).joined(separator: "/")
    }

    /// One path component as it can be written: itself unless it climbs out, holds U+FFFD
    /// or is longer than `limit` bytes.
    static func component(_ original: String, limit: Int) -> String {
        var out = original == ".." ? "__" : original.replacingOccurrences(of: "\u{FFFD}", with: "_")
        let suffixBytes = 9  // "~" and 8 hex digits
        if out.utf8.count > limit {
            var cut = ""
            for ch in out {
                if cut.utf8.count + ch.utf8.count > limit - suffixBytes { break }
                cut.append(ch)
            }
            out = cut
        } else if out == original {
            return out
        }
        return out + "~" + FileHash.hex(SHA256.hash(data: Data(original.utf8)).prefix(4))
    }
}
