// pipeline.yml: the daemon's configuration. Every key has a default (the repository's
// pipeline.yml documents each one with it); an unknown key, a value of the wrong type and
// an impossible value are errors that name the key and its line, so a typo never silently
// falls back to a default.
import Foundation
import Imaging
import Tensor
import Yams

public struct PipelineConfig: Sendable, Equatable {
    public enum AfterSuccess: String, Sendable, CaseIterable { case keep, move, delete }
    public enum AfterFailure: String, Sendable, CaseIterable { case keep, move }
    public enum LogLevel: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }
    public typealias AnnotatedFormat = Pipeline.AnnotatedFormat

    public struct Model: Sendable, Equatable {
        public var weights = "/usr/local/share/segd/shapes.safetensors"
        /// auto | fp32 | bf16 (auto: the faster of bf16 and fp32, measured once, where the CPU
        /// computes bf16 natively; fp32 elsewhere).
        public var precision = Precision.auto
        /// nil: the model's own (0.05 for torchvision's checkpoints).
        public var scoreThreshold: Double?
        public var maskThreshold = 0.5
        /// nil: the model's own (100).
        public var maxDetections: Int?
        /// nil: the model's own (800 / 1333 for torchvision's).
        public var minSize: Int?
        public var maxSize: Int?
        /// nil: the weights file's metadata, else 0.0 as torchvision's COCO checkpoints.
        public var frozenBNEpsilon: Double?
        /// Class names file (one a line, background first, or a JSON list); nil: the
        /// weights file's names (COCO's for a 91-class .pth, else class1, class2, …).
        public var labels: String?
    }

    public struct Inputs: Sendable, Equatable {
        public var directories = ["/var/lib/segd/inbox"]
        public var recursive = true
        public var include = ["*.jpg", "*.jpeg", "*.jpe", "*.png", "*.webp", "*.tif", "*.tiff", "*.heic", "*.heif", "*.avif"]
        /// Hidden names cover rsync's and segd's own temporary files (".name.XXXXXX").
        public var exclude = [".*", "*.part", "*.tmp", "*~"]
        /// A file that appeared without close-after-write (hard link, a writer seen only by
        /// a rescan) counts as complete once its size and mtime stayed the same this long.
        public var stableMs = 2000
        public var rescanIntervalS = 300
        /// Used only when inotify is unavailable (watch or instance limit reached).
        public var pollIntervalMs = 2000
        public var maxPixels = 100_000_000
        /// Pages of a multi-page TIFF at most (each page is one result).
        public var maxPages = 100
    }

    public struct Outputs: Sendable, Equatable {
        public var directory = "/var/lib/segd/out"
        public var json = true
        public var annotated = true
        public var jpegQuality = 90
        public var annotatedFormat = AnnotatedFormat.auto
        public var polygons = false
        public var annotateMinScore = 0.5
    }

    public struct After: Sendable, Equatable {
        public var success = AfterSuccess.move
        public var failure = AfterFailure.move
        public var doneDirectory = "/var/lib/segd/done"
        public var failedDirectory = "/var/lib/segd/failed"
    }

    public struct Batching: Sendable, Equatable {
        public var maxBatch = 1
        public var maxDelayMs = 50
    }

    public struct Queues: Sendable, Equatable {
        /// Items waiting per stage at most (the decode and write stages hold bound × max_batch).
        public var bound = 2
    }

    public struct Service: Sendable, Equatable {
        /// SIGTERM: how long in-flight images may take to finish before segd exits anyway
        /// (they are then retried at the next start, not counted as crashes).
        public var drainTimeoutS = 30
        public var statusIntervalS = 10
        /// With work in flight and no image finished for this long, the watchdog is not fed.
        public var stallTimeoutS = 300
        /// An input that was being processed when segd crashed this many times goes to failed/.
        public var maxCrashes = 3
        /// Where the HTTP endpoint (/metrics, /healthz, /readyz, the status page) listens:
        /// `unix:PATH` or `HOST:PORT` each; nil: `unix:<state_directory>/segd.sock`; []: off.
        /// Read at start only.
        public var httpListen: [ListenAddress]?
        /// A claimed job's lease: a node that has not renewed it for this long (killed, frozen,
        /// cut off) loses the job to another node. Renewed every lease_s / 3.
        public var leaseS = 30
    }

    public var model = Model()
    public var inputs = Inputs()
    public var outputs = Outputs()
    public var after = After()
    public var stateDirectory = "/var/lib/segd/state"
    /// The shared journal of a cluster (docs/cluster.md); nil: SQLite in state_directory.
    public var stateDatabase: DatabaseSettings?
    public var batching = Batching()
    public var queues = Queues()
    /// oneDNN (OpenMP) threads; 0: one per core. Read at start only.
    public var workers = 0
    public var logLevel = LogLevel.info
    public var service = Service()

    public init() {}
}

