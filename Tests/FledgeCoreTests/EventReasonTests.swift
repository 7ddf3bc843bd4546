import FledgeCore
import Foundation
import Testing

/// The README's table of Events lists exactly the reasons `decide` (and the controller) can record: `event` takes an
/// `EventReason`, so a new reason is a new case, and this fails until the README explains it.
@Suite("Event reasons are documented")
struct EventReasonTests {
    static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md")

    /// The reasons in the first column of the table between the README's event-reasons markers.
    static func documentedReasons() throws -> [String] {
        let text = try String(contentsOf: readme, encoding: .utf8)
        let begin = try #require(text.range(of: "<!-- event-reasons:begin -->"), "README.md has no event-reasons table")
        let end = try #require(text.range(of: "<!-- event-reasons:end -->", range: begin.upperBound..<text.endIndex))
        var reasons: [String] = []
        for line in text[begin.upperBound..<end.lowerBound].split(separator: "\n") where line.hasPrefix("| `") {
            let firstCell = line.dropFirst(2).prefix { $0 != "|" }
            // `RequestAccepted`, `RequestRefused` ⚠: every backticked name in the cell.
            let parts = firstCell.split(separator: "`", omittingEmptySubsequences: false)
            reasons += stride(from: 1, to: parts.count, by: 2).map { String(parts[$0]) }
        }
        return reasons
    }

    @Test func everyReasonIsInTheReadmeAndNothingElse() throws {
        let documented = try Self.documentedReasons()
        let emitted = EventReason.allCases.map(\.rawValue)
        let missing = emitted.filter { !documented.contains($0) }
        let unknown = documented.filter { EventReason(rawValue: $0) == nil }
        #expect(missing.isEmpty, "README.md's Events table lacks \(missing)")
        #expect(unknown.isEmpty, "README.md's Events table lists reasons Fledge never records: \(unknown)")
        #expect(Set(documented).count == documented.count, "listed twice: \(documented)")
    }

    /// A whole rollout, a rollback, an abort and a revert record only reasons of the list (by construction) and
    /// among them the ones the README promises for those paths.
    @Test func aRolloutRecordsTheReasonsTheReadmeNames() {
        var sim = Sim()
        sim.run(untilPhase: .succeeded)
        let reasons = Set(sim.events.map(\.reason))
        for expected in ["RolloutStarted", "StageStarted", "Promoting", "RolloutSucceeded", "CanaryNotReady"] {
            #expect(reasons.contains(expected), "\(expected) not in \(reasons.sorted())")
        }
        #expect(reasons.allSatisfy { EventReason(rawValue: $0) != nil })
    }
}
