import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation
import TestSupport
import Testing

/// Reads watch lines until `count` events arrived (or the stream ended).
func collect(_ lines: AsyncThrowingStream<[UInt8], any Error>, count: Int) async throws -> [JSONValue] {
    var events: [JSONValue] = []
    for try await line in lines {
        if line.isEmpty { continue }
        events.append(try JSONValue(parsing: line))
        if events.count >= count { break }
    }
    return events
}

@Suite struct SandboxWatchTests {
    @Test func watchFromResourceVersionSeesChangesInOrder() async throws {
        try await withSandbox { h in
            let cms = "/api/v1/namespaces/default/configmaps"
            let first = try await h.request(.post, cms, body: ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "a"], "data": ["k": "1"]])
            let rv = first.json[path: ["metadata", "resourceVersion"]]!.stringValue!
            // Changes made before the watch starts are replayed from history.
            _ = try await h.raw(.patch, "\(cms)/a", body: #"{"data":{"k":"2"}}"#, contentType: "application/merge-patch+json")
            let lines = try await h.watch("\(cms)?watch=true&resourceVersion=\(rv)")
            _ = try await h.request(.delete, "\(cms)/a")
            let events = try await collect(lines, count: 2)
            #expect(events.map { $0["type"] } == ["MODIFIED", "DELETED"])
            #expect(events[0][path: ["object", "data", "k"]] == "2")
            let rvs = events.compactMap { $0[path: ["object", "metadata", "resourceVersion"]]?.stringValue.flatMap { Int($0) } }
            #expect(rvs.count == 2 && rvs[0] < rvs[1])
        }
    }

    @Test func watchFromTooOldVersionIsGone() async throws {
        try await withSandbox(.init(watchHistoryLimit: 2)) { h in
            for index in 0..<5 {
                _ = try await h.request(.post, "/api/v1/namespaces/default/configmaps", body: ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string("c\(index)")]])
            }
            let lines = try await h.watch("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=5")
            let events = try await collect(lines, count: 1)
            #expect(events.first?["type"] == "ERROR")
            #expect(events.first?[path: ["object", "code"]] == 410)
            #expect(events.first?[path: ["object", "reason"]] == "Expired")
        }
    }

    /// A client that saw a resourceVersion this server never handed out (the server was restored from a backup or
    /// restarted empty) is told so as a real API server does: a watch gets 200 and one ERROR event with the 504
    /// `Timeout` Status whose cause is `ResourceVersionTooLarge` (client-go's reflector then lists again without a
    /// resourceVersion), a list gets that Status as its answer. Not a watch that silently waits for versions that
    /// may never come.
    @Test func watchOrListFromAVersionAheadOfTheServerIsTooLarge() async throws {
        try await withSandbox { h in
            let current = await h.server.store.resourceVersion
            let ahead = current + 1000
            let lines = try await h.watch("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=\(ahead)&allowWatchBookmarks=true")
            let events = try await collect(lines, count: 1)
            #expect(events.first?["type"] == "ERROR")
            #expect(events.first?[path: ["object", "code"]] == 504)
            #expect(events.first?[path: ["object", "reason"]] == "Timeout")
            #expect(events.first?[path: ["object", "details", "causes"]]?[0]?["reason"] == "ResourceVersionTooLarge")
            #expect(events.first?[path: ["object", "message"]]?.stringValue == "Timeout: Too large resource version: \(ahead), current: \(current)")

            let list = try await h.request(.get, "/api/v1/namespaces/default/configmaps?resourceVersion=\(ahead)")
            #expect(list.status == 504)
            #expect(list.json["kind"] == "Status" && list.json["reason"] == "Timeout")
            #expect(list.json[path: ["details", "causes"]]?[0]?["reason"] == "ResourceVersionTooLarge")
            // At or below the current version: served.
            #expect(try await h.request(.get, "/api/v1/namespaces/default/configmaps?resourceVersion=\(current)").status == 200)
            #expect(try await h.request(.get, "/api/v1/namespaces/default/configmaps?resourceVersion=0").status == 200)
            #expect(try await h.request(.get, "/api/v1/namespaces/default/configmaps?resourceVersion=x").status == 400)
        }
    }

    @Test func watchWithoutVersionStartsWithCurrentObjectsAndHonoursSelectors() async throws {
        try await withSandbox { h in
            try await h.server.store.apply(try yaml("""
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: keep, labels: {app: x}}
                ---
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: skip, labels: {app: y}}
                """))
            let lines = try await h.watch("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=app%3Dx")
            _ = try await h.server.store.modify(.configMaps, namespace: "default", name: "skip") { $0["data"] = ["a": "b"] }
            _ = try await h.server.store.modify(.configMaps, namespace: "default", name: "keep") { $0["data"] = ["a": "b"] }
            let events = try await collect(lines, count: 2)
            #expect(events.map { $0["type"] } == ["ADDED", "MODIFIED"])
            #expect(events.allSatisfy { $0[path: ["object", "metadata", "name"]] == "keep" })
        }
    }

    @Test func droppedWatchEndsTheStreamAndBookmarksArrive() async throws {
        try await withSandbox(.init(tickInterval: .milliseconds(10), bookmarkInterval: .milliseconds(10))) { h in
            let lines = try await h.watch("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=4&allowWatchBookmarks=true")
            let events = try await collect(lines, count: 1)
            #expect(events.first?["type"] == "BOOKMARK")
            #expect(events.first?[path: ["object", "metadata", "resourceVersion"]]?.stringValue != nil)
            await h.server.store.dropWatches()
            var ended = false
            for try await _ in lines {}
            ended = true
            #expect(ended)
        }
    }
}

