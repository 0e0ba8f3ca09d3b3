// An address of the daemon's HTTP endpoint (service.http_listen): a Unix socket or a TCP
// host and port.
import Foundation

public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(String)
    case tcp(host: String, port: Int)

    /// "unix:/run/segd.sock", "127.0.0.1:9464", "[::1]:9464", "localhost:9464"; nil otherwise.
    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, !path.contains("\0") else { return nil }
            self = .unix(path)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("/"), !host.contains(" ") else { return nil }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case let .unix(p): return "unix:" + p
        case let .tcp(h, p): return (h.contains(":") ? "[\(h)]" : h) + ":\(p)"
        }
    }
}
