import FledgeHTTP
import FledgeJSON
import Foundation
import Testing

@testable import FledgeKubernetes

/// The seed article's VirtualService, as JSON.
let seedVirtualService = """
    {"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
     "metadata":{"name":"product-service","namespace":"shop","resourceVersion":"4","annotations":{"team":"catalog"}},
     "spec":{"hosts":["product-service"],
      "http":[
       {"name":"canary-header","match":[{"headers":{"x-canary":{"exact":"true"}}}],
        "route":[{"destination":{"host":"product-service","subset":"canary"}}]},
       {"name":"primary",
        "route":[{"destination":{"host":"product-service","subset":"stable"},"weight":100},
                 {"destination":{"host":"product-service","subset":"canary","port":{"number":8080}},"weight":0,"headers":{"request":{"set":{"x-v":"2"}}}}],
        "retries":{"attempts":3,"perTryTimeout":"2s","retryOn":"5xx,reset"},"timeout":"10s","x-unknown":{"keep":[1,2.50,"3"]}}]}}
    """

@Suite struct ViewTests {
    @Test func settingOneRoutesWeightsKeepsEverythingElse() throws {
        let original = try JSONValue(parsing: seedVirtualService)
        var vs = VirtualService(original)
        #expect(vs.hosts == ["product-service"])
        #expect(vs.http.map(\.name) == ["canary-header", "primary"])
        #expect(vs.http[0].weightsBySubset == ["canary": 100])
        #expect(vs.http[1].weightsBySubset == ["stable": 100, "canary": 0])
        #expect(vs.http[1].route[1].port == 8080)

        var routes = vs.http
        let applied = routes[1].setWeights(["stable": 75, "canary": 25])
        #expect(applied)
        let refused = routes[1].setWeights(["stable": 50, "missing": 50])  // changes nothing
        #expect(!refused)
        vs.http = routes
        #expect(vs.http[1].weightsBySubset == ["stable": 75, "canary": 25])

        // Only the two weights differ; every other byte is the same.
        var expected = original.serializedString()
        expected = expected.replacingOccurrences(of: #""subset":"stable"},"weight":100"#, with: #""subset":"stable"},"weight":75"#)
        expected = expected.replacingOccurrences(of: #""port":{"number":8080}},"weight":0"#, with: #""port":{"number":8080}},"weight":25"#)
        #expect(vs.object.serializedString() == expected)
        #expect(vs.object[path: ["spec", "http"]]?[1]?["x-unknown"] == original[path: ["spec", "http"]]?[1]?["x-unknown"])

        vs.metadata.annotations["fledge.dev/revision"] = "abc"
        #expect(vs.metadata.annotations == ["team": "catalog", "fledge.dev/revision": "abc"])
        #expect(vs.name == "product-service")
        #expect(vs.metadata.resourceVersion == "4")
    }

    @Test func deploymentReadsAndEdits() throws {
        var deployment = Deployment(
            try JSONValue(
                parsing: """
                    {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","generation":3},
                     "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
                      "template":{"metadata":{"labels":{"app":"web","version":"v1"}},
                       "spec":{"containers":[{"name":"app","image":"web:1","ports":[{"containerPort":80}]}]}}},
                     "status":{"observedGeneration":3,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2}}
                    """))
        #expect(deployment.isRolledOut)
        #expect(deployment.selectorMatchLabels == ["app": "web"])
        deployment.templateLabels["version"] = "v2"
        var containers = deployment.containers
        containers[0].image = "web:2"
        deployment.containers = containers
        deployment.replicas = 3
        #expect(!deployment.isRolledOut)
        #expect(deployment.object[path: ["spec", "template", "spec", "containers"]]?[0]?["ports"] == [["containerPort": 80]])
        #expect(deployment.templateLabels == ["app": "web", "version": "v2"])
        #expect(deployment.containers.map(\.image) == ["web:2"])
        #expect(!Deployment(["metadata": ["generation": 2], "status": ["observedGeneration": 1]]).isRolledOut)
    }

    @Test func destinationRuleAndLease() throws {
        let rule = DestinationRule(
            try JSONValue(
                parsing: #"{"spec":{"host":"product-service","trafficPolicy":{"tls":{"mode":"ISTIO_MUTUAL"}},"subsets":[{"name":"stable","labels":{"version":"v1"}},{"name":"canary","labels":{"version":"v2"}}]}}"#
            ))
        #expect(rule.host == "product-service")
        #expect(rule.subset(named: "canary")?.labels == ["version": "v2"])
        #expect(rule.subset(named: "nope") == nil)

        var lease = Lease(["metadata": ["name": "fledge"], "spec": [:]])
        lease.holderIdentity = "pod-a"
        lease.leaseDurationSeconds = 15
        #expect(lease.object["spec"] == ["holderIdentity": "pod-a", "leaseDurationSeconds": 15])
        lease.holderIdentity = nil
        #expect(lease.object["spec"] == ["leaseDurationSeconds": 15])
    }

    @Test func eventObjectHasTheRequiredFields() throws {
        let record = EventRecord(
            regarding: ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout",
                        "metadata": ["name": "ps", "namespace": "shop", "uid": "u-1", "labels": ["a": "b"]]],
            reason: "Progressing", note: String(repeating: "é", count: 600), type: .warning, action: "SetWeight",
            reportingInstance: "pod-a", time: Date(timeIntervalSince1970: 1_700_000_000.25))
        let event = record.eventObject(namespace: "shop", name: "ps.abc")
        #expect(event["metadata"]?["name"] == "ps.abc")
        // Without a fixed name: the object's name, the time in hex, a random part (two Events of one instant differ).
        let generated = EventRecord.uniqueName(regarding: record.regarding, time: record.time)
        #expect(generated.hasPrefix("ps.17979cfe45"), "\(generated)")
        #expect(generated != EventRecord.uniqueName(regarding: record.regarding, time: record.time))
        // The time an Event owed in status keeps (status.pendingEvents) reads back as it was (to the millisecond: Foundation
        // reads no finer), so one recorded after a restart keeps its place among the others.
        let kept = try #require(EventRecord.parseTime(EventRecord.formatTime(record.time)))
        #expect(abs(kept.timeIntervalSince1970 - 1_700_000_000.25) < 0.001, "\(kept.timeIntervalSince1970)")
        #expect(event["eventTime"] == "2023-11-14T22:13:20.250000Z")
        #expect(event["regarding"] == ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "namespace": "shop", "name": "ps", "uid": "u-1"])
        #expect(event["type"] == "Warning")
        #expect(event["note"]!.stringValue!.utf8.count <= 1024)
        // A cut note says so, rather than ending mid-number ("harm e-value 1 < 2" for "… < 200").
        let note = event["note"]!.stringValue!
        #expect(note.hasSuffix(" … (cut: an Event holds 1 KB)"), "\(note)")
        #expect(note.hasPrefix(String(repeating: "é", count: 400)))
        let short = EventRecord(
            regarding: record.regarding, reason: "Progressing", note: String(repeating: "é", count: 512), type: .normal, action: "SetWeight",
            reportingInstance: "pod-a", time: Date(timeIntervalSince1970: 1_700_000_000))
        #expect(short.eventObject(namespace: "shop", name: "ps.abc")["note"]?.stringValue == String(repeating: "é", count: 512))
    }
}

@Suite struct LabelSelectorTests {
    @Test(arguments: [
        ("", ["a": "1"], true),
        ("app=web", ["app": "web"], true),
        ("app==web", ["app": "api"], false),
        ("app!=web", [:], true),
        ("app!=web", ["app": "web"], false),
        ("env in (prod, staging)", ["env": "staging"], true),
        ("env in (prod)", [:], false),
        ("env notin (prod)", [:], true),
        ("env notin (prod)", ["env": "prod"], false),
        ("tier", ["tier": ""], true),
        ("!tier", ["tier": "x"], false),
        ("app=web, !legacy ,fledge.dev/managed", ["app": "web", "fledge.dev/managed": "true"], true),
    ])
    func matches(selector: String, labels: [String: String], expected: Bool) throws {
        #expect(try LabelSelector(parsing: selector).matches(labels) == expected)
    }

