import ArgumentParser
import FledgeJSON
import Foundation
import LocalPrometheus
import Testing

@testable import FledgeCLI

/// `fledge demo` as a user runs it: the built binary, a real Prometheus, the whole rollout, with short timings.
@Suite("fledge demo", .serialized)
struct DemoCommandTests {
    /// Short holds and intervals, and enough traffic for the judge to accept each stage within seconds.
    static let fast = ["--hold", "2s", "--interval", "2s", "--rps", "6000", "--timeout", "50s", "-o", "json"]

    /// The README and `fledge demo --help` give the same time to promotion (they once said two minutes and 90 s).
    @Test func readmeAndHelpAgreeOnHowLongTheDemoTakes() throws {
        func promotedAfter(_ text: String) -> [String] {
            let flat = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            return flat.matches(of: /promoted about (\d+) s/).map { String($0.output.1) }
        }
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let help = DemoCommand.helpMessage(columns: 200)
        #expect(promotedAfter(help) == ["90"], "\(help)")
        #expect(promotedAfter(readme) == promotedAfter(help))
        #expect(!readme.contains("ends in about two minutes"))
    }

    @Test func healthyCanaryIsPromotedAndEverythingStops() async throws {
        let run = try DemoRun.start(Self.fast + ["--image", "registry.example/product-service:3.1.4"])
        let result = try await run.finish()
        #expect(result.status == 0, "\(result)")
        let summary = try DemoRun.summary(result)
        #expect(summary["rollout"]?.stringValue == "shop/product-service")
        #expect(summary["phase"]?.stringValue == "Succeeded", "\(result)")
        #expect(summary["stableImage"]?.stringValue == "registry.example/product-service:3.1.4")
        #expect(summary["canaryWeight"]?.intValue == 0)
        #expect((summary["revision"]?.stringValue ?? "").count == 16)
        #expect((summary["durationSeconds"]?.intValue ?? -1) > 0)
        // The live view went to stderr: stdout is the summary alone.
        #expect(result.out.split(separator: "\n").count == 1, "\(result)")
        #expect(result.err.contains("JudgeAccepted"))
        try run.expectEverythingStopped(result)
    }

    @Test func failingCanaryIsRolledBack() async throws {
        let run = try DemoRun.start(Self.fast + ["--canary-error-rate", "0.2"])
        let result = try await run.finish()
        #expect(result.status == 0, "\(result)")
        let summary = try DemoRun.summary(result)
        #expect(summary["phase"]?.stringValue == "Failed", "\(result)")
        #expect(summary["stableImage"]?.stringValue == "registry.example/product-service:1.0.0")
        #expect(summary["canaryWeight"]?.intValue == 0)
        #expect(result.err.contains("Rolled back"))
        try run.expectEverythingStopped(result)
    }

    @Test(arguments: [SIGINT, SIGTERM])
    func aSignalStopsEverything(signal: Int32) async throws {
        // The seed's timings: the rollout is far from done when the signal comes.
        let run = try DemoRun.start(["-o", "json"])
        try await run.waitForStderr(containing: "Triggered:")
        let pid = try DemoRun.prometheusPID(try run.currentStderr())
        #expect(DemoRun.isPrometheus(pid), "Prometheus should run while the demo does")
        #expect(FileManager.default.fileExists(atPath: run.kubeconfig))
        kill(run.process.processIdentifier, signal)
        let result = try await run.finish()
        #expect(result.status == 130, "\(result)")
        #expect(result.err.contains("interrupted"))
        #expect(result.out.isEmpty, "no summary for an interrupted demo: \(result)")
        try run.expectEverythingStopped(result)
    }

    @Test func withoutPrometheusItSaysHowToInstallItAndStartsNothing() async throws {
        let empty = try TemporaryDirectory.make(prefix: "fledge-demo-path")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let run = try DemoRun.start(Self.fast, path: empty)
        let result = try await run.finish()
        #expect(result.status != 0)
        #expect(result.err.contains("sudo apt-get install prometheus"), "\(result)")
        #expect(result.err.contains("./scripts/setup.sh"), "\(result)")
        #expect(!result.err.contains("(pid "), "no server may start: \(result)")
        #expect(!FileManager.default.fileExists(atPath: run.kubeconfig), "no kubeconfig: nothing was started")
        #expect(result.out.isEmpty)
    }

    @Test func theStableImageIsRefusedAndEverythingStops() async throws {
        let run = try DemoRun.start(Self.fast + ["--image", "registry.example/product-service:1.0.0"])
        let result = try await run.finish()
        #expect(result.status == 1, "\(result)")
        #expect(result.err.contains("already runs it; nothing to roll out"), "\(result)")
        #expect(result.out.isEmpty)
        try run.expectEverythingStopped(result)
    }

