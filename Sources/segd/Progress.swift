// Progress of a batch run: a one-line bar with images/s and ETA when stderr is a
// terminal, plain log lines otherwise (journald, CI logs).
import Foundation
import Pipeline

final class Progress: @unchecked Sendable {
    let total: Int
    let isTerminal = isatty(STDERR_FILENO) != 0
    let start = Date()
    private let lock = NSLock()

    init(total: Int) { self.total = total }

    func update(done: Int, job: Job) {
        lock.withLock {
            let elapsed = Date().timeIntervalSince(start)
            let rate = elapsed > 0 ? Double(done) / elapsed : 0
            let eta = rate > 0 ? Double(total - done) / rate : 0
            if isTerminal {
                let width = 30
                let filled = total > 0 ? width * done / total : width
                let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
                let line = String(format: "\r%@ %d/%d  %.2f img/s  ETA %@ ", bar, done, total, rate, Self.clock(eta))
                FileHandle.standardError.write(Data(line.utf8))
                if let e = job.failure { FileHandle.standardError.write(Data("\n\(job.inputPath): \(e)\n".utf8)) }
            } else {
                let status = job.failure.map { "failed: \($0)" } ?? "done"
                FileHandle.standardError.write(Data("[\(done)/\(total)] \(job.inputPath): \(status)\n".utf8))
            }
        }
    }

    func finish() { if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) } }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60)
    }
}
