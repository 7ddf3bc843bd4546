// An API server that goes away and comes back (restarted empty, restored from a backup), and one that shuts down
// while clients watch it: the real sandbox over real HTTP, stopped by every test that starts it.
import FledgeJSON
import FledgeSandbox
import Foundation
import Logging
import ServiceLifecycle
import Testing

@testable import FledgeKubernetes

/// A client for a plain-HTTP sandbox at `url`, from a kubeconfig as users configure kubectl.
private func client(for url: URL, in dir: TempDir) throws -> KubernetesClient {
    let path = try dir.write("kubeconfig-\(url.port ?? 0)", SandboxServer.kubeconfig(server: url.absoluteString, token: nil, certificateAuthorityPEM: nil))
    return KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration())
}

private func configMap(_ name: String) -> JSONValue {
    ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(name), "namespace": "default"], "data": ["k": "v"]]
}

/// Starts a sandbox on `port` (0: a free one). The port of a server just stopped may take a moment to be free again.
private func startSandbox(port: Int) async throws -> SandboxServer {
    var attempt = 0
    while true {
        let server = SandboxServer(configuration: .init(port: port))
        do {
            _ = try await server.start()
            return server
        } catch SandboxError.cannotListen(_, _, _, true) where attempt < 50 {
            attempt += 1
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// Waits (without asserting on time) until `condition` holds, for at most `limit`; false if it never did.
private func eventually(_ limit: Duration = .seconds(60), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now.advanced(by: limit)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}

@Suite(.serialized) struct ServerLifecycleTests {
    /// The API server comes back with less state than the informer saw (killed and restarted empty; an etcd
    /// restore). Resuming the watch from the old resourceVersion must not leave the cache on the old objects: the
    /// server says the version is too large, and the informer lists afresh (counted in `relistCount`).
    @Test func anInformerRelistsWhenTheServerComesBackWithLessState() async throws {
        let dir = try TempDir()
        let first = try await startSandbox(port: 0)
        let url = try #require(first.url)
        let client = try client(for: url, in: dir)
        for index in 0..<20 { _ = try await client.create(.configMaps, namespace: "default", configMap("old-\(index)")) }
        let informer = Informer(
            client: client, resource: .configMaps, namespace: .named("default"),
            options: ListWatchOptions(backoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))))
        var second: SandboxServer?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await informer.run() }
                #expect(await informer.waitUntilSynced())
                #expect(informer.count == 20)
                #expect(informer.relistCount == 1)
                // Read before the restart: once the new server is up, the informer may already have relisted there.
                let lastSeen = Int64(informer.resourceVersion) ?? 0
                await first.stop()
                let restarted = try await startSandbox(port: url.port!)
                second = restarted
                // The new server's history is far behind the version the informer last saw.
                _ = try await client.create(.configMaps, namespace: "default", configMap("new"))
                #expect(await restarted.store.resourceVersion < lastSeen)
                let healed = await eventually { informer.get(namespace: "default", name: "new") != nil && informer.count == 1 }
                #expect(healed, "the cache still holds \(informer.keys.sorted()) after the server came back")
                #expect(informer.relistCount >= 2)
                group.cancelAll()
            }
        } catch {
            await first.stop()
            await second?.stop()
            throw error
        }
        await first.stop()
        await second?.stop()
    }

    /// `requestRelist()` drops the watch and lists again: what a controller asks when its writes keep conflicting.
    @Test func aRelistCanBeRequested() async throws {
        let dir = try TempDir()
        let server = try await startSandbox(port: 0)
        do {
            let client = try client(for: try #require(server.url), in: dir)
            _ = try await client.create(.configMaps, namespace: "default", configMap("a"))
            let informer = Informer(client: client, resource: .configMaps, namespace: .named("default"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await informer.run() }
                #expect(await informer.waitUntilSynced())
                #expect(informer.relistCount == 1)
                informer.requestRelist()
                #expect(await eventually { informer.relistCount == 2 })
                // Still watching afterwards.
                _ = try await client.create(.configMaps, namespace: "default", configMap("b"))
                #expect(await eventually { informer.get(namespace: "default", name: "b") != nil })
                #expect(informer.relistCount == 2)
                group.cancelAll()
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// `fledge sandbox` stops on SIGTERM while `fledge status --watch` watches it: graceful shutdown ends open watch
    /// streams, also one the client opens again over its kept-alive connection when the first ends. Over HTTPS with
    /// a token, as `fledge sandbox` serves by default, and over plain HTTP.
    @Test(.timeLimit(.minutes(2)), arguments: [true, false]) func gracefulShutdownEndsOpenWatches(tls: Bool) async throws {
        let dir = try TempDir()
        var configuration = SandboxServer.Configuration(port: 0, tokens: tls ? ["t0ken": .admin()] : [:])
        if tls { configuration.tls = try SandboxCertificates.generate() }
        let server = SandboxServer(configuration: configuration)
        try await server.store.load(try ManifestLoader.loadManifests(paths: [repositoryRoot + "/deploy/crds", repositoryRoot + "/rollouts/product-service"]))
        var logger = Logger(label: "test.sandbox")
        logger.logLevel = .critical
        let services = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: logger))
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask {
                try await services.run()
                return "server"
            }
            #expect(await eventually { server.url != nil })
            let path = try dir.write("kubeconfig", server.kubeconfig(token: tls ? "t0ken" : nil, namespace: "shop"))
            let client = KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration())
            // As `fledge status --watch`: one Rollout by field selector, bookmarks, a server-side timeout, and a watch
            // that resumes whenever the server ends it.
            group.addTask {
                let stream = client.listWatch(
                    .rollouts, namespace: .named("shop"), fieldSelector: "metadata.name=product-service",
                    options: ListWatchOptions(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5)), watchTimeoutSeconds: 60))
                for try await _ in stream {}
                return "client"
            }
            #expect(await eventually { await server.store.openWatchCount == 1 })
            await services.triggerGracefulShutdown()
            // The server's run returns while the client still watches (and retries).
            let first = try await group.next()
            #expect(first == "server")
            group.cancelAll()
        }
    }
}

/// The repository root, for the manifests under `deploy/` and `rollouts/`.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
