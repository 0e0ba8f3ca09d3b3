// The two journal reads the status page needs beyond `JobJournal`: the latest results and
// finished jobs per minute. Any `JobJournal` answers them (`statusRecentDone`,
// `statusFinishedPerInterval`, from `all()`); an implementation with a query language
// conforms to `JournalStatusQueries` and answers them itself (Journal does, in SQL). Kept
// out of `JobJournal`'s requirements so that an implementation needs nothing more to
// show on the page.
import Foundation

public protocol JournalStatusQueries {
    /// The `limit` most recently finished done jobs that ran (duplicates left out), newest first.
    func recentDone(limit: Int) throws -> [JournalEntry]
    /// Jobs finished (done or failed, duplicates left out) per `interval` seconds from `since`
    /// until now, oldest first: the status page's throughput chart.
    func finishedPerInterval(since: Double, interval: Double) throws -> [FinishedCount]
}

/// Jobs finished in one interval of `finishedPerInterval`.
public struct FinishedCount: Sendable, Equatable, Codable {
    public var start: Double
    public var done: Int
    public var failed: Int
    public init(start: Double, done: Int, failed: Int) {
        self.start = start
        self.done = done
        self.failed = failed
    }

    /// Empty intervals filled in: (interval index, done?) pairs → one count per interval.
    static func buckets(since: Double, interval: Double, now: Double, rows: [(Int, Bool)]) -> [FinishedCount] {
        let n = max(1, Int(((now - since) / interval).rounded(.up)))
        var out = (0..<n).map { FinishedCount(start: since + Double($0) * interval, done: 0, failed: 0) }
        for (i, ok) in rows where i >= 0 && i < n {
            if ok { out[i].done += 1 } else { out[i].failed += 1 }
        }
        return out
    }
}

extension JobJournal {
    public func statusRecentDone(limit: Int) throws -> [JournalEntry] {
        if let q = self as? any JournalStatusQueries { return try q.recentDone(limit: limit) }
        return Array(try all().filter { $0.status == .done && $0.duplicateOf == nil && $0.finishedAt != nil }
            .sorted { ($0.finishedAt!, $0.id) > ($1.finishedAt!, $1.id) }.prefix(limit))
    }

    public func statusFinishedPerInterval(since: Double, interval: Double) throws -> [FinishedCount] {
        if let q = self as? any JournalStatusQueries { return try q.finishedPerInterval(since: since, interval: interval) }
        return FinishedCount.buckets(since: since, interval: interval, now: Date().timeIntervalSince1970,
                                     rows: try all().compactMap { e in
                                         guard e.duplicateOf == nil, let t = e.finishedAt, t >= since, e.status == .done || e.status == .failed
                                         else { return nil }
                                         return (Int((t - since) / interval), e.status == .done)
                                     })
    }
}

extension Journal: JournalStatusQueries {}
