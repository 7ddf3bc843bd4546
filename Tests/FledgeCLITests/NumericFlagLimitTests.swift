import ArgumentParser
import FledgeCore
import Foundation
import LocalPrometheus
import Testing

@testable import FledgeCLI

/// Numbers on the command line beyond what a flag can mean are refused by validate(), naming the flag, instead
/// of trapping later when converted to whole milliseconds (`Int64(1e308 * 1000)` crashed with SIGILL, exit 132),
/// and negative numbers reach validate() instead of being read as flags ("Missing value for …").
@Suite("numeric flag limits")
struct NumericFlagLimitTests {
    static let query = ["query", "--prometheus", "http://127.0.0.1:9090", "-n", "shop", "--workload", "w"]
    static let analyze = ["analyze", "product-service", "--prometheus", "http://127.0.0.1:9090"]
    static let mesh = ["simulate-mesh", "-n", "shop", "--virtual-service", "product-service"]

    static func failure(_ arguments: [String]) -> String? {
        do {
            _ = try Fledge.parseAsRoot(arguments)
            return nil
        } catch {
            return Fledge.message(for: error)
        }
    }

    @Test(arguments: [
        (query + ["--prometheus-timeout", "1e308"], "--prometheus-timeout: must be above 0 and at most 86400 seconds (a day), got 1e+308"),
        (query + ["--prometheus-timeout", "86401"], "--prometheus-timeout: must be above 0 and at most 86400"),
        (query + ["--prometheus-timeout", "-1"], "--prometheus-timeout: must be above 0 and at most 86400 seconds (a day), got -1"),
        (query + ["--prometheus-timeout", "nan"], "--prometheus-timeout: must be above 0"),
        (query + ["--at", "1e20"], "--at: \"1e20\" is outside the years 1970 to 9999"),
        (query + ["--at", "-1e20"], "--at: \"-1e20\" is outside the years 1970 to 9999"),
        (analyze + ["--at", "1e20"], "--at: \"1e20\" is outside the years 1970 to 9999"),
        (["report", "product-service", "--prometheus", "http://127.0.0.1:9090", "--prometheus-timeout", "1e300"], "--prometheus-timeout"),
        (["run", "--prometheus", "http://127.0.0.1:9090", "--prometheus-timeout", "1e300"], "--prometheus-timeout"),
        (["sandbox", "--rollout-delay", "inf"], "--rollout-delay must be a number of seconds from 0 to 3600 (an hour), got inf"),
        (["sandbox", "--rollout-delay", "1e300"], "--rollout-delay must be a number of seconds from 0 to 3600 (an hour), got 1e+300"),
        (["sandbox", "--rollout-delay", "nan"], "--rollout-delay must be a number of seconds from 0 to 3600 (an hour), got nan"),
        (["sandbox", "--rollout-delay", "-1"], "--rollout-delay must be a number of seconds from 0 to 3600 (an hour), got -1"),
        (mesh + ["--rps", "-1"], "--rps must be between 0 and 1000000, got -1"),
        (mesh + ["--tick-ms", "-5"], "--tick-ms must be from 1 to 60000"),
        (mesh + ["--tick-ms", "9223372036854775807"], "--tick-ms must be from 1 to 60000"),
        (mesh + ["--tagged-share", "-0.5"], "--tagged-share"),
        (mesh + ["--p99-ms", "x=-5"], "--p99-ms x: the p99 latency must be above 0 and at most 3600000 ms (an hour), got -5"),
        (mesh + ["--median-ms", "x=1e300"], "--median-ms x: the median latency must be above 0 and at most 3600000 ms"),
        (["demo", "--rps", "-1"], "--rps must be above 0 and at most 100000, got -1"),
        (["demo", "--canary-error-rate", "-0.5"], "--canary-error-rate must be between 0 and 1"),
        (["demo", "--canary-p99-ms", "1e300"], "--canary-p99-ms must be above 0 and at most 3600000"),
    ])
    func outOfRangeNumbersNameTheFlag(arguments: [String], expected: String) {
        let message = Self.failure(arguments)
        #expect(message?.contains(expected) == true, "\(message ?? "parsed")")
        #expect(message?.contains("Missing value") != true, "\(message ?? "parsed")")
    }

