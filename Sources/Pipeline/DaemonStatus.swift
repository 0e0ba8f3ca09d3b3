// The daemon's state as the HTTP endpoint (StatusServer) reads it: a value taken under the
// daemon's lock from what is already there (no journal access, no waiting on a stage), so
// answering a scrape never holds up the pipeline. The journal is read separately, through
// `JobJournal`, by whoever shows it.
import Foundation
import MaskRCNN

public struct DaemonSnapshot: Sendable, Codable {
    public struct Model: Sendable, Codable, Equatable {
        public var name: String
        public var backbone: String
        public var precision: String
        public var sha256: String
    }

    public struct Queue: Sendable, Codable, Equatable {
        public var name: String
        public var depth: Int
        /// nil: unbounded.
        public var capacity: Int?
    }

    /// The initial scan is journaled and queued (READY=1 was sent).
    public var ready: Bool
    /// Why the service is not making progress; nil while healthy.
    public var healthProblem: String?
    /// The stage queues in pipeline order (queued jobs wait in the journal).
    public var queues: [Queue]
    public var inFlight: Int
    /// This process's counts and images per second over the last minute.
    public var done: Int
    public var failed: Int
    public var throughput: Double
    public var statusLine: String
    public var watcher: String?
    public var model: Model?
    public var configPath: String
    public var outputsDirectory: String
    public var stateDirectory: String
    public var maxBatch: Int
    public var pid: Int32
    /// Unix time the process started.
    public var startedAt: Double
    public var time: Double

    enum CodingKeys: String, CodingKey {
        case ready, queues, done, failed, throughput, watcher, model, pid, time
        case healthProblem = "health_problem", inFlight = "in_flight", statusLine = "status_line", configPath = "config"
        case outputsDirectory = "outputs_directory", stateDirectory = "state_directory", maxBatch = "max_batch", startedAt = "started_at"
    }
}

extension Daemon {
    /// When this process started (Unix time), for process_start_time_seconds and the page.
    public static let processStart = Date().timeIntervalSince1970 - Daemon.uptimeSinceBoot() + processStartUptime()

    public func snapshot() -> DaemonSnapshot {
        let (c, rt, _, ready) = parts()
        // Queued jobs wait in the journal (claimed from it by the feeder), counted there.
        var queues: [DaemonSnapshot.Queue] = []
        if let p = rt?.pipeline {
            queues += p.queueLevels().map { DaemonSnapshot.Queue(name: $0.name, depth: $0.depth, capacity: $0.capacity) }
        }
        let model = rt.map { rt -> DaemonSnapshot.Model in
            let m = rt.segmenter.model
            return DaemonSnapshot.Model(name: rt.segmenter.modelInfo.name, backbone: m.architecture.resnet.name + "-FPN " + m.architecture.layout.rawValue,
                                        precision: m.precision.name, sha256: rt.segmenter.modelInfo.sha256)
        }
        return DaemonSnapshot(ready: ready, healthProblem: healthProblem(), queues: queues, inFlight: rt?.progress().outstanding ?? 0,
                              done: stats.done, failed: stats.failed, throughput: stats.throughput(), statusLine: statusLine(),
                              watcher: rt?.watcher?.mode.rawValue, model: model, configPath: configPath,
                              outputsDirectory: c.outputs.directory, stateDirectory: c.stateDirectory, maxBatch: c.batching.maxBatch,
                              pid: getpid(), startedAt: Self.processStart, time: Date().timeIntervalSince1970)
    }

    /// The journal the running configuration uses (nil before the start opened it).
    public var journalForStatus: (any JobJournal)? { parts().journal }

    static func uptimeSinceBoot() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Seconds after boot the process started (/proc/self/stat field 22, in clock ticks).
    static func processStartUptime() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return uptimeSinceBoot() }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state): field 22 is fields[19].
        guard fields.count > 19, let ticks = Double(fields[19]) else { return uptimeSinceBoot() }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
