// `segd bench-journal`: the journal's cost per job (Pipeline/JournalBench.swift).
import ArgumentParser
import Foundation
import Pipeline

struct BenchJournal: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-journal",
        abstract: "Time the journal's work per job (claim, begin, finish) against the configured journal; writes rows: use a scratch database or state directory.")

    @Option(help: "pipeline.yml naming state_database (or state_directory).")
    var config: String = DaemonDefaults.config

    @Option(help: "Synthetic jobs to admit and process.")
    var jobs = 2000

    @Option(help: "Jobs per claim (batching.max_batch).")
    var batch = 1

    @Option(help: "Concurrent workers, each with its own connection, as nodes are.")
    var workers = 1

    func run() throws {
        let c = try loadConfig(config)
        try Segd.guarded {
            var journals: [any JobJournal] = []
            for _ in 0..<max(1, workers) {
                if let db = c.stateDatabase {
                    journals.append(try openPostgresJournal(db, migrate: true, listen: false))
                } else {
                    journals.append(try Journal(directory: c.stateDirectory))
                    break  // one process, one SQLite writer
                }
            }
            let report = try JournalBench.run(journals: journals, jobs: jobs, batch: max(1, batch))
            print(report.text(location: journals[0].location), terminator: "")
        }
    }
}
