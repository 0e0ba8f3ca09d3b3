// Output names derived from input names, never escaping the output directory: each path
// component of the input (relative to its root) is sanitized on its own, so "..", "/",
// newlines, control bytes, invalid UTF-8 and over-long names all map to safe, distinct,
// stable names.
import Foundation

public enum OutputLayout {
    /// Longest component written: 255 bytes is the usual NAME_MAX; leave room for
    /// ".json"/".jpg" and a hash suffix.
    static let maxComponentBytes = 200

    /// The output stem (relative, no extension) for an input at `relativePath` (relative to
    /// the input root the user named). Throws when nothing safe remains.
    public static func stem(forRelativePath relativePath: String) throws -> String {
        var parts = relativePath.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard let last = parts.popLast() else { throw PipelineError.unsafeOutputName(input: relativePath, reason: "empty name") }
        var base = last
        if let dot = base.lastIndex(of: "."), dot != base.startIndex { base = String(base[..<dot]) }
        let comps = parts.filter { $0 != "." } + [base]
        return comps.map(sanitize).joined(separator: "/")
    }

    /// One path component → a safe one. Keeps letters, digits, '-', '_', '.', ' ' and
    /// non-ASCII letters; replaces others with '_'; a component that was changed, or that
    /// is too long, gets a short hash of the original bytes so distinct inputs stay distinct.
    static func sanitize(_ component: String) -> String {
        let original = Array(component.utf8)
        var out = ""
        for scalar in component.unicodeScalars {
            let v = scalar.value
            let ok = (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
                || scalar == "-" || scalar == "_" || scalar == "." || scalar == " "
                || (v > 0x7F && v != 0xFFFD && scalar.properties.isAlphabetic)
            out.unicodeScalars.append(ok ? scalar : "_")
        }
        // No hidden or parent names, no leading dash (looks like an option to tools).
        while out.hasPrefix(".") || out.hasPrefix("-") { out = "_" + out.dropFirst() }
        if out.isEmpty { out = "_" }
        var changed = Array(out.utf8) != original
        if out.utf8.count > maxComponentBytes {
            var cut = ""
            for ch in out {
                if cut.utf8.count + ch.utf8.count > maxComponentBytes { break }
                cut.append(ch)
            }
            out = cut
            changed = true
        }
        if changed { out += "~" + String(SHA256.hex(original).prefix(8)) }
        return out
    }
}
