// oneDNN's OpenMP runtime (libgomp) reads its settings once, when it loads, before main:
// the commands that run the model set them here and start the process again, once.
import Foundation

enum OpenMPEnvironment {
    /// Sets what segd wants of libgomp and re-executes when the environment lacks it.
    ///
    /// - OMP_WAIT_POLICY=passive, unless the user chose a policy (OMP_WAIT_POLICY or
    ///   GOMP_SPINCOUNT set). By default an OpenMP worker spins on its core for a while
    ///   after every parallel region, and every thread that calls oneDNN (each stage
    ///   queue's) has a team of its own; segd's Swift loops (winograd transforms, RoIAlign,
    ///   NMS, paste) then share the cores with spinning threads. On a 2-core AVX2 EPYC
    ///   (Zen 3), R50 W1 fp32: libgomp's spin loop was 11.7% of all samples (perf), and
    ///   passive took 1.79–1.85 s/image against 1.94–2.13 s in three alternating runs each.
    /// - OMP_NUM_THREADS=`threads` when given (pipeline.yml's `service.workers`).
    static func ensure(threads: Int? = nil) {
        let env = ProcessInfo.processInfo.environment
        var wanted: [(String, String)] = []
        if let threads, threads > 0, env["OMP_NUM_THREADS"] != "\(threads)" { wanted.append(("OMP_NUM_THREADS", "\(threads)")) }
        if env["OMP_WAIT_POLICY"] == nil, env["GOMP_SPINCOUNT"] == nil { wanted.append(("OMP_WAIT_POLICY", "passive")) }
        guard !wanted.isEmpty else { return }
        for (name, value) in wanted { setenv(name, value, 1) }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let what = wanted.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        FileHandle.standardError.write(Data("segd: cannot restart with \(what): \(String(cString: strerror(errno))); using OpenMP's defaults\n".utf8))
    }

    /// What libgomp read at load, for the start-up line.
    static var summary: String {
        let env = ProcessInfo.processInfo.environment
        let set = ["OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"].compactMap { k in env[k].map { "\(k)=\($0)" } }
        return "OpenMP " + (set.isEmpty ? "defaults" : set.joined(separator: " "))
    }
}
