// segd's command line: argument parsing, progress display and exit codes only; the work
// is in Pipeline.
import ArgumentParser
import Foundation
import MaskRCNN
import Pipeline
import Tensor

/// Exit codes: 0 all inputs done; 3 some inputs failed (the rest written); 64 bad usage
/// (EX_USAGE); 1 anything else fatal (model file unreadable, output not writable).
enum ExitCodes {
    static let someFailed: Int32 = 3
    static let usage: Int32 = 64
    static let fatal: Int32 = 1
}

@main
struct Segd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segd",
        abstract: "Instance segmentation (Mask R-CNN) for folders of images.",
        subcommands: [Batch.self, Watch.self, Status.self, CheckConfig.self, Bench.self, BenchJournal.self, Model.self])

    /// Runs a command body, mapping segd's errors to a message and an exit code.
    static func guarded(_ body: () throws -> Void) throws {
        do { try body() } catch let e as ExitCode {
            throw e
        } catch let e as PipelineError {
            FileHandle.standardError.write(Data("segd: \(e)\n".utf8))
            if case .noInputs = e { throw ExitCode(ExitCodes.usage) }
            throw ExitCode(ExitCodes.fatal)
        } catch {
            FileHandle.standardError.write(Data("segd: \(error)\n".utf8))
            throw ExitCode(ExitCodes.fatal)
        }
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "Weights file: torchvision .pth (zip or legacy) or segd .safetensors (default: the shipped sample model).")
    var weights: String?

    @Option(help: "Box score threshold (default: the model's, 0.05 for torchvision).")
    var score: Float?

    @Option(name: .customLong("frozen-bn-eps"), help: "Frozen BatchNorm epsilon (default: the file's metadata, else 0.0 as torchvision's COCO checkpoint).")
    var frozenBNEps: Float?

    @Option(help: "auto (where this CPU computes bf16 natively, AMX or AVX512_BF16: the faster of bf16 and fp32 for this model, measured once and kept in ~/.cache/segd/precision.json; fp32 elsewhere), fp32 (torchvision's arithmetic) or bf16.")
    var precision: Precision?
    @Option(help: "Class names of a fine-tuned model: a text file with one name a line, background first, or a JSON list (default: the weights file's).")
    var labels: String?

    @Option(name: .customLong("min-size"), help: "Resize the shorter side to this (torchvision's min_size; default: the file's metadata, else 800).")
    var minSize: Int?

    @Option(name: .customLong("max-size"), help: "Cap the longer side at this (torchvision's max_size; default: the file's metadata, else 1333).")
    var maxSize: Int?

    var settings: InferenceSettings {
        var s = InferenceSettings()
        s.scoreThreshold = score
        s.frozenBNEpsilon = frozenBNEps
        if let precision { s.precision = precision }
        s.labels = labels
        s.minSize = minSize
        s.maxSize = maxSize
        return s
    }

    func validate() throws {
        for (flag, v) in [("--min-size", minSize), ("--max-size", maxSize)] {
            if let v, !(32...8192).contains(v) { throw ValidationError("\(flag) must be 32...8192") }
        }
        if let lo = minSize, let hi = maxSize, lo > hi { throw ValidationError("--max-size must be at least --min-size") }
    }

    var weightsPath: String { weights ?? Defaults.weights }
}

enum Defaults {
    /// The model segd ships, next to the binary's repository or installed beside it.
    static var weights: String {
        let candidates = ["samples/model/shapes_r18.safetensors", "/usr/local/share/segd/shapes.safetensors"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }
}

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Segment files, directories (recursively) and globs once.")

    @Argument(help: "Image files, directories or glob patterns.")
    var inputs: [String]

    @Option(name: .long, help: "Output directory (the input tree is mirrored under it; default out, or the config's outputs.directory).")
    var out: String?

    @Option(help: "pipeline.yml whose model, outputs, batching and limits settings apply; flags override it.")
    var config: String?

    @OptionGroup var model: ModelOptions

    @Option(name: .customLong("mask-threshold"), help: "Mask probability threshold (default 0.5).")
    var maskThreshold: Float?

    @Option(name: .customLong("max-detections"), help: "Detections per image at most.")
    var maxDetections: Int?

    @Flag(name: .customLong("no-annotate"), help: "Do not write annotated images.")
    var noAnnotate = false

