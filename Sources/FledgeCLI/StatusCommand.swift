import ArgumentParser
import FledgeCore
import FledgeJSON
import Foundation

/// `fledge status ROLLOUT [--watch] [--timeout D]`: where a rollout is and why.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a rollout's phase, stages, analysis, conditions and recent Events; --watch follows it to the end.",
        discussion: """
            Shows the phase and revision, the stages as a progress line with the current one in brackets and the \
            canary weight (10 ─ [25] ─ 50⏸ ─ 100; ⏸ marks manual approval), every metric's last value against its \
            threshold with its verdict, the failed/inconclusive counters against their limits, the conditions, the \
            answers to manual requests and the Rollout's recent Events.

            --watch follows the rollout until it ends. On a terminal the view is redrawn in place; otherwise one plain \
            line is printed whenever something changes, plus each new Event, in the order they happened (an Event \
            recorded before a status change above that change's line; the final decision's Events before exiting). \
            A phase counts only once the controller \
            has seen the current spec (status.observedGeneration), so `fledge trigger … && fledge status --watch …` \
            waits for the new revision rather than reporting the previous rollout.

            --watch follows one revision: the one the controller reports for the current spec when the watch \
            begins. If another replaces it (a `fledge trigger --force` of a new image, or spec.canary set back to the \
            stable image), the watch says which and exits 3 at once, rather than report the other revision's outcome \
            as its own; one replaced while it was being rolled back (aborted, or failed) ended that way, which the \
            watch says, exiting 1.

            Exit status with --watch: 0 Succeeded (or Healthy: nothing to roll out), 1 Failed or Aborted (or an \
            error), 2 --timeout passed first, 3 the revision followed was superseded by another. Without --watch: 0 \
            whenever the status could be shown, 1 on an error. Either way \(usageErrorExit).
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Flag(name: [.short, .long], help: "Follow the rollout until it succeeds, fails, is aborted or is superseded by another revision.")
    var watch = false

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp("With --watch: give up after this long (e.g. 10m) and exit 2. Default: wait until it ends.", valueName: "duration"),
        transform: parseDuration)
    var timeout: Duration?

    @Option(name: [.short, .customLong("output")], help: "Output format: table, or json/yaml for the Rollout's status (without pendingEvents, the Events being recorded).")
    var output: ResourceOutputFormat = .table

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if timeout != nil, !watch { throw ValidationError("--timeout needs --watch") }
        if let timeout, timeout <= .zero { throw ValidationError("--timeout: must be above 0") }
    }

    /// Exit status of --watch when the revision it followed was replaced by another.
    static let supersededExit: Int32 = 3

    /// How a watch ended: the rollout reached a final state, or another revision replaced the one followed.
    enum WatchEnd: Sendable, Equatable {
        case ended(Int32)
        case superseded(followed: String, by: String, phase: Phase)
        /// The followed revision ended (its rollback had decided Aborted or Failed: `ended`) and another took over
        /// before that rollback was done.
        case endedThenReplaced(followed: String, ended: HistoryEntry, by: String, phase: Phase)
    }

    /// The exit status a Rollout's state stands for, once it is final and about the current spec.
    static func outcome(_ fetched: FetchedRollout) -> Int32? {
        guard fetched.statusIsCurrent else { return nil }
        switch fetched.status.phase {
        // Healthy with an invalid spec or a missing target rolled nothing out: not a success for a pipeline.
        case .succeeded, .healthy: return StatusView.problem(fetched.status) == nil ? 0 : 1
        case .failed, .aborted: return 1
        default: return nil
        }
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        guard watch else {
            let fetched = try await cluster.rollout(rollout)
            if output == .table {
                let events = await cluster.events(for: fetched)
                print(StatusView.render(fetched, events: events, now: Timestamp(Date())))
            } else {
                try output.print(StatusPrinter.orderedStatus(fetched))
            }
            return
        }
        // Fail fast on a missing Rollout or bad credentials, before watching.
        _ = try await cluster.rollout(rollout)
        let printer = StatusPrinter(cluster: cluster, output: output, terminal: isatty(STDOUT_FILENO) == 1)
        let end = try await cluster.waitForRollout(rollout, timeout: timeout) { fetched throws(CLIError) -> WatchEnd? in
            await printer.show(fetched)
            if let superseded = await printer.follow(fetched) { return superseded }
            return Self.outcome(fetched).map(WatchEnd.ended)
        }
        guard let end else {
            // No phase at all: nothing ever reconciled it, which is the thing to check (it said "phase unknown").
            let last = await printer.lastPhase.map { "phase \($0)" } ?? "no status yet: is the Fledge controller running?"
            StandardError.write(
                "timed out after \(RolloutDuration(milliseconds: (timeout ?? .zero).milliseconds)) waiting for rollout \"\(rollout)\" in namespace \"\(cluster.namespace)\" to finish (\(last))")
            throw ExitCode(2)
        }
        switch end {
        case .ended(let code):
            await printer.drainFinalEvents()
            if code != 0 { throw ExitCode(code) }
        case .superseded(let followed, let other, let phase):
            StandardError.write(Self.supersededMessage(followed: followed, by: other, phase: phase, stable: await printer.lastStableRevision, rollout: rollout))
            throw ExitCode(Self.supersededExit)
        case .endedThenReplaced(let followed, let ended, let other, let phase):
            StandardError.write(
                Self.endedThenReplacedMessage(followed: followed, ended: ended, by: other, phase: phase, stable: await printer.lastStableRevision, rollout: rollout))
            throw ExitCode(1)
        }
    }

    /// Said when the followed revision was aborted or failed, and `trigger --force` (or GitOps) replaced it while its
    /// rollback was still under way: it ended as its history entry says, which is what the watch reports (exit 1, as
    /// for any Aborted or Failed rollout), not that it was superseded.
    static func endedThenReplacedMessage(followed: String, ended: HistoryEntry, by other: String, phase: Phase, stable: String?, rollout: String) -> String {
        let why = other == stable ? "spec.canary set back to the stable image" : "spec.canary changed"
        return "revision \(followed) of rollout \"\(rollout)\" ended \(ended.outcome) (\(ended.reason)\(ended.message.map { ": \($0)" } ?? "")), then revision \(other) replaced it before its rollback was done (\(why); now \(phase.rawValue))"
    }

    static func supersededMessage(followed: String, by other: String, phase: Phase, stable: String?, rollout: String) -> String {
        let why = other == stable ? "the stable one: spec.canary was set back to the stable image" : "spec.canary changed"
        return "revision \(followed) of rollout \"\(rollout)\" was superseded by revision \(other) (\(why); now \(phase.rawValue)): it will not finish"
    }
}

/// The revision a watch follows: the first one a status about the current spec names. Another one later means
/// the followed revision was replaced (its history entry says Superseded) and will never end by itself.
struct RevisionFollower: Sendable {
    private(set) var followed: String?

    /// The revision that replaced the followed one, when `fetched` names another; nil while it is the same.
    mutating func superseding(_ fetched: FetchedRollout) -> String? {
        guard fetched.statusIsCurrent, let revision = fetched.status.revision else { return nil }
        guard let followed, revision != followed else {
            followed = revision
            return nil
        }
        // While promoting, the controller renames the revision to the stable Deployment's once that holds the
        // template (the API server's normalised form of the same change): the same rollout, not another.
        if [.promoting, .finalising, .succeeded].contains(fetched.status.phase), revision == fetched.status.stableRevision {
            self.followed = revision
            return nil
        }
        return revision
    }
}

/// Prints each change of a watched Rollout: redrawn in place on a terminal, plain lines when piped.
actor StatusPrinter {
    let cluster: Cluster
    let output: ResourceOutputFormat
    let terminal: Bool
    private var lastText: String?
    private var seenEvents: Set<String> = []
    private(set) var lastPhase: String?
    /// The last Rollout shown, for the Events that come after its final status.
    private var lastFetched: FetchedRollout?
    /// The reasons of the Events printed (this rollout's only: `newEvents` keeps to those).
    private var printedReasons: Set<String> = []
    /// When the watch began: Events before it (or before the rollout it follows started) belong to earlier rollouts.
    private let watchStarted = Timestamp(Date())
    /// Where the view goes (`fledge demo -o json` keeps stdout for its summary), and lines drawn above it on a terminal.
    let sink: FileHandle
    let header: String

    init(cluster: Cluster, output: ResourceOutputFormat, terminal: Bool, sink: FileHandle = .standardOutput, header: String = "") {
        self.cluster = cluster
        self.output = output
        self.terminal = terminal
        self.sink = sink
        self.header = header
    }

    /// The stored status with its keys in the order RolloutStatus declares them (phase first), whatever order the
    /// API server keeps (a real one sorts them, the controller may write them in any order); keys this version
    /// does not know come after, values untouched. Without `pendingEvents`: the controller's note of the Events it is
    /// about to record, gone a moment later (they show as Events), which would print each decision twice under
    /// `--watch` (with the note, then without).
    static func orderedStatus(_ fetched: FetchedRollout) -> JSONValue {
        var status = fetched.object["status"] ?? .object([:])
        status["pendingEvents"] = nil
        guard let template = try? KeyOrder.of(fetched.status) else { return status }
        return status.reordered(like: template)
    }

    private var follower = RevisionFollower()
    private(set) var lastStableRevision: String?

    /// How the watch ends if `fetched` shows another revision than the one followed.
    func follow(_ fetched: FetchedRollout) -> StatusCommand.WatchEnd? {
        lastStableRevision = fetched.status.stableRevision
        guard let other = follower.superseding(fetched), let followed = follower.followed else { return nil }
        // Its history entry tells how the followed revision ended: Superseded, or what its rollback had decided.
        if let ended = fetched.status.history.last(where: { $0.revision == followed }), ["Aborted", "Failed"].contains(ended.outcome) {
            return .endedThenReplaced(followed: followed, ended: ended, by: other, phase: fetched.status.phase)
        }
        return .superseded(followed: followed, by: other, phase: fetched.status.phase)
    }

    func show(_ fetched: FetchedRollout) async {
        lastPhase = fetched.rollout.status?.phase.rawValue
        switch output {
        case .json, .yaml:
            let status = Self.orderedStatus(fetched)
            let text = output == .json ? status.serializedString() : ((try? YAML.string(status)) ?? "")
            guard text != lastText else { return }
            lastText = text
            emit(output == .yaml ? "---\n" + text : text + "\n")
        case .table where terminal:
            let events = await cluster.events(for: fetched)
            let text = StatusView.render(fetched, events: events, now: Timestamp(Date()))
            guard text != lastText else { return }
            lastText = text
            // Clear the screen and home the cursor, then draw the whole view.
            emit("\u{1B}[H\u{1B}[2J" + header + text + "\n")
        case .table:
            lastFetched = fetched
            let line = StatusView.line(fetched)
            let changed = line != lastText
            lastText = line
            let fresh = await newEvents(for: fetched)
            guard changed else {
                for event in fresh { emit(event) }
                return
            }
            let stamp = Timestamp(Date())
            let (before, after) = Self.arrange(fresh, around: fetched, stampedAt: stamp)
            for event in before { emit(event) }
            emit("\(stamp)  \(line)\n")
            for event in after { emit(event) }
        }
    }

    /// The Events of the followed rollout not printed yet, oldest first: all of them, not the last few, so that a
    /// burst between two status changes is not cut.
    private func newEvents(for fetched: FetchedRollout) async -> [EventLine] {
        guard case .success(let events) = await cluster.events(for: fetched, limit: .max) else { return [] }
        // The current rollout's Events from its start (both times are the controller's clock); none until the
        // controller has seen the spec: a new rollout's Events come after its status.
        guard fetched.statusIsCurrent else { return [] }
        let since = fetched.status.startedAt ?? watchStarted
        return events.filter { event in event.time.map { $0 >= since } ?? true }.filter { seenEvents.insert($0.key).inserted }
    }

    /// After the final status: the controller records the decision's Events only after writing that status, so
    /// the last of them (`RolloutSucceeded`, …) may not exist yet when the status arrives. Waits, a few seconds at
    /// most, for the Event that ends the rollout (its reason, not its time: an Event of the decision before, say
    /// `RollingBack`, is often stamped within the same second as the end, which status records in whole seconds),
    /// printing what comes.
    func drainFinalEvents() async {
        guard output == .table, !terminal, let fetched = lastFetched, fetched.statusIsCurrent,
            let final = Self.finalReason(fetched.status.phase), fetched.status.startedAt != nil
        else { return }
        for attempt in 0..<30 {
            if printedReasons.contains(final.rawValue) { return }
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(100)) }
            for event in await newEvents(for: fetched) { emit(event) }
        }
    }

    /// The Event the controller records when a rollout ends in `phase`.
    static func finalReason(_ phase: Phase) -> EventReason? {
        switch phase {
        case .succeeded: .rolloutSucceeded
        case .failed: .rolloutFailed
        case .aborted: .rolloutAborted
        default: nil
        }
    }

    private func emit(_ event: EventLine) {
        printedReasons.insert(event.reason)
        emit("\(event.time.map(\.description) ?? "-")  event \(event.type) \(event.reason): \(event.message)\n")
    }

    /// The Events not printed yet (oldest first), split around the status line stamped `stamp`, so that the lines
    /// read in the order things happened. Above the line: Events recorded before this version of the Rollout was
    /// written, and any older than the line's stamp — the Events of a decision are recorded after the status it
    /// wrote, and may reach the API server well after it (a backlog), yet happened before the line is printed.
    /// Below: Events newer than the stamp (another clock running ahead) or without a time.
    static func arrange(_ fresh: [EventLine], around fetched: FetchedRollout, stampedAt stamp: Timestamp) -> (before: [EventLine], after: [EventLine]) {
        let isBefore = recordedBefore(fetched)
        var before: [EventLine] = []
        var after: [EventLine] = []
        for event in fresh {
            if isBefore(event) || event.time.map({ $0 <= stamp }) == true { before.append(event) } else { after.append(event) }
        }
        return (before, after)
    }

    /// Whether an Event was recorded before this version of the Rollout was written. Both resourceVersions come from
    /// the same API server (one counter, etcd's revision), so no clock is involved; without them, the Event's time
    /// against the status's newest timestamp (both the controller's clock).
    static func recordedBefore(_ fetched: FetchedRollout) -> @Sendable (EventLine) -> Bool {
        let version = fetched.object[path: ["metadata", "resourceVersion"]]?.stringValue.flatMap { Int64($0) }
        let time = statusTime(fetched.status)
        return { event in
            if let version, event.order.1 > 0 { return event.order.1 < version }
            guard let time, let eventTime = event.time else { return false }
            return eventTime < time
        }
    }

    /// When the controller wrote this status, as near as the status tells: its newest timestamp (`decide` stamps
    /// what it changes with the decision's time). Nil when it has none.
    static func statusTime(_ status: RolloutStatus) -> Timestamp? {
        var times: [Timestamp] = [status.startedAt, status.stageStartedAt, status.lastProgressAt, status.lastAnalysisAt].compactMap { $0 }
        times += status.conditions.map(\.lastTransitionTime)
        times += status.requests.map(\.seenAt)
        times += status.history.map(\.finishedAt)
        return times.max()
    }

    /// Straight to the file descriptor: a pipe sees each change as it happens, not when a buffer fills.
    private func emit(_ text: String) {
        sink.write(Data(text.utf8))
    }
}
