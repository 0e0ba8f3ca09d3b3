// Weights: the result every weights reader produces, the module's one error type, and the
// entry point that recognizes a file's format from its first bytes.
//
// Readers never execute anything from a file: safetensors is JSON plus raw bytes, and the
// PyTorch formats go through a restricted unpickler (Unpickler.swift) that knows only the
// handful of globals a state dict references.

/// One tensor of a weights file, converted to Float, row-major (C order) whatever strides
/// and storage offset it had in the file.
public struct HostTensor: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Float]
    /// The dtype in the file, spelled as safetensors does ("F32", "F16", "BF16", "I64", …),
    /// the same for every format, so that a model converted between formats compares equal.
    public var sourceDType: String

    public init(shape: [Int], values: [Float], sourceDType: String) {
        self.shape = shape
        self.values = values
        self.sourceDType = sourceDType
    }

    public var count: Int { values.count }
}

/// The tensors of a weights file by name, plus its string metadata.
///
/// `metadata` is the safetensors `__metadata__` map. For a PyTorch checkpoint it holds the
/// module versions that `state_dict()` records in its `_metadata` attribute, flattened as
/// `"_metadata/<module path>/<field>"` (the root module's path is empty:
/// `"_metadata//version"`), so that a reader can tell an old layout from a new one.
public struct StateDict: Sendable {
    public var tensors: [String: HostTensor]
    public var metadata: [String: String]
    /// The file it was read from, for error messages further down (shape mismatches).
    public let path: String

    public init(tensors: [String: HostTensor], metadata: [String: String], path: String) {
        self.tensors = tensors
        self.metadata = metadata
        self.path = path
    }

    public subscript(key: String) -> HostTensor? { tensors[key] }
    public var keys: [String] { tensors.keys.sorted() }
}

/// Everything that can go wrong reading a weights file. Each case names the file and says
/// where (tensor key, zip entry, byte offset) and why, so that the message alone tells a
/// user whether the file is truncated, of the wrong kind, or hostile.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    /// open/fstat/mmap failed, or the path is not a regular file.
    case cannotOpen(path: String, reason: String)
    case emptyFile(path: String)
    /// None of the supported formats: says what the bytes look like instead.
    case unrecognizedFormat(path: String, reason: String)
    /// The file ends before a structure that its own headers announce.
    case truncated(path: String, reason: String)
    /// A safetensors header that is not valid JSON or violates the format (key is nil for
    /// problems of the header as a whole).
    case invalidSafeTensors(path: String, key: String?, reason: String)
    /// A zip structure problem; entry is nil for the archive's own records.
    case invalidZip(path: String, entry: String?, reason: String)
    /// A pickle that is malformed or uses an opcode a state dict does not need. `stream`
    /// names the pickle ("archive/data.pkl", "main pickle"), `offset` is the byte of the
    /// opcode within the file.
    case invalidPickle(path: String, stream: String, offset: Int, reason: String)
    /// A pickle naming a Python global outside the whitelist: this is how a malicious
    /// checkpoint runs code, so it is refused before anything is built from it.
    case forbiddenGlobal(path: String, stream: String, offset: Int, global: String)
    /// The pickle was fine but its top-level object is not a mapping of names to tensors.
    case notAStateDict(path: String, reason: String)
    /// A tensor whose dtype, shape, strides or storage range cannot be honoured.
    case invalidTensor(path: String, key: String, reason: String)
    /// A valid file using a feature segd does not implement (big-endian storages, …).
    case unsupported(path: String, reason: String)

    public var path: String {
        switch self {
        case let .cannotOpen(path, _), let .emptyFile(path), let .unrecognizedFormat(path, _),
             let .truncated(path, _), let .invalidSafeTensors(path, _, _), let .invalidZip(path, _, _),
             let .invalidPickle(path, _, _, _), let .forbiddenGlobal(path, _, _, _),
             let .notAStateDict(path, _), let .invalidTensor(path, _, _), let .unsupported(path, _):
            return path
        }
    }

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open weights file '\(path)': \(reason)"
        case let .emptyFile(path):
            return "weights file '\(path)' is empty (0 bytes)"
        case let .unrecognizedFormat(path, reason):
            return "'\(path)' is not a safetensors or PyTorch weights file: \(reason)"
        case let .truncated(path, reason):
            return "weights file '\(path)' is truncated: \(reason)"
        case let .invalidSafeTensors(path, key, reason):
            let what = key.map { " (tensor '\($0)')" } ?? ""
            return "invalid safetensors file '\(path)'\(what): \(reason)"
        case let .invalidZip(path, entry, reason):
            let what = entry.map { " (entry '\($0)')" } ?? ""
            return "invalid PyTorch zip checkpoint '\(path)'\(what): \(reason)"
        case let .invalidPickle(path, stream, offset, reason):
            return "cannot read the pickle \(stream) of '\(path)' at byte \(offset): \(reason)"
        case let .forbiddenGlobal(path, stream, offset, global):
            var hint = ""
            if global.hasPrefix("__torch__") {
                hint = " (this looks like a TorchScript archive; save model.state_dict() instead)"
            }
            return "refusing to load '\(path)': the pickle \(stream) references the Python global "
                + "'\(global)' at byte \(offset); a state dict needs only tensors, and segd never "
                + "runs code from a weights file\(hint)"
        case let .notAStateDict(path, reason):
            return "'\(path)' holds no state dict: \(reason)"
        case let .invalidTensor(path, key, reason):
            return "tensor '\(key)' in '\(path)': \(reason)"
        case let .unsupported(path, reason):
            return "'\(path)' uses an unsupported feature: \(reason)"
        }
    }
}

