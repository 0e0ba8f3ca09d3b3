// What the page and /metrics show from the journal, read through `JobJournal` on a queue of
// its own and kept for a couple of seconds: a scraper every 100 ms costs one journal read
// every `maxAge` (longer when reads are slow), and never blocks the event loop or the pipeline's journal writes for
// longer than one read.
import Dispatch
import Foundation
import Pipeline

struct JournalFacts: Sendable {
    var summary: JournalSummary
    var recent: [JournalEntry]
    var perMinute: [FinishedCount]
    var readAt: Double
}

final class JournalView: @unchecked Sendable {
    private let queue = DispatchQueue(label: "segd.http.journal", qos: .utility)
    private let maxAge: Double
    private let recentCount: Int
    private var cached: JournalFacts?
    private var cachedFor: ObjectIdentifier?
    /// How long the last read took: the facts are kept at least 20 times that, so however
    /// large the journal, status reads hold it at most 5 % of the time.
    private var lastReadSeconds = 0.0

    init(maxAge: Double = 2, recentCount: Int = 12) {
        self.maxAge = maxAge
        self.recentCount = recentCount
    }

    /// The facts, at most `maxAge` old; nil when there is no journal yet. Throws the
    /// journal's error.
    func facts(_ journal: (any JobJournal)?) async throws -> JournalFacts? {
        guard let journal else { return nil }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<JournalFacts?, any Error>) in
            queue.async { [self] in
                let now = Date().timeIntervalSince1970
                if let cached, cachedFor == ObjectIdentifier(journal), now - cached.readAt < max(maxAge, 20 * lastReadSeconds) {
                    return c.resume(returning: cached)
                }
                do {
                    let f = JournalFacts(summary: try journal.summary(failures: 10), recent: try journal.statusRecentDone(limit: recentCount),
                                         perMinute: try journal.statusFinishedPerInterval(since: Self.hourStart(now), interval: 60), readAt: now)
                    cached = f
                    cachedFor = ObjectIdentifier(journal)
                    lastReadSeconds = Date().timeIntervalSince1970 - now
                    c.resume(returning: f)
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }

    /// The start of the minute 59 minutes before this one: 60 bars on whole minutes, the
    /// last one the current minute so far.
    static func hourStart(_ now: Double) -> Double { ((now / 60).rounded(.down) - 59) * 60 }

    /// One row, read now (a job's page must not be stale).
    func entry(_ journal: (any JobJournal)?, id: Int64) async throws -> JournalEntry? {
        guard let journal else { return nil }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<JournalEntry?, any Error>) in
            queue.async { c.resume(with: Result { try journal.entry(id: id) }) }
        }
    }
}
