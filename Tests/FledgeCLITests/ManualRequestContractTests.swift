import FledgeCore
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

@testable import FledgeCLI

/// Contract tests of promote, abort, retry and `status --watch`: the built binary writes its request, and
/// `ContractController` answers it exactly as the controller will, with FledgeCore's `decide` run in-process on
/// the stored Rollout. RealControllerCLITests runs the same commands against the real controller.
@Suite("contract: manual requests and status --watch", .serialized)
struct ManualRequestContractTests {
    static let newImage = "registry.example/product-service:2.0.0"

    /// Starts `arguments`, waits until the request's annotation is on the Rollout, lets the core answer it, and
    /// returns what the command printed.
    static func answered(
        _ arguments: [String], _ kind: ManualRequest, sandbox: CLISandbox, controller: inout ContractController
    ) async throws -> (CLIResult, token: String) {
        let before = try await sandbox.rollout().metadata.annotations?[kind.annotation]
        let running = try sandbox.start(arguments)
        let asked = try await sandbox.waitForRollout { rollout in
            let token = rollout.metadata.annotations?[kind.annotation]
            return token != nil && token != before
        }
        try await controller.reconcile()
        return (try await running.finish(), asked.metadata.annotations![kind.annotation]!)
    }

    @Test func promoteAtAManualGate() async throws {
        try await CLISandbox.with { sandbox in
            try await sandbox.changeSpec {
                $0["stages"] = [["weight": 10, "hold": "20s", "approval": "manual"], ["weight": 100, "hold": "20s"]]
            }
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run(untilPhase: .paused)
            let paused = try await sandbox.run(["status", "product-service"])
            #expect(paused.out.contains("[10⏸] ─ 100"), "\(paused)")
            #expect(paused.out.contains("AwaitingApproval"))

            let (result, token) = try await Self.answered(["promote", "product-service"], .promote, sandbox: sandbox, controller: &controller)
            #expect(result.status == 0, "\(result)")
            #expect(result.out == "promote accepted: stage 1 of 2 (10%) promoted\n")
            let record = try #require(try await sandbox.rollout().status?.requests.first { $0.kind == .promote })
            #expect(record.token == token && record.accepted)
            try await controller.run { $0.status?.stage == 1 }

            let shown = try await sandbox.run(["status", "product-service"])
            #expect(shown.out.contains("promote  accepted"), "\(shown)")
        }
    }

