// A pipeline stage: a labelled serial DispatchQueue plus a bound on the items waiting
// for it. `submit` blocks the caller while the bound is reached, so a slow stage holds
// back the one before it and memory stays flat however many files arrive (docs/design.md:
// every stage has a bounded inbox).
import Dispatch
import Foundation
import MaskRCNN

final class Stage<Item: Sendable>: @unchecked Sendable {
    let name: PipelineStage
    private let queue: DispatchQueue
    private let slots: DispatchSemaphore
    private let body: (Item) -> Void
    let capacity: Int
    /// Items queued or running (for the metrics; the semaphore's count cannot be read).
    private let depthLock = NSLock()
    private var depth = 0

    /// - Parameter capacity: items queued or running in this stage at most.
    init(_ name: PipelineStage, capacity: Int, body: @escaping (Item) -> Void) {
        self.name = name
        queue = DispatchQueue(label: "segd.stage.\(name.rawValue)", qos: .userInitiated)
        slots = DispatchSemaphore(value: max(1, capacity))
        self.capacity = max(1, capacity)
        self.body = body
    }

    /// Enqueues `item`, waiting while the stage is full.
    func submit(_ item: Item) {
        slots.wait()
        depthLock.withLock { depth += 1 }
        queue.async { [self] in
            body(item)
            depthLock.withLock { depth -= 1 }
            slots.signal()
        }
    }

    /// Its queue label, items queued or running, capacity.
    var level: (String, Int, Int) { (name.rawValue, depthLock.withLock { depth }, capacity) }

    /// Runs `block` after everything submitted so far.
    func sync(_ block: () -> Void) { queue.sync(execute: block) }
}
