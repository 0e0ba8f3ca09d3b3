// state_database in pipeline.yml: the URL forms, the password never taken from (or echoed
// out of) the URL, password_file, and `segd check-config` on a server that is not there.
import Foundation
import Pipeline
import XCTest

final class DatabaseConfigTests: XCTestCase {
    func parse(_ text: String) throws -> PipelineConfig {
        try PipelineConfig.parse(text, path: "p.yml", baseDirectory: "/base")
    }

    func testURLAndMappingForms() throws {
        let c = try parse("state_database: postgresql://segd@db.example:6543/jobs\nservice:\n  lease_s: 12\n")
        XCTAssertEqual(c.stateDatabase, DatabaseSettings(user: "segd", host: "db.example", port: 6543, database: "jobs"))
        XCTAssertEqual(c.service.leaseS, 12)
        let m = try parse("state_database:\n  url: postgres://u@h/d\n  password_file: secrets/db\n")
        XCTAssertEqual(m.stateDatabase, DatabaseSettings(user: "u", host: "h", port: 5432, database: "d", passwordFile: "/base/secrets/db"))
        XCTAssertNil(try parse("state_database:\n").stateDatabase, "empty: the SQLite journal")
        XCTAssertNil(try parse("").stateDatabase)
    }

    func testBadURLsNameTheKeyAndNeverEchoAPassword() throws {
        for (text, why) in [("state_database: mysql://u@h/d", "not a postgresql:// URL"),
                            ("state_database: postgresql://h/d", "names no user"),
                            ("state_database: postgresql://u@h/", "names no database"),
                            ("state_database: postgresql://u:hunter2@h/d", "holds a password")] {
            do {
                _ = try parse(text)
                XCTFail("parsed: \(text)")
            } catch {
                let message = "\(error)"
                XCTAssertTrue(message.contains("p.yml:1: state_database") && message.contains(why), message)
                XCTAssertFalse(message.contains("hunter2"), message)
            }
        }
    }

    func testPasswordFromFileElseEnvironment() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-dbcfg-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "s3cret\nignored\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
        var s = DatabaseSettings(user: "u", host: "h", database: "d", passwordFile: dir + "/pw")
        XCTAssertEqual(try s.password(environment: "from-env"), "s3cret")
        s.passwordFile = nil
        XCTAssertEqual(try s.password(environment: "from-env"), "from-env")
        s.passwordFile = dir + "/missing"
        XCTAssertThrowsError(try s.password(environment: nil))
    }

    /// check-config: valid file, exit 0, the server's absence a warning; the password's
    /// source named, the password itself nowhere.
    func testCheckConfigWarnsAboutAnUnreachableServerAndHidesThePassword() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("segd-dbcfg-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = PostgresServer.freePort()
        try "state_database: postgresql://segd@127.0.0.1:\(port)/segd\ninputs:\n  directories: [\(dir)/in]\n"
            .write(toFile: dir + "/pipeline.yml", atomically: true, encoding: .utf8)
        let r = try Segd.run(["check-config", dir + "/pipeline.yml"], timeout: 60, environment: ["SEGD_DATABASE_PASSWORD": "hunter2"])
        let o = r.stdout, e = r.stderr
        XCTAssertEqual(r.status, 0, o + e)
        XCTAssertTrue(o.contains("journal: postgresql://segd@127.0.0.1:\(port)/segd (SEGD_DATABASE_PASSWORD"), o)
        XCTAssertTrue(e.contains("warning: state_database") && e.contains("unavailable"), e)
        XCTAssertFalse((o + e).contains("hunter2"))
    }
}
