// Integration tests against the in-process API server (FledgeSandbox), over real HTTP
// and HTTPS with bearer tokens.
import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation
import Synchronization
import Testing

@testable import FledgeKubernetes

/// A sandbox API server over HTTP or HTTPS with bearer tokens, and a client
/// configured the way users configure kubectl: from the kubeconfig it writes.
struct SandboxHarness {
    let server: SandboxServer
    let url: URL
    let certificates: SandboxCertificates?
    let dir: TempDir
    let kubeconfigPath: String
    let client: KubernetesClient

    static let token = "s3cret-token"

    static func with(
        tls: Bool, configuration: SandboxServer.Configuration = SandboxServer.Configuration(),
        _ body: (SandboxHarness) async throws -> Void
    ) async throws {
        var configuration = configuration
        let certificates = tls ? try SandboxCertificates.generate() : nil
        configuration.tls = certificates
        if configuration.tokens.isEmpty { configuration.tokens = [token: .admin()] }
        let server = SandboxServer(configuration: configuration)
        let url = try await server.start()
        do {
            let dir = try TempDir()
            let path = try dir.write("kubeconfig", server.kubeconfig(token: token, namespace: "shop"))
            let config = try Kubeconfig.load(paths: [path]).configuration()
            let harness = SandboxHarness(
                server: server, url: url, certificates: certificates, dir: dir, kubeconfigPath: path,
                client: KubernetesClient(configuration: config))
            _ = try await harness.client.create(.namespaces, namespaceObject("shop"))
            try await body(harness)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// A client for a kubeconfig text written next to the default one.
    func client(kubeconfig text: String, name: String = "alt", context: String? = nil) throws -> KubernetesClient {
        let path = try dir.write(name, text)
        return KubernetesClient(configuration: try Kubeconfig.load(paths: [path]).configuration(context: context))
    }
}

func namespaceObject(_ name: String) -> JSONValue {
    ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": .string(name)]]
}

func configMap(_ name: String, labels: JSONValue = [:], data: JSONValue = ["k": "v"]) -> JSONValue {
    ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(name), "labels": labels], "data": data]
}

func name(_ object: JSONValue) -> String { object["metadata"]?["name"]?.stringValue ?? "?" }

@Suite(.serialized) struct SandboxClientTests {
    @Test(arguments: [false, true])
    func crudConflictsAndPatches(tls: Bool) async throws {
        try await SandboxHarness.with(tls: tls) { h in
            let client = h.client
            #expect(client.configuration.server.hasPrefix(tls ? "https://" : "http://"))
            let created = try await client.create(.virtualServices, try JSONValue(parsing: seedVirtualService))
            let rv = try #require(created["metadata"]?["resourceVersion"]?.stringValue)
            #expect(created["metadata"]?["uid"] != nil)
            // Unknown fields survive the round trip through the server.
            let fetched = try await client.get(.virtualServices, name: "product-service")
            #expect(fetched[path: ["spec", "http"]] == (try JSONValue(parsing: seedVirtualService))[path: ["spec", "http"]])

            // An update with the current version wins; replaying the stale one is a conflict.
            var vs = VirtualService(fetched)
            var routes = vs.http
            routes[1].setWeights(["stable": 90, "canary": 10])
            vs.http = routes
            let updated = try await client.update(.virtualServices, vs.object)
            #expect(VirtualService(updated).http[1].weightsBySubset == ["stable": 90, "canary": 10])
            #expect(updated[path: ["spec", "http"]]?[1]?["retries"] == fetched[path: ["spec", "http"]]?[1]?["retries"])
            do {
                _ = try await client.update(.virtualServices, vs.object)
                Issue.record("a stale resourceVersion must conflict")
            } catch let error as KubernetesError {
                #expect(error.isConflict, "\(error)")
                #expect(error.code == 409)
                #expect(error.name == "product-service")
                #expect(error.verb == "update")
                #expect(!error.message.isEmpty)
            }
            #expect(rv != updated["metadata"]?["resourceVersion"]?.stringValue)

            // JSON Patch guarded by `test`: a wrong expectation is refused and changes nothing.
            do {
                _ = try await client.patch(
                    .virtualServices, name: "product-service",
                    .json([.test(path: "/spec/http/1/route/1/weight", value: 50), .replace(path: "/spec/http/1/route/1/weight", value: 60)]))
                Issue.record("a failing test op must fail the patch")
            } catch let error as KubernetesError {
                #expect(error.kind == .api)
                #expect(error.code == 422 || error.code == 409, "\(error)")
            }
            let patched = try await client.patch(
                .virtualServices, name: "product-service",
                .json([
                    .test(path: "/spec/http/1/route/1/weight", value: 10),
                    .replace(path: "/spec/http/1/route/0/weight", value: 75),
                    .replace(path: "/spec/http/1/route/1/weight", value: 25),
                ]))
            #expect(VirtualService(patched).http[1].weightsBySubset == ["stable": 75, "canary": 25])
            let merged = try await client.patch(
                .virtualServices, name: "product-service", .merge(["metadata": ["annotations": ["fledge.dev/step": "2"]]]))
            #expect(VirtualService(merged).metadata.annotations == ["team": "catalog", "fledge.dev/step": "2"])

            // Not found, with the server's words.
            do {
                _ = try await client.get(.virtualServices, name: "nope")
                Issue.record("expected 404")
            } catch let error as KubernetesError {
                #expect(error.isNotFound)
                #expect(error.reason == "NotFound")
                #expect(error.message.contains("nope"))
            }
            try await client.delete(.virtualServices, name: "product-service")
            await #expect(throws: KubernetesError.self) { try await client.get(.virtualServices, name: "product-service") }
        }
    }

