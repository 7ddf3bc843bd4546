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

            Exit status with --watch: 0 Succeeded (or Healthy: nothing to roll out), 1 Failed or Aborted (or an \
            error), 2 --timeout passed first. Without --watch: 0 whenever the status could be shown.
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Flag(name: [.short, .long], help: "Follow the rollout until it succeeds, fails or is aborted.")
    var watch = false

    @Option(
        help: ArgumentHelp("With --watch: give up after this long (e.g. 10m) and exit 2. Default: wait until it ends.", valueName: "duration"),
        transform: parseDuration)
    var timeout: Duration?

    @Option(name: [.short, .customLong("output")], help: "Output format: table, or json/yaml for the Rollout's status.")
    var output: ResourceOutputFormat = .table

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if timeout != nil, !watch { throw ValidationError("--timeout needs --watch") }
        if let timeout, timeout <= .zero { throw ValidationError("--timeout: must be above 0") }
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
        let code = try await cluster.waitForRollout(rollout, timeout: timeout) { fetched throws(CLIError) in
            await printer.show(fetched)
            return Self.outcome(fetched)
        }
        guard let code else {
            let last = await printer.lastPhase ?? "unknown"
            StandardError.write(
                "timed out after \(RolloutDuration(milliseconds: (timeout ?? .zero).milliseconds)) waiting for rollout \"\(rollout)\" in namespace \"\(cluster.namespace)\" to finish (phase \(last))")
            throw ExitCode(2)
        }
        await printer.drainFinalEvents()
        if code != 0 { throw ExitCode(code) }
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
    /// The newest time of the Events printed.
    private var newestEventTime: Timestamp?
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
    /// does not know come after, values untouched.
    static func orderedStatus(_ fetched: FetchedRollout) -> JSONValue {
        let status = fetched.object["status"] ?? .object([:])
        guard let template = try? KeyOrder.of(fetched.status) else { return status }
        return status.reordered(like: template)
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
            // In the order things happened: the Events recorded before this status was written come first, those
            // recorded after it (the decision that wrote it records its Events after its status) follow. An Event
            // recorded after the previous status was seen shows up only now, yet belongs above this line.
            let isBefore = Self.recordedBefore(fetched)
            for event in fresh where isBefore(event) { emit(event) }
            emit("\(Timestamp(Date()))  \(line)\n")
            for event in fresh where !isBefore(event) { emit(event) }
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
    /// most, for an Event from that decision (stamped with the time the rollout ended), printing what comes.
    func drainFinalEvents() async {
        guard output == .table, !terminal, let fetched = lastFetched, fetched.statusIsCurrent,
            [.succeeded, .failed, .aborted].contains(fetched.status.phase),
            let started = fetched.status.startedAt, let ended = fetched.status.history.last?.finishedAt, ended >= started
        else { return }
        for attempt in 0..<30 {
            if let newest = newestEventTime, newest >= ended { return }
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(100)) }
            for event in await newEvents(for: fetched) { emit(event) }
        }
    }

    private func emit(_ event: EventLine) {
        if let time = event.time { newestEventTime = max(newestEventTime ?? time, time) }
        emit("\(event.time.map(\.description) ?? "-")  event \(event.type) \(event.reason): \(event.message)\n")
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
