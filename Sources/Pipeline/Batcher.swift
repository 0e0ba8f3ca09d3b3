// Groups decoded jobs into model batches: up to maxBatch images, or what has arrived when
// the oldest has waited maxDelay (so a lone file is not held back for company).
import Dispatch
import Foundation

final class Batcher: @unchecked Sendable {
    let maxBatch: Int
    let maxDelay: DispatchTimeInterval
    private let queue = DispatchQueue(label: "segd.stage.batcher", qos: .userInitiated)
    private var pending: [Job] = []
    private var generation = 0
    private let emit: ([Job]) -> Void
    let label = "batcher"
    /// `pending.count`, readable from any thread (the queue may be blocked in `emit`).
    private let countLock = NSLock()
    private var _pendingCount = 0
    var pendingCount: Int { countLock.withLock { _pendingCount } }

    init(maxBatch: Int, maxDelayMs: Int, emit: @escaping ([Job]) -> Void) {
        self.maxBatch = max(1, maxBatch)
        maxDelay = .milliseconds(max(0, maxDelayMs))
        self.emit = emit
    }

    func add(_ job: Job) {
        queue.async { [self] in
            pending.append(job)
            countLock.withLock { _pendingCount = pending.count }
            if pending.count >= maxBatch {
                flushLocked()
            } else if pending.count == 1 {
                let g = generation
                queue.asyncAfter(deadline: .now() + maxDelay) { [self] in
                    if generation == g, !pending.isEmpty { flushLocked() }
                }
            }
        }
    }

    /// Sends whatever is pending now (end of a batch run's input).
    func flush() { queue.sync { if !pending.isEmpty { flushLocked() } } }

    private func flushLocked() {
        let jobs = pending
        pending = []
        countLock.withLock { _pendingCount = 0 }
        generation += 1
        emit(jobs)  // may block on the next stage's bound: that is the backpressure
    }
}
