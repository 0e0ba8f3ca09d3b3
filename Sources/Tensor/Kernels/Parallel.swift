// Swift-side parallel loops. oneDNN's OpenMP threads are idle while Swift kernels run
// (the stages alternate), so these use as many chunks as there are cores.
import Dispatch
import Foundation

public enum Parallel {
    /// Cores available to the process.
    public static let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs body(i) for i in 0..<count, split into contiguous chunks across the cores;
    /// small loops run inline (dispatch costs ~10 µs per chunk).
    public static func forEach(_ count: Int, minChunk: Int = 1, _ body: (Int) -> Void) {
        if count <= 0 { return }
        let chunks = min(cores, max(1, count / max(1, minChunk)))
        if chunks == 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            // Chunks write disjoint ranges; the caller owns the data race freedom.
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = c * count / chunks, hi = (c + 1) * count / chunks
                for i in lo..<hi { body(i) }
            }
        }
    }
}
