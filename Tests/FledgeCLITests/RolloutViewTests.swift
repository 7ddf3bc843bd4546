import ArgumentParser
import FledgeCore
import FledgeJSON
import Foundation
import Testing

@testable import FledgeCLI

/// What status and list show, and the CLI's bridges to FledgeCore, without a server.
@Suite("rollout views")
struct RolloutViewTests {
    @Test func progressLineMarksTheCurrentStageAndManualGates() {
        let stages = [(10, false), (25, false), (50, true), (100, false)]
        #expect(StatusView.progressLine(stages, current: 1) == "10 ─ [25] ─ 50⏸ ─ 100")
        #expect(StatusView.progressLine(stages, current: nil) == "10 ─ 25 ─ 50⏸ ─ 100")
        #expect(StatusView.progressLine([(100, false)], current: 0) == "[100]")
    }

    @Test func ages() {
        let now = Timestamp(seconds: 1_000_000)
        #expect(StatusView.age(since: Timestamp(seconds: 999_955), now: now) == "45s")
        #expect(StatusView.age(since: Timestamp(seconds: 1_000_000 - 600), now: now) == "10m")
        #expect(StatusView.age(since: Timestamp(seconds: 1_000_000 - 5 * 3600), now: now) == "5h")
        #expect(StatusView.age(since: Timestamp(seconds: 1_000_000 - 3 * 86400), now: now) == "3d")
        #expect(StatusView.age(since: Timestamp(seconds: 1_000_100), now: now) == "0s")
    }

    /// status -o json/yaml: the stored status (a real API server sorts its keys) in RolloutStatus's order, phase
    /// first, keys this version does not know last, values untouched.
    @Test func statusOutputFollowsTheDeclarationOrder() throws {
        let status: JSONValue = [
            "canaryWeight": 10, "conditions": [["lastTransitionTime": "2026-11-26T10:00:00Z", "message": "m", "reason": "R", "status": "True", "type": "Progressing"]],
            "failedChecks": 1, "lastProgressAt": "2026-11-26T10:00:00Z", "observedGeneration": 2, "phase": "Progressing",
            "revision": "abc", "stableRevision": "def", "stage": 0, "zFuture": ["b": 1, "a": 2],
        ]
        let fetched = try FetchedRollout(Self.rolloutJSON(status: status))
        let ordered = StatusPrinter.orderedStatus(fetched)
        #expect(ordered == status)
        #expect(
            ordered.serializedString()
                == #"{"phase":"Progressing","observedGeneration":2,"revision":"abc","stableRevision":"def","stage":0,"canaryWeight":10,"lastProgressAt":"2026-11-26T10:00:00Z","failedChecks":1,"conditions":[{"type":"Progressing","status":"True","reason":"R","message":"m","lastTransitionTime":"2026-11-26T10:00:00Z"}],"zFuture":{"b":1,"a":2}}"#)
        // The Events the controller is about to record are left out: under --watch they would print each decision twice.
        var owing = status
        owing["pendingEvents"] = [["name": "ps.1", "type": "Normal", "reason": "StageStarted", "message": "m", "time": "2026-11-26T10:00:00.000000Z"]]
        #expect(StatusPrinter.orderedStatus(try FetchedRollout(Self.rolloutJSON(status: owing))) == status)
        // No status yet: an empty object, as before.
        #expect(StatusPrinter.orderedStatus(try FetchedRollout(Self.rolloutJSON(status: nil))) == .object([:]))
    }

