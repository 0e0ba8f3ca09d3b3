// `segd bench-journal`: what the journal costs per job, the figure that bounds how many
// nodes one database can feed. It admits synthetic jobs, then `workers` threads (each a
// worker, as nodes are) loop over claim(max: batch) → begin → finish → setFinalPath, which is
// every journal call of a job's processing path, and time each job's share. Not part of the
// tests (timings are not asserted anywhere): run it on a scratch database.
import Foundation

public enum JournalBench {
    public struct Report: Sendable {
        public var jobs: Int
        public var batch: Int
        public var workers: Int
        /// Per job: admit alone, and claim share + begin + finish + setFinalPath, ms.
        public var admitMs: [Double]
        public var processMs: [Double]
        public var seconds: Double

        static func percentile(_ v: [Double], _ p: Double) -> Double {
            guard !v.isEmpty else { return .nan }
            let s = v.sorted()
            return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
        }

        public func text(location: String) -> String {
            let m = Self.percentile(processMs, 0.5), p99 = Self.percentile(processMs, 0.99)
            var out = "journal: \(location)\n"
            out += "\(jobs) jobs, claims of up to \(batch), \(workers) concurrent workers\n"
            out += String(format: "admit:                       median %.2f ms, p99 %.2f ms per job\n",
                          Self.percentile(admitMs, 0.5), Self.percentile(admitMs, 0.99))
            out += String(format: "claim+begin+finish+final:    median %.2f ms, p99 %.2f ms per job\n", m, p99)
            out += String(format: "sustained: %.0f jobs/s over %.2f s with %d workers\n", Double(jobs) / seconds, seconds, workers)
            return out
        }
    }

    /// `journals`: one per worker (each node has its own connection); the first admits.
    public static func run(journals: [any JobJournal], jobs: Int, batch: Int) throws -> Report {
        let journal = journals[0], workers = journals.count
        let run = UUID().uuidString.prefix(8)
        var admitMs: [Double] = []
        for i in 0..<jobs {
            let input = JournalInput(path: "/bench/\(run)/\(i).png", root: "/bench/\(run)", relative: "\(i).png", size: 1000,
                                     mtimeNs: Int64(i), hash: "bench-\(run)-\(i)", model: "bench")
            let t = Date()
            _ = try journal.admit(input)
            admitMs.append(Date().timeIntervalSince(t) * 1000)
        }
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var processMs: [Double] = []
            var failure: (any Error)?
        }
        let results = Results()
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let journal = journals[w]
            let worker = WorkerID(host: "bench", pid: Int32(w), tag: String(run))
            var mine: [Double] = []
            do {
                while true {
                    let t = Date()
                    let claimed = try journal.claim(max: batch, worker: worker, lease: 60)
                    if claimed.isEmpty { break }
                    for e in claimed {
                        _ = try journal.begin(e.ticket, worker: worker)
                        _ = try journal.finish(e.ticket, worker: worker, status: .done, error: nil, outputs: ["\(e.id).json"],
                                               timings: ["decode": 1], batchSize: claimed.count)
                        try journal.setFinalPath(id: e.id, "/bench/done/\(e.id).png")
                    }
                    let each = Date().timeIntervalSince(t) * 1000 / Double(claimed.count)
                    mine += Array(repeating: each, count: claimed.count)
                }
            } catch {
                results.lock.withLock { results.failure = error }
            }
            results.lock.withLock { results.processMs += mine }
        }
        if let failure = results.failure { throw failure }
        return Report(jobs: results.processMs.count, batch: batch, workers: workers, admitMs: admitMs, processMs: results.processMs,
                      seconds: Date().timeIntervalSince(start))
    }
}