// MARK: - Reading

extension PipelineConfig {
    /// Reads and validates `path`; relative paths in it are taken relative to the file's
    /// directory (so `segd watch --config x/pipeline.yml` works from anywhere).
    public static func load(path: String) throws -> PipelineConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw PipelineError.config(path: path, line: nil, key: nil, reason: "cannot read: \((error as NSError).localizedDescription)")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, path: path, baseDirectory: base)
    }

    /// Parses YAML text; `path` only names the source in errors.
    public static func parse(_ text: String, path: String, baseDirectory: String) throws -> PipelineConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw PipelineError.config(path: path, line: Self.line(of: e), key: nil, reason: "not valid YAML: \(Self.problem(of: e))")
        }
        var c = PipelineConfig()
        guard let root else { return c.resolved(against: baseDirectory) }  // empty file: all defaults
        var r = Reader(path: path)
        try r.mapping(root, "") { key, node, r in
            switch key {
            case "model": try r.mapping(node, key) { k, n, r in
                switch k {
                case "weights": c.model.weights = try r.string(n, key, k)
                case "precision": c.model.precision = try r.choice(n, key, k)
                case "score_threshold": c.model.scoreThreshold = try r.optional(n) { try r.double(n, key, k, in: 0...1) }
                case "mask_threshold": c.model.maskThreshold = try r.double(n, key, k, in: 0...1)
                case "max_detections": c.model.maxDetections = try r.optional(n) { try r.int(n, key, k, in: 1...10_000) }
                case "min_size": c.model.minSize = try r.optional(n) { try r.int(n, key, k, in: 32...8192) }
                case "max_size": c.model.maxSize = try r.optional(n) { try r.int(n, key, k, in: 32...8192) }
                case "frozen_bn_epsilon": c.model.frozenBNEpsilon = try r.optional(n) { try r.double(n, key, k, in: 0...1) }
                case "labels": c.model.labels = try r.optional(n) { try r.string(n, key, k) }
                default: throw r.unknown(n, key, k)
                }
            }
            case "inputs": try r.mapping(node, key) { k, n, r in
                switch k {
                case "directories": c.inputs.directories = try r.strings(n, key, k, nonEmpty: true)
                case "recursive": c.inputs.recursive = try r.bool(n, key, k)
                case "include": c.inputs.include = try r.strings(n, key, k, nonEmpty: true)
                case "exclude": c.inputs.exclude = try r.strings(n, key, k, nonEmpty: false)
                case "stable_ms": c.inputs.stableMs = try r.int(n, key, k, in: 0...3_600_000)
                case "rescan_interval_s": c.inputs.rescanIntervalS = try r.int(n, key, k, in: 1...86_400 * 7)
                case "poll_interval_ms": c.inputs.pollIntervalMs = try r.int(n, key, k, in: 50...3_600_000)
                case "max_pixels": c.inputs.maxPixels = try r.int(n, key, k, in: 1...1_000_000_000)
                case "max_pages": c.inputs.maxPages = try r.int(n, key, k, in: 1...100_000)
                default: throw r.unknown(n, key, k)
                }
            }
            case "outputs": try r.mapping(node, key) { k, n, r in
                switch k {
                case "directory": c.outputs.directory = try r.string(n, key, k)
                case "json": c.outputs.json = try r.bool(n, key, k)
                case "annotated": c.outputs.annotated = try r.bool(n, key, k)
                case "jpeg_quality": c.outputs.jpegQuality = try r.int(n, key, k, in: 1...100)
                case "annotated_format": c.outputs.annotatedFormat = try r.choice(n, key, k)
                case "polygons": c.outputs.polygons = try r.bool(n, key, k)
                case "annotate_min_score": c.outputs.annotateMinScore = try r.double(n, key, k, in: 0...1)
                default: throw r.unknown(n, key, k)
                }
            }
            case "after": try r.mapping(node, key) { k, n, r in
                switch k {
                case "success": c.after.success = try r.choice(n, key, k)
                case "failure": c.after.failure = try r.choice(n, key, k)
                case "done_directory": c.after.doneDirectory = try r.string(n, key, k)
                case "failed_directory": c.after.failedDirectory = try r.string(n, key, k)
                default: throw r.unknown(n, key, k)
                }
            }
            case "state_directory": c.stateDirectory = try r.string(node, "", key)
            case "state_database":
                if case .scalar = node, node.null != nil { c.stateDatabase = nil; break }
                if node.mapping != nil {
                    var url: String?, passwordFile: String?
                    try r.mapping(node, key) { k, n, r in
                        switch k {
                        case "url": url = try r.string(n, key, k)
                        case "password_file": passwordFile = try r.optional(n) { try r.string(n, key, k) }
                        default: throw r.unknown(n, key, k)
                        }
                    }
                    guard let url else {
                        throw PipelineError.config(path: path, line: node.mark?.line, key: "state_database.url", reason: "missing: postgresql://USER@HOST:PORT/DATABASE")
                    }
                    c.stateDatabase = try DatabaseSettings(url: url, passwordFile: passwordFile, configPath: path, line: r.lines["state_database.url"])
                } else {
                    c.stateDatabase = try DatabaseSettings(url: try r.string(node, "", key), passwordFile: nil, configPath: path,
                                                           line: r.lines["state_database"])
                }
            case "batching": try r.mapping(node, key) { k, n, r in
                switch k {
                case "max_batch": c.batching.maxBatch = try r.int(n, key, k, in: 1...64)
                case "max_delay_ms": c.batching.maxDelayMs = try r.int(n, key, k, in: 0...60_000)
                default: throw r.unknown(n, key, k)
                }
            }
            case "queues": try r.mapping(node, key) { k, n, r in
                switch k {
                case "bound": c.queues.bound = try r.int(n, key, k, in: 1...1024)
                default: throw r.unknown(n, key, k)
                }
            }
            case "workers": c.workers = try r.int(node, "", key, in: 0...1024)
            case "log_level": c.logLevel = try r.choice(node, "", key)
            case "service": try r.mapping(node, key) { k, n, r in
                switch k {
                case "drain_timeout_s": c.service.drainTimeoutS = try r.int(n, key, k, in: 0...3600)
                case "status_interval_s": c.service.statusIntervalS = try r.int(n, key, k, in: 1...3600)
                case "stall_timeout_s": c.service.stallTimeoutS = try r.int(n, key, k, in: 1...86_400)
                case "max_crashes": c.service.maxCrashes = try r.int(n, key, k, in: 1...100)
                case "http_listen":
                    // null: the default socket; [] (or an empty list): off.
                    c.service.httpListen = try r.optional(n) {
                        try r.strings(n, key, k, nonEmpty: false).map { text in
                            guard let a = ListenAddress(text) else {
                                throw r.error(n, "service.http_listen", "'\(text)' is neither unix:PATH nor HOST:PORT (port 0...65535)")
                            }
                            return a
                        }
                    }
                case "lease_s": c.service.leaseS = try r.int(n, key, k, in: 1...3600)
                default: throw r.unknown(n, key, k)
                }
            }
            default: throw r.unknown(node, "", key)
            }
        }
        // Checks that involve more than one key; each names the key it blames and its line.
        if let lo = c.model.minSize, let hi = c.model.maxSize, lo > hi {
            throw PipelineError.config(path: path, line: r.lines["model.max_size"], key: "model.max_size",
                                       reason: "\(hi) is smaller than model.min_size \(lo)")
        }
        c = c.resolved(against: baseDirectory)
        try c.checkDirectories(path: path, lines: r.lines)
        return c
    }

    /// Relative paths made absolute against `base`, and normalized ("a/../b" → "b").
    func resolved(against base: String) -> PipelineConfig {
        func abs(_ p: String) -> String {
            let full = p.hasPrefix("/") ? p : (base as NSString).appendingPathComponent(p)
            return (full as NSString).standardizingPath
        }
        var c = self
        c.model.weights = abs(c.model.weights)
        c.model.labels = c.model.labels.map(abs)
        c.inputs.directories = c.inputs.directories.map(abs)
        c.outputs.directory = abs(c.outputs.directory)
        c.after.doneDirectory = abs(c.after.doneDirectory)
        c.after.failedDirectory = abs(c.after.failedDirectory)
        c.stateDirectory = abs(c.stateDirectory)
        c.service.httpListen = c.service.httpListen?.map { a in
            if case let .unix(p) = a { return .unix(abs(p)) }
            return a
        }
        if let file = c.stateDatabase?.passwordFile { c.stateDatabase?.passwordFile = abs(file) }
        return c
    }

    /// Folders that must differ: results written into a watched folder would be watched,
    /// and an input moved to done/ must leave the inbox. Folders inside an input directory
    /// are allowed (they are excluded from watching), the input directory itself is not.
    func checkDirectories(path: String, lines: [String: Int]) throws {
        let inputs = inputs.directories
        for (i, d) in inputs.enumerated() {
            for (j, e) in inputs.enumerated() where i < j {
                if d == e || Self.isInside(d, e) || Self.isInside(e, d) {
                    throw PipelineError.config(path: path, line: lines["inputs.directories"], key: "inputs.directories",
                                               reason: "\(d) and \(e) overlap; list each folder once")
                }
                if (d as NSString).lastPathComponent == (e as NSString).lastPathComponent {
                    throw PipelineError.config(path: path, line: lines["inputs.directories"], key: "inputs.directories",
                                               reason: "\(d) and \(e) have the same name; outputs go to \((d as NSString).lastPathComponent)/ under outputs.directory, so the names must differ")
                }
            }
        }
        let others: [(String, String)] = [("outputs.directory", outputs.directory), ("after.done_directory", after.doneDirectory),
                                          ("after.failed_directory", after.failedDirectory), ("state_directory", stateDirectory)]
        for (key, dir) in others {
            for input in inputs where dir == input || Self.isInside(input, dir) {
                throw PipelineError.config(path: path, line: lines[key], key: key,
                                           reason: "\(dir) is the input directory \(input) or holds it; choose a folder outside it")
            }
        }
    }

    /// Whether `inner` lies strictly inside `outer` (both absolute and normalized).
    static func isInside(_ inner: String, _ outer: String) -> Bool {
        let o = outer.hasSuffix("/") ? outer : outer + "/"
        return inner.hasPrefix(o)
    }

    static func line(of e: YamlError) -> Int? {
        switch e {
        case let .scanner(_, _, mark, _), let .parser(_, _, mark, _), let .composer(_, _, mark, _): return mark.line
        case let .duplicatedKeysInMapping(_, context): return context.mark.line
        default: return nil
        }
    }

    static func problem(of e: YamlError) -> String {
        switch e {
        case let .scanner(context, problem, _, _), let .parser(context, problem, _, _), let .composer(context, problem, _, _):
            return (context.map { "\($0.text) " } ?? "") + problem
        case let .duplicatedKeysInMapping(duplicates, _): return "a key appears twice: \(duplicates.sorted().joined(separator: ", "))"
        default: return "\(e)"
        }
    }

    /// The HTTP endpoint's addresses: service.http_listen, or the socket in the state directory.
    public var httpAddresses: [ListenAddress] {
        service.httpListen ?? [.unix((stateDirectory as NSString).appendingPathComponent("segd.sock"))]
    }

    /// The settings the model stages use.
    public var inferenceSettings: InferenceSettings {
        var s = InferenceSettings()
        s.scoreThreshold = model.scoreThreshold.map(Float.init)
        s.maskThreshold = Float(model.maskThreshold)
        s.maxDetections = model.maxDetections
        s.frozenBNEpsilon = model.frozenBNEpsilon.map(Float.init)
        s.labels = model.labels
        s.minSize = model.minSize
        s.maxSize = model.maxSize
        s.precision = model.precision
        return s
    }

    /// The staged pipeline's options for this configuration.
    public var pipelineOptions: PipelineOptions {
        var o = PipelineOptions()
        o.maxBatch = batching.maxBatch
        o.maxDelayMs = batching.maxDelayMs
        o.queueBound = queues.bound
        o.output.directory = outputs.directory
        o.output.writeJSON = outputs.json
        o.output.annotate = outputs.annotated
        o.output.jpegQuality = outputs.jpegQuality
        o.output.annotatedFormat = outputs.annotatedFormat
        o.output.polygons = outputs.polygons
        o.output.annotateMinScore = Float(outputs.annotateMinScore)
        o.decode.limits.maxPixels = inputs.maxPixels
        o.decode.limits.maxPages = inputs.maxPages
        return o
    }
}