    /// The revision a watch follows is the first a current status names; another is a supersession, except the
    /// rename to the stable revision while promoting (the same rollout).
    @Test func revisionFollower() throws {
        func fetched(_ phase: String, _ revision: String?, stable: String = "s", generation: Int64 = 2) throws -> FetchedRollout {
            var status: JSONValue = ["phase": .string(phase), "observedGeneration": 2, "stableRevision": .string(stable)]
            if let revision { status["revision"] = .string(revision) }
            return try FetchedRollout(Self.rolloutJSON(status: status, generation: generation))
        }
        var follower = RevisionFollower()
        #expect(follower.superseding(try fetched("Healthy", "old", generation: 3)) == nil)  // not about this spec yet
        #expect(follower.followed == nil)
        #expect(follower.superseding(try fetched("Initializing", nil)) == nil)
        #expect(follower.superseding(try fetched("Progressing", "a")) == nil && follower.followed == "a")
        #expect(follower.superseding(try fetched("Progressing", "a")) == nil)
        #expect(follower.superseding(try fetched("Promoting", "s")) == nil && follower.followed == "s")
        #expect(follower.superseding(try fetched("Succeeded", "s")) == nil)

        var replaced = RevisionFollower()
        _ = replaced.superseding(try fetched("Progressing", "a"))
        #expect(replaced.superseding(try fetched("Initializing", "b")) == "b")
        var reverted = RevisionFollower()
        _ = reverted.superseding(try fetched("Progressing", "a"))
        #expect(reverted.superseding(try fetched("RollingBack", "s")) == "s")
        #expect(
            StatusCommand.supersededMessage(followed: "a", by: "s", phase: .rollingBack, stable: "s", rollout: "r")
                == "revision a of rollout \"r\" was superseded by revision s (the stable one: spec.canary was set back to the stable image; now RollingBack): it will not finish")
        // Exit 3 is documented where the other codes are.
        let help = StatusCommand.helpMessage(columns: 400)
        #expect(help.contains("2 --timeout passed first, 3 the revision followed was superseded by another"), "\(help)")
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.split(whereSeparator: \.isWhitespace).joined(separator: " ").contains("2 when `--timeout` passes first, 3 when the revision it follows is superseded"))
        #expect(StatusCommand.supersededExit == 3)
    }

    /// Usage errors exit 64 (ArgumentParser's validationFailure), and every help that lists exit codes says so.
    @Test func everyHelpThatListsExitCodesNamesTheUsageError() throws {
        #expect(ExitCode.validationFailure.rawValue == 64)
        #expect(usageErrorExit.hasPrefix("64 usage error"))
        var listing: [String] = []
        for command in Fledge.configuration.subcommands {
            let help = command.helpMessage(columns: 400)
            guard help.contains("Exit status") else { continue }
            listing.append(command._commandName)
            #expect(help.contains(usageErrorExit), "fledge \(command._commandName) --help lists exit codes without 64")
        }
        #expect(Set(listing).isSuperset(of: ["trigger", "promote", "abort", "retry", "status", "lint", "demo", "analyze"]), "\(listing)")
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("Usage errors exit **64**"))
    }

    /// `status --watch` piped: Events older than the status line's stamp print above it even when they reached the
    /// API server after the status was written (a backlog: `08:44:31 event CanaryNotReady` before
    /// `08:44:32 … Initializing`); newer ones below it.
    @Test func watchPrintsBacklogEventsOlderThanTheLineAboveIt() throws {
        var rollout = Self.rolloutJSON(status: ["phase": "Initializing", "observedGeneration": 2])
        rollout[path: ["metadata", "resourceVersion"]] = "100"
        let fetched = try FetchedRollout(rollout)
        func event(_ name: String, _ time: String, version: Int) throws -> EventLine {
            try #require(EventLine([
                "metadata": ["name": .string(name), "namespace": "shop", "resourceVersion": .string(String(version))],
                "eventTime": .string(time), "type": "Normal", "reason": .string(name), "note": "n",
            ]))
        }
        let stamp = try #require(Timestamp(rfc3339: "2026-11-27T08:44:32Z"))
        let fresh = [
            try event("RolloutStarted", "2026-11-27T08:44:30Z", version: 99),  // before the status, by version
            try event("CanaryNotReady", "2026-11-27T08:44:31Z", version: 101),  // after it by version, older by time
            try event("StageStarted", "2026-11-27T08:44:40Z", version: 102),  // newer than the line
        ]
        let (before, after) = StatusPrinter.arrange(fresh, around: fetched, stampedAt: stamp)
        #expect(before.map(\.reason) == ["RolloutStarted", "CanaryNotReady"])
        #expect(after.map(\.reason) == ["StageStarted"])
    }

    static func rolloutJSON(status: JSONValue?, generation: Int64 = 2) -> JSONValue {
        var object: JSONValue = [
            "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
            "metadata": ["name": "product-service", "namespace": "shop", "generation": .int(generation), "creationTimestamp": "2026-11-26T10:00:00Z"],
            "spec": [
                "target": ["deployment": "product-service"], "canary": ["image": "reg/app:2"],
                "stages": [["weight": 10, "hold": "1m"], ["weight": 50, "hold": "1m", "approval": "manual"], ["weight": 100, "hold": "1m"]],
                "analysis": ["interval": "30s", "failureLimit": 4, "metrics": [["name": "success-rate", "min": 99], ["name": "latency-p99", "max": 500]]],
            ],
        ]
        if let status { object["status"] = status }
        return object
    }

    /// With an invalid spec the Checks line still shows the limits the spec sets (or their defaults), and says
    /// why one it cannot read is `?`.
    @Test func checksLimitsOfAnInvalidSpec() throws {
        var status = RolloutStatus(phase: .healthy)
        status.observedGeneration = 2
        var rollout = Self.rolloutJSON(status: try JSONValue(encoding: status))
        rollout[path: ["spec", "target"]] = nil  // invalid, but not the limits
        var text = StatusView.render(try FetchedRollout(rollout), events: .success([]), now: Timestamp(seconds: 1_795_700_000))
        #expect(text.contains("Checks:        failed 0/4, inconclusive 0, provider errors 0/5\n"), "\(text)")
        rollout[path: ["spec", "analysis", "failureLimit"]] = 0
        text = StatusView.render(try FetchedRollout(rollout), events: .success([]), now: Timestamp(seconds: 1_795_700_000))
        #expect(
            text.contains("Checks:        failed 0/?, inconclusive 0, provider errors 0/5 (? = spec.analysis.failureLimit: 0 is below 1)\n"),
            "\(text)")
    }

    @Test func statusShowsWhyTheRolloutIsWhereItIs() throws {
        var status = RolloutStatus(phase: .progressing)
        status.observedGeneration = 2
        status.revision = "aaaaaaaaaaaaaaaa"
        status.stableRevision = "bbbbbbbbbbbbbbbb"
        status.stage = 1
        status.canaryWeight = 50
        status.failedChecks = 1
        status.inconclusiveChecks = 2
        status.message = "stage 2/3 at 50%: 1/2 passing checks, hold 1m"
        let at = Timestamp(seconds: 1_795_700_000)
        status.lastAnalysisAt = at
        status.lastAnalysis = [
            MetricResult(name: "success-rate", value: 97.123, stableValue: 99.9, threshold: ">= 99", verdict: .failed, message: nil, requests: 480, time: at),
            MetricResult(name: "latency-p99", value: nil, stableValue: nil, threshold: "<= 500", verdict: .inconclusive, message: "no data", requests: nil, time: at),
        ]
        status.setCondition(ConditionType.analysis, .false, reason: "Failed", message: "success-rate 97.12 < 99", generation: 2, now: at)
        let fetched = try FetchedRollout(Self.rolloutJSON(status: try JSONValue(encoding: status)))
        let text = StatusView.render(fetched, events: .success([]), now: at + .seconds(30))
        #expect(text.contains("Phase:         Progressing\n"))
        #expect(text.contains("Revision:      aaaaaaaaaaaaaaaa  (stable bbbbbbbbbbbbbbbb)"))
        #expect(text.contains("Stages:        10 ─ [50⏸] ─ 100   canary weight 50%"))
        #expect(text.contains("Checks:        failed 1/4, inconclusive 2, provider errors 0/5, passed in this stage 0"))
        #expect(text.contains("success-rate  97.12%  99.9%   >= 99      Failed        480"), "\(text)")
        #expect(text.contains("latency-p99   -       -       <= 500     Inconclusive  -         no data"), "\(text)")
        #expect(text.contains("Analysis  False   Failed  30s  success-rate 97.12 < 99"))
        #expect(text.contains("Events:        <none>"))
        #expect(StatusCommand.outcome(fetched) == nil)
        #expect(StatusView.line(fetched) == "product-service: Progressing  stage 2/3  weight 50%  revision aaaaaaaaaaaaaaaa  failed 1 inconclusive 2  — stage 2/3 at 50%: 1/2 passing checks, hold 1m")

        let failure = StatusView.render(fetched, events: .failure(CLIError("forbidden by RBAC: cannot list events")), now: at)
        #expect(failure.contains("Events:        cannot be listed: forbidden by RBAC: cannot list events"))
    }

    @Test func watchOutcomesCountOnlyForTheCurrentGeneration() throws {
        for (phase, observed, expected) in [
            (Phase.succeeded, Int64(2), Int32?(0)), (.healthy, 2, 0), (.failed, 2, 1), (.aborted, 2, 1),
            (.succeeded, 1, nil), (.failed, 1, nil), (.progressing, 2, nil), (.rollingBack, 2, nil), (.paused, 2, nil),
        ] {
            var status = RolloutStatus(phase: phase)
            status.observedGeneration = observed
            let fetched = try FetchedRollout(Self.rolloutJSON(status: try JSONValue(encoding: status)))
            #expect(StatusCommand.outcome(fetched) == expected, "\(phase) observed \(observed)")
        }
        #expect(StatusCommand.outcome(try FetchedRollout(Self.rolloutJSON(status: nil))) == nil)
        // Healthy with an invalid spec or no target rolled nothing out: a pipeline must not read success.
        var broken = RolloutStatus(phase: .healthy)
        broken.observedGeneration = 2
        broken.setCondition(ConditionType.specValid, .false, reason: "InvalidSpec", message: "spec.stages: …", generation: 2, now: Timestamp(seconds: 0))
        #expect(StatusCommand.outcome(try FetchedRollout(Self.rolloutJSON(status: try JSONValue(encoding: broken)))) == 1)
    }

    @Test func aRolloutBeingDeletedTakesNoChange() throws {
        var json = Self.rolloutJSON(status: nil)
        #expect(throws: Never.self) { try FetchedRollout(json).requireNotDeleting("trigger") }
        json[path: ["metadata", "deletionTimestamp"]] = "2027-01-15T10:00:00Z"
        do {
            try FetchedRollout(json).requireNotDeleting("trigger")
            Issue.record("a Rollout being deleted was changed")
        } catch {
            #expect(error.description.contains("is being deleted (since 2027-01-15T10:00:00Z"), "\(error)")
        }
    }

    @Test func listTable() throws {
        var status = RolloutStatus(phase: .paused)
        status.stage = 1
        status.canaryWeight = 50
        status.revision = "0123456789abcdef"
        var other = Self.rolloutJSON(status: nil)
        other[path: ["metadata", "namespace"]] = "payments"
        other[path: ["metadata", "name"]] = "checkout"
        let items = [Self.rolloutJSON(status: try JSONValue(encoding: status)), other]
        let now = try #require(Timestamp(rfc3339: "2026-11-26T12:00:00Z"))
        #expect(ListCommand.table(items, allNamespaces: true, now: now) == """
            NAMESPACE  NAME             PHASE   STAGE  WEIGHT  REVISION  AGE
            payments   checkout         -       -      -       -         2h
            shop       product-service  Paused  2/3    50%     01234567  2h
            """)
        #expect(ListCommand.table([items[0]], allNamespaces: false, now: now).hasPrefix("NAME             PHASE"))

        // A Healthy phase says nothing of a spec that is invalid or a target that is gone: the reason is shown.
        var broken = RolloutStatus(phase: .healthy)
        broken.setCondition(ConditionType.trafficReady, .false, reason: "StableNotFound", message: "Deployment product-service not found", generation: 1, now: now)
        #expect(ListCommand.table([Self.rolloutJSON(status: try JSONValue(encoding: broken))], allNamespaces: false, now: now).contains("Healthy (StableNotFound)"))
        broken.setCondition(ConditionType.specValid, .false, reason: "InvalidSpec", message: "spec.stages: …", generation: 1, now: now)
        #expect(ListCommand.table([Self.rolloutJSON(status: try JSONValue(encoding: broken))], allNamespaces: false, now: now).contains("Healthy (InvalidSpec)"))
        var starting = RolloutStatus(phase: .initializing)
        starting.setCondition(ConditionType.trafficReady, .false, reason: "CanaryNotReady", message: "being created", generation: 1, now: now)
        #expect(!ListCommand.table([Self.rolloutJSON(status: try JSONValue(encoding: starting))], allNamespaces: false, now: now).contains("("))
    }

    @Test func tokensAreFresh() {
        let date = Date(timeIntervalSince1970: 1_795_700_000.042)
        let a = ManualRequestRunner.freshToken(now: date)
        let b = ManualRequestRunner.freshToken(now: date)
        #expect(a.hasPrefix("2026-11-26T") && a.contains(".042Z-"))
        #expect(a != b)
    }

    @Test func yamlOutputKeepsTypesAndOrder() throws {
        let value: JSONValue = ["phase": "Succeeded", "text": "true", "number": "10", "weight": 10, "ratio": 0.5, "none": .null, "list": ["a", 1]]
        let text = try YAML.string(value)
        #expect(text.hasPrefix("phase: Succeeded\ntext: 'true'\nnumber: '10'\nweight: 10\nratio: 0.5\n"), "\(text)")
        #expect(try YAML.parse(text, source: "out") == value)
    }

    @Test func yamlOutputWritesUnicodeAsIs() throws {
        let value: JSONValue = ["message": "canary p99 ≥ 3× stable", "note": "naïve ✓"]
        let text = try YAML.string(value)
        #expect(text == "message: canary p99 ≥ 3× stable\nnote: naïve ✓\n", "\(text)")
        #expect(try YAML.parse(text, source: "out") == value)
    }

    /// The revision trigger prints is the one decide starts.
    @Test func triggerRevisionIsTheCoresRevision() throws {
        let template: JSONValue = [
            "metadata": ["labels": ["app": "product-service", "version": "v1"]],
            "spec": ["containers": [["name": "product-service", "image": "reg/app:1"]]],
        ]
        let stable: JSONValue = [
            "metadata": ["name": "product-service", "namespace": "shop", "generation": 1],
            "spec": ["replicas": 3, "selector": ["matchLabels": ["app": "product-service", "version": "v1"]], "template": template],
            "status": ["replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "observedGeneration": 1],
        ]
        let destinationRule: JSONValue = [
            "metadata": ["name": "product-service"],
            "spec": ["host": "product-service", "subsets": [["name": "stable", "labels": ["version": "v1"]], ["name": "canary", "labels": ["version": "v2"]]]],
        ]
        let virtualService: JSONValue = [
            "metadata": ["name": "product-service"],
            "spec": ["hosts": ["product-service"], "http": [["route": [
                ["destination": ["host": "product-service", "subset": "stable"], "weight": 100],
                ["destination": ["host": "product-service", "subset": "canary"], "weight": 0],
            ]]]],
        ]
        let observed = Observed(stableDeployment: stable, canaryDeployment: nil, virtualService: virtualService, destinationRule: destinationRule)
        var json = Self.rolloutJSON(status: nil)
        json[path: ["spec", "traffic"]] = ["stableSubset": "stable", "canarySubset": "canary"]
        // A patch that also tries to move the version label: the stable slot's labels are kept, as the core keeps them.
        json[path: ["spec", "canary"]] = ["image": "reg/app:2", "templatePatch": ["metadata": ["labels": ["version": "v9", "team": "shop"]]]]
        let rollout = try Rollout(json: json)
        let predicted = try CoreBridge.revision(plan: try CoreBridge.plan(rollout), observed: observed, namespace: "shop")
        let decision = decide(rollout: rollout, observed: observed, analysis: .none, now: Timestamp(seconds: 1_795_700_000))
        #expect(decision.status.phase == .initializing)
        #expect(decision.status.revision == predicted.revision)
        #expect(decision.status.stableRevision == predicted.stableRevision)
        #expect(predicted.revision != predicted.stableRevision)

        // Without the target Deployment the message says where it looked (it named no namespace).
        let missing = Observed(stableDeployment: nil, canaryDeployment: nil, virtualService: virtualService, destinationRule: destinationRule)
        #expect {
            try CoreBridge.revision(plan: try CoreBridge.plan(rollout), observed: missing, namespace: "shop")
        } throws: { "\($0)" == "Deployment \"product-service\" (spec.target.deployment) not found in namespace \"shop\"" }
    }

    @Test func invalidSpecsAreReportedWithEveryProblem() throws {
        var json = Self.rolloutJSON(status: nil)
        json[path: ["spec", "stages"]] = [["weight": 50], ["weight": 10]]
        json[path: ["spec", "canary"]] = ["image": "a b"]
        #expect { try CoreBridge.plan(try Rollout(json: json)) } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("rollout \"product-service\" has an invalid spec: ") && text.contains("spec.canary.image") && text.contains("spec.stages")
        }
    }
}