    @Flag(name: .customLong("json-only"), help: "Write only the JSON results (and the COCO file).")
    var jsonOnly = false

    @Flag(name: .customLong("skip-existing"), help: "Skip inputs whose outputs exist (continue an interrupted run).")
    var skipExisting = false

    @Flag(help: "Also write instance outlines as polygons in the JSON.")
    var polygons = false

    @Option(name: .customLong("jpeg-quality"), help: "Quality of annotated JPEGs, 1-100 (default 90).")
    var jpegQuality: Int?

    @Option(name: .customLong("annotated-format"),
            help: "Annotated image format: auto (JPEG for JPEG inputs, PNG for all others), jpeg or png (default auto).")
    var annotatedFormat: String?

    @Option(name: .customLong("max-batch"), help: "Images per model batch (default 1).")
    var maxBatch: Int?

    @Option(name: .customLong("annotate-score"), help: "Draw instances scoring at least this on the annotated images (default 0.5; the JSON keeps all).")
    var annotateScore: Float?

    func validate() throws {
        if let q = jpegQuality, !(1...100).contains(q) { throw ValidationError("--jpeg-quality must be 1...100") }
        if let f = annotatedFormat, AnnotatedFormat(rawValue: f) == nil {
            throw ValidationError("--annotated-format must be one of auto, jpeg, png")
        }
        if let b = maxBatch, b < 1 { throw ValidationError("--max-batch must be at least 1") }
        if let m = maskThreshold, !(0...1).contains(m) { throw ValidationError("--mask-threshold must be within 0...1") }
    }

