// `segd status`: what the journal says — jobs per status, throughput, recent failures with
// their reasons, and for a shared journal every node of the cluster. It reads the database
// only (WAL lets it read while the daemon writes), so it works whether or not the daemon runs.
import Foundation

public enum StatusReport {
    public static func text(journal: any JobJournal, failures: Int = 10) throws -> String {
        let s = try journal.summary(failures: failures)
        var out = "journal: \(journal.location)\n"
        let counts = JobStatus.allCases.map { "\($0.rawValue) \(s.counts[$0] ?? 0)" }.joined(separator: ", ")
        out += "jobs: \(counts)"
        if s.duplicates > 0 { out += " (\(s.duplicates) of the done were duplicates, not processed again)" }
        out += "\n"
        out += String(format: "throughput: %.2f images/s over the last minute, %.2f over 10 min, %d images in the last hour\n",
                      Double(s.finishedLastMinute) / 60, Double(s.finishedLast10Minutes) / 600, s.finishedLastHour)
        if let l = s.meanLatency { out += String(format: "latency: %.2f s per image from start to finish (mean of the last 100)\n", l) }
        if let t = s.lastFinishedAt { out += "last finished: \(Self.time(t))\n" }
        if let pg = journal as? PostgresJournal { out += try nodes(pg) }
        if !s.recentFailures.isEmpty {
            out += "recent failures:\n"
            for e in s.recentFailures {
                let when = e.finishedAt.map(Self.time) ?? "-"
                out += "  \(when)  \(e.path)  (attempts \(e.attempts))\n    \(e.error ?? "no reason recorded")\n"
                if let f = e.finalPath, f != e.path { out += "    now at \(f)\n" }
            }
        }
        return out
    }

    /// One line per node; a heartbeat older than two minutes is marked (the node stopped
    /// or lost the database; its claims go to other nodes when their leases lapse).
    static func nodes(_ journal: PostgresJournal) throws -> String {
        let nodes = try journal.nodes()
        let now = try journal.serverTime()
        var out = "nodes: \(nodes.count)\n"
        for n in nodes {
            let age = max(0, now - n.heartbeatAt)
            out += String(format: "  %@  host %@  pid %d  heartbeat %.0f s ago%@  in flight %d  done %d  failed %d  %.2f images/s\n",
                          n.worker, n.host, n.pid, age, age > 120 ? " (silent)" : "", n.report.inFlight, n.report.done,
                          n.report.failed, n.report.throughput)
        }
        return out
    }

    static func time(_ t: Double) -> String { DaemonLogHandler.iso8601(t, utc: false) }
}
