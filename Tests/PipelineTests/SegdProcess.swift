// Running the real segd binary from tests: its path next to the test bundle, a scratch
// directory per test, and the repository's fixture files.
import Foundation
import XCTest

enum Repo {
    /// The repository root (this file is Tests/PipelineTests/SegdProcess.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
    /// The tiny torchvision model of the reference fixtures: fast enough for many runs.
    static let tinyWeights = path("Tests/MaskRCNNTests/Fixtures/tiny/weights.safetensors")
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Segd {
    /// The segd executable built with the tests (same build directory as the test bundle).
    static var binary: String {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDir.appendingPathComponent("segd"), bundleDir.deletingLastPathComponent().appendingPathComponent("segd")] {
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
        }
        return bundleDir.appendingPathComponent("segd").path
    }

    /// Runs segd to completion with a timeout.
    @discardableResult
    static func run(_ args: [String], timeout: TimeInterval = 300, environment: [String: String] = [:]) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes while it runs so a chatty child cannot block on a full pipe.
        final class Collected: @unchecked Sendable {
            var data: [Data] = [Data(), Data()]
            let lock = NSLock()
        }
        let collected = Collected()
        let group = DispatchGroup()
        for (i, pipe) in [out, err].enumerated() {
            group.enter()
            DispatchQueue.global().async {
                let d = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.lock.withLock { collected.data[i] = d }
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            throw XCTSkip("segd \(args.joined(separator: " ")) did not finish in \(timeout) s")
        }
        p.waitUntilExit()
        group.wait()
        return ProcessResult(status: p.terminationStatus, stdout: String(decoding: collected.data[0], as: UTF8.self),
                             stderr: String(decoding: collected.data[1], as: UTF8.self))
    }
}

/// A fresh scratch directory removed after the test.
func scratchDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}
