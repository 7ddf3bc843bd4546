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
            line is printed whenever something changes, plus each new Event. A phase counts only once the controller \
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
                try output.print(fetched.object["status"] ?? .object([:]))
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

    func show(_ fetched: FetchedRollout) async {
        lastPhase = fetched.rollout.status?.phase.rawValue
        switch output {
        case .json, .yaml:
            let status = fetched.object["status"] ?? .object([:])
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
            let line = StatusView.line(fetched)
            if line != lastText {
                lastText = line
                emit("\(Timestamp(Date()))  \(line)\n")
            }
            if case .success(let events) = await cluster.events(for: fetched) {
                // The current rollout's Events from its start (both times are the controller's clock); none until the
                // controller has seen the spec: a new rollout's Events come after its status.
                let since = fetched.statusIsCurrent ? fetched.status.startedAt ?? watchStarted : nil
                for event in events where since.map({ s in event.time.map { $0 >= s } ?? true }) ?? false && seenEvents.insert(event.key).inserted {
                    emit("\(event.time.map(\.description) ?? "-")  event \(event.type) \(event.reason): \(event.message)\n")
                }
            }
        }
    }

    /// Straight to the file descriptor: a pipe sees each change as it happens, not when a buffer fills.
    private func emit(_ text: String) {
        sink.write(Data(text.utf8))
    }
}
