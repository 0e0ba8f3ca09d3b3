// Small numeric kernels that oneDNN has no primitive for in a form the model needs.
import Foundation

public enum Kernels {
    /// 1/(1+e^−x), as torch.sigmoid in float32.
    @inlinable public static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

    /// Row-wise softmax of a rows×cols row-major matrix, max-subtracted as torch does.
    public static func softmaxRows(_ x: UnsafeBufferPointer<Float>, rows: Int, cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                let base = r * cols
                var m = -Float.infinity
                for c in 0..<cols { m = max(m, x[base + c]) }
                var s: Float = 0
                for c in 0..<cols {
                    let e = expf(x[base + c] - m)
                    o[base + c] = e
                    s += e
                }
                for c in 0..<cols { o[base + c] /= s }
            }
        }
        return out
    }

    /// Indices of the k largest values, in descending value order (torch.topk, sorted=True);
    /// equal values keep index order. Selects first, then sorts only the k kept.
    public static func topK(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        let n = values.count
        let k = min(k, n)
        if k == 0 { return [] }
        var idx = Array(0..<n)
        let better: (Int, Int) -> Bool = { a, b in
            let va = values[a], vb = values[b]
            return va > vb || (va == vb && a < b)
        }
        if k < n {
            // Quickselect the k best to the front.
            var lo = 0, hi = n - 1
            while lo < hi {
                let pivot = idx[(lo + hi) / 2]
                var i = lo, j = hi
                while i <= j {
                    while better(idx[i], pivot) { i += 1 }
                    while better(pivot, idx[j]) { j -= 1 }
                    if i <= j { idx.swapAt(i, j); i += 1; j -= 1 }
                }
                if k - 1 <= j { hi = j } else if k - 1 >= i { lo = i } else { break }
            }
            idx.removeLast(n - k)
        }
        idx.sort(by: better)
        return idx
    }
}
