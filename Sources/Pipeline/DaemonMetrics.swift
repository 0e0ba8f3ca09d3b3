// What segd counts, through the swift-metrics API only: the event points (a job finished,
// a model batch ran, a duplicate skipped, a crash recovered, a watcher overflow or rescan)
// call these few functions, and whatever backend the process bootstrapped receives them.
// `segd watch` bootstraps Prometheus (StatusServer); everywhere else (`segd batch`, the
// in-process tests) swift-metrics' default no-op backend makes each call a no-op.
//
// Names follow Triton's where they fit (nv_inference_* → segd_inference_*, counters
// without _total as Triton has them); segd's own counters end in _total. Every name and its
// HELP text are listed once, in `SegdMetrics.catalog`.
import Dispatch
import MaskRCNN
import Metrics

public enum SegdMetrics {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    /// Every metric segd exports: name, type, HELP text.
    public static let catalog: [(name: String, kind: Kind, help: String)] = [
        ("segd_inference_request_success", .counter, "Images (inputs) the pipeline finished without error, as Triton's nv_inference_request_success."),
        ("segd_inference_request_failure", .counter, "Images the pipeline finished with an error, by reason: bad_input, incomplete, output_unwritable (retried), model, internal."),
        ("segd_inference_count", .counter, "Images (pages) the model ran on; divided by segd_inference_exec_count, the mean batch size."),
        ("segd_inference_exec_count", .counter, "Model executions (batches)."),
        ("segd_inference_request_duration_us", .counter, "Cumulative time from the hand-over to the pipeline to the outputs written, microseconds."),
        ("segd_inference_queue_duration_us", .counter, "Cumulative time images waited in stage queues and the batcher, microseconds."),
        ("segd_inference_compute_input_duration_us", .counter, "Cumulative decode time, microseconds."),
        ("segd_inference_compute_infer_duration_us", .counter, "Cumulative model time (preprocess to postprocess) per image, its batch's time, microseconds."),
        ("segd_inference_compute_output_duration_us", .counter, "Cumulative mask pasting and output writing time, microseconds."),
        ("segd_stage_duration_seconds", .histogram, "Time of one stage run: per image for decode, paste and write, per batch for the model stages."),
        ("segd_batch_size", .histogram, "Images per model execution."),
        ("segd_duplicates_skipped_total", .counter, "Inputs not processed because a done job had the same content and model."),
        ("segd_crash_recoveries_total", .counter, "Jobs found in flight at start-up (segd had crashed or been killed): retried alone, or quarantined."),
        ("segd_inputs_quarantined_total", .counter, "Inputs given up after service.max_crashes crashes while processing them (moved to failed/)."),
        ("segd_watcher_overflows_total", .counter, "inotify queue overflows (events lost; a full rescan follows)."),
        ("segd_watcher_rescans_total", .counter, "Full rescans of the watched folders, by reason: periodic, overflow."),
        // Read when scraped (StatusServer), not counted at events:
        ("segd_queue_depth", .gauge, "Items queued or running per pipeline stage queue (ready: taken from the journal, waiting for the feeder)."),
        ("segd_queue_capacity", .gauge, "Items a stage queue holds at most (queues.bound; decode and write hold bound x max_batch)."),
        ("segd_jobs", .gauge, "Jobs in the journal by status."),
        ("segd_in_flight", .gauge, "Images handed to the pipeline and not finished."),
        ("segd_ready", .gauge, "1 once the initial scan is queued."),
        ("segd_healthy", .gauge, "1 while /healthz answers 200 (the watcher runs and the pipeline is not stalled)."),
        ("segd_model_info", .gauge, "The loaded model (value 1)."),
        ("segd_build_info", .gauge, "segd's version and the Swift it was built with (value 1)."),
        ("process_resident_memory_bytes", .gauge, "Resident memory size in bytes."),
        ("process_cpu_seconds_total", .counter, "User and system CPU time spent, seconds."),
        ("process_start_time_seconds", .gauge, "Start time of the process since the Unix epoch, seconds."),
    ]

