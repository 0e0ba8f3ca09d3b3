// Faults the daemon tests inject into a real segd process, through this one value: the CLI
// builds it from SEGD_TEST_* variables (docs/daemon.md, "Test hooks") and hands it to the
// Daemon, which passes it on; nothing in Pipeline reads the environment. In production it
// is `.none` and every check is a nil comparison.
public struct FaultHook: Sendable, Equatable {
    /// Decoding a file with this name aborts the process (a poisoned input).
    public var crashOnDecode: String?
    /// Decoding a file with this name never returns (a stuck stage: the watchdog must notice).
    public var hangOnDecode: String?
    /// inotify is refused as if the kernel had said this errno (ENOSPC or EMFILE).
    public var inotifyError: Int32?
    /// This folder cannot be watched, as if unreadable (root can read anything).
    public var unwatchable: String?
    /// Each decode starts this much later (ms): keeps jobs in flight long enough for the
    /// cluster tests to kill or freeze a node in the middle of a batch.
    public var decodeDelayMs: Int?
    /// The job of a file with this name is recorded done or failed, then the process aborts
    /// before the input is moved (JobLife.settleOrphans must move it on the next run).
    public var crashAfterFinish: String?
    /// The initial scan counts as unfinished (not ready: /readyz 503, no READY=1) until a
    /// file exists at this path: the tests see the "starting" state for as long as they need.
    public var holdReadyUntil: String?

    public static let none = FaultHook()

    public init(crashOnDecode: String? = nil, hangOnDecode: String? = nil, inotifyError: Int32? = nil, unwatchable: String? = nil,
                decodeDelayMs: Int? = nil, crashAfterFinish: String? = nil,
                holdReadyUntil: String? = nil) {
        self.crashOnDecode = crashOnDecode
        self.hangOnDecode = hangOnDecode
        self.inotifyError = inotifyError
        self.unwatchable = unwatchable
        self.decodeDelayMs = decodeDelayMs
        self.crashAfterFinish = crashAfterFinish
        self.holdReadyUntil = holdReadyUntil
    }
}
