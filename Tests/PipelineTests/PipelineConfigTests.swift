// pipeline.yml: the documented file is exactly the defaults, every key is read, and every
// kind of mistake is an error naming the key and its line.
import Foundation
import Pipeline
import XCTest

final class PipelineConfigTests: XCTestCase {
    func parse(_ text: String) throws -> PipelineConfig {
        try PipelineConfig.parse(text, path: "p.yml", baseDirectory: "/base")
    }

    /// The error message for `text` (the test fails when it parses).
    func error(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try parse(text)
            XCTFail("parsed: \(text)", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testDocumentedFileIsExactlyTheDefaults() throws {
        let c = try PipelineConfig.load(path: DaemonFixture.repoRoot + "/pipeline.yml")
        XCTAssertEqual(c, PipelineConfig())
        XCTAssertEqual(try parse(""), PipelineConfig(), "an empty file is all defaults")
    }

    func testEveryKeyIsRead() throws {
        let c = try parse("""
            model:
              weights: m/w.pth
              precision: bf16
              score_threshold: 0.7
              mask_threshold: 0.4
              max_detections: 20
              min_size: 600
              max_size: 1000
              frozen_bn_epsilon: 1e-5
            inputs:
              directories: [a, /abs/b]
              recursive: false
              include: ["*.png"]
              exclude: []
              stable_ms: 100
              rescan_interval_s: 60
              poll_interval_ms: 500
              max_pixels: 1000
              max_pages: 7
            outputs:
              directory: o
              json: false
              annotated: false
              jpeg_quality: 75
              annotated_format: jpeg
              polygons: true
            after:
              success: delete
              failure: keep
              done_directory: d
              failed_directory: f
            state_directory: s
            batching:
              max_batch: 4
              max_delay_ms: 200
            queues:
              bound: 8
            workers: 2
            log_level: warning
            service:
              drain_timeout_s: 5
              status_interval_s: 2
              stall_timeout_s: 30
              max_crashes: 5
            """)
        XCTAssertEqual(c.model.weights, "/base/m/w.pth")
        XCTAssertEqual(c.model.scoreThreshold, 0.7)
        XCTAssertEqual(c.model.maskThreshold, 0.4)
        XCTAssertEqual(c.model.maxDetections, 20)
        XCTAssertEqual(c.model.minSize, 600)
        XCTAssertEqual(c.model.maxSize, 1000)
        XCTAssertEqual(c.model.frozenBNEpsilon, 1e-5)
        // model.precision does what it says: it reaches the settings every result records.
        XCTAssertEqual(c.model.precision, .bf16)
        XCTAssertEqual(c.inferenceSettings.precision, .bf16)
        XCTAssertEqual(c.inputs.directories, ["/base/a", "/abs/b"])
        XCTAssertEqual(c.inputs.recursive, false)
        XCTAssertEqual(c.inputs.include, ["*.png"])
        XCTAssertEqual(c.inputs.exclude, [])
        XCTAssertEqual(c.inputs.stableMs, 100)
        XCTAssertEqual(c.inputs.rescanIntervalS, 60)
        XCTAssertEqual(c.inputs.pollIntervalMs, 500)
        XCTAssertEqual(c.inputs.maxPixels, 1000)
        XCTAssertEqual(c.outputs.directory, "/base/o")
        XCTAssertEqual(c.outputs.json, false)
        XCTAssertEqual(c.outputs.annotated, false)
        XCTAssertEqual(c.outputs.jpegQuality, 75)
        XCTAssertEqual(c.outputs.annotatedFormat, .jpeg)
        XCTAssertEqual(c.inputs.maxPages, 7)
        XCTAssertEqual(c.outputs.polygons, true)
        XCTAssertEqual(c.after.success, .delete)
        XCTAssertEqual(c.after.failure, .keep)
        XCTAssertEqual(c.after.doneDirectory, "/base/d")
        XCTAssertEqual(c.after.failedDirectory, "/base/f")
        XCTAssertEqual(c.stateDirectory, "/base/s")
        XCTAssertEqual(c.batching.maxBatch, 4)
        XCTAssertEqual(c.batching.maxDelayMs, 200)
        XCTAssertEqual(c.queues.bound, 8)
        XCTAssertEqual(c.workers, 2)
        XCTAssertEqual(c.logLevel, .warning)
        XCTAssertEqual(c.service.drainTimeoutS, 5)
        XCTAssertEqual(c.service.statusIntervalS, 2)
        XCTAssertEqual(c.service.stallTimeoutS, 30)
        XCTAssertEqual(c.service.maxCrashes, 5)
        // The pipeline gets what the file says.
        XCTAssertEqual(c.pipelineOptions.maxBatch, 4)
        XCTAssertEqual(c.pipelineOptions.queueBound, 8)
        XCTAssertEqual(c.pipelineOptions.output.jpegQuality, 75)
        XCTAssertEqual(c.pipelineOptions.output.annotatedFormat, .jpeg)
        XCTAssertEqual(c.pipelineOptions.decode.limits.maxPages, 7)
        XCTAssertEqual(c.inferenceSettings.maxDetections, 20)
    }

    func testMistakesNameKeyAndLine() {
        XCTAssertEqual(error("model:\n  weights: x\n  wieghts: y\n"), "p.yml:3: model.wieghts: unknown key")
        XCTAssertEqual(error("inputs:\n  directories: [a]\nouput:\n  directory: o\n"), "p.yml:3: ouput: unknown key")
        XCTAssertEqual(error("batching:\n  max_batch: four\n"), "p.yml:2: batching.max_batch: expected a whole number, found 'four'")
        XCTAssertEqual(error("batching:\n  max_batch: 2.5\n"), "p.yml:2: batching.max_batch: expected a whole number, found '2.5'")
        XCTAssertEqual(error("outputs:\n  jpeg_quality: 0\n"), "p.yml:2: outputs.jpeg_quality: 0 is outside 1...100")
        XCTAssertEqual(error("model:\n\n  mask_threshold: 1.5\n"), "p.yml:3: model.mask_threshold: 1.5 is outside 0.0...1.0")
        XCTAssertEqual(error("after:\n  success: archive\n"), "p.yml:2: after.success: expected one of keep, move, delete, found 'archive'")
        XCTAssertEqual(error("model:\n  precision: fp8\n"), "p.yml:2: model.precision: expected one of auto, fp32, bf16, found 'fp8'")
        XCTAssertEqual(error("inputs:\n  recursive: sometimes\n"), "p.yml:2: inputs.recursive: expected true or false, found 'sometimes'")
        XCTAssertEqual(error("inputs:\n  directories: []\n"), "p.yml:2: inputs.directories: needs at least one entry")
        XCTAssertEqual(error("model:\n  min_size: 800\n  max_size: 600\n"), "p.yml:3: model.max_size: 600 is smaller than model.min_size 800")
        XCTAssertEqual(error("model: fast\n"), "p.yml:1: model: expected a mapping of keys, found 'fast'")
        XCTAssertEqual(error("queues:\n  bound: 0\n"), "p.yml:2: queues.bound: 0 is outside 1...1024")
        XCTAssertEqual(error("inputs:\n  directories: [in]\noutputs:\n  directory: .\n"),
                       "p.yml:4: outputs.directory: /base is the input directory /base/in or holds it; choose a folder outside it")
        XCTAssertTrue(error("model:\n  weights: a\n  weights: b\n").hasPrefix("p.yml:"), "duplicate keys are refused")
        XCTAssertTrue(error("inputs:\n  directories: [a\n").hasPrefix("p.yml:3: not valid YAML"), error("inputs:\n  directories: [a\n"))
    }

    func testNullMeansTheModelsOwnValue() throws {
        let c = try parse("model:\n  score_threshold: null\n  max_detections: ~\n")
        XCTAssertNil(c.model.scoreThreshold)
        XCTAssertNil(c.model.maxDetections)
        XCTAssertEqual(error("model:\n  mask_threshold: null\n"), "p.yml:2: model.mask_threshold: expected a number, found nothing (null)")
    }

    func testCheckConfigCommand() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-check-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func run(_ text: String) throws -> (Int32, String) {
            try text.write(toFile: dir + "/p.yml", atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: DaemonFixture.binary)
            p.arguments = ["check-config", dir + "/p.yml"]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (p.terminationStatus, out)
        }
        let (ok, okText) = try run("model:\n  weights: \(DaemonFixture.fastWeights)\n")
        XCTAssertEqual(ok, 0, okText)
        XCTAssertTrue(okText.contains("p.yml: valid"), okText)
        let (bad, badText) = try run("batching:\n  max_batch: 0\n")
        XCTAssertEqual(bad, 78, badText)
        XCTAssertTrue(badText.contains("p.yml:2: batching.max_batch: 0 is outside 1...64"), badText)
    }
}
