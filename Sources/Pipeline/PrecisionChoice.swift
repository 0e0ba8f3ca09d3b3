// `precision: auto` on a CPU with native bf16: bf16 or fp32, whichever runs this model
// faster here, measured once on the model itself and kept.
//
// Why measure: native bf16 is not always the faster. One W1 image, R50, 2 threads, the
// same oneDNN ISA (avx512_core_bf16) on both: a Zen 4 EPYC ran bf16 at 1.43 s against
// fp32's 2.90 s, an Emerald Rapids guest without AMX at 3.56 s against 2.50 s. A probe of
// one 3×3 and one 1×1 convolution said bf16 was 2.46× faster on the latter, so only the
// whole model at its working size decides it.
import Foundation
import MaskRCNN
import Results
import Tensor

/// auto's decisions, one per (CPU, oneDNN, threads, model file, size settings), in a small
/// JSON file: the daemon's in `state_directory`, the CLI's in the user's cache folder. A
/// decision is measured again only when its key changes (another CPU, a new model file, a
/// moved VM) or the file is deleted.
struct PrecisionDecisions {
    struct Decision: Codable, Equatable {
        /// "bf16" or "fp32".
        var choice: String
        /// Seconds for one probe image, per precision name.
        var seconds: [String: Double]
        /// The probe image's size after the model's resize, H×W.
        var inputSize: [Int]
        /// When it was measured (ISO 8601, UTC).
        var measured: String

        enum CodingKeys: String, CodingKey {
            case choice, seconds, measured
            case inputSize = "input_size"
        }
    }

    private struct File: Codable {
        var schema = "segd.precision/1"
        var decisions: [String: Decision] = [:]
    }

    let path: String

    /// The file's decision for `key`; nil when there is none or the file cannot be read (a
    /// damaged file is measured over, never an error: it only saves start-up time).
    func lookup(_ key: String) -> Decision? {
        guard let data = FileManager.default.contents(atPath: path),
              let file = try? JSONDecoder().decode(File.self, from: data), file.schema == "segd.precision/1" else { return nil }
        return file.decisions[key]
    }

    func store(_ key: String, _ decision: Decision) throws {
        var file = FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(File.self, from: $0) } ?? File()
        file.decisions[key] = decision
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicWrite.createParentDirectory(of: path)
        try AtomicWrite.write(try encoder.encode(file), to: path)
    }

    /// `$XDG_CACHE_HOME/segd/precision.json`, else `~/.cache/segd/precision.json`; nil
    /// without either (then auto measures at every start).
    static var userDefault: String? {
        let env = ProcessInfo.processInfo.environment
        if let x = env["XDG_CACHE_HOME"], x.hasPrefix("/") { return x + "/segd/precision.json" }
        if let h = env["HOME"], h.hasPrefix("/") { return h + "/.cache/segd/precision.json" }
        return nil
    }
}

enum PrecisionChoice {
    /// The probe image: COCO's typical 640×480, resized by the model's own min/max size.
    static let probeWidth = 640, probeHeight = 480

    /// The model in the one candidate precision, or auto's measured choice between two.
    /// `build` makes the model in a precision (with the run's settings applied); `modelID`
    /// identifies the weights file (its SHA-256, which covers the metadata that may set the
    /// model's sizes) and `request` the settings that change its work (sizes, detections),
    /// so a kept decision is found before any model is built and only the chosen one is.
    static func model(candidates: [ResolvedPrecision], modelID: String, request: String, decisions: PrecisionDecisions?,
                      build: (ResolvedPrecision) throws -> MaskRCNN) throws -> MaskRCNN {
        guard candidates.count > 1 else { return try build(candidates[0]) }
        let key = [
            "cpu=\(cpuModelName)", "isa=\(Device.cpu.isa)", "onednn=\(Device.oneDNNVersion)",
            "threads=\(ProcessInfo.processInfo.activeProcessorCount)", "model=\(modelID)", request,
        ].joined(separator: " ")
        if let d = decisions?.lookup(key), let chosen = candidates.first(where: { $0.name == d.choice }) {
            let model = try build(chosen)
            model.explainPrecision("auto: \(summary(d, against: candidates.map(\.name))), measured on this CPU on \(d.measured.prefix(10)); kept in \(decisions!.path)")
            return model
        }
        // One candidate alive at a time: R50 in both at once peaked at 648 MiB on the first
        // start (both weight sets beside one's activations), over the 0.6 GB budget.
        var probe: MaskRCNN?
        var seconds: [Double] = []
        for c in candidates {
            probe = nil
            probe = try build(c)
            seconds.append(try measure(probe!))
        }
        let (h, w) = probe!.resizedSize(height: probeHeight, width: probeWidth)
        let best = seconds.indices.min { seconds[$0] < seconds[$1] }!
        if best != candidates.count - 1 { probe = nil; probe = try build(candidates[best]) }
        let decision = PrecisionDecisions.Decision(
            choice: candidates[best].name,
            seconds: Dictionary(uniqueKeysWithValues: zip(candidates.map(\.name), seconds)),
            inputSize: [h, w], measured: DaemonLogHandler.iso8601(Date().timeIntervalSince1970, utc: true))
        var why = "auto: \(summary(decision, against: candidates.map(\.name))), measured on this CPU just now"
        if let decisions {
            do { try decisions.store(key, decision) } catch { why += "; not kept (\(error))" }
        }
        probe!.explainPrecision(why)
        return probe!
    }

    /// "bf16, 1.43 s against fp32's 2.90 s for a 800×1066 input (oneDNN ISA avx512_core_bf16)".
    static func summary(_ d: PrecisionDecisions.Decision, against names: [String]) -> String {
        func s(_ n: String) -> String { d.seconds[n].map { String(format: "%.3f s", $0) } ?? "?" }
        let others = names.filter { $0 != d.choice }.map { "\($0)'s \(s($0))" }.joined(separator: ", ")
        let size = d.inputSize.map(String.init).joined(separator: "×")
        return "\(d.choice), \(s(d.choice)) against \(others) for a \(size) input (oneDNN ISA \(Device.cpu.isa))"
    }

    /// Seconds for one probe image: once to create the primitives, fp32 a second time
    /// (measured winograd times direct on a layer's first call at a size and winograd on its
    /// second), then once more, timed. The box score threshold is 0 meanwhile, so the mask
    /// head runs on `detectionsPerImage` detections whatever the image: the cost of a busy
    /// scene, not of an empty one.
    static func measure(_ m: MaskRCNN) throws -> Double {
        // A fixed pseudo-random pattern (Knuth's multiplicative hash): its values do not
        // matter, only that every run times the same image.
        let rgb = (0..<(probeWidth * probeHeight * 3)).map { UInt8(truncatingIfNeeded: (UInt32($0) &* 2_654_435_761) >> 24) }
        let image = ModelImage(width: probeWidth, height: probeHeight, rgb: rgb)
        let threshold = m.config.box.scoreThreshold
        m.setInferenceOptions(scoreThreshold: 0)
        defer { m.setInferenceOptions(scoreThreshold: threshold) }
        _ = try m([image])
        if m.precision.dtype == .f32 { _ = try m([image]) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try m([image])
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// /proc/cpuinfo's first "model name" (part of the key: a VM moved to another host
    /// measures again).
    static var cpuModelName: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