/// The garbage collector finds an owner's dependents by the uid their ownerReferences name, in any group and, for
/// a cluster-scoped owner, in any namespace; it collects them in a fixed order and leaves everything else alone.
@Suite struct SandboxGarbageCollectionTests {
    @Test func aClusterScopedOwnersDependentsGoInEveryNamespaceInOrder() async throws {
        try await withSandbox { h in
            let store = h.server.store
            let owner = try await store.apply([[
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": ["name": "owner"], "rules": [],
            ]])[0]
            let other = try await store.apply([["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "other", "namespace": "a"]]])[0]
            func reference(_ object: JSONValue) -> JSONValue {
                ["apiVersion": object["apiVersion"] ?? "", "kind": object["kind"] ?? "", "name": object[path: ["metadata", "name"]] ?? "",
                 "uid": object[path: ["metadata", "uid"]] ?? ""]
            }
            func configMap(_ namespace: String, _ name: String, owners: [JSONValue]) -> JSONValue {
                var metadata: JSONValue = ["name": .string(name), "namespace": .string(namespace)]
                if !owners.isEmpty { metadata["ownerReferences"] = .array(owners.map(reference)) }
                return ["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata]
            }
            try await store.apply([
                configMap("b", "x", owners: [owner]), configMap("a", "y", owners: [owner]),
                configMap("a", "z", owners: [other]), configMap("a", "w", owners: []),
                ["apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": [
                    "name": "r", "namespace": "b", "ownerReferences": [reference(owner)]], "rules": []],
            ])
            let lines = try await h.watch("/api/v1/configmaps?watch=true&resourceVersion=\(await store.resourceVersion)")
            let deleted = try await h.request(.delete, "/apis/rbac.authorization.k8s.io/v1/clusterroles/owner")
            #expect(deleted.status == 200, "\(deleted.json)")
            let events = try await collect(lines, count: 2)
            #expect(events.map { $0["type"] } == ["DELETED", "DELETED"])
            #expect(events.map { $0[path: ["object", "metadata", "namespace"]] } == ["a", "b"])
            #expect(await store.object(.configMaps, namespace: "a", name: "y") == nil)
            #expect(await store.object(.configMaps, namespace: "b", name: "x") == nil)
            #expect(await store.object(.roles, namespace: "b", name: "r") == nil)
            #expect(await store.object(.configMaps, namespace: "a", name: "z") != nil)
            #expect(await store.object(.configMaps, namespace: "a", name: "w") != nil)
            #expect(await store.object(.configMaps, namespace: "a", name: "other") != nil)
        }
    }
}

@Suite struct SandboxCRDTests {
    @Test func appliedCRDIsServedWithStatusValidationAndPruning() async throws {
        try await withSandbox { h in
            try await h.server.store.apply(try yaml(testCRDYAML))
            let crd = try await h.request(.get, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.fledge.dev")
            #expect(crd.json[path: ["status", "conditions"]]?.arrayValue?.contains { $0["type"] == "Established" && $0["status"] == "True" } == true)
            let discovery = try await h.request(.get, "/apis/test.fledge.dev/v1")
            #expect(discovery.json["resources"]?.arrayValue?.contains { $0["name"] == "widgets" && $0["shortNames"] == ["wg"] } == true)
            #expect(discovery.json["resources"]?.arrayValue?.contains { $0["name"] == "widgets/status" } == true)

            let path = "/apis/test.fledge.dev/v1/namespaces/default/widgets"
            let widget: JSONValue = ["apiVersion": "test.fledge.dev/v1", "kind": "Widget", "metadata": ["name": "w"], "spec": ["size": 3, "unknown": 1], "status": ["phase": "Bogus"]]
            let created = try await h.request(.post, path, body: widget)
            #expect(created.status == 201)
            #expect(created.json[path: ["spec", "unknown"]] == nil)  // pruned
            #expect(created.json["status"] == nil)  // status subresource: ignored on create
            let strict = try await h.request(.post, path + "?fieldValidation=Strict", body: ["apiVersion": "test.fledge.dev/v1", "kind": "Widget", "metadata": ["name": "w2"], "spec": ["size": 3, "unknown": 1]])
            #expect(strict.status == 400)
            #expect(strict.json["message"]?.stringValue?.contains("unknown field \"spec.unknown\"") == true)
            let invalid = try await h.request(.post, path, body: ["apiVersion": "test.fledge.dev/v1", "kind": "Widget", "metadata": ["name": "w3"], "spec": ["size": 11, "color": "green"]])
            #expect(invalid.status == 422)
            #expect(invalid.json["message"]?.stringValue?.contains("spec.size") == true)
            #expect(invalid.json["message"]?.stringValue?.contains("spec.color") == true)
            let missing = try await h.request(.post, path, body: ["apiVersion": "test.fledge.dev/v1", "kind": "Widget", "metadata": ["name": "w4"], "spec": [:]])
            #expect(missing.status == 422)

            let status = try await h.raw(.patch, path + "/w/status", body: #"{"status":{"phase":"Ready"},"spec":{"size":9}}"#, contentType: "application/merge-patch+json")
            #expect(status.json[path: ["status", "phase"]] == "Ready")
            #expect(status.json[path: ["spec", "size"]] == 3)
            #expect(status.json[path: ["metadata", "generation"]] == 1)
            let spec = try await h.raw(.patch, path + "/w", body: #"{"status":{"phase":"Nope"},"spec":{"size":4}}"#, contentType: "application/merge-patch+json")
            #expect(spec.json[path: ["status", "phase"]] == "Ready")
            #expect(spec.json[path: ["metadata", "generation"]] == 2)

            let table = try await h.request(.get, path, accept: "application/json;as=Table;v=v1;g=meta.k8s.io")
            #expect(table.json["columnDefinitions"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["Name", "Size", "Phase"])
            #expect(table.json["rows"]?[0]?["cells"] == ["w", 4, "Ready"])

            // Deleting the CRD stops serving it and removes its objects.
            let deleted = try await h.request(.delete, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.fledge.dev")
            #expect(deleted.status == 200)
            let gone = try await h.request(.get, path)
            #expect(gone.status == 404)
        }
    }

    /// `pattern`, both forms of `exclusiveMinimum`/`exclusiveMaximum` (the OpenAPI v3.0 boolean next to
    /// `minimum`/`maximum` that Kubernetes uses, and the numeric JSON Schema one), and `default`s: applied to absent
    /// (or non-nullable null) fields, recursively, in objects that are there, array items and map values included.
    @Test func schemaPatternsExclusiveBoundsAndDefaults() async throws {
        try await withSandbox { h in
            try await h.server.store.apply(try yaml("""
                apiVersion: apiextensions.k8s.io/v1
                kind: CustomResourceDefinition
                metadata: {name: gadgets.test.fledge.dev}
                spec:
                  group: test.fledge.dev
                  scope: Namespaced
                  names: {plural: gadgets, singular: gadget, kind: Gadget}
                  versions:
                  - name: v1
                    served: true
                    storage: true
                    schema:
                      openAPIV3Schema:
                        type: object
                        properties:
                          spec:
                            type: object
                            properties:
                              ratio: {type: number, exclusiveMinimum: 0, exclusiveMaximum: 1}
                              share: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 1, exclusiveMaximum: true}
                              count: {type: integer, minimum: 0, exclusiveMinimum: false, maximum: 5}
                              code: {type: string, pattern: '^[a-z]+-[0-9]+$'}
                              mode: {type: string, default: fast}
                              maybe: {type: string, nullable: true, default: x}
                              limits:
                                type: object
                                default: {}
                                properties:
                                  cpu: {type: string, default: "1"}
                                  memory: {type: string, default: 1Gi}
                              ports:
                                type: array
                                items:
                                  type: object
                                  properties:
                                    name: {type: string}
                                    protocol: {type: string, default: TCP}
                              groups:
                                type: object
                                additionalProperties:
                                  type: object
                                  properties:
                                    weight: {type: integer, default: 1}

                """))
            let path = "/apis/test.fledge.dev/v1/namespaces/default/gadgets"
            func gadget(_ name: String, _ spec: JSONValue) -> JSONValue {
                ["apiVersion": "test.fledge.dev/v1", "kind": "Gadget", "metadata": ["name": .string(name)], "spec": spec]
            }
            for (spec, message) in [
                (["ratio": 0] as JSONValue, "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"),
                (["ratio": 1.0], "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"),
                (["share": 0], "spec.share: Invalid value: 0: spec.share in body should be greater than 0"),
                (["share": 1], "spec.share: Invalid value: 1: spec.share in body should be less than 1"),
                (["count": -1], "spec.count: Invalid value: -1: spec.count in body should be greater than or equal to 0"),
                (["code": "AB-1"], #"spec.code: Invalid value: "AB-1": spec.code in body should match '^[a-z]+-[0-9]+$'"#),
            ] {
                let refused = try await h.request(.post, path, body: gadget("g", spec))
                #expect(refused.status == 422)
                #expect(refused.json["message"] == .string(#"Gadget.test.fledge.dev "g" is invalid: "# + message), "\(refused.json)")
            }
            let inside = try await h.request(.post, path, body: gadget("inside", ["ratio": 0.5, "share": 0.999, "count": 0, "code": "ab-12"]))
            #expect(inside.status == 201, "\(inside.json)")

            let created = try await h.request(.post, path, body: gadget("defaults", [
                "mode": nil, "ports": [["name": "http"], ["name": "dns", "protocol": "UDP"]], "groups": ["a": [:], "b": ["weight": 3]],
            ]))
            #expect(created.status == 201, "\(created.json)")
            #expect(created.json["spec"] == [
                "mode": "fast", "ports": [["name": "http", "protocol": "TCP"], ["name": "dns", "protocol": "UDP"]],
                "groups": ["a": ["weight": 1], "b": ["weight": 3]], "maybe": "x", "limits": ["cpu": "1", "memory": "1Gi"],
            ])
            // A nullable field keeps its null; an object that is not there gets no defaults (spec has none itself).
            let kept = try await h.request(.post, path, body: gadget("nullable", ["maybe": nil]))
            #expect(kept.json[path: ["spec", "maybe"]] == .null && kept.json[path: ["spec", "mode"]] == "fast")
            let bare = try await h.request(.post, path, body: ["apiVersion": "test.fledge.dev/v1", "kind": "Gadget", "metadata": ["name": "bare"]])
            #expect(bare.status == 201 && bare.json["spec"] == nil)
            // Updates are defaulted too. (A custom resource's PUT carries its resourceVersion, as a real server requires.)
            var update = gadget("bare", ["limits": ["cpu": "2"]])
            update[path: ["metadata", "resourceVersion"]] = bare.json[path: ["metadata", "resourceVersion"]]
            let updated = try await h.request(.put, path + "/bare", body: update)
            #expect(updated.json["spec"] == ["limits": ["cpu": "2", "memory": "1Gi"], "mode": "fast", "maybe": "x"], "\(updated.json)")
        }
    }

    @Test func invalidCRDIsRejected() async throws {
        try await withSandbox { h in
            var crd = try yaml(testCRDYAML)[0]
            crd[path: ["metadata", "name"]] = "wrong.name"
            let response = try await h.request(.post, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body: crd)
            #expect(response.status == 422)
            #expect(response.json["message"]?.stringValue?.contains("metadata.name") == true)
        }
    }
}

@Suite struct SandboxDeploymentTests {
    @Test func statusFollowsSpecAfterDelayOnInjectedClock() async throws {
        let clock = ManualSandboxClock()
        try await withSandbox(.init(clock: clock, rolloutDelay: .seconds(30))) { h in
            let store = h.server.store
            try await store.apply([deploymentJSON])
            await store.advanceDeployments()
            var deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "readyReplicas"]] == nil)
            clock.advance(by: .seconds(31))
            await store.advanceDeployments()
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "readyReplicas"]] == 3)
            #expect(deployment[path: ["status", "updatedReplicas"]] == 3)
            #expect(deployment[path: ["status", "availableReplicas"]] == 3)
            #expect(deployment[path: ["status", "observedGeneration"]] == 1)
            let pods = try await h.request(.get, "/api/v1/namespaces/default/pods?labelSelector=version%3Dv1")
            #expect(pods.json["items"]?.arrayValue?.count == 3)

            // Scale: observedGeneration lags until the delay passes.
            _ = try await h.raw(.patch, "/apis/apps/v1/namespaces/default/deployments/product-service", body: #"{"spec":{"replicas":1}}"#, contentType: "application/merge-patch+json")
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "observedGeneration"]] == 1)
            clock.advance(by: .seconds(31))
            await store.advanceDeployments()
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "observedGeneration"]] == 2)
            #expect(deployment[path: ["status", "replicas"]] == 1)
            #expect(await store.objects(.pods, namespace: "default").count == 1)

            // Unready pods.
            try await store.setDeploymentReady(namespace: "default", deployment: "product-service", false)
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "readyReplicas"]] == 0)
            #expect(deployment[path: ["status", "unavailableReplicas"]] == 1)
            let pod = await store.objects(.pods, namespace: "default")[0]
            #expect(pod[path: ["status", "conditions"]]?[0]?["status"] == "False")
        }
    }

    /// As the Deployment controller counts them: new pods are available minReadySeconds after they are ready (Fledge
    /// waits for a canary's available pods, and takes over stable's minReadySeconds for it).
    @Test func newPodsBecomeAvailableMinReadySecondsAfterTheyAreReady() async throws {
        let clock = ManualSandboxClock()
        try await withSandbox(.init(clock: clock, rolloutDelay: .seconds(2))) { h in
            let store = h.server.store
            var slow = deploymentJSON
            slow[path: ["spec", "minReadySeconds"]] = 30
            try await store.apply([slow])
            clock.advance(by: .seconds(3))
            await store.advanceDeployments()
            var deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "readyReplicas"]] == 3)
            #expect(deployment[path: ["status", "availableReplicas"]] == 0)
            #expect(deployment[path: ["status", "unavailableReplicas"]] == 3)
            clock.advance(by: .seconds(30))
            await store.advanceDeployments()
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "availableReplicas"]] == 3)
            // Scaling down keeps the pods there available.
            _ = try await h.raw(.patch, "/apis/apps/v1/namespaces/default/deployments/product-service", body: #"{"spec":{"replicas":2}}"#, contentType: "application/merge-patch+json")
            clock.advance(by: .seconds(3))
            await store.advanceDeployments()
            deployment = await store.object(.deployments, namespace: "default", name: "product-service")!
            #expect(deployment[path: ["status", "availableReplicas"]] == 2)
        }
    }

    @Test func runningServiceSettlesDeploymentsByItself() async throws {
        try await withSandbox(.init(tickInterval: .milliseconds(10))) { h in
            _ = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: deploymentJSON)
            let lines = try await h.watch("/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion=4")
            var ready = false
            for try await line in lines {
                let event = try JSONValue(parsing: line)
                if event[path: ["object", "status", "readyReplicas"]] == 3 { ready = true; break }
            }
            #expect(ready)
        }
    }
}