    @Test(arguments: [
        (["--interval", "1s"], "--interval must be at least 2s"),
        (["--hold", "500ms"], "--hold must be at least 1s"),
        (["--canary-error-rate", "1.5"], "--canary-error-rate"),
        (["--canary-p99-ms", "0"], "--canary-p99-ms"),
        (["--rps", "0"], "--rps"),
        (["--manifests", "/nonexistent"], "--manifests /nonexistent"),
        (["--log-level", "loud"], "--log-level"),
    ])
    func badOptionsAreNamed(arguments: [String], message: String) {
        #expect {
            _ = try DemoCommand.parse(arguments)
        } throws: { error in
            DemoCommand.message(for: error).contains(message)
        }
    }

    @Test func anotherKubeconfigIsNeverOverwritten() throws {
        let folder = try TemporaryDirectory.make(prefix: "fledge-demo-kubeconfig")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let theirs = folder + "/config"
        try "apiVersion: v1\nkind: Config\ncurrent-context: production\n".write(toFile: theirs, atomically: true, encoding: .utf8)
        #expect {
            _ = try DemoCommand.parse(["--kubeconfig-out", theirs])
        } throws: { error in
            DemoCommand.message(for: error).contains("is not a kubeconfig fledge demo wrote")
        }
        // A kubeconfig left by an earlier (killed) demo may be replaced.
        let earlier = folder + "/fledge-demo.kubeconfig"
        try "apiVersion: v1\ncurrent-context: fledge-demo\n".write(toFile: earlier, atomically: true, encoding: .utf8)
        _ = try DemoCommand.parse(["--kubeconfig-out", earlier])
    }

    @Test func timingOverridesReplaceEveryHoldAndTheInterval() throws {
        let objects = try DemoManifests.load(root: packageRoot.path, hold: .seconds(3), interval: .milliseconds(2500))
        let rollout = try #require(objects.first(where: DemoManifests.isDemoRollout))
        let holds = rollout[path: ["spec", "stages"]]?.arrayValue?.compactMap { $0["hold"]?.stringValue }
        #expect(holds == ["3s", "3s", "3s", "3s"])
        #expect(rollout[path: ["spec", "analysis", "interval"]]?.stringValue == "2s500ms")
        let seed = try #require(try DemoManifests.load(root: packageRoot.path, hold: nil, interval: nil).first(where: DemoManifests.isDemoRollout))
        #expect(seed[path: ["spec", "stages"]]?[0]?["hold"]?.stringValue == "20s")
        #expect(seed[path: ["spec", "analysis", "interval"]]?.stringValue == "10s")
    }

    @Test func summaryLineHasTheDocumentedShape() throws {
        let summary = DemoSummary(
            rollout: "shop/product-service", phase: "Succeeded", revision: "abc", stableImage: "reg/app:2", canaryWeight: 0, durationSeconds: 97)
        #expect(summary.json == #"{"rollout": "shop/product-service", "phase": "Succeeded", "revision": "abc", "stableImage": "reg/app:2", "canaryWeight": 0, "durationSeconds": 97}"#)
    }
}

/// One `fledge demo` process, run from its own folder (the kubeconfig lands there), output in files.
struct DemoRun {
    let process: Process
    let folder: String
    let out: URL
    let err: URL
    var kubeconfig: String { folder + "/fledge-demo.kubeconfig" }

    static func start(_ arguments: [String], path: String = "/usr/bin:/bin") throws -> DemoRun {
        let folder = try TemporaryDirectory.make(prefix: "fledge-demo-test")
        let running = try RunningCLI.launch(
            try FledgeBinary.path(), ["demo", "--manifests", packageRoot.path] + arguments, environment: ["PATH": path, "HOME": folder],
            out: URL(fileURLWithPath: folder + "/stdout"), err: URL(fileURLWithPath: folder + "/stderr"), directory: URL(fileURLWithPath: folder))
        return DemoRun(process: running.process, folder: folder, out: running.out, err: running.err)
    }

    /// Waits for the exit (a deadline far above the test's own budget, so a hung demo fails instead of blocking).
    func finish() async throws -> CLIResult {
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(process.processIdentifier, SIGKILL)
                throw HarnessError("fledge demo did not exit; stderr: \(try currentStderr())")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let result = CLIResult(status: process.terminationStatus, out: try String(contentsOf: out, encoding: .utf8), err: try currentStderr())
        return result
    }

    func currentStderr() throws -> String { try String(contentsOf: err, encoding: .utf8) }

    func waitForStderr(containing text: String) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline {
            if try currentStderr().contains(text) { return }
            if !process.isRunning { throw HarnessError("fledge demo ended before printing \(text): \(try await finish())") }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        throw HarnessError("fledge demo never printed \(text); stderr: \(try currentStderr())")
    }

    /// The demo's own Prometheus is gone, and so is the kubeconfig of its (stopped) API server; then cleans up.
    func expectEverythingStopped(_ result: CLIResult) throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pid = try Self.prometheusPID(result.err)
        #expect(!Self.isPrometheus(pid), "prometheus (pid \(pid)) outlived the demo")
        #expect(!FileManager.default.fileExists(atPath: kubeconfig), "the kubeconfig of a stopped server is removed")
    }

    /// The pid the demo printed for its Prometheus: `Prometheus  http://… (pid 1234)`.
    static func prometheusPID(_ text: String) throws -> Int32 {
        guard let line = text.split(separator: "\n").first(where: { $0.contains("Prometheus") && $0.contains("(pid ") }),
            let start = line.range(of: "(pid "), let end = line[start.upperBound...].firstIndex(of: ")"),
            let pid = Int32(line[start.upperBound..<end])
        else { throw HarnessError("the demo printed no Prometheus pid:\n\(text)") }
        return pid
    }

    /// Whether `pid` is a live prometheus process (a pid reused by another program does not count).
    static func isPrometheus(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0, let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: cmdline, as: UTF8.self).contains("prometheus")
    }

    static func summary(_ result: CLIResult) throws -> JSONValue {
        guard let last = result.out.split(separator: "\n").last else { throw HarnessError("no summary on stdout: \(result)") }
        return try JSONValue(parsing: String(last))
    }
}
