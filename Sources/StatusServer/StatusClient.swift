// A small blocking HTTP/1.1 client for the daemon's endpoint over a Unix socket or TCP:
// what `segd status --url` and the tests use. One request per connection; the request
// target is sent exactly as given (the tests send unnormalized paths on purpose).
import Foundation
import Pipeline

public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public enum StatusClientError: Error, CustomStringConvertible {
    case connect(String, String)
    case protocolError(String)

    public var description: String {
        switch self {
        case let .connect(a, r): return "cannot connect to \(a): \(r)"
        case let .protocolError(r): return "bad HTTP reply: \(r)"
        }
    }
}

public enum StatusClient {
    /// GET `target` ("/metrics", "/jobs/1") from `address`.
    public static func get(_ address: ListenAddress, _ target: String, timeout: Double = 30) throws -> HTTPReply {
        let fd = try connect(address, timeout: timeout)
        defer { close(fd) }
        let host: String
        if case let .tcp(h, p) = address { host = "\(h):\(p)" } else { host = "localhost" }
        let request = Array("GET \(target) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nUser-Agent: segd-status\r\n\r\n".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; throw StatusClientError.protocolError("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n < 0 { if errno == EINTR { continue }; throw StatusClientError.protocolError("recv: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            data += buf[0..<n]
        }
        return try parse(data)
    }

    /// The daemon's view as `segd status --url` prints it.
    public static func statusText(_ address: ListenAddress) throws -> String {
        let r = try get(address, "/status")
        guard r.status == 200 else { throw StatusClientError.protocolError("GET /status answered \(r.status): \(r.text)") }
        return try JSONDecoder().decode(StatusDocument.self, from: Data(r.body)).text()
    }

    static func connect(_ address: ListenAddress, timeout: Double) throws -> Int32 {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        switch address {
        case let .unix(path):
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw StatusClientError.connect("\(address)", String(cString: strerror(errno))) }
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
                close(fd)
                throw StatusClientError.connect("\(address)", "path too long")
            }
            withUnsafeMutableBytes(of: &addr.sun_path) { b in for (i, c) in bytes.enumerated() { b[i] = c } }
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard r == 0 else {
                let e = String(cString: strerror(errno))
                close(fd)
                throw StatusClientError.connect("\(address)", e)
            }
            return fd
        case let .tcp(host, port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, "\(port)", &hints, &res) == 0, let first = res else {
                throw StatusClientError.connect("\(address)", "cannot resolve \(host)")
            }
            defer { freeaddrinfo(res) }
            var ai: UnsafeMutablePointer<addrinfo>? = first
            var lastError = "no address"
            while let a = ai {
                let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
                if fd >= 0 {
                    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                    lastError = String(cString: strerror(errno))
                    close(fd)
                }
                ai = a.pointee.ai_next
            }
            throw StatusClientError.connect("\(address)", lastError)
        }
    }

    static func parse(_ data: [UInt8]) throws -> HTTPReply {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, data.count - 3)).first(where: { Array(data[$0..<$0 + 4]) == sep }) else {
            throw StatusClientError.protocolError("no header end in \(data.count) bytes")
        }
        let head = String(decoding: data[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw StatusClientError.protocolError(head[0]) }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(data[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var out: [UInt8] = [], i = 0
            while i < body.count {
                guard let lineEnd = (i..<body.count - 1).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                      let size = Int(String(decoding: body[i..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16) else {
                    throw StatusClientError.protocolError("bad chunk")
                }
                if size == 0 { break }
                out += body[(lineEnd + 2)..<min(body.count, lineEnd + 2 + size)]
                i = lineEnd + 2 + size + 2
            }
            body = out
        } else if let len = headers["content-length"].flatMap(Int.init), len < body.count {
            body = Array(body[0..<len])
        }
        return HTTPReply(status: status, headers: headers, body: body)
    }
}