@Suite struct SandboxSecurityTests {
    static let rbacYAML = """
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: vs-reader, namespace: shop}
        rules:
        - apiGroups: [networking.istio.io]
          resources: [virtualservices]
          verbs: [get, list, watch]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: vs-reader, namespace: shop}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: vs-reader}
        subjects:
        - {kind: ServiceAccount, name: fledge, namespace: fledge-system}
        """

    @Test func tokensAndRBAC() async throws {
        let configuration = SandboxServer.Configuration(
            tokens: ["admin-token": .admin(), "fledge-token": .serviceAccount(namespace: "fledge-system", name: "fledge")],
            rbac: true)
        try await withSandbox(configuration, token: "admin-token") { h in
            try await h.server.store.apply(try yaml(SandboxSecurityTests.rbacYAML), defaultNamespace: "shop")
            let anonymous = try await h.client.send(HTTPRequest(url: h.url + "/api/v1/namespaces"))
            #expect(anonymous.status == 401)
            let wrong = try await h.request(.get, "/api/v1/namespaces", token: "nope")
            #expect(wrong.status == 401)
            #expect(wrong.json["reason"] == "Unauthorized")

            let allowed = try await h.request(.get, "/apis/networking.istio.io/v1/namespaces/shop/virtualservices", token: "fledge-token")
            #expect(allowed.status == 200)
            let denied = try await h.raw(.patch, "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/x", body: "{}", contentType: "application/merge-patch+json")
            #expect(denied.status == 404)  // the admin may; the object is missing
            let forbidden = try await h.request(.delete, "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/x", token: "fledge-token")
            #expect(forbidden.status == 403)
            #expect(forbidden.json["reason"] == "Forbidden")
            #expect(forbidden.json["message"] == "virtualservices.networking.istio.io \"x\" is forbidden: User \"system:serviceaccount:fledge-system:fledge\" cannot delete resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"shop\"")
            let otherNamespace = try await h.request(.get, "/apis/networking.istio.io/v1/namespaces/default/virtualservices", token: "fledge-token")
            #expect(otherNamespace.status == 403)
            let clusterWide = try await h.request(.get, "/api/v1/namespaces", token: "fledge-token")
            #expect(clusterWide.json["message"]?.stringValue?.hasSuffix("at the cluster scope") == true)
            // Discovery stays open to authenticated users.
            let discovery = try await h.request(.get, "/apis", token: "fledge-token")
            #expect(discovery.status == 200)
        }
    }