/// Walks the YAML tree; every error carries the dotted key and the line of the node.
private struct Reader {
    let path: String
    /// Line of each key seen ("model.weights" → 3), for errors found after parsing.
    var lines: [String: Int] = [:]

    init(path: String) { self.path = path }

    func error(_ node: Node, _ key: String, _ reason: String) -> PipelineError {
        .config(path: path, line: node.mark?.line, key: key, reason: reason)
    }

    func unknown(_ node: Node, _ section: String, _ key: String) -> PipelineError {
        let full = section.isEmpty ? key : section + "." + key
        // The key's own line: a mapping value starts on the line after it.
        return .config(path: path, line: lines[full] ?? node.mark?.line, key: full, reason: "unknown key")
    }

    static func dotted(_ section: String, _ key: String) -> String { section.isEmpty ? key : section + "." + key }

    /// Calls `body` for each key of a mapping, in file order; rejects duplicates.
    mutating func mapping(_ node: Node, _ name: String, _ body: (String, Node, inout Reader) throws -> Void) throws {
        if case .scalar = node, node.null != nil, !name.isEmpty { return }  // "model:" with nothing under it
        guard let m = node.mapping else {
            throw error(node, name.isEmpty ? "(top level)" : name, "expected a mapping of keys, found \(Self.kind(node))")
        }
        var seen = Set<String>()
        for (k, v) in m {
            guard let key = k.scalar?.string else { throw error(k, name, "keys must be plain names") }
            let full = Self.dotted(name, key)
            guard seen.insert(key).inserted else { throw error(k, full, "appears twice") }
            // Errors in the value point at the key's line: that is where people look.
            lines[full] = k.mark?.line
            let located = Self.relocated(v, to: k.mark)
            try body(key, located, &self)
        }
    }

