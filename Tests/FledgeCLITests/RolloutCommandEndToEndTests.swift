import FledgeCore
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

/// The built `fledge` binary against the in-process API server (HTTPS, bearer tokens, RBAC on), loaded with the
/// CRD and rollouts/product-service/. Where the controller would answer, `ContractController` calls FledgeCore's
/// `decide` in-process and writes what it returns: those are the contract tests.
@Suite("fledge rollout commands end to end", .serialized)
struct RolloutCommandEndToEndTests {
    static let newImage = "registry.example/product-service:2.0.0"

    @Test func triggerPrintsTheRevisionTheCoreRollsOutAndStatusShowsIt() async throws {
        try await CLISandbox.with { sandbox in
            let trigger = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            #expect(trigger.status == 0, "\(trigger)")
            let printed = try #require(trigger.out.firstMatch(of: /revision ([0-9a-f]{16}) \(stable runs ([0-9a-f]{16})\)/))
            let stored = try await sandbox.rollout()
            #expect(stored.spec.canary == CanaryChange(image: Self.newImage))

            // Contract: the controller's decide starts exactly the revision trigger printed.
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            let started = try await sandbox.rollout()
            #expect(started.status?.phase == .initializing)
            #expect(started.status?.revision == String(printed.1))
            #expect(started.status?.stableRevision == String(printed.2))

            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 && $0.status?.stageStartedAt != nil }
            let status = try await sandbox.run(["status", "product-service"])
            #expect(status.status == 0, "\(status)")
            #expect(status.out.contains("Phase:         Progressing"))
            #expect(status.out.contains("[10] ─ 25 ─ 50 ─ 100   canary weight 10%"))
            #expect(status.out.contains("Revision:      \(printed.1)"))
            #expect(status.out.contains("failed 0/3"))
            // Events written the way the controller records them (events.k8s.io/v1, regarding the Rollout).
            #expect(status.out.contains("RolloutStarted"))
            let rolloutStarted = try #require(status.out.range(of: "RolloutStarted"))
            let stage = try #require(status.out.range(of: "StageStarted"))
            #expect(rolloutStarted.lowerBound < stage.lowerBound, "Events oldest first")

            let json = try await sandbox.run(["status", "product-service", "-o", "json"])
            let parsed = try JSONValue(parsing: Array(json.out.utf8))
            #expect(parsed["phase"]?.stringValue == "Progressing")
            #expect(parsed["revision"]?.stringValue == String(printed.1))
            let yaml = try await sandbox.run(["status", "product-service", "-o", "yaml"])
            #expect(yaml.out.contains("phase: Progressing"))

            // A real API server keeps status keys sorted. -o json/yaml print them in RolloutStatus's order, phase
            // first, values untouched (keys it does not know go last: KeyOrderTests).
            _ = try await sandbox.server.store.modify(CLISandbox.rollouts, namespace: "shop", name: "product-service") { object in
                var status = object["status"]?.objectValue ?? [:]
                status.sort { $0.key < $1.key }
                object["status"] = .object(status)
            }
            let declared = [
                "phase", "observedGeneration", "revision", "stableRevision", "stage", "stageProgress", "canaryWeight", "message", "startedAt",
                "stageStartedAt", "lastProgressAt", "lastAnalysisAt", "passedChecks", "failedChecks", "inconclusiveChecks", "errorChecks",
                "lastAnalysis", "conditions", "history", "requests", "rollbackTo", "approvedStage", "promotedStages", "passedWebhooks", "judge",
                "judgeAcceptedStage", "routedTraffic", "canaryDeployment", "pendingNotifications", "pendingEvents",
            ]
            var storedStatus = try #require(await sandbox.server.store.object(CLISandbox.rollouts, namespace: "shop", name: "product-service")?["status"])
            storedStatus["pendingEvents"] = nil  // left out of status -o json (RolloutViewTests)
            let ordered = try JSONValue(parsing: Array(try await sandbox.run(["status", "product-service", "-o", "json"]).out.utf8))
            let keys = Array(try #require(ordered.objectValue).keys)
            #expect(keys == declared.filter(keys.contains), "\(keys)")
            #expect(keys.first == "phase" && keys.count > 8)
            #expect(ordered == storedStatus)
            // Each condition in Condition's order (type first), as the controller writes it.
            if let condition = ordered["conditions"]?[0]?.objectValue { #expect(condition.keys.first == "type", "\(condition)") }
            let orderedYAML = try await sandbox.run(["status", "product-service", "-o", "yaml"])
            #expect(orderedYAML.out.split(separator: "\n").first { $0 != "---" } == "phase: Progressing", "\(orderedYAML)")
        }
    }

    @Test func analysisResultsShowAgainstTheirThresholds() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            controller.canary = .failing
            try await controller.run { ($0.status?.failedChecks ?? 0) >= 1 }
            let status = try await sandbox.run(["status", "product-service"])
            let lines = status.out.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.contains("success-rate") && $0.contains("80") && $0.contains(">= 99") && $0.contains("Failed") }, "\(status)")
            #expect(lines.contains { $0.contains("latency-p99") && $0.contains("2400") && $0.contains("<= 500") && $0.contains("Failed") }, "\(status)")
            #expect(status.out.contains("failed 1/3"))
            #expect(status.out.contains("AnalysisFailed"))
        }
    }

    @Test func triggerRefusesWhileAnotherRevisionIsInFlightUnlessForced() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run(untilPhase: .progressing)
            let inFlight = try #require(try await sandbox.rollout().status?.revision)

            let refused = try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:3.0.0"])
            #expect(refused.status == 1)
            #expect(refused.errLines.count == 1, "\(refused)")
            #expect(refused.err.contains("revision \(inFlight)") && refused.err.contains("Progressing") && refused.err.contains("--force"))
            // The hint reaches the same Rollout when pasted: its namespace, and the flags this command was given.
            #expect(refused.err.contains("abort it (fledge abort product-service -n shop)"), "\(refused)")
            let flagged = try await sandbox.run(["trigger", "product-service", "--image", "reg/x:3", "--kubeconfig", sandbox.kubeconfig, "-n", "shop"])
            #expect(flagged.err.contains("abort it (fledge abort product-service -n shop --kubeconfig \(sandbox.kubeconfig))"), "\(flagged)")
            #expect(try await sandbox.rollout().spec.canary?.image == Self.newImage)

            let same = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            #expect(same.status == 0 && same.out.contains("already in flight"), "\(same)")

            let forced = try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:3.0.0", "--force"])
            #expect(forced.status == 0, "\(forced)")
            let revision = try #require(forced.out.firstMatch(of: /revision ([0-9a-f]{16})/)?.1)
            try await controller.reconcile()
            let replaced = try await sandbox.rollout()
            #expect(replaced.status?.revision == String(revision))
            #expect(replaced.status?.history.last?.outcome == "Superseded")
            #expect(forced.out.contains("revision \(revision) replaces revision \(inFlight) in flight (Progressing)"), "\(forced)")
        }
    }

    /// --force back to the image stable runs cancels the revision in flight, and says so (it said "nothing to roll out").
    @Test func forcingBackToTheStableImageSaysItCancelsTheRevisionInFlight() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run(untilPhase: .progressing)
            let inFlight = try #require(try await sandbox.rollout().status?.revision)
            let back = try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:1.0.0", "--force"])
            #expect(back.status == 0, "\(back)")
            #expect(!back.out.contains("nothing to roll out"), "\(back)")
            #expect(back.out.contains("so revision \(inFlight) in flight (Progressing) is cancelled: the controller moves traffic back to stable and removes the canary"), "\(back)")
            try await controller.reconcile()
            let reverted = try await sandbox.rollout()
            #expect(reverted.status?.history.last?.outcome == "Superseded")
            #expect(reverted.status?.phase == .rollingBack || reverted.status?.phase == .healthy, "\(String(describing: reverted.status?.phase))")
        }
    }

    @Test func triggerWithATemplatePatchFile() async throws {
        try await CLISandbox.with { sandbox in
            let file = sandbox.folder.appendingPathComponent("patch.yaml").path
            try "metadata:\n  annotations:\n    team: shop\nspec:\n  terminationGracePeriodSeconds: 45\n".write(toFile: file, atomically: true, encoding: .utf8)
            let result = try await sandbox.run(["trigger", "product-service", "--template-patch", file, "--image", "product-service=" + Self.newImage])
            #expect(result.status == 0, "\(result)")
            let canary = try #require(try await sandbox.rollout().spec.canary)
            #expect(canary.image == "product-service=" + Self.newImage)
            #expect(canary.templatePatch?[path: ["spec", "terminationGracePeriodSeconds"]]?.intValue == 45)
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            #expect(result.out.contains(try #require(try await sandbox.rollout().status?.revision)))

            // A container the pod template does not have: the core's own message, nothing written.
            let wrong = try await sandbox.run(["trigger", "product-service", "--image", "sidecar=reg/proxy:1", "--force"])
            #expect(wrong.status == 1)
            #expect(wrong.err == "Error: spec.canary: container 'sidecar' is not in the pod template (it has 'product-service')\n", "\(wrong)")

            // A patch that leaves a pod template the API server refuses (the container list replaced by one without an
            // image, a port out of range): the server's own validation answers, by a dry run, and nothing is written.
            let stableBefore = await sandbox.server.store.object(.deployments, namespace: "shop", name: "product-service")
            let specBefore = try await sandbox.rollout().spec.canary
            let bad = sandbox.folder.appendingPathComponent("bad-patch.yaml").path
            try "spec:\n  containers:\n  - name: product-service\n    ports:\n    - containerPort: 99999\n".write(toFile: bad, atomically: true, encoding: .utf8)
            let refused = try await sandbox.run(["trigger", "product-service", "--template-patch", bad, "--force"])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.err.contains("--template-patch: \(bad) makes a pod template the API server refuses: Deployment.apps \"product-service\" is invalid: "), "\(refused)")
            #expect(refused.err.contains("spec.template.spec.containers[0].image: Required value"), "\(refused)")
            #expect(refused.err.contains("spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 99999: must be between 1 and 65535, inclusive"), "\(refused)")
            #expect(refused.err.contains("(checked with a server-side dry run of Deployment product-service; nothing was changed)"), "\(refused)")
            #expect(try await sandbox.rollout().spec.canary == specBefore)
            #expect(await sandbox.server.store.object(.deployments, namespace: "shop", name: "product-service") == stableBefore)
        }
    }

    /// A Rollout manifest given as --template-patch was written as the patch: the canary's pod template got
    /// apiVersion, kind and the Rollout's spec merged in (a real API server drops them), so the stable pod rolled
    /// out under a new revision. The spec's validation refuses it, naming the file's kind; nothing is written.
    @Test func triggerRefusesAManifestAsTheTemplatePatch() async throws {
        try await CLISandbox.with { sandbox in
            let manifest = packageRoot.appendingPathComponent("rollouts/product-service/rollout.yaml").path
            let before = try await sandbox.rollout().spec.canary
            let result = try await sandbox.run(["trigger", "product-service", "--template-patch", manifest])
            #expect(result.status == 1, "\(result)")
            #expect(
                result.err.contains(
                    "spec.canary.templatePatch: has apiVersion, kind at its top, where a pod template has only metadata and spec: this is a whole Rollout manifest"),
                "\(result)")
            #expect(try await sandbox.rollout().spec.canary == before)
        }
    }

    @Test func listAcrossNamespaces() async throws {
        try await CLISandbox.with { sandbox in
            var other = try requireObjectHelper(await sandbox.server.store.object(CLISandbox.rollouts, namespace: "shop", name: "product-service"))
            other["metadata"] = ["name": "checkout", "namespace": "payments"]
            other["status"] = nil
            try await sandbox.server.store.apply([other])
            var controller = ContractController(sandbox)
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let revision = try #require(try await sandbox.rollout().status?.revision)

            let all = try await sandbox.run(["list", "-A"])
            #expect(all.status == 0, "\(all)")
            let lines = all.out.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(lines.first == ["NAMESPACE", "NAME", "PHASE", "STAGE", "WEIGHT", "REVISION", "AGE"])
            #expect(lines.dropFirst().map { Array($0.prefix(6)) } == [
                ["payments", "checkout", "-", "-", "-", "-"],
                ["shop", "product-service", "Progressing", "1/4", "10%", String(revision.prefix(8))],
            ])
            let payments = try await sandbox.run(["list", "-n", "payments"])
            #expect(payments.out.hasPrefix("NAME ") && payments.out.contains("checkout") && !payments.out.contains("product-service"))
            let kubeconfigNamespace = try await sandbox.run(["list"])
            #expect(kubeconfigNamespace.out.contains("product-service") && !kubeconfigNamespace.out.contains("checkout"))
            let empty = try await sandbox.run(["list", "-n", "default"])
            #expect(empty.status == 0 && empty.out.isEmpty && empty.err == "No rollouts found in namespace \"default\".\n")
            let yaml = try await sandbox.run(["list", "-A", "-o", "yaml"])
            #expect(yaml.out.contains("kind: List") && yaml.out.contains("name: checkout"))
        }
    }

    @Test func errorsAreOneLineOnStandardError() async throws {
        try await CLISandbox.with { sandbox in
            let unknown = try await sandbox.run(["status", "nope"])
            #expect(unknown.status == 1)
            #expect(unknown.err == "Error: rollout \"nope\" not found in namespace \"shop\"\n")

            let otherNamespace = try await sandbox.run(["promote", "product-service", "-n", "payments"])
            #expect(otherNamespace.err == "Error: rollout \"product-service\" not found in namespace \"payments\"\n")

            // RBAC: the viewer may read Rollouts but not patch them; the message names the verb and the resource.
            let viewer = try sandbox.kubeconfig(token: CLISandbox.viewerToken, name: "viewer.kubeconfig")
            let listed = try await sandbox.run(["list"], kubeconfig: viewer)
            #expect(listed.status == 0 && listed.out.contains("product-service"), "\(listed)")
            let forbidden = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage], kubeconfig: viewer)
            #expect(forbidden.status == 1)
            #expect(forbidden.errLines.count == 1, "\(forbidden)")
            #expect(forbidden.err.hasPrefix("Error: forbidden by RBAC: "))
            #expect(forbidden.err.contains("User \"viewer\" cannot patch resource \"rollouts\" in API group \"fledge.dev\" in the namespace \"shop\""))
            let listAll = try await sandbox.run(["list", "-A"], kubeconfig: viewer)
            #expect(listAll.err.contains("cannot list resource \"rollouts\"") && listAll.err.contains("at the cluster scope"), "\(listAll)")

            let badToken = try sandbox.kubeconfig(token: "expired-token", name: "bad.kubeconfig")
            let unauthorized = try await sandbox.run(["list"], kubeconfig: badToken)
            #expect(unauthorized.status == 1)
            #expect(unauthorized.errLines.count == 1)
            #expect(unauthorized.err.contains("rejected the credentials: 401 Unauthorized") && unauthorized.err.contains(sandbox.server.url!.absoluteString))

            // Nothing listens on port 1.
            let unreachable = try sandbox.kubeconfig(token: CLISandbox.adminToken, server: "https://127.0.0.1:1", name: "down.kubeconfig")
            let down = try await sandbox.run(["status", "product-service"], kubeconfig: unreachable)
            #expect(down.status == 1)
            #expect(down.err.hasPrefix("Error: cannot reach the Kubernetes API server at https://127.0.0.1:1: connection refused"), "\(down)")
            #expect(down.errLines.count == 1)

            // http:// to the HTTPS server: "Empty reply from server" said nothing of the scheme.
            let plain = try sandbox.kubeconfig(
                token: CLISandbox.adminToken, server: sandbox.server.url!.absoluteString.replacingOccurrences(of: "https://", with: "http://"), name: "http.kubeconfig")
            let wrongScheme = try await sandbox.run(["status", "product-service"], kubeconfig: plain)
            #expect(wrongScheme.status == 1 && wrongScheme.err.hasSuffix("; does it serve HTTPS? The URL says http://\n"), "\(wrongScheme)")

            let missingKubeconfig = try await sandbox.run(["list", "--kubeconfig", sandbox.folder.appendingPathComponent("none").path])
            #expect(missingKubeconfig.status == 1 && missingKubeconfig.err.hasPrefix("Error: kubeconfig: ") && missingKubeconfig.errLines.count == 1)

            let badFlag = try await sandbox.run(["promote", "product-service", "--fast"])
            #expect(badFlag.status == 64)
            #expect(badFlag.err == "Error: Unknown option '--fast'. Did you mean '--full'? (see 'fledge promote --help')\n", "\(badFlag)")
            let badValue = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "soon"])
            #expect(badValue.status == 64 && badValue.errLines.count == 1 && badValue.err.contains("--timeout"))
        }
    }

    @Test func theSameBinaryIsTheKubectlPlugin() async throws {
        try await CLISandbox.with { sandbox in
            let bin = sandbox.folder.appendingPathComponent("bin")
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
            let plugin = bin.appendingPathComponent("kubectl-fledge").path
            try FileManager.default.createSymbolicLink(atPath: plugin, withDestinationPath: sandbox.binary)

            let direct = try await sandbox.run(["list", "-o", "json"])
            let viaPlugin = try await sandbox.run(["list", "-o", "json"], executable: plugin)
            #expect(direct.out.contains("\"name\": \"product-service\""))
            #expect(viaPlugin.status == 0 && viaPlugin.out == direct.out, "\(viaPlugin)")
            let help = try await sandbox.run(["promote", "--help"], executable: plugin)
            #expect(help.out.contains("USAGE: kubectl fledge promote <rollout>"), "\(help)")
            // The plugin name hands out fledge's completion script (a shell function cannot be named "kubectl fledge").
            let completion = try await sandbox.run(["--generate-completion-script", "bash"], executable: plugin)
            #expect(completion.status == 0 && completion.out.contains("_fledge()") && !completion.out.contains("kubectl fledge"))
            let bad = try await sandbox.run(["promote"], executable: plugin)
            #expect(bad.err == "Error: Missing expected argument '<rollout>' (see 'kubectl fledge promote --help')\n")
            // A mistyped subcommand is named, with the nearest (was: "2 unexpected arguments: 'stauts', 'product-service'").
            let typo = try await sandbox.run(["stauts", "product-service"], executable: plugin)
            #expect(typo.status == 64 && typo.err == "Error: 'stauts' is not a subcommand; did you mean 'status'? (see 'kubectl fledge --help')\n", "\(typo)")
            let helpTypo = try await sandbox.run(["help", "stauts"])
            #expect(helpTypo.status == 64 && helpTypo.err == "Error: 'stauts' is not a subcommand; did you mean 'status'? (see 'fledge --help')\n", "\(helpTypo)")
            #expect(try await sandbox.run(["help", "status"]).out.contains("USAGE: fledge status <rollout>"))
            let direct64 = try await sandbox.run(["rollback", "product-service"])
            #expect(direct64.status == 64 && direct64.err == "Error: 'rollback' is not a subcommand (see 'fledge --help')\n", "\(direct64)")

            // Through kubectl itself, which finds kubectl-fledge on PATH and passes the arguments after `fledge`.
            if let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
                let viaKubectl = try await sandbox.run(["fledge", "list", "-o", "json"], executable: kubectl, path: bin.path + ":/usr/bin:/bin")
                #expect(viaKubectl.status == 0 && viaKubectl.out == direct.out, "\(viaKubectl)")
            }
        }
    }

    @Test func completionScriptsForEveryShell() async throws {
        let binary = try FledgeBinary.path()
        try await CLISandbox.with { sandbox in
            for shell in ["bash", "zsh", "fish"] {
                let script = try await sandbox.run(["--generate-completion-script", shell], executable: binary)
                #expect(script.status == 0)
                #expect(script.out.contains("trigger") && script.out.contains("promote") && script.out.contains("all-namespaces"), "\(shell)")
                if shell == "bash" {
                    // The script is valid bash.
                    let file = sandbox.folder.appendingPathComponent("fledge.bash").path
                    try script.out.write(toFile: file, atomically: true, encoding: .utf8)
                    let check = try await sandbox.run(["-n", file], executable: "/bin/bash")
                    #expect(check.status == 0, "\(check)")
                }
            }
        }
    }
}