    /// A SelfSubjectAccessReview that cannot be read is refused, saying what is wrong: protobuf that is truncated or
    /// lacks the k8s envelope (400), a review asking about nothing (422), any method but POST (405).
    @Test func malformedAccessReviewsAreRefusedClearly() async throws {
        try await withSandbox { h in
            let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            func post(_ body: [UInt8], _ contentType: String) async throws -> (Int, String) {
                let response = try await h.client.send(HTTPRequest(
                    method: .post, url: h.url + path, headers: ["Accept": "application/json", "Content-Type": contentType], body: body))
                return (response.status, String(decoding: response.body, as: UTF8.self))
            }
            let protobuf = "application/vnd.kubernetes.protobuf"
            var (status, text) = try await post([0x6B, 0x38, 0x73, 0x00, 0x12, 0x50, 0x0A], protobuf)
            #expect(status == 400 && text.contains("the protobuf body of the request is malformed: field 2 is longer than the body"), "\(text)")
            (status, text) = try await post(Array("{}".utf8), protobuf)
            #expect(status == 400 && text.contains("does not start with the k8s protobuf prefix"), "\(text)")
            (status, text) = try await post(Array(#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{}}"#.utf8), "application/json")
            #expect(status == 422 && text.contains("exactly one of nonResourceAttributes or resourceAttributes must be specified"), "\(text)")
            (status, text) = try await post(Array(#"{"kind":"ConfigMap"}"#.utf8), "application/json")
            #expect(status == 400 && text.contains("does not match the kind of the resource (SelfSubjectAccessReview)"), "\(text)")
            let get = try await h.request(.get, path)
            #expect(get.status == 405)
            // Without RBAC every request is allowed, and the review says so.
            (status, text) = try await post(
                Array(#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"verb":"delete","resource":"pods"}}}"#.utf8),
                "application/json")
            #expect(status == 201)
            #expect(try JSONValue(parsing: Array(text.utf8))["status"] == ["allowed": true], "\(text)")
        }
    }

    @Test func faultsAreInjectedDeterministically() async throws {
        try await withSandbox(.init(faults: SandboxFaults(conflictRate: 1))) { h in
            let write = try await h.request(.post, "/api/v1/namespaces/default/configmaps", body: ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "a"]])
            #expect(write.status == 409)
            let read = try await h.request(.get, "/api/v1/namespaces/default/configmaps")
            #expect(read.status == 200)
            await h.server.store.setFaults(SandboxFaults(serverErrorRate: 0.5, seed: 42))
            var first: [Int] = []
            for _ in 0..<20 { first.append(try await h.request(.get, "/api/v1/namespaces").status) }
            await h.server.store.setFaults(SandboxFaults(serverErrorRate: 0.5, seed: 42))
            var second: [Int] = []
            for _ in 0..<20 { second.append(try await h.request(.get, "/api/v1/namespaces").status) }
            #expect(first == second)
            #expect(first.contains(500) && first.contains(200))
            let discovery = try await h.request(.get, "/api")
            #expect(discovery.status == 200)
        }
    }

    @Test func servesHTTPSWithGeneratedCertificates() async throws {
        let certificates = try SandboxCertificates.generate()
        try await withSandbox(.init(tls: certificates, tokens: ["t": .admin()]), token: "t", caPEM: certificates.certificateAuthorityPEM) { h in
            #expect(h.url.hasPrefix("https://127.0.0.1:"))
            let response = try await h.request(.get, "/api/v1/namespaces/default")
            #expect(response.status == 200)
            #expect(response.json[path: ["metadata", "name"]] == "default")
        }
    }
}

@Suite struct ManifestLoaderTests {
    @Test func readsSeedManifestsKeepingOrderAndTypes() throws {
        let objects = try yaml(seedIstioYAML)
        #expect(objects.count == 2)
        #expect(objects[0][path: ["spec", "http"]]?[0]?[path: ["match"]]?[0]?[path: ["headers", "x-canary", "exact"]] == "true")
        #expect(objects[0][path: ["spec", "http"]]?[1]?[path: ["route"]]?[0]?["weight"] == 90)
        #expect(objects[1][path: ["spec", "trafficPolicy", "outlierDetection", "interval"]] == "30s")
        #expect(Array(objects[0].objectValue!.keys) == ["apiVersion", "kind", "metadata", "spec"])
    }

    @Test func badManifestsNameTheProblem() {
        #expect(throws: SandboxError.self) { try ManifestLoader.parseYAML("kind: Foo\n", source: "x.yaml") }
        do {
            _ = try ManifestLoader.parseYAML("apiVersion: v1\nkind: [\n", source: "broken.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.hasPrefix("broken.yaml: invalid YAML"))
        }
        do {
            _ = try ManifestLoader.load(paths: ["/nonexistent/file.yaml"])
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "/nonexistent/file.yaml: no such file or directory")
        }
    }

    /// What `fledge sandbox --load` does: CRDs first, then the rest; an object refused names its file, and its
    /// document when the file has several.
    @Test func loadErrorsNameTheFileAndTheDocument() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-load-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let crds = root.appendingPathComponent("deploy/crds").path
        func write(_ name: String, _ text: String) throws -> String {
            let path = folder.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let bad = try write("bad.yaml", namespaceAndInvalidRolloutManifest)
        // The Rollout comes before its CRD in the order given: CRDs are created first all the same.
        var manifests = try ManifestLoader.loadManifests(paths: [bad, crds])
        #expect(manifests.map(\.location) == [bad + " (document 1)", bad + " (document 2)", crds + "/rollouts.fledge.dev.yaml"])
        try await withSandbox { h in
            do {
                try await h.server.store.load(manifests)
                Issue.record("expected the invalid Rollout to be refused")
            } catch {
                #expect("\(error)" == #"\#(bad) (document 2): Rollout.fledge.dev "bad" is invalid: spec.stages[0].hold: Invalid value: "-5s": spec.stages[0].hold in body should match '^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$'"#)
            }
        }
        let unknown = try write("unknown.yaml", "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g}\n")
        manifests = try ManifestLoader.loadManifests(paths: [unknown])
        try await withSandbox { h in
            do {
                try await h.server.store.load(manifests)
                Issue.record("expected the unknown kind to be refused")
            } catch {
                #expect(
                    "\(error)"
                        == #"\#(unknown): Gizmo "g": no resource is served for kind "Gizmo" in "example.com/v1": no CustomResourceDefinition defines it; load its CRD too, or leave this file out"#
                )
            }
        }
        let kindless = try write("kindless.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n")
        do {
            _ = try ManifestLoader.loadManifests(paths: [kindless])
            Issue.record("expected the document without a kind to be refused")
        } catch {
            #expect(error.description == "\(kindless): document 2 has no kind")
        }
    }

    /// `--load deploy/`: in a folder, a Grafana dashboard and kustomization.yaml are not manifests and are skipped
    /// with a note, as `fledge lint` skips them; named on their own they are still errors, and a manifest missing
    /// its kind in a folder is still one.
    @Test func foldersSkipFilesThatAreNotManifests() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-load-skip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("grafana"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        func write(_ name: String, _ text: String) throws -> String {
            let path = folder.appendingPathComponent(name).path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let dashboard = try write("grafana/dashboard.json", #"{"title": "Fledge", "panels": [{"type": "timeseries"}]}"#)
        let kustomization = try write("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [namespace.yaml]\n")
        let namespace = try write("namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: fledge-system}\n")
        var skipped: [ManifestLoader.Skipped] = []
        let manifests = try ManifestLoader.loadManifests(paths: [folder.path], skipped: &skipped)
        #expect(manifests.map(\.source) == [namespace])
        #expect(skipped == [
            ManifestLoader.Skipped(file: dashboard, reason: "no apiVersion or kind, not a Kubernetes manifest"),
            ManifestLoader.Skipped(file: kustomization, reason: "kustomize's configuration, not a Kubernetes object"),
        ])
        #expect(skipped.first?.description == "skipped \(dashboard): no apiVersion or kind, not a Kubernetes manifest")
        // Named on its own: the dashboard is refused as it was; kustomization.yaml is read as the object it claims
        // to be, which the API server then refuses (no such kind), as a real one would.
        var none: [ManifestLoader.Skipped] = []
        #expect(throws: SandboxError.self) { try ManifestLoader.loadManifests(paths: [dashboard], skipped: &none) }
        #expect(try ManifestLoader.loadManifests(paths: [kustomization], skipped: &none).map(\.source) == [kustomization])
        #expect(none.isEmpty)
        _ = try write("broken.yaml", "apiVersion: v1\nmetadata: {name: b}\n")
        #expect(throws: SandboxError.self) { try ManifestLoader.loadManifests(paths: [folder.path], skipped: &skipped) }
    }

    /// `fledge sandbox --load` and the demo read manifests with the same refusal as lint: aliases never expand.
    @Test(.timeLimit(.minutes(1))) func yamlAliasesAreRefusedBeforeTheyExpand() {
        // One level first: were aliases expanded, eight would not end.
        for levels in [1, 8] {
            do {
                _ = try ManifestLoader.parseYAML(yamlBomb(levels: levels), source: "laughs.yaml")
                Issue.record("an alias was accepted")
                return
            } catch {
                #expect(error.description.hasPrefix("laughs.yaml: line 6: YAML alias '*l0' is not supported"), "\(error)")
            }
        }
    }

    @Test func labelSelectorParsing() throws {
        let selector = try LabelSelector(parsing: "a=b, c!=d,e in (f, g),h notin (i),j,!k")
        #expect(selector.requirements == [
            .equals("a", "b"), .notEquals("c", "d"), .isIn("e", ["f", "g"]), .notIn("h", ["i"]), .exists("j"), .doesNotExist("k"),
        ])
        #expect(selector.matches(["a": "b", "e": "g", "j": ""]))
        #expect(!selector.matches(["a": "b", "e": "g", "j": "", "k": "1"]))
        #expect(throws: SandboxError.self) { try LabelSelector(parsing: "a in b") }
        #expect(throws: SandboxError.self) { try LabelSelector(parsing: "a=b c") }
    }
}