    /// Values that are empty ("key:") carry no useful mark of their own; use the key's.
    static func relocated(_ v: Node, to mark: Mark?) -> Node {
        guard v.mark == nil, let mark, case var .scalar(s) = v else { return v }
        s.mark = mark
        return .scalar(s)
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar:
            if node.null != nil { return "nothing (null)" }
            return "'\(node.scalar!.string)'"
        }
    }

    func optional<T>(_ node: Node, _ body: () throws -> T) rethrows -> T? {
        if case .scalar = node, node.null != nil { return nil }
        return try body()
    }

    func string(_ node: Node, _ section: String, _ key: String) throws -> String {
        let full = Self.dotted(section, key)
        guard case let .scalar(s) = node else { throw error(node, full, "expected a string, found \(Self.kind(node))") }
        // A folder may be named 2024; only null and booleans are surely not strings.
        if node.null != nil || node.bool != nil && s.style == .plain {
            throw error(node, full, "expected a string, found \(Self.kind(node))")
        }
        guard !s.string.isEmpty else { throw error(node, full, "must not be empty") }
        return s.string
    }

    func strings(_ node: Node, _ section: String, _ key: String, nonEmpty: Bool) throws -> [String] {
        let full = Self.dotted(section, key)
        if case .scalar = node, node.null == nil { return [try string(node, section, key)] }  // one item without brackets
        if case .scalar = node, node.null != nil {
            if nonEmpty { throw error(node, full, "needs at least one entry") }
            return []
        }
        guard let seq = node.sequence else { throw error(node, full, "expected a list of strings, found \(Self.kind(node))") }
        let items = try seq.map { try string(Self.relocated($0, to: node.mark), section, key) }
        if nonEmpty && items.isEmpty { throw error(node, full, "needs at least one entry") }
        return items
    }

    func bool(_ node: Node, _ section: String, _ key: String) throws -> Bool {
        guard case .scalar = node, let b = node.bool else {
            throw error(node, Self.dotted(section, key), "expected true or false, found \(Self.kind(node))")
        }
        return b
    }

    func int(_ node: Node, _ section: String, _ key: String, in range: ClosedRange<Int>) throws -> Int {
        let full = Self.dotted(section, key)
        guard case .scalar = node, node.tag == Tag(.int), let v = node.int else {
            throw error(node, full, "expected a whole number, found \(Self.kind(node))")
        }
        guard range.contains(v) else { throw error(node, full, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func double(_ node: Node, _ section: String, _ key: String, in range: ClosedRange<Double>) throws -> Double {
        let full = Self.dotted(section, key)
        guard case .scalar = node, node.tag == Tag(.int) || node.tag == Tag(.float), let v = node.float, v.isFinite else {
            throw error(node, full, "expected a number, found \(Self.kind(node))")
        }
        guard range.contains(v) else { throw error(node, full, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ section: String, _ key: String) throws -> T where T.RawValue == String {
        let full = Self.dotted(section, key)
        let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
        guard case let .scalar(s) = node, let v = T(rawValue: s.string) else {
            throw error(node, full, "expected one of \(allowed), found \(Self.kind(node))")
        }
        return v
    }
}
