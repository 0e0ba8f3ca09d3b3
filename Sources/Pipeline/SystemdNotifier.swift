// sd_notify(3) without libsystemd: one datagram per state change to the Unix socket named
// by $NOTIFY_SOCKET ("@name" is the abstract namespace). Type=notify units need READY=1;
// WatchdogSec= units need WATCHDOG=1 more often than $WATCHDOG_USEC (half of it, as
// sd_watchdog_enabled(3) advises, so one late tick is not fatal).
import Foundation

public final class SystemdNotifier: @unchecked Sendable {
    private let fd: Int32
    private var address = sockaddr_un()
    private let addressLength: socklen_t
    public let socketPath: String
    /// How often to send WATCHDOG=1 (nil: no watchdog was asked for this process).
    public let watchdogInterval: TimeInterval?

    /// nil when the process was not started with $NOTIFY_SOCKET (a terminal, a test).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], path.count >= 2 else { return nil }
        socketPath = path
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
        }
        // An abstract name's length is exact (no terminating NUL); a path's includes it.
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var interval: TimeInterval?
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 {
            // WATCHDOG_PID, when set, says which process the watchdog is meant for.
            let pid = environment["WATCHDOG_PID"].flatMap(Int32.init)
            if pid == nil || pid == getpid() { interval = Double(usec) / 2e6 }
        }
        watchdogInterval = interval
    }

    deinit { close(fd) }

    /// Sends one notification ("READY=1", "STATUS=…"; several lines may be joined by "\n").
    /// Failures are ignored as sd_notify's callers do: the service goes on without systemd.
    public func send(_ state: String) {
        let bytes = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBufferPointer { b in
                    sendto(fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL), sa, addressLength)
                }
            }
        }
    }
}