    @Test(arguments: ["app=web,", "env in prod", "env in (a", "=x", "app ~ x"])
    func rejects(selector: String) {
        #expect(throws: KubernetesError.self) { try LabelSelector(parsing: selector) }
    }

    /// What the API server refuses with 400 is refused here too, saying which key or value is wrong.
    @Test(arguments: [
        ("env in ()", "expected at least one value"),
        ("-app=web", "label key \"-app\""),
        ("app=web-", "label value \"web-\""),
        ("app=" + String(repeating: "a", count: 64), "label value"),
        ("Example.com/app=web", "prefix"),
        ("a/b/c", "more than one '/'"),
        ("env notin (prod, -x)", "label value \"-x\""),
    ])
    func rejectsWhatTheAPIServerRejects(selector: String, expected: String) {
        do {
            _ = try LabelSelector(parsing: selector)
            Issue.record("\(selector) parsed")
        } catch {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test func acceptsWhatTheAPIServerAccepts() throws {
        let selector = try LabelSelector(parsing: "app.kubernetes.io/name=web,tier=,Env_1 in (A.b, c-D),fledge.dev/shard notin (x)")
        #expect(selector.requirements.count == 4)
    }
}

@Suite struct InformerStoreTests {
    @Test func cacheKeysComposeAndSplitBothWays() {
        #expect(Informer.key(namespace: "shop", name: "product-service") == "shop/product-service")
        #expect(Informer.key(namespace: "", name: "istio-system") == "istio-system")
        #expect(Informer.key(of: ["metadata": ["namespace": "shop", "name": "a"]]) == "shop/a")
        #expect(Informer.key(of: ["metadata": ["name": "cluster-wide"]]) == "cluster-wide")
        for (namespace, name) in [("shop", "product-service"), ("", "cluster-wide"), ("a", "b.c-d")] {
            let location = Informer.location(ofKey: Informer.key(namespace: namespace, name: name))
            #expect(location.namespace == namespace && location.name == name)
        }
    }

    @Test func appliesEventsAndDiffsRelists() async throws {
        let client = KubernetesClient(
            configuration: KubernetesConfiguration(server: "http://127.0.0.1:1"),
            transport: ScriptedHTTPClient { _, _ in .response(500, "") })
        let informer = Informer(client: client, resource: .configMaps)
        let changes = informer.changes()
        informer.apply(.resync(items: [object("a", rv: "1"), object("b", rv: "2", labels: ["app": "web"])], resourceVersion: "2"))
        #expect(informer.hasSynced)
        #expect(await informer.waitUntilSynced())
        informer.apply(.added(object("c", rv: "3", namespace: "other")))
        informer.apply(.modified(object("a", rv: "4")))
        informer.apply(.bookmark(resourceVersion: "5"))
        #expect(informer.resourceVersion == "5")
        informer.apply(.deleted(object("b", rv: "6")))
        #expect(informer.count == 2)
        #expect(informer.get(namespace: "shop", name: "a")?["metadata"]?["resourceVersion"] == "4")
        #expect(informer.get(key: "other/c") != nil)
        #expect(informer.list(namespace: "shop").count == 1)
        #expect(informer.list().count == 2)
        #expect(Set(informer.keys) == ["shop/a", "other/c"])

        // A relist after 410: a changed, c gone, d new, b still gone.
        informer.apply(.resync(items: [object("a", rv: "9"), object("d", rv: "8", labels: ["app": "web"])], resourceVersion: "9"))
        #expect(informer.count == 2)
        #expect(informer.list(selector: try LabelSelector(parsing: "app=web")).map { $0["metadata"]!["name"]! } == ["d"])
        #expect(informer.relistCount == 2)

        var log: [String] = []
        for await change in changes {
            switch change {
            case .added(let o): log.append("+\(Informer.key(of: o))")
            case .updated(let old, let new):
                log.append("~\(Informer.key(of: new)) \(old["metadata"]!["resourceVersion"]!.stringValue!)→\(new["metadata"]!["resourceVersion"]!.stringValue!)")
            case .deleted(let o): log.append("-\(Informer.key(of: o))")
            case .synced(let count): log.append("synced \(count)")
            }
            if log.count == 10 { break }
        }
        #expect(Array(log[0..<2]).sorted() == ["+shop/a", "+shop/b"])
        #expect(Array(log[2..<6]) == ["synced 2", "+other/c", "~shop/a 1→4", "-shop/b"])
        #expect(Set(log[6..<9]) == ["+shop/d", "-other/c", "~shop/a 4→9"])
        #expect(log[9] == "synced 2")

        let replay = informer.changes(replayExisting: true)
        var replayed = 0
        for await change in replay {
            if case .synced = change { break }
            replayed += 1
        }
        #expect(replayed == 2)
    }
}
