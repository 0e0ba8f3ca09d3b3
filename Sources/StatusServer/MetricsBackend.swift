// The Prometheus side of swift-metrics: the registry /metrics emits, a factory that gives
// each of segd's metrics its HELP text and buckets (SegdMetrics.catalog), and the gauges
// that are read when scraped rather than counted at events.
import CoreMetrics
import Foundation
import Pipeline
import Prometheus

/// swift-metrics' factory onto one registry; HELP texts and buckets come from
/// `SegdMetrics`, so every name is described in one place.
struct SegdMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    private static let help = Dictionary(uniqueKeysWithValues: SegdMetrics.catalog.map { ($0.name, $0.help) })

    static func help(_ name: String) -> String { help[name] ?? "" }

    /// The whole name as given (no namespace or unit added) with its HELP text.
    static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help(name))
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions) }
        let buckets = label == "segd_batch_size" ? SegdMetrics.batchSizeBuckets : SegdMetrics.stageDurationBuckets
        return registry.makeValueHistogram(descriptor: Self.descriptor(label), labels: dimensions, buckets: buckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets = SegdMetrics.stageDurationBuckets.map { Duration.nanoseconds(Int64($0 * 1e9)) }
        return registry.makeDurationHistogram(descriptor: Self.descriptor(label), labels: dimensions, buckets: buckets)
    }

    func destroyCounter(_ handler: any CounterHandler) { (handler as? Prometheus.Counter).map(registry.unregisterCounter) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { (handler as? Prometheus.Counter).map(registry.unregisterCounter) }
    func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        if let h = handler as? ValueHistogram { registry.unregisterValueHistogram(h) }
    }
    func destroyMeter(_ handler: any MeterHandler) { (handler as? Prometheus.Gauge).map(registry.unregisterGauge) }
    func destroyTimer(_ handler: any TimerHandler) { (handler as? DurationHistogram).map(registry.unregisterDurationHistogram) }
}

public enum SegdMetricsBackend {
    /// The process's registry; `bootstrap()` points swift-metrics at it.
    public static let registry = PrometheusCollectorRegistry()

    /// Call once, before the daemon is built (swift-metrics binds a metric to the backend
    /// when the metric is created).
    public static func bootstrap() {
        MetricsSystem.bootstrap(SegdMetricsFactory(registry: registry))
    }
}

/// The gauges set from a snapshot just before each emit.
final class ScrapeGauges: @unchecked Sendable {
    private let registry: PrometheusCollectorRegistry
    /// CPU seconds already added to process_cpu_seconds_total (a counter: it only grows).
    private let cpuLock = NSLock()
    private var cpuCounted = 0.0
    /// The segd_model_info series last set: a reload to another model removes it, or the old
    /// model would still read 1 beside the new one.
    private let modelLock = NSLock()
    private var modelSeries: (labels: [String], gauge: Prometheus.Gauge)?

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    private func gauge(_ name: String, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: SegdMetricsFactory.descriptor(name), labels: labels)
    }

    func update(_ s: DaemonSnapshot, jobs: [JobStatus: Int]?, build: BuildInfo) {
        for q in s.queues {
            gauge("segd_queue_depth", [("stage", q.name)]).set(to: Double(q.depth))
            if let c = q.capacity { gauge("segd_queue_capacity", [("stage", q.name)]).set(to: Double(c)) }
        }
        if let jobs {
            for st in JobStatus.allCases { gauge("segd_jobs", [("status", st.rawValue)]).set(to: Double(jobs[st] ?? 0)) }
        }
        gauge("segd_in_flight").set(to: Double(s.inFlight))
        gauge("segd_ready").set(to: s.ready ? 1 : 0)
        gauge("segd_healthy").set(to: s.healthProblem == nil ? 1 : 0)
        if let m = s.model {
            let labels = [("name", m.name), ("backbone", m.backbone), ("precision", m.precision)]
            modelLock.withLock {
                if let old = modelSeries, old.labels != labels.map(\.1) { registry.unregisterGauge(old.gauge) }
                let g = gauge("segd_model_info", labels)
                g.set(to: 1)
                modelSeries = (labels.map(\.1), g)
            }
        }
        gauge("segd_build_info", [("version", build.version), ("swift", build.swift)]).set(to: 1)
        let p = ProcessStats.read()
        if let rss = p.residentBytes { gauge("process_resident_memory_bytes").set(to: Double(rss)) }
        if let cpu = p.cpuSeconds {
            let counter = registry.makeCounter(descriptor: SegdMetricsFactory.descriptor("process_cpu_seconds_total"), labels: [])
            cpuLock.withLock {
                if cpu > cpuCounted { counter.increment(by: cpu - cpuCounted) }
                cpuCounted = max(cpuCounted, cpu)
            }
        }
        gauge("process_start_time_seconds").set(to: s.startedAt.rounded())
    }
}

public struct BuildInfo: Sendable {
    public var version: String
    public var swift: String
    public init(version: String, swift: String) {
        self.version = version
        self.swift = swift
    }

    public static var current: BuildInfo {
        #if compiler(>=6.3)
        let swift = "6.3"
        #elseif compiler(>=6.2)
        let swift = "6.2"
        #else
        let swift = "6.x"
        #endif
        return BuildInfo(version: segdVersion, swift: swift)
    }

    /// No release has been tagged yet.
    public static let segdVersion = "0.1.0-dev"
}

/// RSS and CPU time of this process from /proc.
enum ProcessStats {
    static func read() -> (residentBytes: Int?, cpuSeconds: Double?) {
        var rss: Int?
        if let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let f = s.split(separator: " ")
            if f.count > 1, let pages = Int(f[1]) { rss = pages * Int(sysconf(Int32(_SC_PAGESIZE))) }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return (rss, cpu)
    }
}
