import FledgeHTTP
import FledgeKubernetes
import Foundation
import Logging
import Synchronization
import Testing

@testable import FledgeController

/// Log lines kept for a test to read.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])

    var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lines.withLock { $0 } }

    func messages(containing text: String) -> [String] { all.map(\.message).filter { $0.contains(text) } }

    func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        lines.withLock { $0.append((level, message, metadata)) }
    }

    var logger: Logger {
        Logger(label: "test.leader") { _ in Handler(logs: self) }
    }

    struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            logs.append(event.level, "\(event.message)", metadata.merging(event.metadata ?? [:]) { _, new in new })
        }
    }
}

/// The API server as the elector sees it: reachable, refusing connections, or never answering.
final class SwitchableTransport: HTTPClient {
    enum Mode: Int { case pass, refuse, hang }
    let inner: any HTTPClient
    private let mode = Atomic<Int>(Mode.pass.rawValue)

    init(inner: any HTTPClient) { self.inner = inner }

    func set(_ mode: Mode) { self.mode.store(mode.rawValue, ordering: .relaxed) }

    private func check(_ request: HTTPRequest) async throws {
        switch Mode(rawValue: mode.load(ordering: .relaxed)) {
        case .refuse:
            throw HTTPError(kind: .connectionRefused, method: request.method, url: request.url, message: "Failed to connect")
        case .hang:
            // Until the caller gives up (cancels), as a black-holed connection would.
            try? await Task.sleep(for: .seconds(3600))
            throw HTTPError(kind: .cancelled, method: request.method, url: request.url, message: "")
        case .pass, nil:
            return
        }
    }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        try await check(request)
        return try await inner.send(request)
    }

    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        try await check(request)
        return try await inner.stream(request)
    }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let start = ContinuousClock.now
    private let offset = Mutex<Duration>(.zero)
    func advance(by duration: Duration) { offset.withLock { $0 += duration } }
    var now: ContinuousClock.Instant { start.advanced(by: offset.withLock { $0 }) }
}

@Suite struct LeaderElectorTests {
    /// A client of `world`'s API server whose transport the test can cut.
    static func switchableClient(_ world: World) throws -> (KubernetesClient, SwitchableTransport) {
        let configuration = try Kubeconfig.load(paths: [world.kubeconfigPath]).configuration()
        let switchable = SwitchableTransport(inner: CurlHTTPClient(configuration: KubernetesClient(configuration: configuration).httpConfiguration))
        return (KubernetesClient(configuration: configuration, transport: switchable), switchable)
    }

    /// A leader that cannot renew steps down when its renew deadline passes, which is when `canWrite` turns false:
    /// `fledge_leader` goes to 0, it says so once with the last error, and it takes the lease again when the API
    /// server answers again.
    @Test func aLeaderThatCannotRenewStepsDownAtItsRenewDeadline() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let (client, transport) = try Self.switchableClient(world)
        let clock = ManualClock()
        let logs = CapturedLogs()
        let metrics = ControllerMetrics()
        let changes = Mutex<[Bool]>([])
        let elector = LeaderElector(
            client: client, configuration: LeaderElectionConfiguration(namespace: "shop"), identity: "replica-a",
            logger: logs.logger, now: { clock.now },
            onLeadershipChange: { leading in
                changes.withLock { $0.append(leading) }
                metrics.leader.set(leading ? 1.0 : 0.0)
            })
        func leaderMetric() -> String? {
            metrics.text().split(separator: "\n").first { $0.hasPrefix("fledge_leader ") }.map(String.init)
        }

        await elector.attempt()
        #expect(elector.canWrite)
        #expect(changes.withLock { $0 } == [true])
        #expect(leaderMetric() == "fledge_leader 1.0")

        transport.set(.refuse)
        clock.advance(by: .seconds(5))
        await elector.attempt()
        // Within the renew deadline (10 s): still the leader.
        #expect(elector.canWrite)
        #expect(changes.withLock { $0 } == [true])
        #expect(logs.messages(containing: "lost the leader lease").isEmpty)
        // The next round comes at the retry period, or at the renew deadline if that is sooner.
        #expect(elector.nextRoundDelay() == .seconds(2))
        clock.advance(by: .seconds(4))
        #expect(elector.nextRoundDelay() == .seconds(1))
        clock.advance(by: .seconds(-4))

        clock.advance(by: .seconds(6))
        // Past the deadline, writes stop whatever the elector has noticed yet; the next failed round steps down.
        #expect(!elector.canWrite)
        await elector.attempt()
        #expect(!elector.canWrite)
        #expect(changes.withLock { $0 } == [true, false])
        #expect(leaderMetric() == "fledge_leader 0.0")
        let lost = logs.messages(containing: "lost the leader lease")
        #expect(lost.count == 1)
        #expect(lost.first?.hasPrefix("lost the leader lease (last renewed 11.0 s ago): ") == true, "\(lost)")
        #expect(lost.first?.contains("Failed to connect") == true, "\(lost)")

        // More failed rounds: no second step-down, no second "lost" line.
        for _ in 0..<3 {
            clock.advance(by: .seconds(2))
            await elector.attempt()
        }
        #expect(changes.withLock { $0 } == [true, false])
        #expect(logs.messages(containing: "lost the leader lease").count == 1)