    /// Bucket bounds of the histograms (the factory asks for them by name).
    public static let stageDurationBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    public static let batchSizeBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64]

    /// The reason label of a failure (a bounded set: the case, never the message).
    public static func reason(_ f: JobFailure) -> String {
        switch f {
        case .badInput(_, incomplete: true): return "incomplete"
        case .badInput: return "bad_input"
        case .outputUnwritable: return "output_unwritable"
        case .model: return "model"
        case .internal: return "internal"
        }
    }

    static let reasons = ["bad_input", "incomplete", "output_unwritable", "model", "internal"]
}

/// The metric objects, made once (swift-metrics hands out the backend's handler at
/// creation: `segd watch` bootstraps before anything here is touched).
final class DaemonMetrics: Sendable {
    static let shared = DaemonMetrics()

    let success = Counter(label: "segd_inference_request_success")
    let failure: [String: Counter]
    let inferenceCount = Counter(label: "segd_inference_count")
    let execCount = Counter(label: "segd_inference_exec_count")
    let requestUs = Counter(label: "segd_inference_request_duration_us")
    let queueUs = Counter(label: "segd_inference_queue_duration_us")
    let inputUs = Counter(label: "segd_inference_compute_input_duration_us")
    let inferUs = Counter(label: "segd_inference_compute_infer_duration_us")
    let outputUs = Counter(label: "segd_inference_compute_output_duration_us")
    let stage: [PipelineStage: Metrics.Timer]
    let batchSize = Recorder(label: "segd_batch_size", aggregate: true)
    let duplicates = Counter(label: "segd_duplicates_skipped_total")
    let crashRecoveries = Counter(label: "segd_crash_recoveries_total")
    let quarantined = Counter(label: "segd_inputs_quarantined_total")
    let overflows = Counter(label: "segd_watcher_overflows_total")
    let rescans: [String: Counter]

    private init() {
        failure = Dictionary(uniqueKeysWithValues: SegdMetrics.reasons.map {
            ($0, Counter(label: "segd_inference_request_failure", dimensions: [("reason", $0)]))
        })
        // postprocess runs inside the mask stage's timing (MaskRCNN.postprocess): no series of its own.
        stage = Dictionary(uniqueKeysWithValues: PipelineStage.allCases.filter { $0 != .postprocess }.map {
            ($0, Metrics.Timer(label: "segd_stage_duration_seconds", dimensions: [("stage", $0.rawValue)]))
        })
        rescans = Dictionary(uniqueKeysWithValues: ["periodic", "overflow"].map {
            ($0, Counter(label: "segd_watcher_rescans_total", dimensions: [("reason", $0)]))
        })
    }

    // MARK: Event points

    /// A stage ran (model stages: once per batch; decode, paste, write: once per image).
    func stageRan(_ s: PipelineStage, ms: Double) {
        stage[s]?.recordNanoseconds(Int64(ms * 1e6))
    }

    /// A model batch went through every model stage.
    func executed(batch: Int) {
        execCount.increment()
        inferenceCount.increment(by: Int64(batch))
        batchSize.record(Int64(batch))
    }

    /// An input left the pipeline (all its pages), failed or not.
    func finished(_ input: Job, pages: [Job]) {
        if let f = input.failure {
            failure[SegdMetrics.reason(f)]?.increment()
        } else {
            success.increment()
        }
        let requestMs = Double(DispatchTime.now().uptimeNanoseconds &- input.submittedAt) / 1e6
        var inputMs = 0.0, inferMs = 0.0, outputMs = 0.0
        for page in pages {
            for (s, ms) in page.timings {
                switch s {
                case .decode: inputMs += ms
                case .paste, .write: outputMs += ms
                default: inferMs += ms
                }
            }
        }
        requestUs.increment(by: Int64(requestMs * 1000))
        queueUs.increment(by: Int64(max(0, requestMs - inputMs - inferMs - outputMs) * 1000))
        inputUs.increment(by: Int64(inputMs * 1000))
        inferUs.increment(by: Int64(inferMs * 1000))
        outputUs.increment(by: Int64(outputMs * 1000))
    }
}
