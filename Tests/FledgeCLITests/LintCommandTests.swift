import ArgumentParser
import Foundation
import Testing

@testable import FledgeCLI

@Suite("fledge lint command")
struct LintCommandTests {
    static let seed: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("rollouts/product-service").path
    }()

    @Test func seedPasses() throws {
        let command = try LintCommand.parse([Self.seed])
        try command.run()
    }

    @Test func typoExitsOne() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-lint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.seed) {
            var text = try String(contentsOfFile: Self.seed + "/" + name, encoding: .utf8)
            if name == "destinationrule.yaml" { text = text.replacingOccurrences(of: "version: v1", with: "verison: v1") }
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let command = try LintCommand.parse([dir.path, "-o", "json"])
        #expect(throws: ExitCode(1)) { try command.run() }
    }

    /// Warnings and skipped files alone exit 0: deploy/ (a kustomization.yaml and a dashboard in it) and a Rollout
    /// linted without the objects it names.
    @Test func warningsAndSkippedFilesExitZero() throws {
        let root = URL(fileURLWithPath: Self.seed).deletingLastPathComponent().deletingLastPathComponent()
        try LintCommand.parse([root.appendingPathComponent("deploy").path]).run()
        try LintCommand.parse([Self.seed + "/rollout.yaml", "-o", "json"]).run()
        #expect(throws: ExitCode(1)) { try LintCommand.parse([root.appendingPathComponent("deploy/kustomization.yaml").path]).run() }
    }

    @Test func needsAPath() {
        #expect(throws: (any Error).self) { try LintCommand.parse([]) }
    }

    /// The discussion is paragraphs that ArgumentParser wraps to the terminal, not lines broken mid-sentence.
    @Test func helpTextWrapsNaturally() {
        let paragraphs = LintCommand.configuration.discussion.split(separator: "\n\n")
        #expect(paragraphs.count >= 2)
        #expect(paragraphs.allSatisfy { !$0.trimmingCharacters(in: .newlines).contains("\n") }, "\(paragraphs)")
        let help = LintCommand.helpMessage(columns: 80)
        #expect(help.contains("Reads YAML files and folders (recursively, multi-document files too), validates\nevery Rollout"), "\(help)")
        #expect(help.split(separator: "\n").allSatisfy { $0.count <= 80 })
    }
}