        // The API server is back and nobody else took the lease: this replica leads again, as any candidate would.
        transport.set(.pass)
        await elector.attempt()
        #expect(elector.canWrite)
        #expect(changes.withLock { $0 } == [true, false, true])
        #expect(leaderMetric() == "fledge_leader 1.0")
        #expect(logs.messages(containing: "became the leader").count == 2)
    }

    /// A renewal the API server never answers ends at the renew deadline, not when the client's 30 s timeout
    /// gives up: the replica steps down as soon as it may no longer write.
    @Test func aHungRenewalEndsAtTheRenewDeadline() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let (client, transport) = try Self.switchableClient(world)
        var configuration = LeaderElectionConfiguration(namespace: "shop")
        // Long enough that the first renewal, on a loaded machine, is not already past it (2 s was not, under a full
        // parallel test run on 2 cores).
        configuration.renewDeadline = .seconds(5)
        let logs = CapturedLogs()
        let changes = Mutex<[Bool]>([])
        let elector = LeaderElector(
            client: client, configuration: configuration, identity: "replica-a", logger: logs.logger,
            onLeadershipChange: { leading in changes.withLock { $0.append(leading) } })
        await elector.attempt()
        try #require(changes.withLock { $0 } == [true])
        transport.set(.hang)
        // The hung transport would wait an hour; the round returns once the deadline is over. (Should it not, the
        // test gives up after 60 s and cancels the round, which the hung transport honours.)
        let returned = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await elector.attempt()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(60))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(returned, "the round waited for the hung request")
        #expect(changes.withLock { $0 } == [true, false])
        let lost = logs.messages(containing: "lost the leader lease")
        #expect(lost.count == 1)
        // "did not answer within the renew deadline" when the hung request was cut; "not renewed within the renew
        // deadline" if the machine was so slow that the deadline had passed before this round began. Either way the
        // round returned and the replica stepped down.
        #expect(lost.first?.contains("within the renew deadline") == true, "\(lost)")
    }

    /// A standby says which Lease it waits for and who holds it when that changes, and otherwise once a minute,
    /// not every 2 s round.
    @Test func aStandbySaysWhoHoldsTheLeaseWithoutRepeatingItEveryRound() async throws {
        let world = try await World()
        defer { Task { await world.stop() } }
        let clock = ManualClock()
        let configuration = LeaderElectionConfiguration(namespace: "shop", leaseName: "fledge-controller-test")
        let leader = LeaderElector(client: world.client, configuration: configuration, identity: "replica-a", logger: Logger(label: "quiet"))
        let logs = CapturedLogs()
        let standby = LeaderElector(client: world.client, configuration: configuration, identity: "replica-b", logger: logs.logger, now: { clock.now })
        await leader.attempt()
        #expect(leader.canWrite)
        for _ in 0..<5 {
            await standby.attempt()
            clock.advance(by: .seconds(2))
        }
        #expect(!standby.canWrite)
        var waiting = logs.all.filter { $0.message.contains("waiting for the leader lease") }
        #expect(waiting.count == 1)
        #expect(waiting.first?.message == "waiting for the leader lease, held by replica-a")
        #expect(waiting.first?.metadata["lease"] == "shop/fledge-controller-test")
        #expect(waiting.first?.metadata["holder"] == "replica-a")
        clock.advance(by: .seconds(60))
        await standby.attempt()
        waiting = logs.all.filter { $0.message.contains("waiting for the leader lease") }
        #expect(waiting.count == 2)
    }

    /// Shards do not share a Lease: each namespace and selector has its own default name, stable across replicas
    /// and a valid object name; the unsharded controller keeps `fledge-controller`.
    @Test func eachShardHasItsOwnDefaultLease() {
        let unsharded = LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: nil)
        #expect(unsharded == "fledge-controller")
        #expect(LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: "") == "fledge-controller")
        let names = [
            LeaderElectionConfiguration.defaultLeaseName(namespace: .named("payments"), labelSelector: nil),
            LeaderElectionConfiguration.defaultLeaseName(namespace: .named("search"), labelSelector: nil),
            LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: "fledge.dev/shard=a"),
            LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: "fledge.dev/shard=b"),
            LeaderElectionConfiguration.defaultLeaseName(namespace: .named("payments"), labelSelector: "fledge.dev/shard=a"),
        ]
        #expect(Set(names + [unsharded]).count == names.count + 1, "\(names)")
        for name in names {
            #expect(name.count == "fledge-controller-".count + 10, "\(name)")
            #expect(name.hasPrefix("fledge-controller-"))
            #expect(name.allSatisfy { $0 == "-" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }, "\(name)")
        }
        // The same shard written another way is the same shard.
        #expect(
            LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: "tier=web,app in (b,a)")
                == LeaderElectionConfiguration.defaultLeaseName(namespace: .all, labelSelector: "app in (a,b), tier=web"))
        #expect(names[0] == LeaderElectionConfiguration.defaultLeaseName(namespace: .named("payments"), labelSelector: nil))
    }
}
