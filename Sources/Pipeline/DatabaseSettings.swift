// `state_database` in pipeline.yml: where a cluster's shared journal is (docs/cluster.md).
//
//   state_database: postgresql://segd@db.example:5432/segd
//   state_database: {url: postgresql://segd@db.example/segd, password_file: /etc/segd/db.password}
//
// The password is never in the URL (it would be printed wherever the URL is): it comes from
// password_file, else from SEGD_DATABASE_PASSWORD (which the CLI reads and hands in), else
// none (trust or peer authentication).
import Foundation

public struct DatabaseSettings: Sendable, Equatable {
    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    public var passwordFile: String?

    /// The URL as written, which holds no secret: for logs, status and check-config.
    public var display: String { "postgresql://\(user)@\(host):\(port)/\(database)" }

    public init(user: String, host: String, port: Int = 5432, database: String, passwordFile: String? = nil) {
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.passwordFile = passwordFile
    }

    /// Parses postgresql://USER@HOST[:PORT]/DATABASE (postgres:// too); errors name the key.
    init(url: String, passwordFile: String?, configPath: String, line: Int?) throws {
        func bad(_ why: String) -> PipelineError {
            .config(path: configPath, line: line, key: "state_database", reason: "\(why) (expected postgresql://USER@HOST:PORT/DATABASE)")
        }
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgresql", "postgres"].contains(scheme) else {
            throw bad("not a postgresql:// URL")
        }
        // Not echoed: the point is not to print it.
        if c.password != nil { throw bad("holds a password; put it in password_file or SEGD_DATABASE_PASSWORD instead") }
        guard let user = c.user, !user.isEmpty else { throw bad("names no user") }
        guard let host = c.host, !host.isEmpty else { throw bad("names no host") }
        let db = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : c.path
        guard !db.isEmpty, !db.contains("/") else { throw bad("names no database") }
        if let p = c.port, !(1...65535).contains(p) { throw bad("port \(p) is outside 1...65535") }
        if c.query != nil { throw bad("takes no query parameters") }
        self.init(user: user.removingPercentEncoding ?? user, host: host, port: c.port ?? 5432, database: db, passwordFile: passwordFile)
    }

    /// The password to connect with: password_file's first line, else `environment`.
    public func password(environment: String?) throws -> String? {
        guard let file = passwordFile else { return environment }
        do {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            return String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        } catch {
            throw PipelineError.config(path: file, line: nil, key: "state_database.password_file",
                                       reason: "cannot read: \((error as NSError).localizedDescription)")
        }
    }
}