    @Test func promoteFullSkipsTheRemainingStages() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let revision = try #require(try await sandbox.rollout().status?.revision)
            let (result, _) = try await Self.answered(["promote", "product-service", "--full"], .promoteFull, sandbox: sandbox, controller: &controller)
            #expect(result.status == 0, "\(result)")
            #expect(result.out == "promote --full accepted: skipping the remaining stages; promoting revision \(revision)\n")
            #expect(try await sandbox.rollout().status?.phase == .promoting)
        }
    }

    @Test func abortMidStageThenWatchExitsOne() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let revision = try #require(try await sandbox.rollout().status?.revision)
            let watch = try sandbox.start(["status", "product-service", "--watch"])
            try await watch.waitForOutput(containing: "product-service: Progressing")

            let (result, _) = try await Self.answered(
                ["abort", "product-service", "--reason", "p99 doubled"], .abort, sandbox: sandbox, controller: &controller)
            #expect(result.status == 0, "\(result)")
            #expect(result.out == "abort accepted: rolling back revision \(revision)\n")
            #expect(try await sandbox.rollout().metadata.annotations?[AbortCommand.reasonAnnotation] == "p99 doubled")
            #expect(try await sandbox.rollout().status?.phase == .rollingBack)
            let rollingBack = try await sandbox.run(["status", "product-service"])
            // The controller carries the reason into status.message (and the Events): no separate line repeats it.
            #expect(rollingBack.out.contains("Message:       aborted by request: p99 doubled\n"), "\(rollingBack)")
            #expect(!rollingBack.out.contains("Abort reason:"), "\(rollingBack)")

            try await controller.run(untilPhase: .aborted)
            let watched = try await watch.finish()
            #expect(watched.status == 1, "\(watched)")
            let lines = watched.out.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.contains("product-service: Progressing") })
            #expect(lines.last { !$0.contains(" event ") }?.contains("product-service: Aborted") == true, "\(watched)")
            #expect(lines.contains { $0.contains("event Warning RequestAccepted") || $0.contains("event Normal RequestAccepted") })
            // Plain lines only when something changed: never the same status line twice in a row.
            let statusLines = lines.filter { !$0.contains(" event ") }.map { $0.split(separator: " ", maxSplits: 1).last.map(String.init) ?? "" }
            #expect(zip(statusLines, statusLines.dropFirst()).allSatisfy { $0 != $1 })
            // An abort when nothing is in flight: the core's refusal, at once.
            let again = try await sandbox.run(["abort", "product-service"])
            #expect(again.status == 1 && again.err == "abort refused: no rollout in progress (Aborted)\n", "\(again)")
        }
    }

    /// `abort --reason first`, `retry`, then `abort` without a reason: status shows no reason, never the old one
    /// (the second abort removes the annotation; retry already does).
    @Test func aLaterAbortWithoutAReasonShowsNoOldReason() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let (first, _) = try await Self.answered(["abort", "product-service", "--reason", "first"], .abort, sandbox: sandbox, controller: &controller)
            #expect(first.status == 0, "\(first)")
            try await controller.run(untilPhase: .aborted)
            #expect(try await sandbox.run(["status", "product-service"]).out.contains("Message:       aborted by request: first\n"))

            let (retried, _) = try await Self.answered(["retry", "product-service"], .retry, sandbox: sandbox, controller: &controller)
            #expect(retried.status == 0, "\(retried)")
            #expect(try await sandbox.rollout().metadata.annotations?[AbortCommand.reasonAnnotation] == nil)
            try await controller.run { $0.status?.phase == .progressing }
            // As if retry had not removed it (an older fledge): the second abort still must.
            _ = try await sandbox.server.store.modify(CLISandbox.rollouts, namespace: "shop", name: "product-service") { object in
                object[path: ["metadata", "annotations", AbortCommand.reasonAnnotation]] = "first"
            }

            let (second, _) = try await Self.answered(["abort", "product-service"], .abort, sandbox: sandbox, controller: &controller)
            #expect(second.status == 0, "\(second)")
            #expect(try await sandbox.rollout().metadata.annotations?[AbortCommand.reasonAnnotation] == nil)
            try await controller.run(untilPhase: .aborted)
            let shown = try await sandbox.run(["status", "product-service"])
            #expect(shown.out.contains("Phase:         Aborted") && !shown.out.contains("Abort reason"), "\(shown)")
            #expect(shown.out.contains("Message:       aborted by request\n"), "\(shown)")
        }
    }

    @Test func retryAfterAFailure() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            controller.canary = .failing
            try await controller.run(untilPhase: .failed)
            let revision = try #require(try await sandbox.rollout().status?.revision)
            let failedWatch = try await sandbox.run(["status", "product-service", "--watch"])
            #expect(failedWatch.status == 1, "\(failedWatch)")

            let again = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            #expect(again.status == 1)
            #expect(again.err == "Error: revision \(revision) of rollout \"product-service\" ended Failed; `fledge retry product-service -n shop` runs it again\n", "\(again)")

            controller.canary = .healthy
            let (result, _) = try await Self.answered(["retry", "product-service"], .retry, sandbox: sandbox, controller: &controller)
            #expect(result.status == 0, "\(result)")
            #expect(result.out == "retry accepted: retrying revision \(revision)\n")
            let retried = try await sandbox.rollout().status
            #expect(retried?.phase == .initializing && retried?.revision == revision && retried?.failedChecks == 0)
        }
    }

    @Test func requestsTheCoreWouldRefuseAreRefusedAtOnceAndNotWritten() async throws {
        try await CLISandbox.with { sandbox in
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            #expect(try await sandbox.rollout().status?.phase == .healthy)
            for (arguments, message) in [
                (["promote", "product-service"], "promote refused: no stage to promote (Healthy)"),
                (["promote", "product-service", "--full"], "promote --full refused: nothing to promote (Healthy)"),
                (["abort", "product-service"], "abort refused: no rollout in progress (Healthy)"),
                (["retry", "product-service"], "retry refused: only a Failed or Aborted rollout can be retried (phase Healthy)"),
            ] {
                let result = try await sandbox.run(arguments)
                #expect(result.status == 1)
                #expect(result.err == message + "\n", "\(result)")
            }
            let annotations = try await sandbox.rollout().metadata.annotations ?? [:]
            #expect(annotations.keys.filter { $0.hasPrefix("fledge.dev/") }.isEmpty, "\(annotations)")
        }
    }

    @Test func withoutAControllerTheRequestTimesOutOrIsLeftPending() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let waited = try await sandbox.run(["promote", "product-service", "--timeout", "1s"])
            #expect(waited.status == 2, "\(waited)")
            #expect(waited.err.hasPrefix("no answer from the Fledge controller within 1s: the promote request stays pending"))
            let noWait = try await sandbox.run(["promote", "product-service", "--no-wait"])
            #expect(noWait.status == 0 && noWait.out.hasPrefix("promote requested for rollout \"product-service\""), "\(noWait)")
            // The pending request is answered on the next reconcile.
            try await controller.reconcile()
            #expect(try await sandbox.rollout().status?.requests.contains { $0.kind == .promote && $0.accepted } == true)
        }
    }

    /// A controller records a decision's Events after its status, and they may land only after the watch has
    /// seen that status: they still print above the next status line (they happened before it), and the Events
    /// of the final decision, recorded after the final status, are not lost when the watch ends.
    @Test func watchPrintsEventsInTheOrderTheyHappenedAndLosesNone() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let watch = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await watch.waitForOutput(containing: "stage 1/4  weight 10%")

            controller.heldEvents = []
            try await controller.run { $0.status?.stage == 1 && $0.status?.canaryWeight == 25 }
            try await watch.waitForOutput(containing: "stage 2/4  weight 25%")
            let late = Self.eventTexts(controller.heldEvents ?? [])
            #expect(late.contains { $0.contains("StageStarted") }, "\(late)")
            try await controller.recordHeldEvents()
            try await controller.run { $0.status?.stage == 2 }

            controller.heldEvents = []
            try await controller.run(untilPhase: .succeeded)
            let final = Self.eventTexts(controller.heldEvents ?? [])
            #expect(final.contains { $0.contains("RolloutSucceeded") }, "\(final)")
            // Recorded only once the watch has printed the final status.
            try await watch.waitForOutput(containing: "product-service: Succeeded")
            try await controller.recordHeldEvents()

            let watched = try await watch.finish()
            #expect(watched.status == 0, "\(watched)")
            let lines = watched.out.split(separator: "\n").map(String.init)
            func index(_ text: String) -> Int? { lines.firstIndex { $0.hasSuffix(text) || $0.contains(text) } }
            let stage2 = try #require(lines.firstIndex { !$0.contains(" event ") && $0.contains("stage 2/4  weight 25%") }, "\(watched.out)")
            let next = try #require(lines.indices.first { $0 > stage2 && !lines[$0].contains(" event ") }, "\(watched.out)")
            for text in late {
                let at = try #require(index(text), "\(text) missing from \(watched.out)")
                #expect(at > stage2 && at < next, "\(text) at line \(at), not between lines \(stage2) and \(next):\n\(watched.out)")
            }
            for text in late + final {
                #expect(lines.filter { $0.contains(text) }.count == 1, "\(text) not exactly once in \(watched.out)")
            }
            #expect(lines.last { !$0.contains(" event ") }?.contains("product-service: Succeeded") == true, "\(watched.out)")
        }
    }

    /// A rollback that ends within the second its RollingBack Event was stamped (quick on a fast cluster, and Event
    /// times are finer than the status's whole seconds): the watch had printed an Event as new as the end, took
    /// that for the final decision's and exited before `RolloutFailed` was recorded. It waits for that Event.
    @Test func watchPrintsTheFinalEventAfterAQuickRollback() async throws {
        try await CLISandbox.with { sandbox in
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let watch = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await watch.waitForOutput(containing: "stage 1/4  weight 10%")

            controller.canary = .failing
            try await controller.run(untilPhase: .rollingBack)
            try await watch.waitForOutput(containing: "event Warning RollingBack")
            controller.heldEvents = []
            try await controller.run(untilPhase: .failed)
            let final = Self.eventTexts(controller.heldEvents ?? [])
            #expect(final.contains { $0.contains("RolloutFailed") }, "\(final)")
            // The rollback ended on the synthetic clock's second of the RollingBack Event, which the watch printed.
            let status = try #require(try await sandbox.rollout().status)
            #expect(status.history.last?.finishedAt == controller.now, "\(status.history)")
            try await watch.waitForOutput(containing: "product-service: Failed")
            try await controller.recordHeldEvents()

            let watched = try await watch.finish()
            #expect(watched.status == 1, "\(watched)")
            for text in final {
                #expect(watched.out.contains(text), "\(text) missing from \(watched.out)")
            }
        }
    }

    /// With no controller the Rollout never gets a status: the watch and its timeout ask whether the controller runs
    /// (they said "no status yet" and "phase unknown").
    @Test func watchWithoutAControllerAsksWhetherItRuns() async throws {
        try await CLISandbox.with { sandbox in
            let watched = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "1s"])
            #expect(watched.status == 2, "\(watched)")
            #expect(watched.out.contains("product-service: no status yet (is the Fledge controller running?)"), "\(watched)")
            #expect(watched.err.hasSuffix("to finish (no status yet: is the Fledge controller running?)\n"), "\(watched)")
        }
    }

    /// `event TYPE REASON: NOTE`, as the watch prints an Event object.
    static func eventTexts(_ events: [JSONValue]) -> [String] {
        events.map { "event \($0["type"]?.stringValue ?? "") \($0["reason"]?.stringValue ?? ""): \($0["note"]?.stringValue ?? "")" }
    }

    /// `fledge trigger … && fledge status --watch …` in CI: when the revision followed is replaced (trigger --force of
    /// another image, or spec.canary set back to stable) the watch exits 3 at once, naming both revisions, and never
    /// reports the other revision's success as its own.
    @Test(arguments: ["registry.example/product-service:3.0.0", "registry.example/product-service:1.0.0"])
    func watchExitsThreeWhenItsRevisionIsSuperseded(by image: String) async throws {
        try await CLISandbox.with { sandbox in
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            let stable = try #require(try await sandbox.rollout().status?.stableRevision)
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            let watch = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await controller.run { $0.status?.phase == .progressing }
            try await watch.waitForOutput(containing: "product-service: Progressing")
            let followed = try #require(try await sandbox.rollout().status?.revision)

            let forced = try await sandbox.run(["trigger", "product-service", "--image", image, "--force"])
            #expect(forced.status == 0, "\(forced)")
            try await controller.reconcile()
            let other = try #require(try await sandbox.rollout().status?.revision)
            #expect(other != followed)
            #expect((other == stable) == image.hasSuffix(":1.0.0"))
            let watched = try await watch.finish(orStopAfter: .seconds(60))
            #expect(watched.status == 3, "\(watched)")
            let why = other == stable ? "the stable one: spec.canary was set back to the stable image" : "spec.canary changed"
            #expect(
                watched.errLines.last?.hasPrefix(
                    "revision \(followed) of rollout \"product-service\" was superseded by revision \(other) (\(why); now ") == true, "\(watched)")
            // The other revision runs to its end; a watch started now follows it and exits 0.
            let next = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await controller.run { [.succeeded, .healthy].contains($0.status?.phase) }
            let nextWatched = try await next.finish(orStopAfter: .seconds(60))
            #expect(nextWatched.status == 0, "\(nextWatched)")
        }
    }

    /// An abort whose rollback waits for stable (no ready pod), then `trigger --force`: the revision followed ended
    /// Aborted (its history says so), and the watch says that and exits 1, not 3 "superseded … it will not finish".
    @Test func watchSaysHowItsRevisionEndedWhenAnotherReplacedItDuringTheRollback() async throws {
        try await CLISandbox.with { sandbox in
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            let watch = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await controller.run { $0.status?.phase == .progressing && ($0.status?.canaryWeight ?? 0) > 0 }
            let followed = try #require(try await sandbox.rollout().status?.revision)
            try await controller.store.setDeploymentReady(namespace: "shop", deployment: "product-service", false)
            let aborted = try await sandbox.run(["abort", "product-service", "--reason", "bad build", "--no-wait"])
            #expect(aborted.status == 0, "\(aborted)")
            try await controller.reconcile()
            #expect(try await sandbox.rollout().status?.phase == .rollingBack)
            let forced = try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:3.0.0", "--force"])
            #expect(forced.status == 0, "\(forced)")
            try await controller.reconcile()
            let other = try #require(try await sandbox.rollout().status?.revision)
            let watched = try await watch.finish(orStopAfter: .seconds(60))
            #expect(watched.status == 1, "\(watched)")
            #expect(
                watched.errLines.last?.hasPrefix(
                    "revision \(followed) of rollout \"product-service\" ended Aborted (Aborted: aborted by request: bad build), then revision \(other) replaced it before its rollback was done (spec.canary changed; now ") == true, "\(watched)")
        }
    }

    @Test func watchExitsZeroOnSuccessAndTwoOnTimeout() async throws {
        try await CLISandbox.with { sandbox in
            var controller = ContractController(sandbox)
            try await controller.reconcile()
            _ = try await sandbox.run(["trigger", "product-service", "--image", Self.newImage])
            // The status still says Healthy for the previous spec: --watch must wait for the controller.
            let timedOut = try await sandbox.run(["status", "product-service", "--watch", "--timeout", "1s"])
            #expect(timedOut.status == 2, "\(timedOut)")
            #expect(timedOut.err.contains("timed out after 1s waiting for rollout \"product-service\""))

            let watch = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await watch.waitForOutput(containing: "product-service: Healthy")
            try await controller.run(untilPhase: .succeeded)
            let watched = try await watch.finish()
            #expect(watched.status == 0, "\(watched)")
            let statusLines = watched.out.split(separator: "\n").filter { !$0.contains(" event ") }
            #expect(statusLines.contains { $0.contains("Progressing") })
            #expect(statusLines.last?.contains("product-service: Succeeded") == true)
            // Events appear as they are recorded (the last ones may come after the final status line: not checked).
            #expect(watched.out.contains("event Normal RolloutStarted"))

            let done = try await sandbox.run(["status", "product-service", "--watch"])
            #expect(done.status == 0)
            let json = try await sandbox.run(["status", "product-service", "--watch", "-o", "json"])
            let phase = try JSONValue(parsing: Array(json.out.utf8))["phase"]?.stringValue
            #expect(json.status == 0 && phase == "Succeeded")

            // A second rollout's watch shows its own Events, not the first one's again.
            let first = try await sandbox.rollout().status?.revision
            _ = try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:3.0.0"])
            let again = try sandbox.start(["status", "product-service", "--watch", "--timeout", "10m"])
            try await again.waitForOutput(containing: "product-service: ")
            try await controller.run { $0.status?.phase == .succeeded && $0.status?.revision != first }
            let second = try await again.finish()
            #expect(second.status == 0, "\(second)")
            #expect(second.out.components(separatedBy: "event Normal RolloutStarted").count == 2, "\(second.out)")
        }
    }
}
