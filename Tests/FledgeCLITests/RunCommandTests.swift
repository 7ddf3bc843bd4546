import FledgeCore
import FledgeController
import FledgeHTTP
import FledgeJSON
import Foundation
import LocalPrometheus
import Testing

@testable import FledgeCLI

/// `fledge run` as a process: it serves health and metrics, reconciles the seed rollout, logs structured lines carrying the
/// rollout, and stops cleanly on SIGTERM.
@Suite(.serialized) struct RunCommandTests {
    @Test func servesHealthReconcilesAndStopsOnSIGTERM() async throws {
        try await CLISandbox.with { sandbox in
            try await sandbox.changeSpec {
                $0["stages"] = [["weight": 50, "hold": "1s"], ["weight": 100, "hold": "1s"]]
                $0[path: ["analysis", "interval"]] = "1s"
                $0[path: ["analysis", "metrics"]] = []
                $0[path: ["analysis", "minRequests"]] = 1
            }
            let port = try LoopbackPort.free()
            let controller = try sandbox.start([
                "run", "--metrics-port", String(port), "--metrics-host", "127.0.0.1", "--log-format", "json", "--prometheus",
                "http://127.0.0.1:\(try LoopbackPort.free())",
            ])
            defer { controller.stop() }
            let http = CurlHTTPClient()
            var ready = 0
            for _ in 0..<200 where ready != 200 {
                ready = (try? await http.send(HTTPRequest(url: "http://127.0.0.1:\(port)/readyz")))?.status ?? 0
                if ready != 200 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(ready == 200)
            // The seed's 90/10 split with no canary pods is adopted to 100/0; the rollout ends Healthy.
            _ = try await sandbox.waitForRollout { $0.status?.phase == .healthy && $0.status?.observedGeneration == $0.metadata.generation }
            // The series is recorded at the end of the reconcile that wrote the status (after its Events).
            let line = #"fledge_rollout_phase{namespace="shop",rollout="product-service",phase="Healthy"} 1"#
            var metrics = ""
            for _ in 0..<100 where !metrics.contains(line) {
                metrics = try await http.send(HTTPRequest(url: "http://127.0.0.1:\(port)/metrics")).bodyText
                if !metrics.contains(line) { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(metrics.contains(line), "\(metrics)")

            // Logs are one JSON object per line, with the rollout's name and namespace as fields.
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            var lines: [JSONValue] = []
            while ContinuousClock.now < deadline {
                lines = (try String(contentsOf: controller.err, encoding: .utf8)).split(separator: "\n").compactMap { try? JSONValue(parsing: String($0)) }
                if lines.contains(where: { $0["rollout"] == "product-service" }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(lines.contains { $0["rollout"] == "product-service" && $0["namespace"] == "shop" && $0["level"] != nil }, "\(lines)")

            kill(controller.process.processIdentifier, SIGTERM)
            let result = try await controller.finish()
            #expect(result.status == 0, "\(result)")
        }
    }

    /// A context the kubeconfig lacks: run said it without "kubeconfig:", simulate-mesh as a usage error (64, "cannot
    /// configure the Kubernetes client"). Now every command says it alike and exits 1.
    @Test func aMissingContextIsSaidAlikeByEveryCommand() async throws {
        try await CLISandbox.with { sandbox in
            let status = try await sandbox.run(["status", "product-service", "--context", "nope"])
            let run = try await sandbox.run(["run", "--context", "nope", "--metrics-port", "-1"])
            let mesh = try await sandbox.run(["simulate-mesh", "-n", "shop", "--virtual-service", "product-service", "--context", "nope"])
            #expect(status.status == 1 && status.err.hasPrefix("Error: kubeconfig: ") && status.err.contains("context \"nope\" is not defined"), "\(status)")
            #expect(run.status == 1 && run.err == status.err, "\(run)")
            #expect(mesh.status == 1 && mesh.err == status.err, "\(mesh)")
        }
    }

    /// `--metrics-port -1` as README and --help write it: -1 is the value, not an unknown short option.
    @Test func negativeMetricsPortIsAValue() throws {
        for arguments in [["run", "--metrics-port", "-1"], ["run", "--metrics-port=-1"]] {
            let command = try #require(try Fledge.parseAsRoot(arguments) as? RunCommand, "\(arguments)")
            #expect(command.metricsPort == -1, "\(arguments)")
        }
        #expect(throws: (any Error).self) { try Fledge.parseAsRoot(["run", "--metrics-port", "-2"]) }
        #expect(throws: (any Error).self) { try Fledge.parseAsRoot(["run", "--metrics-port", "--leader-elect"]) }
    }

    /// Prometheus credentials go to `--prometheus` only, so they are refused without it; `analyze` alike.
    @Test func prometheusCredentialsNeedPrometheus() throws {
        for command in ["run", "analyze"] {
            let rest = command == "analyze" ? ["product-service"] : []
            for (flags, named) in [
                (["--prometheus-token", "t"], "--prometheus-token needs --prometheus"),
                (["--prometheus-user", "u", "--prometheus-header", "X-Scope-OrgID=a"], "--prometheus-user, --prometheus-header need --prometheus"),
                (["--prometheus", "http://p:9090", "--prometheus-header", "X Tenant=a"], "--prometheus-header: \"X Tenant=a\" is not NAME=VALUE"),
                (["--prometheus", "ftp://p", "--prometheus-token", "t"], "--prometheus: \"ftp://p\" is not an http:// or https:// URL"),
            ] {
                do {
                    _ = try Fledge.parseAsRoot([command] + rest + flags)
                    Issue.record("\(command) \(flags) parsed")
                } catch {
                    let message = Fledge.message(for: error)
                    #expect(message.hasPrefix(named), "\(command) \(flags): \(message)")
                }
            }
        }
        let good = try #require(
            try Fledge.parseAsRoot(["run", "--prometheus", "https://p:9090", "--prometheus-token", "t", "--prometheus-ca", pemFile]) as? RunCommand)
        #expect(good.prometheusAccess.token == "t" && good.prometheusAccess.caFile == pemFile)
    }

    /// The controller authenticates to its `--prometheus` and to no other: a Rollout that names its own Prometheus
    /// (`spec.analysis.prometheus.address`, which whoever may edit the Rollout can point anywhere) gets no credentials.
    @Test func theControllersCredentialsGoToItsPrometheusOnly() async throws {
        let ours = try AuthenticatingPrometheus(authorization: "Bearer s3cret", tenant: "team-a")
        let theirs = try AuthenticatingPrometheus(authorization: "Bearer s3cret", tenant: "team-a")
        defer { Task { await ours.stop(); await theirs.stop() } }
        await ours.listening()
        await theirs.listening()
        let command = try #require(
            try Fledge.parseAsRoot(["run", "--prometheus", ours.url, "--prometheus-token", "s3cret", "--prometheus-header", "X-Scope-OrgID=team-a"])
                as? RunCommand)
        let analyzer = PrometheusAnalyzer(
            defaultAddress: ours.url, http: CurlHTTPClient(), defaultClient: command.prometheusAccess.makeClient(url: ours.url))
        let rollout = try Rollout(json: try JSONValue(parsing: #"""
            {"apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "product-service", "namespace": "shop"},
             "spec": {"target": {"deployment": "product-service"}, "canary": {"image": "x:2"},
                      "stages": [{"weight": 10, "hold": "1m"}],
                      "analysis": {"metrics": [{"name": "success-rate", "min": 99}]}}}
            """#))
        let plan = try rollout.spec.plan().get()
        var request = AnalysisRequest(rollout: rollout, plan: plan)
        let mine = await analyzer.measure([request], at: Date())
        #expect(!ours.seen.isEmpty && ours.seen.allSatisfy { $0.authorization == "Bearer s3cret" && $0.tenant == "team-a" }, "\(ours.seen)")
        #expect(
            !mine[0].metrics.isEmpty && mine[0].metrics.values.allSatisfy { if case .providerError = $0.outcome { false } else { true } },
            "\(mine[0].metrics)")
        request.prometheusAddress = theirs.url
        let other = await analyzer.measure([request], at: Date())
        #expect(!theirs.seen.isEmpty && theirs.seen.allSatisfy { $0.authorization == nil && $0.tenant == nil }, "\(theirs.seen)")
        #expect(other[0].metrics.values.contains { if case .providerError = $0.outcome { true } else { false } })
    }

    /// A selector the API server would refuse (HTTP 400 on every list, retried forever) fails at start, naming the flag.
    @Test(arguments: [("a in (", "expected \")\""), ("app=web,", "expected a label key"), ("env in prod", "expected \"(\"")])
    func badSelectorFailsAtStart(selector: String, expected: String) throws {
        for arguments in [["run", "--selector", selector], ["run", "-l", selector]] {
            do {
                _ = try Fledge.parseAsRoot(arguments)
                Issue.record("\(arguments) parsed")
            } catch {
                let message = Fledge.message(for: error)
                #expect(message.hasPrefix("--selector: ") && message.contains(selector) && message.contains(expected), "\(message)")
            }
        }
        let good = try #require(try Fledge.parseAsRoot(["run", "-l", "shard in (a, b),!legacy"]) as? RunCommand)
        #expect(good.selector == "shard in (a, b),!legacy")
    }

    /// A taken port names the address, the port and the flag that sets it (was: bind(descriptor:ptr:bytes:): …).
    @Test func aBusyMetricsPortNamesTheAddressAndTheFlag() async throws {
        try await CLISandbox.with { sandbox in
            let busy = try #require(sandbox.server.url?.port)  // the sandbox API server listens there
            let result = try await sandbox.run(["run", "--metrics-port", String(busy), "--metrics-host", "127.0.0.1"])
            #expect(result.status != 0)
            #expect(result.errLines.last == "Error: 127.0.0.1:\(busy) is already in use by another process; --metrics-port sets the port of /healthz, /readyz and /metrics: pick another, 0 for a free one, or -1 to turn the server off", "\(result)")
        }
    }

    @Test func badFlagsAndAMissingKubeconfigAreOneLine() async throws {
        try await CLISandbox.with { sandbox in
            let badPort = try await sandbox.run(["run", "--metrics-port", "70000"])
            #expect(badPort.status != 0 && badPort.err.contains("--metrics-port"), "\(badPort)")
            let badFormat = try await sandbox.run(["run", "--log-format", "xml"])
            #expect(badFormat.status != 0 && badFormat.err.contains("logfmt or json"), "\(badFormat)")
            let missing = try await sandbox.run(["run", "--kubeconfig", "/nonexistent/kubeconfig"])
            #expect(missing.status != 0 && missing.err.contains("/nonexistent/kubeconfig"), "\(missing)")
        }
    }

    /// Shards elect separately: with `-n` or `-l` the default Lease is the shard's own, so two shards never wait on one
    /// leader; `--lease-name` still names it outright.
    @Test func eachShardElectsThroughItsOwnLease() throws {
        func lease(_ arguments: [String]) throws -> LeaderElectionConfiguration {
            let command = try #require(try Fledge.parseAsRoot(["run", "--leader-elect"] + arguments) as? RunCommand, "\(arguments)")
            return command.leaderElection(environment: [:], ownNamespace: "fledge-system")
        }
        #expect(try lease([]).leaseName == "fledge-controller")
        let payments = try lease(["-n", "payments"]).leaseName
        let search = try lease(["-n", "search"]).leaseName
        let shardA = try lease(["-l", "fledge.dev/shard=a"]).leaseName
        #expect(Set([payments, search, shardA, "fledge-controller"]).count == 4, "\([payments, search, shardA])")
        // Every replica of a shard finds the same Lease.
        #expect(try lease(["--namespace", "payments"]).leaseName == payments)
        #expect(try lease(["-n", "payments", "--lease-name", "payments-leader"]).leaseName == "payments-leader")
        for bad in ["Fledge", "fledge_controller", "-fledge", "fledge-", String(repeating: "a", count: 254)] {
            #expect(throws: (any Error).self, "\(bad)") { try Fledge.parseAsRoot(["run", "--leader-elect", "--lease-name", bad]) }
        }
        #expect(throws: (any Error).self) { try Fledge.parseAsRoot(["run", "--leader-elect", "--leader-elect-namespace", "Fledge.System"]) }
    }

    /// The Lease lives in the controller's own namespace ($POD_NAMESPACE, else the kubeconfig's or the service
    /// account's), where its Role lets it write Leases: never in the namespace it watches.
    @Test func theLeaseNamespaceIsNeverTheWatchedNamespace() throws {
        let watching = try #require(try Fledge.parseAsRoot(["run", "-n", "shop", "--leader-elect"]) as? RunCommand)
        #expect(watching.leaderElection(environment: [:], ownNamespace: "fledge-system").namespace == "fledge-system")
        #expect(watching.leaderElection(environment: ["POD_NAMESPACE": ""], ownNamespace: "fledge-system").namespace == "fledge-system")
        #expect(watching.leaderElection(environment: ["POD_NAMESPACE": "controllers"], ownNamespace: "fledge-system").namespace == "controllers")
        let named = try #require(
            try Fledge.parseAsRoot(["run", "-n", "shop", "--leader-elect", "--leader-elect-namespace", "elections"]) as? RunCommand)
        #expect(named.leaderElection(environment: ["POD_NAMESPACE": "controllers"], ownNamespace: "fledge-system").namespace == "elections")
    }

    /// `--identity`, else $POD_NAME (the downward API in deploy/deployment.yaml), else host name and process id.
    @Test func identityComesFromTheFlagThePodOrTheHost() throws {
        let plain = try #require(try Fledge.parseAsRoot(["run"]) as? RunCommand)
        #expect(plain.resolvedIdentity(environment: [:], hostName: "build-1", processID: 42) == "build-1-42")
        #expect(plain.resolvedIdentity(environment: ["POD_NAME": ""], hostName: "build-1", processID: 42) == "build-1-42")
        #expect(plain.resolvedIdentity(environment: ["POD_NAME": "fledge-controller-7d9-x"], hostName: "build-1", processID: 42) == "fledge-controller-7d9-x")
        let named = try #require(try Fledge.parseAsRoot(["run", "--identity", "me"]) as? RunCommand)
        #expect(named.resolvedIdentity(environment: ["POD_NAME": "pod"], hostName: "build-1", processID: 42) == "me")
    }

    /// Two shards with --leader-elect, run as a new user would outside a pod: both lead (each through its own Lease,
    /// in the kubeconfig's namespace, not the watched one) and say which Lease they use.
    @Test func twoShardsBothLead() async throws {
        try await CLISandbox.with { sandbox in
            var shards: [(name: String, process: RunningCLI)] = []
            defer { for shard in shards { shard.process.stop() } }
            for watched in ["payments", "search"] {
                let process = try sandbox.start(
                    ["run", "-n", watched, "--leader-elect", "--metrics-port", "-1", "--log-format", "json"],
                    environment: ["POD_NAME": "fledge-\(watched)"])
                shards.append((watched, process))
            }
            func leaders() async throws -> [String: String] {
                let leases = try await sandbox.client.list(.leases, namespace: .named("shop")).items
                var holders: [String: String] = [:]
                for lease in leases {
                    if let name = lease[path: ["metadata", "name"]]?.stringValue, let holder = lease[path: ["spec", "holderIdentity"]]?.stringValue {
                        holders[name] = holder
                    }
                }
                return holders
            }
            let deadline = ContinuousClock.now.advanced(by: .seconds(30))
            var holders: [String: String] = [:]
            while ContinuousClock.now < deadline {
                holders = try await leaders()
                if Set(holders.values) == ["fledge-payments", "fledge-search"] { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(Set(holders.values) == ["fledge-payments", "fledge-search"], "\(holders)")
            #expect(holders.keys.allSatisfy { $0.hasPrefix("fledge-controller-") }, "\(holders)")
            for shard in shards {
                // The Lease is held as soon as the API server stored it; the log line follows the answer.
                func log() throws -> [JSONValue] {
                    (try String(contentsOf: shard.process.err, encoding: .utf8)).split(separator: "\n").compactMap { try? JSONValue(parsing: String($0)) }
                }
                var lines = try log()
                let logDeadline = ContinuousClock.now.advanced(by: .seconds(10))
                while !lines.contains(where: { $0["msg"]?.stringValue == "became the leader" }), ContinuousClock.now < logDeadline {
                    try await Task.sleep(for: .milliseconds(100))
                    lines = try log()
                }
                let lease = lines.first { $0["msg"]?.stringValue == "electing a leader through a Lease" }?["lease"]?.stringValue
                #expect(lease.map { $0.hasPrefix("shop/fledge-controller-") && holders[String($0.dropFirst(5))] == "fledge-\(shard.name)" } == true,
                    "\(shard.name): \(lines)")
                #expect(lines.contains { $0["msg"]?.stringValue == "became the leader" }, "\(shard.name): \(lines)")
            }
        }
    }
}
