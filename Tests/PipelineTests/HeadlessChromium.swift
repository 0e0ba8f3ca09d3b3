// Debian's chromium, headless, driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on fd 3, replies on fd 4, NUL-terminated JSON), so a
// test can load a page, ask the DOM what it holds (images' natural sizes, the text) and
// take a screenshot, without a WebSocket library or a debugging port.
import Foundation
import XCTest

final class HeadlessChromium {
    static let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
    static var binary: String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }

    let pid: pid_t
    private let toBrowser: Int32
    private let fromBrowser: Int32
    private var buffer: [UInt8] = []
    private var nextID = 1
    let logPath: String

    init(profile: String, width: Int = 1280, height: Int = 1400) throws {
        guard let binary = Self.binary else {
            throw NSError(domain: "chromium", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "chromium is not installed (`make test` installs it: TEST_APT_PACKAGES in the Makefile)"])
        }
        var down: [Int32] = [0, 0], up: [Int32] = [0, 0]
        guard pipe(&down) == 0, pipe(&up) == 0 else { throw POSIXError(.EMFILE) }
        // Out of the way of 3 and 4 before they are put there in the child.
        let childIn = fcntl(down[0], F_DUPFD, 100), childOut = fcntl(up[1], F_DUPFD, 100)
        close(down[0]); close(up[1])
        toBrowser = down[1]
        fromBrowser = up[0]
        _ = fcntl(toBrowser, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fromBrowser, F_SETFD, FD_CLOEXEC)
        logPath = profile + ".log"
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, childIn, 3)
        posix_spawn_file_actions_adddup2(&actions, childOut, 4)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        let args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--user-data-dir=" + profile,
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                    "--hide-scrollbars", "--disable-dev-shm-usage", "--window-size=\(width),\(height)", "about:blank"]
        let argv = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var p: pid_t = 0
        let rc = posix_spawn(&p, binary, &actions, nil, argv, environ)
        close(childIn); close(childOut); close(logFD)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        pid = p
    }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(toBrowser)
        close(fromBrowser)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends one command and waits for its reply (events in between are skipped).
    @discardableResult
    func call(_ method: String, _ params: [String: Any] = [:], session: String? = nil, timeout: Double = 30) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var msg: [String: Any] = ["id": id, "method": method, "params": params]
        if let session { msg["sessionId"] = session }
        var data = Array(try JSONSerialization.data(withJSONObject: msg))
        data.append(0)
        var off = 0
        while off < data.count {
            let n = data[off...].withUnsafeBytes { write(toBrowser, $0.baseAddress, $0.count) }
            guard n > 0 else { throw NSError(domain: "cdp", code: 7, userInfo: [NSLocalizedDescriptionKey: "chromium closed its pipe: \(log)"]) }
            off += n
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let m = try readMessage(deadline: deadline)
            guard (m["id"] as? Int) == id else { continue }
            if let e = m["error"] { throw NSError(domain: "cdp", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(method): \(e)"]) }
            return m["result"] as? [String: Any] ?? [:]
        }
        throw NSError(domain: "cdp", code: 2, userInfo: [NSLocalizedDescriptionKey: "\(method): no reply in \(timeout) s"])
    }

    private func readMessage(deadline: Date) throws -> [String: Any] {
        while true {
            if let z = buffer.firstIndex(of: 0) {
                let raw = Array(buffer[..<z])
                buffer.removeSubrange(...z)
                return (try JSONSerialization.jsonObject(with: Data(raw))) as? [String: Any] ?? [:]
            }
            var pfd = pollfd(fd: fromBrowser, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            guard poll(&pfd, 1, max(ms, 1)) > 0 else {
                throw NSError(domain: "cdp", code: 3, userInfo: [NSLocalizedDescriptionKey: "no message from chromium; its log: \(log)"])
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = read(fromBrowser, &chunk, chunk.count)
            guard n > 0 else { throw NSError(domain: "cdp", code: 4, userInfo: [NSLocalizedDescriptionKey: "chromium exited; its log: \(log)"]) }
            buffer += chunk[0..<n]
        }
    }

    /// A page target attached in flat mode; returns its session id.
    func openPage(_ url: String, width: Int = 1280, height: Int = 1400) throws -> String {
        let target = try call("Target.createTarget", ["url": "about:blank"])["targetId"] as! String
        let session = try call("Target.attachToTarget", ["targetId": target, "flatten": true])["sessionId"] as! String
        try call("Emulation.setDeviceMetricsOverride", ["width": width, "height": height, "deviceScaleFactor": 1, "mobile": false], session: session)
        try call("Page.navigate", ["url": url], session: session)
        return session
    }

    /// Evaluates `expression` in the page and returns its value (JSON-able).
    func evaluate(_ expression: String, session: String) throws -> Any? {
        let r = try call("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true], session: session)
        if let ex = r["exceptionDetails"] { throw NSError(domain: "cdp", code: 5, userInfo: [NSLocalizedDescriptionKey: "\(ex)"]) }
        return (r["result"] as? [String: Any])?["value"]
    }

    /// A PNG of the whole page.
    func screenshot(session: String) throws -> Data {
        let r = try call("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true], session: session)
        guard let b64 = r["data"] as? String, let d = Data(base64Encoded: b64) else { throw NSError(domain: "cdp", code: 6) }
        return d
    }
}
