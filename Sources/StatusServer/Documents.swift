// The JSON the endpoint serves: a job's record (GET /jobs/ID) and the daemon's view
// (GET /status, what `segd status --url` prints).
import Foundation
import Pipeline

/// A job as GET /jobs/ID shows it (schema segd.job/1): the journal row, its outputs as
/// URLs of this endpoint (never as paths to fetch).
struct JobDocument: Encodable {
    struct Output: Encodable {
        var file: String
        var url: String
    }

    var schema = "segd.job/1"
    var id: Int64
    var status: String
    var input: String
    var finalPath: String?
    var attempts: Int
    var error: String?
    var batchSize: Int?
    var timingsMs: [String: Double]?
    var duplicateOf: Int64?
    var queuedAt: Double
    var startedAt: Double?
    var finishedAt: Double?
    var outputs: [Output]

    enum CodingKeys: String, CodingKey {
        case schema, id, status, input, attempts, error, outputs
        case finalPath = "final_path", batchSize = "batch_size", timingsMs = "timings_ms", duplicateOf = "duplicate_of"
        case queuedAt = "queued_at", startedAt = "started_at", finishedAt = "finished_at"
    }

    init(_ e: JournalEntry) {
        id = e.id
        status = e.status.rawValue
        input = e.path
        finalPath = e.finalPath
        attempts = e.attempts
        error = e.error
        batchSize = e.batchSize
        timingsMs = e.timings.flatMap { try? JSONDecoder().decode([String: Double].self, from: Data($0.utf8)) }
        duplicateOf = e.duplicateOf
        queuedAt = e.queuedAt
        startedAt = e.startedAt
        finishedAt = e.finishedAt
        outputs = Self.outputs(of: e).enumerated().map { Output(file: ($0.element as NSString).lastPathComponent, url: "/jobs/\(e.id)/outputs/\($0.offset)") }
    }

    /// The files the job wrote, as the journal lists them.
    static func outputs(of e: JournalEntry) -> [String] {
        guard let o = e.outputs else { return [] }
        return (try? JSONDecoder().decode([String].self, from: Data(o.utf8))) ?? []
    }

    static func isImage(_ path: String) -> Bool { ["jpg", "jpeg", "png"].contains((path as NSString).pathExtension.lowercased()) }
    static func isJSON(_ path: String) -> Bool { (path as NSString).pathExtension.lowercased() == "json" }
}

/// GET /status.
struct StatusDocument: Codable {
    struct Failure: Codable {
        var id: Int64
        var input: String
        var reason: String
        var attempts: Int
        var finishedAt: Double?
        enum CodingKeys: String, CodingKey { case id, input, reason, attempts, finishedAt = "finished_at" }
    }

    struct Journal: Codable {
        var counts: [String: Int]
        var duplicates: Int
        var finishedLastMinute: Int
        var finishedLast10Minutes: Int
        var finishedLastHour: Int
        var meanLatency: Double?
        var recentFailures: [Failure]

        enum CodingKeys: String, CodingKey {
            case counts, duplicates
            case finishedLastMinute = "finished_last_minute", finishedLast10Minutes = "finished_last_10_minutes"
            case finishedLastHour = "finished_last_hour", meanLatency = "mean_latency_s", recentFailures = "recent_failures"
        }

        init(_ f: JournalFacts) {
            let s = f.summary
            counts = Dictionary(uniqueKeysWithValues: JobStatus.allCases.map { ($0.rawValue, s.counts[$0] ?? 0) })
            duplicates = s.duplicates
            finishedLastMinute = s.finishedLastMinute
            finishedLast10Minutes = s.finishedLast10Minutes
            finishedLastHour = s.finishedLastHour
            meanLatency = s.meanLatency
            recentFailures = s.recentFailures.map { Failure(id: $0.id, input: $0.path, reason: $0.error ?? "no reason recorded", attempts: $0.attempts, finishedAt: $0.finishedAt) }
        }
    }

    var daemon: DaemonSnapshot
    var journal: Journal?
}

extension StatusDocument {
    /// What `segd status --url` prints.
    func text() -> String {
        let d = daemon
        var out = "daemon: pid \(d.pid), \(d.ready ? "ready" : "starting"), \(d.healthProblem.map { "UNHEALTHY: \($0)" } ?? "healthy")\n"
        if let m = d.model { out += "model: \(m.name) (\(m.backbone), \(m.precision))\n" }
        out += "this process: \(d.statusLine)\n"
        out += "queues: " + d.queues.map { q in "\(q.name) \(q.depth)" + (q.capacity.map { "/\($0)" } ?? "") }.joined(separator: ", ") + "\n"
        if let w = d.watcher { out += "watcher: \(w)\n" }
        if let j = journal {
            out += "journal: " + JobStatus.allCases.map { "\($0.rawValue) \(j.counts[$0.rawValue] ?? 0)" }.joined(separator: ", ")
            if j.duplicates > 0 { out += " (\(j.duplicates) duplicates)" }
            out += "\n"
            out += "finished: \(j.finishedLastMinute) in the last minute, \(j.finishedLastHour) in the last hour\n"
            if !j.recentFailures.isEmpty {
                out += "recent failures:\n"
                for f in j.recentFailures { out += "  job \(f.id)  \(f.input)  (attempts \(f.attempts))\n    \(f.reason)\n" }
            }
        }
        return out
    }
}