    @Test func statusSubresourceAndListPagination() async throws {
        try await SandboxHarness.with(tls: false) { h in
            let client = h.client
            let deployment: JSONValue = [
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "web", "labels": ["app": "web"]],
                "spec": [
                    "replicas": 2, "selector": ["matchLabels": ["app": "web"]],
                    "template": ["metadata": ["labels": ["app": "web"]], "spec": ["containers": [["name": "app", "image": "web:1"]]]],
                ],
            ]
            _ = try await client.create(.deployments, deployment)
            // The sandbox's Deployment controller writes status on its own; wait for it so the write below is not
            // refused as a conflict with it.
            await h.server.store.settleDeployments()
            let status = try await client.getStatus(.deployments, name: "web")
            #expect(status["kind"] == "Deployment")
            var withStatus = status
            withStatus[path: ["status", "observedGeneration"]] = 99
            withStatus[path: ["spec", "replicas"]] = 7  // ignored by a status write
            let written = try await client.updateStatus(.deployments, withStatus)
            #expect(written[path: ["status", "observedGeneration"]] == 99)
            #expect(written[path: ["spec", "replicas"]] == 2)
            let patched = try await client.patchStatus(.deployments, name: "web", .merge(["status": ["observedGeneration": 100]]))
            #expect(patched[path: ["status", "observedGeneration"]] == 100)

            for index in 0..<23 {
                _ = try await client.create(.configMaps, configMap("cm-\(index)", labels: ["parity": index % 2 == 0 ? "even" : "odd"]))
            }
            let all = try await client.listAll(.configMaps, labelSelector: "parity", pageSize: 5)
            #expect(all.items.count == 23)
            #expect(Set(all.items.map(name)).count == 23)
            let even = try await client.listAll(.configMaps, labelSelector: "parity=even", pageSize: 4)
            #expect(even.items.count == 12)
            var pages = 0
            var seen = 0
            for try await page in client.listPages(.configMaps, labelSelector: "parity in (odd)", pageSize: 4) {
                pages += 1
                seen += page.items.count
            }
            #expect(seen == 11)
            #expect(pages == 3)
            let first = try await client.list(.configMaps, limit: 10)
            #expect(first.items.count == 10)
            #expect(first.continueToken != nil)
            let across = try await client.listAll(.configMaps, namespace: .all, labelSelector: "parity")
            #expect(across.items.count == 23)

            // Page by page: each page as it arrives, the last one ends the list.
            var paged = ListWatchOptions(pageSize: 10)
            paged.deliverPages = true
            var pageEvents = client.listWatch(.configMaps, labelSelector: "parity", options: paged).makeAsyncIterator()
            var delivered: [String] = []
            while delivered.last?.hasPrefix("resync") != true, let event = try await pageEvents.next() {
                switch event {
                case .resyncPage(let items): delivered.append("page \(items.count)")
                case .resync(let items, let version):
                    delivered.append("resync \(items.count)")
                    #expect(!version.isEmpty)
                default: continue
                }
            }
            #expect(delivered == ["page 10", "page 10", "resync 3"])
        }
    }

    /// The pull-driven list/watch: a dropped connection resumes without loss or
    /// duplicates; a resourceVersion compacted away (410) is answered by a relist.
    @Test(arguments: [false, true])
    func watchResumesAfterDropAndRelistsAfterGone(tls: Bool) async throws {
        try await SandboxHarness.with(tls: tls) { h in
            let client = h.client
            _ = try await client.create(.configMaps, configMap("before"))
            let sleeps = Mutex<[Duration]>([])
            let options = ListWatchOptions(sleep: { d in sleeps.withLock { $0.append(d) } })
            var events = client.listWatch(.configMaps, options: options).makeAsyncIterator()

            guard case .resync(let items, let listVersion)? = try await events.next() else {
                Issue.record("the first event must be the list")
                return
            }
            #expect(items.map(name) == ["before"])
            #expect(!listVersion.isEmpty)

            _ = try await client.create(.configMaps, configMap("a"))
            #expect(try await nextChange(&events) == "added a")

            // The server drops every watch; a write happens while we are disconnected.
            await h.server.store.dropWatches()
            _ = try await client.create(.configMaps, configMap("b"))
            #expect(try await nextChange(&events) == "added b")
            _ = try await client.patch(.configMaps, name: "a", .merge(["data": ["k": "changed"]]))
            #expect(try await nextChange(&events) == "modified a")

            // History compacted while we are not watching: the resume answers 410 → a fresh list.
            await h.server.store.dropWatches()
            _ = try await client.create(.configMaps, configMap("c"))
            try await client.delete(.configMaps, name: "before")
            await h.server.store.compactHistory()
            var relisted: [String]?
            for _ in 0..<10 {
                guard let event = try await events.next() else { break }
                if case .resync(let items, _) = event {
                    relisted = items.map(name).sorted()
                    break
                }
                // Only a failure (connection reset) or a bookmark may come before the relist.
                switch event {
                case .failure, .bookmark: continue
                default: Issue.record("unexpected \(event) before the relist")
                }
            }
            #expect(relisted == ["a", "b", "c"])
            _ = try await client.create(.configMaps, configMap("d"))
            #expect(try await nextChange(&events) == "added d")
        }
    }

    @Test func tokenRotationWithATokenFile() async throws {
        try await SandboxHarness.with(tls: true) { h in
            let tokenPath = try h.dir.write("token", "rotating-1\n")
            await h.server.store.setToken("rotating-1", user: .admin("rotated"))
            let ca = try h.dir.write("ca.pem", h.certificates!.certificateAuthorityPEM)
            let client = try h.client(
                kubeconfig: """
                    current-context: r
                    clusters: [{name: s, cluster: {server: "\(h.url.absoluteString)", certificate-authority: ca.pem}}]
                    users: [{name: u, user: {tokenFile: token}}]
                    contexts: [{name: r, context: {cluster: s, user: u, namespace: shop}}]
                    """)
            #expect(client.configuration.tls.certificateAuthority == .file(ca))
            _ = try await client.create(.configMaps, configMap("one"))

            // The old token is revoked and the file replaced: the next call uses the new one.
            await h.server.store.setToken("rotating-2", user: .admin("rotated"))
            await h.server.store.setToken("rotating-1", user: nil)
            try "rotating-2".write(toFile: tokenPath, atomically: true, encoding: .utf8)
            _ = try await client.get(.configMaps, name: "one")

            // A revoked token without a new file surfaces 401 Unauthorized.
            await h.server.store.setToken("rotating-2", user: nil)
            do {
                _ = try await client.get(.configMaps, name: "one")
                Issue.record("expected 401")
            } catch let error as KubernetesError {
                #expect(error.isUnauthorized, "\(error)")
            }
        }
    }

    /// Every kubeconfig variant reaches the HTTPS sandbox (or fails for the right reason).
    @Test func kubeconfigVariantsAgainstHTTPS() async throws {
        try await SandboxHarness.with(tls: true) { h in
            _ = try await h.client.create(.configMaps, configMap("probe"))
            let server = h.url.absoluteString
            let caData = Data(h.certificates!.certificateAuthorityPEM.utf8).base64EncodedString()
            try h.dir.write("certs/ca.pem", h.certificates!.certificateAuthorityPEM)
            try h.dir.write("sa-token", SandboxHarness.token)
            let plugin = try h.dir.write(
                "bin/token-plugin",
                """
                #!/bin/sh
                printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$PLUGIN_TOKEN"
                """, executable: true)

            // Three files merged: clusters, users, contexts spread across them.
            let clusters = try h.dir.write(
                "merge/clusters",
                """
                clusters:
                - {name: by-data, cluster: {server: "\(server)", certificate-authority-data: \(caData)}}
                - {name: by-file, cluster: {server: "\(server)", certificate-authority: ../certs/ca.pem}}
                - {name: insecure, cluster: {server: "\(server)", insecure-skip-tls-verify: true}}
                - {name: system-cas, cluster: {server: "\(server)"}}
                """)
            let users = try h.dir.write(
                "merge/users",
                """
                users:
                - {name: token, user: {token: \(SandboxHarness.token)}}
                - {name: token-file, user: {tokenFile: ../sa-token}}
                - name: exec
                  user:
                    exec:
                      apiVersion: client.authentication.k8s.io/v1
                      command: ../bin/token-plugin
                      env: [{name: PLUGIN_TOKEN, value: \(SandboxHarness.token)}]
                - {name: wrong, user: {token: not-the-token}}
                """)
            let contexts = try h.dir.write(
                "merge/contexts",
                """
                current-context: data-token
                contexts:
                - {name: data-token, context: {cluster: by-data, user: token, namespace: shop}}
                - {name: file-tokenfile, context: {cluster: by-file, user: token-file, namespace: shop}}
                - {name: insecure-exec, context: {cluster: insecure, user: exec, namespace: shop}}
                - {name: untrusted, context: {cluster: system-cas, user: token, namespace: shop}}
                - {name: wrong-token, context: {cluster: by-data, user: wrong, namespace: shop}}
                """)
            let merged = try Kubeconfig.load(paths: [clusters, users, contexts])
            for context in ["data-token", "file-tokenfile", "insecure-exec"] {
                let client = KubernetesClient(configuration: try merged.configuration(context: context))
                let probe = try await client.get(.configMaps, name: "probe")
                #expect(name(probe) == "probe", "context \(context)")
            }
            #expect(try merged.configuration().contextName == "data-token")

            let untrusted = KubernetesClient(configuration: try merged.configuration(context: "untrusted"))
            do {
                _ = try await untrusted.get(.configMaps, name: "probe")
                Issue.record("a server signed by an unknown CA must be refused")
            } catch let error as KubernetesError {
                #expect(error.kind == .transport)
                #expect(error.httpError?.kind == .tls, "\(error)")
            }
            let wrong = KubernetesClient(configuration: try merged.configuration(context: "wrong-token"))
            do {
                _ = try await wrong.get(.configMaps, name: "probe")
                Issue.record("a wrong token must be refused")
            } catch let error as KubernetesError {
                #expect(error.isUnauthorized, "\(error)")
            }
            _ = plugin
        }
    }

    @Test func inClusterConfigurationFromATemporaryDirectory() async throws {
        try await SandboxHarness.with(tls: true) { h in
            let sa = try TempDir()
            try sa.write("token", SandboxHarness.token)
            try sa.write("ca.crt", h.certificates!.certificateAuthorityPEM)
            try sa.write("namespace", "shop")
            let config = try KubernetesConfiguration.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": h.url.host!, "KUBERNETES_SERVICE_PORT": String(h.url.port!)],
                serviceAccountDirectory: sa.path)
            let client = KubernetesClient(configuration: config)
            _ = try await client.create(.configMaps, configMap("from-pod"))
            #expect(name(try await h.client.get(.configMaps, name: "from-pod")) == "from-pod")
        }
    }

    @Test func informerCachesAndNotifies() async throws {
        try await SandboxHarness.with(tls: false) { h in
            let client = h.client
            for index in 0..<30 { _ = try await client.create(.configMaps, configMap("cm-\(index)", labels: ["i": .string("\(index % 3)")])) }
            let informer = Informer(client: client, resource: .configMaps, namespace: "shop", options: ListWatchOptions(pageSize: 7))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await informer.run() }
                #expect(await informer.waitUntilSynced())
                let changes = informer.changes()
                #expect(informer.count == 30)
                #expect(informer.list(selector: try LabelSelector(parsing: "i=0")).count == 10)
                _ = try await client.patch(.configMaps, name: "cm-4", .merge(["data": ["k": "new"]]))
                try await client.delete(.configMaps, name: "cm-5")
                var seen: [String] = []
                for await change in changes {
                    switch change {
                    case .updated(_, let new): seen.append("~\(name(new))")
                    case .deleted(let old): seen.append("-\(name(old))")
                    case .added(let new): seen.append("+\(name(new))")
                    case .synced: continue
                    }
                    if seen.count == 2 { break }
                }
                #expect(seen == ["~cm-4", "-cm-5"])
                #expect(informer.get(namespace: "shop", name: "cm-4")?["data"]?["k"] == "new")
                #expect(informer.get(key: "shop/cm-5") == nil)
                #expect(informer.count == 29)
                group.cancelAll()
            }
        }
    }

    @Test func leaseLeaderElection() async throws {
        try await SandboxHarness.with(tls: false) { h in
            let a = LeaseLock(client: h.client, namespace: "shop", name: "fledge-leader", identity: "a", leaseDuration: .seconds(15))
            let b = LeaseLock(client: h.client, namespace: "shop", name: "fledge-leader", identity: "b", leaseDuration: .seconds(15))
            let t0 = Date(timeIntervalSince1970: 1_800_000_000)
            let first = try await a.tryAcquireOrRenew(now: t0)
            #expect(first.isLeader)
            #expect(first.validUntil == t0.addingTimeInterval(15))
            let other = try await b.tryAcquireOrRenew(now: t0.addingTimeInterval(1))
            #expect(!other.isLeader)
            #expect(other.holder == "a")
            let renewed = try await a.tryAcquireOrRenew(now: t0.addingTimeInterval(5))
            #expect(renewed.isLeader)
            // b saw a renew at t0+5 (its clock: t0+6); not expired at t0+20.
            #expect(!(try await b.tryAcquireOrRenew(now: t0.addingTimeInterval(6))).isLeader)
            #expect(!(try await b.tryAcquireOrRenew(now: t0.addingTimeInterval(20))).isLeader)
            // a stops renewing; 15 s after b last saw a change, b takes over.
            let takeover = try await b.tryAcquireOrRenew(now: t0.addingTimeInterval(22))
            #expect(takeover.isLeader)
            #expect(takeover.lease?.leaseTransitions == 1)
            #expect(!(try await a.tryAcquireOrRenew(now: t0.addingTimeInterval(23))).isLeader)
            try await b.release(now: t0.addingTimeInterval(24))
            // Released: a takes it at once.
            #expect(try await a.tryAcquireOrRenew(now: t0.addingTimeInterval(25)).isLeader)
        }
    }

    @Test func eventsAreRecorded() async throws {
        try await SandboxHarness.with(tls: false) { h in
            let rollout: JSONValue = [
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": ["name": "web", "namespace": "shop", "uid": "1234"],
            ]
            let event = try await h.client.recordEvent(
                EventRecord(
                    regarding: rollout, reason: "WeightSet", note: "canary weight 10", action: "SetWeight",
                    reportingInstance: "pod-a", time: Date()))
            #expect(event["reason"] == "WeightSet")
            let listed = try await h.client.listAll(.events)
            #expect(listed.items.map { $0["note"] } == ["canary weight 10"])
            #expect(listed.items.first?["regarding"]?["name"] == "web")
        }
    }
}

/// The next added/modified/deleted event, skipping bookmarks and transient failures.
func nextChange(_ events: inout ListWatch.AsyncIterator) async throws -> String {
    for _ in 0..<20 {
        guard let event = try await events.next() else { return "end" }
        switch event {
        case .added(let o): return "added \(name(o))"
        case .modified(let o): return "modified \(name(o))"
        case .deleted(let o): return "deleted \(name(o))"
        case .resync(let items, _): return "resync \(items.count)"
        case .bookmark, .failure, .resyncPage: continue
        }
    }
    return "nothing"
}
