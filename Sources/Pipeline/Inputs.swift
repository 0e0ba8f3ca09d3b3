// Input collection for `segd batch`: files, directories (walked recursively), and glob
// patterns; each input gets the output stem that mirrors its place under the root the
// user named.
import Foundation

public struct InputFile: Sendable, Equatable {
    public var path: String
    /// Output path without extension, relative to the output directory.
    public var stem: String
    /// Path relative to the root the user named (COCO file_name).
    public var relativePath: String
    /// Why the input cannot be processed at all, found while listing (a name that is not
    /// valid UTF-8: Swift's String, and so every path segd handles, cannot hold it); the
    /// run reports it as failed with this reason instead of losing it silently.
    public var problem: String? = nil
}

public enum Inputs {
    /// Extensions taken from walked directories (an explicitly named file is always taken).
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "jpe", "png", "webp", "tif", "tiff",
                                                      "heic", "heif", "avif"]

    static func isImageName(_ name: String) -> Bool {
        imageExtensions.contains((name as NSString).pathExtension.lowercased())
    }

    /// Expands the arguments in order; within a directory, entries are sorted by name so
    /// runs are reproducible. A directory entry whose name says it is an image (x.jpg) is
    /// an input, not a folder to walk: the decoder then reports what it really is.
    public static func collect(_ arguments: [String]) throws -> [InputFile] {
        var out: [InputFile] = []
        var stems = Set<String>()
        func add(_ path: String, relative: String) throws {
            var stem = try OutputLayout.stem(forRelativePath: relative)
            if stems.contains(stem) {
                // a.jpg next to a.png: keep both, the second named with its extension.
                let dir = (relative as NSString).deletingLastPathComponent, name = (relative as NSString).lastPathComponent
                stem = try OutputLayout.stem(forRelativePath: (dir.isEmpty ? "" : dir + "/") + name.replacingOccurrences(of: ".", with: "_") + ".x")
            }
            stems.insert(stem)
            out.append(InputFile(path: path, stem: stem, relativePath: relative))
        }
        let fm = FileManager.default
        for arg in arguments {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: arg, isDirectory: &isDir) || (try? fm.destinationOfSymbolicLink(atPath: arg)) != nil {
                if isDir.boolValue && !isImageName(arg) {
                    let root = arg.hasSuffix("/") ? String(arg.dropLast()) : arg
                    let listing = try walk(root)
                    for rel in listing.names { try add(root + "/" + rel, relative: rel) }
                    for rel in listing.undecodable {
                        out.append(InputFile(path: root + "/" + rel, stem: "", relativePath: rel,
                                             problem: "the file name is not valid UTF-8 (shown with \\x escapes); rename the file to process it"))
                    }
                } else {
                    try add(arg, relative: (arg as NSString).lastPathComponent)
                }
            } else if arg.contains(where: { "*?[".contains($0) }) {
                let matches = glob(arg)
                if matches.isEmpty { throw PipelineError.noInputs(reason: "\(arg) matches no file") }
                for m in matches { try add(m, relative: (m as NSString).lastPathComponent) }
            } else {
                throw PipelineError.noInputs(reason: "\(arg): no such file or directory")
            }
        }
        return out
    }

    /// Relative paths of image-named entries under root, depth first, sorted per directory;
    /// and, apart, image-named entries whose names are not valid UTF-8, with their bytes
    /// escaped (FileManager drops or mangles those without a word, so readdir is used).
    static func walk(_ root: String) throws -> (names: [String], undecodable: [String]) {
        var result: [String] = []
        var undecodable: [String] = []
        func visit(_ rel: String) throws {
            let dir = rel.isEmpty ? root : root + "/" + rel
            guard let handle = opendir(dir) else {
                throw PipelineError.io(path: dir, reason: "cannot list directory: \(PipelineError.errnoText())")
            }
            var names: [String] = []
            while let entry = readdir(handle) {
                let (name, escaped) = withUnsafePointer(to: &entry.pointee.d_name) { p in
                    p.withMemoryRebound(to: CChar.self, capacity: 256) { c in
                        String(validatingCString: c).map { ($0, "") } ?? (nil, Watcher.escapedName(c))
                    }
                }
                if let name {
                    if name != "." && name != ".." { names.append(name) }
                } else if isImageName(escaped) {
                    undecodable.append(rel.isEmpty ? escaped : rel + "/" + escaped)
                }
            }
            closedir(handle)
            for name in names.sorted() {
                let childRel = rel.isEmpty ? name : rel + "/" + name
                let child = root + "/" + childRel
                guard let st = Sys.status(child) else { continue }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFDIR && !isImageName(name) {
                    try visit(childRel)
                } else if isImageName(name) {
                    result.append(childRel)
                }
            }
        }
        try visit("")
        return (result, undecodable)
    }

    static func glob(_ pattern: String) -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        guard Glibc.glob(pattern, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