    /// The bounds themselves are accepted, and the options still parse the usual way.
    @Test func valuesWithinTheBoundsParse() throws {
        let query = try #require(try Fledge.parseAsRoot(Self.query + ["--prometheus-timeout", "86400", "--at", "0"]) as? QueryCommand)
        #expect(query.prometheus.access.timeoutSeconds == 86400 && query.at == "0")
        let sandbox = try #require(try Fledge.parseAsRoot(["sandbox", "--rollout-delay", "3600"]) as? SandboxCommand)
        #expect(sandbox.rolloutDelay == 3600)
        let mesh = try #require(try Fledge.parseAsRoot(Self.mesh + ["--tick-ms", "60000", "--p99-ms", "x=3600000"]) as? SimulateMeshCommand)
        #expect(try mesh.meshConfiguration().behaviours["x"]?.latency.p99Ms == 3_600_000)
    }

    /// The conversions themselves never trap, whatever a caller that skipped validate() passes.
    @Test(arguments: [1e308, -1e308, Double.infinity, -Double.infinity, Double.nan, 9.3e15, 1e-300])
    func conversionsNeverTrap(_ seconds: Double) throws {
        var access = try PrometheusAccessOptions.parse([])
        access.timeoutSeconds = seconds
        _ = access.makeClient(url: "http://127.0.0.1:9090")
        let millis = RolloutDuration.milliseconds(clampingSeconds: seconds)
        #expect(abs(Double(millis)) <= RolloutDuration.clampLimit)
        #expect(QueryCommand.decimal(seconds).isEmpty == false)
    }

    @Test func clampingKeepsOrdinaryValuesExact() {
        #expect(RolloutDuration.milliseconds(clampingSeconds: 1.5) == 1500)
        #expect(RolloutDuration.milliseconds(clampingSeconds: 0.0004) == 0)
        #expect(RolloutDuration.milliseconds(clampingSeconds: .nan) == 0)
        #expect(RolloutDuration.milliseconds(clampingSeconds: .infinity) == 9_000_000_000_000_000)
        #expect(Timestamp(Date(timeIntervalSince1970: 1e20)).seconds == 9_000_000_000_000)
        #expect(Timestamp(Date(timeIntervalSince1970: 1_767_225_600.9)).seconds == 1_767_225_600)
    }

    /// Every command's -n takes a namespace name (DNS-1123 label).
    @Test(arguments: [
        ["run", "-n", "Bad_NS"], query.filter { $0 != "shop" && $0 != "-n" } + ["-n", "Bad_NS"],
        ["simulate-mesh", "-n", "Bad_NS", "--virtual-service", "v"], ["list", "-n", "Bad_NS"],
    ])
    func namespacesAreDNSLabels(arguments: [String]) {
        let message = Self.failure(arguments)
        #expect(message?.contains("--namespace: \"Bad_NS\" is not a valid namespace name") == true, "\(message ?? "parsed")")
    }
}

/// Files and folders named on the command line: what is wrong with them is said in plain words.
@Suite("file and folder flags")
struct FileFlagTests {
    @Test func aDirectoryIsNotATemplatePatch() throws {
        let folder = FileManager.default.temporaryDirectory.path
        let message = NumericFlagLimitTests.failure(["trigger", "r", "--image", "i:1", "--template-patch", folder])
        #expect(message?.contains("--template-patch: \(folder) is a directory, not a YAML or JSON file") == true, "\(message ?? "parsed")")
        let missing = NumericFlagLimitTests.failure(["trigger", "r", "--image", "i:1", "--template-patch", "/nonexist/patch.yaml"])
        #expect(missing?.contains("--template-patch: /nonexist/patch.yaml: no such file") == true, "\(missing ?? "parsed")")
    }