    func run() throws {
        OpenMPEnvironment.ensure()
        try Segd.guarded {
            // Settings: defaults, then pipeline.yml, then the flags given.
            let file = try config.map { try PipelineConfig.load(path: $0) }
            var s = file?.inferenceSettings ?? InferenceSettings()
            var options = file?.pipelineOptions ?? PipelineOptions()
            if file == nil { options.output.directory = "out" }
            if let v = model.score { s.scoreThreshold = v }
            if let v = model.frozenBNEps { s.frozenBNEpsilon = v }
            if let v = model.precision { s.precision = v }
            if let v = model.labels { s.labels = v }
            if let v = model.minSize { s.minSize = v }
            if let v = model.maxSize { s.maxSize = v }
            if let v = maskThreshold { s.maskThreshold = v }
            if let v = maxDetections { s.maxDetections = v }
            if let v = out { options.output.directory = v }
            if let v = maxBatch { options.maxBatch = v }
            if let v = jpegQuality { options.output.jpegQuality = v }
            if let v = annotatedFormat.flatMap(AnnotatedFormat.init(rawValue:)) { options.output.annotatedFormat = v }
            if noAnnotate || jsonOnly { options.output.annotate = false }
            if polygons { options.output.polygons = true }
            if let v = annotateScore { options.output.annotateMinScore = v }
            let weights = model.weights ?? file?.model.weights ?? Defaults.weights

            let files = try Inputs.collect(inputs)
            guard !files.isEmpty else { throw PipelineError.noInputs(reason: "\(inputs.joined(separator: " ")) holds no image files (.jpg, .jpeg, .jpe, .png, .webp, .tif, .tiff, .heic, .heif, .avif)") }
            let segmenter = try Segmenter(weights: weights, settings: s)
            FileHandle.standardError.write(Data("segd: \(segmenter.modelInfo.name) on \(Device.cpu), \(OpenMPEnvironment.summary), precision \(segmenter.model.precision)\n".utf8))
            let progress = Progress(total: files.count)
            let summary = try BatchRun(inputs: files, options: options, skipExisting: skipExisting)
                .run(segmenter: segmenter) { done, total, job in progress.update(done: done, job: job) }
            progress.finish()
            FileHandle.standardError.write(Data(summary.report().utf8))
            if !summary.failures.isEmpty { throw ExitCode(ExitCodes.someFailed) }
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time each model stage on this machine (decode excluded).")

    @OptionGroup var model: ModelOptions

    @Option(help: "Timed passes over the images after one warm-up.")
    var `repeat` = 3

    @Option(help: "Images per model call (the images cycle to fill each batch).")
    var batch = 1

    @Option(help: "fp32 3×3 layers: measured (the CPU's winograd — oneDNN's on AVX-512, segd's own elsewhere — where it times faster within its memory budget, the default), off (direct), always (the CPU's winograd wherever it runs), own (segd's winograd F(4×4,3×3) wherever it runs).")
    var winograd: WinogradPolicy = .measured

    @Argument(help: "Images to time.")
    var images: [String]

    func run() throws {
        OpenMPEnvironment.ensure()
        try Segd.guarded {
            Device.cpu.winograd = winograd
            let segmenter = try Segmenter(weights: model.weightsPath, settings: model.settings)
            FileHandle.standardError.write(Data("segd: \(segmenter.modelInfo.name) on \(Device.cpu), \(OpenMPEnvironment.summary), precision \(segmenter.model.precision)\n".utf8))
            let report = try Pipeline.Bench.run(model: segmenter.model, imagePaths: images, repeat: `repeat`, batch: batch) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            print(report.report(), terminator: "")
        }
    }
}

struct Model: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Inspect or convert a weights file.", subcommands: [Info.self, Convert.self])

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Architecture and per-layer output size, parameters and FLOPs.")

        @Argument(help: "Weights file.")
        var weights: String

        @Option(help: "Padded input size HxW the table is computed for.")
        var input: String = "800x1216"

        @Option(name: .customLong("frozen-bn-eps"), help: "Frozen BatchNorm epsilon.")
        var frozenBNEps: Float?

        @Option(help: "Class names file (one a line, background first, or a JSON list).")
        var labels: String?

        func run() throws {
            let parts = input.lowercased().split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 >= 32 }) else { throw ValidationError("--input must look like 800x1216") }
            try Segd.guarded {
                let names = try labels.map { try ClassNames(contentsOf: $0) }
                let m = try MaskRCNN(contentsOf: weights, frozenBNEpsilon: frozenBNEps, classNames: names)
                print("weights: \(weights)")
                print("classes: \(m.config.classNames.count) (\(m.config.classNames.prefix(6).joined(separator: ", "))\(m.config.classNames.count > 6 ? ", …" : ""))")
                let eps = m.architecture.layout == .v2 ? "BatchNorm2d epsilon: \(m.config.batchNormEpsilon)" : "frozen BN epsilon: \(m.config.frozenBNEpsilon)"
                print("\(eps); resize \(m.config.minSize)/\(m.config.maxSize)")
                print(m.summary(height: parts[0], width: parts[1]).table(), terminator: "")
            }
        }
    }

    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a weights file as segd safetensors, with the class names, BatchNorm ε and architecture in its metadata.")

        @Argument(help: "Weights file to convert (torchvision .pth, zip or legacy, or .safetensors).")
        var weights: String

        @Option(help: "Output .safetensors file.")
        var out: String

        @Option(help: "Class names file (one a line, background first, or a JSON list) to record.")
        var labels: String?

        @Option(name: .customLong("frozen-bn-eps"), help: "Frozen BatchNorm epsilon to record (default: the file's metadata, else 0.0).")
        var frozenBNEps: Float?

        @Option(name: .customLong("min-size"), help: "min_size to record (default: the file's, else torchvision's 800).")
        var minSize: Int?

        @Option(name: .customLong("max-size"), help: "max_size to record (default: the file's, else torchvision's 1333).")
        var maxSize: Int?

        func run() throws {
            try Segd.guarded {
                let names = try labels.map { try ClassNames(contentsOf: $0) }
                let r = try ModelConverter.convert(input: weights, output: out, classNames: names, frozenBNEpsilon: frozenBNEps,
                                                   minSize: minSize, maxSize: maxSize)
                print("\(out): \(r.architecture), \(r.classes) classes, \(r.tensors) tensors, \(r.bytes) bytes"
                      + (r.droppedCounters > 0 ? " (\(r.droppedCounters) BatchNorm num_batches_tracked counters left out)" : ""))
                for (file, read, load) in [(weights, r.inputReadSeconds, r.inputLoadSeconds), (out, r.outputReadSeconds, r.outputLoadSeconds)] {
                    print(String(format: "load time %@: %.0f ms (reading the tensors %.0f ms, building the model %.0f ms)",
                                 file, load * 1000, read * 1000, (load - read) * 1000))
                }
            }
        }
    }
}

extension Precision: ExpressibleByArgument {}
extension WinogradPolicy: ExpressibleByArgument {}