/// Reads any supported weights file into a `StateDict`.
public enum WeightsFile {
    /// The format is recognized from the bytes, never from the extension: torchvision's
    /// checkpoints are `.pth` in two unrelated formats, and files get renamed.
    public static func load(_ path: String) throws -> StateDict {
        let file = try MappedFile(path: path)
        return try file.withBytes { bytes in
            switch try detect(bytes, path: path) {
            case .safetensors: return try SafeTensorsReader.read(bytes, path: path)
            case .torchZip: return try TorchCheckpointReader.readZip(bytes, path: path)
            case .torchLegacy: return try TorchCheckpointReader.readLegacy(bytes, path: path)
            }
        }
    }

    enum Format { case safetensors, torchZip, torchLegacy }

    static func detect(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Format {
        let n = bytes.count
        guard n > 0 else { throw WeightsError.emptyFile(path: path) }
        func starts(with prefix: [UInt8]) -> Bool {
            n >= prefix.count && zip(bytes.prefix(prefix.count), prefix).allSatisfy { $0 == $1 }
        }
        // Local file header, or the end record of an archive with no entries (reported by
        // the zip reader as lacking data.pkl, which is more useful than "unrecognized").
        if starts(with: [0x50, 0x4B, 0x03, 0x04]) || starts(with: [0x50, 0x4B, 0x05, 0x06]) { return .torchZip }
        // PROTO opcode with a protocol torch.save can write (it uses 2 by default).
        if n >= 2 && bytes[0] == 0x80 && (2...5).contains(bytes[1]) { return .torchLegacy }
        // safetensors: u64 header length, then JSON that the format requires to start with '{'.
        if n >= 9 && bytes[8] == UInt8(ascii: "{") { return .safetensors }
        throw WeightsError.unrecognizedFormat(path: path, reason: describeUnknown(bytes))
    }

    /// What the bytes look like, for a user who picked the wrong file.
    static func describeUnknown(_ bytes: UnsafeRawBufferPointer) -> String {
        let head = Array(bytes.prefix(64))
        func starts(with prefix: [UInt8]) -> Bool { head.starts(with: prefix) }
        if starts(with: [0xFF, 0xD8, 0xFF]) { return "it is a JPEG image" }
        if starts(with: [0x89, 0x50, 0x4E, 0x47]) { return "it is a PNG image" }
        if starts(with: [0x1F, 0x8B]) { return "it is gzip-compressed; decompress it first" }
        if starts(with: Array("version https://git-lfs".utf8)) {
            return "it is a Git LFS pointer, not the weights; run 'git lfs pull'"
        }
        if starts(with: Array("<".utf8)) {
            return "it is an HTML/XML text file (a failed download?)"
        }
        let isText = head.allSatisfy { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || ($0 >= 0x20 && $0 != 0x7F) }
        if isText, let text = String(validating: head, as: UTF8.self) {
            let line = text.prefix { $0 != "\n" && $0 != "\r" }.prefix(40)
            return "it is a text file (starts with \"\(line)\")"
        }
        if bytes.count < 9 { return "it is only \(bytes.count) bytes long" }
        let hex = head.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
        return "unknown leading bytes \(hex)"
    }
}