    @Test(arguments: ["http://127.0.0.1:9090", "https://127.0.0.1:9090"])
    func theCAFileMustExistWhateverTheScheme(url: String) {
        var message = NumericFlagLimitTests.failure(["query", "--prometheus", url, "-n", "shop", "--workload", "w", "--prometheus-ca", "/nonexist"])
        #expect(message?.contains("--prometheus-ca: /nonexist: no such file") == true, "\(message ?? "parsed")")
        message = NumericFlagLimitTests.failure(["run", "--prometheus", url, "--prometheus-ca", FileManager.default.temporaryDirectory.path])
        #expect(message?.contains("is a directory, not a PEM file") == true, "\(message ?? "parsed")")
        #expect(NumericFlagLimitTests.failure(["query", "--prometheus", url, "-n", "shop", "--workload", "w", "--prometheus-ca", pemFile]) == nil)
        // A file without a PEM certificate (here the start of a DER one) is refused before any query or start.
        let der = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-test-ca-\(UUID().uuidString).der").path
        #expect(FileManager.default.createFile(atPath: der, contents: Data([0x30, 0x82, 0x01, 0x0a, 0x02, 0x82])))
        defer { try? FileManager.default.removeItem(atPath: der) }
        message = NumericFlagLimitTests.failure(["run", "--prometheus", url, "--prometheus-ca", der])
        #expect(message?.contains("--prometheus-ca: \(der) holds no PEM certificate (-----BEGIN CERTIFICATE-----)") == true, "\(message ?? "parsed")")
    }

    @Test func demoManifestsThatDoNotExist() {
        var message = NumericFlagLimitTests.failure(["demo", "--manifests", "/nonexist"])
        #expect(message?.contains("--manifests /nonexist: no such folder") == true, "\(message ?? "parsed")")
        message = NumericFlagLimitTests.failure(["demo", "--manifests", #filePath])
        #expect(message?.contains("is a file, not a folder") == true, "\(message ?? "parsed")")
    }

    /// A directory given as --kubeconfig: said so, and the command fails like for any other unusable kubeconfig
    /// (was: "The operation could not be completed. (NSCocoaErrorDomain error 256.)").
    @Test func aDirectoryAsKubeconfig() async throws {
        let folder = try TemporaryDirectory.make(prefix: "fledge-kubeconfig-dir")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let binary = try FledgeBinary.path()
        let missing = try await RunningCLI.launch(
            binary, ["list", "--kubeconfig", folder + "/nonexist"], environment: ["HOME": folder, "PATH": "/usr/bin:/bin"],
            out: URL(fileURLWithPath: folder + "/out1"), err: URL(fileURLWithPath: folder + "/err1")
        ).finish(orStopAfter: .seconds(60))
        let result = try await RunningCLI.launch(
            binary, ["list", "--kubeconfig", folder], environment: ["HOME": folder, "PATH": "/usr/bin:/bin"],
            out: URL(fileURLWithPath: folder + "/out2"), err: URL(fileURLWithPath: folder + "/err2")
        ).finish(orStopAfter: .seconds(60))
        #expect(result.err.contains("\(folder): is a directory, not a kubeconfig file"), "\(result)")
        #expect(!result.err.contains("NSCocoaErrorDomain"), "\(result)")
        #expect(result.status == missing.status && result.status != 0, "\(result) vs \(missing)")
    }
}

extension FileFlagTests {
    /// `--load` of a file with no object still starts, and says on stderr that it loaded nothing from it.
    @Test func loadingAnEmptyFileIsSaid() async throws {
        let folder = try TemporaryDirectory.make(prefix: "fledge-sandbox-empty")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let empty = folder + "/empty.yaml"
        try "# nothing here\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let namespace = packageRoot.appendingPathComponent("rollouts/product-service/00-namespace.yaml").path
        let running = try RunningCLI.launch(
            try FledgeBinary.path(),
            ["sandbox", "--no-tls", "--port", "0", "--kubeconfig-out", folder + "/kubeconfig", "--load", empty, namespace],
            environment: ["HOME": folder, "PATH": "/usr/bin:/bin"], out: URL(fileURLWithPath: folder + "/out"),
            err: URL(fileURLWithPath: folder + "/err"))
        defer { running.stop() }
        try await running.waitForOutput(containing: "press Ctrl-C")
        running.stop()
        let result = try await running.finish()
        #expect(result.err.contains("fledge sandbox: --load \(empty): no Kubernetes objects in it (empty, only comments, or no manifests)"), "\(result)")
        #expect(!result.err.contains("--load \(namespace)"), "\(result)")
        #expect(result.out.contains("loaded 1 object"), "\(result)")
    }
}
