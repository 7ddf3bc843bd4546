import ArgumentParser
import FledgeCore
import Foundation
import LocalPrometheus
import Testing

@testable import FledgeCLI

/// `fledge report`: its flags, and the built binary against the in-process API server with the contract controller
/// (FledgeCore's `decide`) moving the rollout.
@Suite("fledge report", .serialized)
struct ReportCommandTests {
    @Test func flags() throws {
        let plain = try #require(try Fledge.parseAsRoot(["report", "product-service", "-n", "shop"]) as? ReportCommand)
        #expect(plain.output == "report.html" && plain.prometheusURL == nil && plain.kubernetes.namespace == "shop")
        let full = try #require(
            try Fledge.parseAsRoot(["report", "r", "-o", "/tmp/r.html", "--prometheus", "http://127.0.0.1:9090", "--prometheus-timeout", "3"]) as? ReportCommand)
        #expect(full.output == "/tmp/r.html" && full.prometheusURL == "http://127.0.0.1:9090" && full.prometheus.timeoutSeconds == 3)
        #expect(full.makePrometheusClient()?.baseURL == "http://127.0.0.1:9090")
        #expect(plain.makePrometheusClient() == nil)
        // The same authentication flags as `fledge query`, from the same option group.
        let authenticated = try #require(
            try Fledge.parseAsRoot([
                "report", "r", "--prometheus", "https://p.example", "--prometheus-user", "fledge", "--prometheus-header", "X-Scope-OrgID=team-a",
                "--prometheus-header", "X-Empty=", "--prometheus-ca", pemFile,
            ]) as? ReportCommand)
        #expect(authenticated.prometheus.user == "fledge" && authenticated.prometheus.caFile == pemFile)
        let client = try #require(authenticated.makePrometheusClient())
        #expect(client.headers["X-Scope-OrgID"] == "team-a" && client.headers["X-Empty"] == "")
    }

    @Test(arguments: [
        (["report", "r", "--prometheus", "127.0.0.1:9090"], "--prometheus: \"127.0.0.1:9090\" is not an http:// or https:// URL"),
        (["report", "r", "--prometheus-token", "t"], "--prometheus-token needs --prometheus"),
        (["report", "r", "--prometheus-user", "u", "--prometheus-header", "A=b"], "--prometheus-user, --prometheus-header need --prometheus"),
        (["report", "r", "--prometheus-ca", "/ca.pem"], "--prometheus-ca needs --prometheus"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-header", "novalue"], "--prometheus-header: \"novalue\" is not NAME=VALUE"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-header", "=v"], "--prometheus-header: \"=v\" is not NAME=VALUE"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-header", "X Tenant=v"], "--prometheus-header: \"X Tenant=v\" is not NAME=VALUE"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-token", "t", "--prometheus-user", "u"],
         "--prometheus-token and --prometheus-user cannot be used together"),
        (["report", "r", "-o", ""], "--output: must not be empty"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-timeout", "0"], "--prometheus-timeout: must be above 0"),
        (["report", "Product_Service"], "not a valid Rollout name"),
        (["report", "r", "-n", "Shop"], "--namespace"),
    ])
    func badFlags(arguments: [String], expected: String) {
        let message: String?
        do {
            _ = try Fledge.parseAsRoot(arguments)
            message = nil
        } catch {
            message = Fledge.message(for: error)
        }
        #expect(message?.contains(expected) == true, "\(message ?? "parsed")")
    }

    /// `report` sends `--prometheus-user` (password from the environment) and `--prometheus-header` with every query,
    /// as `query` does: behind a proxy that wants both, the series come; without them, the page and the warning name
    /// the server's 401.
    @Test func authenticatesToPrometheusWithUserAndHeaders() async throws {
        let proxy = try AuthenticatingPrometheus(authorization: "Basic ZmxlZGdlOnMzY3JldA==", tenant: "team-a")  // fledge:s3cret
        defer { Task { await proxy.stop() } }
        try await CLISandbox.with { sandbox in
            #expect(try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:2.0.0"]).status == 0)
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let file = sandbox.folder.appendingPathComponent("report-auth.html").path

            let result = try await sandbox.run(
                ["report", "product-service", "-o", file, "--prometheus", proxy.url, "--prometheus-user", "fledge", "--prometheus-header", "X-Scope-OrgID=team-a"],
                environment: ["FLEDGE_PROMETHEUS_PASSWORD": "s3cret"])
            #expect(result.status == 0, "\(result)")
            #expect(!result.err.contains("metric series not available"), "\(result)")
            let seen = proxy.seen
            #expect(!seen.isEmpty && seen.allSatisfy { $0.path == "/api/v1/query_range" }, "\(seen)")
            #expect(seen.allSatisfy { $0.authorization == "Basic ZmxlZGdlOnMzY3JldA==" && $0.tenant == "team-a" }, "\(seen)")
            #expect(!(try String(contentsOfFile: file, encoding: .utf8)).contains("Metric series were not available"))

            // A wrong password: every query is refused, the report still comes and says so.
            let before = proxy.seen.count
            let refused = try await sandbox.run(
                ["report", "product-service", "-o", file, "--prometheus", proxy.url, "--prometheus-user", "fledge", "--prometheus-header", "X-Scope-OrgID=team-a"],
                environment: ["FLEDGE_PROMETHEUS_PASSWORD": "wrong"])
            #expect(refused.status == 0, "\(refused)")
            #expect(refused.err.contains("warning: metric series not available") && refused.err.contains("401"), "\(refused)")
            #expect(proxy.seen.dropFirst(before).allSatisfy { $0.authorization == "Basic ZmxlZGdlOndyb25n" && $0.tenant == "team-a" })

            // No tenant header: refused too, and the request carried none.
            let noTenant = try await sandbox.run(
                ["report", "product-service", "-o", file, "--prometheus", proxy.url, "--prometheus-user", "fledge"],
                environment: ["FLEDGE_PROMETHEUS_PASSWORD": "s3cret"])
            #expect(noTenant.err.contains("401"), "\(noTenant)")
            #expect(proxy.seen.last?.tenant == nil)
        }
    }

    /// report said "reading rollout shop/x: get rollouts.fledge.dev …: HTTP 401 Unauthorized" and named the server
    /// after a missing Rollout, where every other command says it in one way: now it says it as status does.
    @Test func cannotReadTheRolloutInTheWordsOfTheOtherCommands() async throws {
        try await CLISandbox.with { sandbox in
            let badToken = try sandbox.kubeconfig(token: "expired-token", name: "bad.kubeconfig")
            let unreachable = try sandbox.kubeconfig(token: CLISandbox.adminToken, server: "https://127.0.0.1:1", name: "down.kubeconfig")
            let output = sandbox.folder.appendingPathComponent("report.html").path
            for (rollout, kubeconfig) in [("product-service", badToken), ("product-service", unreachable), ("nope", sandbox.kubeconfig)] {
                let status = try await sandbox.run(["status", rollout], kubeconfig: kubeconfig)
                let report = try await sandbox.run(["report", rollout, "-o", output], kubeconfig: kubeconfig)
                #expect(status.status == 1 && report.status == 1, "\(status)\n\(report)")
                // curl says how long the refused connect took ("after 0 ms", "after 3 ms" on a loaded machine).
                let untimed = { (text: String) in text.replacing(/after \d+ ms/, with: "after N ms") }
                #expect(untimed(report.err) == untimed(status.err), "\(report)")
                #expect(!FileManager.default.fileExists(atPath: output))
            }
        }
    }

    /// A failed rollout, then spec.canary set back to the stable image: the Rollout is Healthy, and the report headed
    /// the failed rollout's timeline "Healthy" with stable's revision. It heads it with that rollout and says what
    /// came after.
    @Test func aRolloutEndedThenSetBackToStableIsShownAsItEnded() async throws {
        try await CLISandbox.with { sandbox in
            #expect(try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:2.0.0"]).status == 0)
            var controller = ContractController(sandbox)
            controller.canary = .failing
            try await controller.run(untilPhase: .failed)
            let failed = try #require(try await sandbox.rollout().status?.revision)
            #expect(try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:1.0.0"]).status == 0)
            try await controller.run { $0.status?.phase == .healthy && $0.status?.revision != failed }
            let stable = try #require(try await sandbox.rollout().status?.revision)

            let file = sandbox.folder.appendingPathComponent("report.html").path
            let result = try await sandbox.run(["report", "product-service", "-o", file])
            #expect(result.status == 0 && result.out.contains("rollout shop/product-service (Failed)"), "\(result)")
            let html = try String(contentsOfFile: file, encoding: .utf8)
            #expect(html.contains("<title>Rollout shop/product-service: Failed</title>"))
            #expect(html.contains("revision <code>\(failed)</code>"), "\(html)")
            #expect(html.contains("Since then spec.canary was set back to the stable revision (\(stable)): the Rollout is Healthy."))
        }
    }

    /// `-o -` made a file named "-": now the page goes to stdout and the summary to stderr.
    @Test func aDashWritesThePageToStdout() async throws {
        try await CLISandbox.with { sandbox in
            let result = try await sandbox.run(["report", "product-service", "-o", "-"])
            #expect(result.status == 0, "\(result)")
            #expect(result.out.hasPrefix("<!DOCTYPE html>") && result.out.contains("</html>"), "\(result.out.prefix(200))")
            #expect(result.err.contains("wrote the page to stdout: rollout shop/product-service"), "\(result.err)")
            // The command ran in this process's folder, where the file would have been made.
            #expect(!FileManager.default.fileExists(atPath: FileManager.default.currentDirectoryPath + "/-"))
        }
    }

    /// A Rollout the controller has not seen was reported "Healthy", where status and list say it has no status.
    @Test func aRolloutWithoutStatusIsNotCalledHealthy() async throws {
        try await CLISandbox.with { sandbox in
            #expect(try await sandbox.rollout().status == nil)
            let file = sandbox.folder.appendingPathComponent("report.html").path
            let result = try await sandbox.run(["report", "product-service", "-o", file])
            #expect(result.status == 0 && result.out.contains("rollout shop/product-service (no status yet)"), "\(result)")
            let html = try String(contentsOfFile: file, encoding: .utf8)
            #expect(html.contains("The Rollout has no status yet: is the Fledge controller running?") && !html.contains(">Healthy<"), "\(html)")
        }
    }

    @Test func writesTheTimelineOfARolloutInFlight() async throws {
        try await CLISandbox.with { sandbox in
            #expect(try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:2.0.0"]).status == 0)
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-report-cli-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }

            let file = folder.appendingPathComponent("report.html").path
            let result = try await sandbox.run(["report", "product-service", "-o", file])
            #expect(result.status == 0, "\(result)")
            #expect(result.out.contains("wrote \(file): rollout shop/product-service (Progressing)"), "\(result)")
            #expect(result.err.contains("warning: metric series not available: no --prometheus was given"), "\(result)")
            let html = try String(contentsOfFile: file, encoding: .utf8)
            #expect(html.contains("data-series=\"weight\""))
            #expect(html.contains(">10%</text>"), "the weight of stage 1")
            #expect(html.contains("data-kind=\"started\"") && html.contains("data-kind=\"stageAdvanced\""))
            #expect(html.contains("data-threshold=\"min 99\"") && html.contains("data-threshold=\"max 500\""))
            #expect(html.contains("no --prometheus was given"))

            // A Prometheus that does not answer: the page still comes, and says which server failed.
            let closed = "http://127.0.0.1:\(try LoopbackPort.free())"
            let down = try await sandbox.run(["report", "product-service", "-o", file, "--prometheus", closed, "--prometheus-timeout", "2"])
            #expect(down.status == 0, "\(down)")
            #expect(try String(contentsOfFile: file, encoding: .utf8).contains("Prometheus at \(closed)"))

            let missing = try await sandbox.run(["report", "nope", "-o", file])
            #expect(missing.status != 0)
            #expect(missing.err.contains("rollout \"nope\" not found in namespace \"shop\""), "\(missing)")
            let unwritable = try await sandbox.run(["report", "product-service", "-o", folder.appendingPathComponent("no/such/dir.html").path])
            #expect(unwritable.status != 0)
            #expect(unwritable.err.contains("cannot write"), "\(unwritable)")
        }
    }
}
