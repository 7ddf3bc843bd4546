import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

@Suite struct SandboxAPITests {
    @Test func discoveryListsResourcesWithShortNames() async throws {
        try await withSandbox() { h in
        let core = try await h.request(.get, "/api")
        #expect(core.json["versions"] == ["v1"])
        let groups = try await h.request(.get, "/apis")
        let names = groups.json["groups"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(names.contains("apps") && names.contains("networking.istio.io") && names.contains("coordination.k8s.io"))
        let apps = try await h.request(.get, "/apis/apps/v1")
        let deployments = apps.json["resources"]?.arrayValue?.first { $0["name"] == "deployments" }
        #expect(deployments?["shortNames"] == ["deploy"])
        #expect(deployments?["kind"] == "Deployment")
        #expect(deployments?["namespaced"] == true)
        #expect(apps.json["resources"]?.arrayValue?.contains { $0["name"] == "deployments/status" } == true)
        let istio = try await h.request(.get, "/apis/networking.istio.io/v1beta1")
        #expect(istio.json["resources"]?.arrayValue?.contains { $0["shortNames"] == ["vs"] } == true)
        let missing = try await h.request(.get, "/apis/nothing.example/v1")
        #expect(missing.status == 404)
        #expect(missing.json["kind"] == "Status")
        let openapi = try await h.request(.get, "/openapi/v3")
        #expect(openapi.json[path: ["paths", "apis/apps/v1", "serverRelativeURL"]]?.stringValue?.hasPrefix("/openapi/v3/apis/apps/v1?hash=") == true)
        }
    }

    @Test func createGetConflictNotFound() async throws {
        try await withSandbox() { h in
        let created = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: deploymentJSON)
        #expect(created.status == 201)
        #expect(created.json[path: ["metadata", "generation"]] == 1)
        #expect(created.json[path: ["metadata", "uid"]]?.stringValue?.isEmpty == false)
        #expect(created.json[path: ["metadata", "creationTimestamp"]]?.stringValue?.hasSuffix("Z") == true)
        #expect(created.json[path: ["metadata", "namespace"]] == "default")
        let again = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: deploymentJSON)
        #expect(again.status == 409)
        #expect(again.json["reason"] == "AlreadyExists")
        #expect(again.json["message"] == "deployments.apps \"product-service\" already exists")
        let missing = try await h.request(.get, "/apis/apps/v1/namespaces/default/deployments/nope")
        #expect(missing.status == 404)
        #expect(missing.json["reason"] == "NotFound")
        #expect(missing.json["message"] == "deployments.apps \"nope\" not found")
        #expect(missing.json[path: ["details", "group"]] == "apps")
        let noNamespace = try await h.request(.post, "/apis/apps/v1/namespaces/ghost/deployments", body: deploymentJSON)
        #expect(noNamespace.status == 404)
        #expect(noNamespace.json["message"] == "namespaces \"ghost\" not found")
        }
    }

    @Test func resourceVersionsGenerationAndStatusSubresource() async throws {
        try await withSandbox(.init(rolloutDelay: .seconds(3600))) { h in
        let path = "/apis/apps/v1/namespaces/default/deployments"
        let created = try await h.request(.post, path, body: deploymentJSON).json
        let rv1 = Int(created[path: ["metadata", "resourceVersion"]]!.stringValue!)!

        // A label change is not a spec change: generation stays.
        var relabelled = created
        relabelled[path: ["metadata", "labels", "team"]] = "shop"
        let updated = try await h.request(.put, "\(path)/product-service", body: relabelled)
        #expect(updated.status == 200)
        #expect(updated.json[path: ["metadata", "generation"]] == 1)
        let rv2 = Int(updated.json[path: ["metadata", "resourceVersion"]]!.stringValue!)!
        #expect(rv2 > rv1)

        // The stale object is refused.
        var stale = created
        stale[path: ["spec", "replicas"]] = 5
        let conflict = try await h.request(.put, "\(path)/product-service", body: stale)
        #expect(conflict.status == 409)
        #expect(conflict.json["reason"] == "Conflict")
        #expect(conflict.json["message"]?.stringValue?.contains("the object has been modified") == true)

        // A spec change bumps generation; status in the body is ignored on the main resource.
        var scaled = updated.json
        scaled[path: ["spec", "replicas"]] = 5
        scaled["status"] = ["replicas": 99]
        let afterScale = try await h.request(.put, "\(path)/product-service", body: scaled)
        #expect(afterScale.json[path: ["metadata", "generation"]] == 2)
        #expect(afterScale.json[path: ["status", "replicas"]] == nil)

        // Status writes change only status.
        var statusWrite = afterScale.json
        statusWrite["status"] = ["replicas": 7]
        statusWrite[path: ["spec", "replicas"]] = 1
        let afterStatus = try await h.request(.put, "\(path)/product-service/status", body: statusWrite)
        #expect(afterStatus.status == 200)
        #expect(afterStatus.json[path: ["status", "replicas"]] == 7)
        #expect(afterStatus.json[path: ["spec", "replicas"]] == 5)
        #expect(afterStatus.json[path: ["metadata", "generation"]] == 2)

        // A no-op write keeps the resourceVersion.
        let noop = try await h.request(.put, "\(path)/product-service", body: afterStatus.json)
        #expect(noop.json[path: ["metadata", "resourceVersion"]] == afterStatus.json[path: ["metadata", "resourceVersion"]])
        }
    }

    /// Like a real API server, the sandbox stores pod specs with their defaults, so a client reads back more than it
    /// wrote; what a client set itself is kept.
    @Test func podTemplatesAreStoredWithTheServersDefaults() async throws {
        try await withSandbox(.init(rolloutDelay: .seconds(3600))) { h in
            var deployment = deploymentJSON
            deployment[path: ["spec", "template", "spec", "containers"]] = [
                ["name": "app", "image": "registry.example/app:1.0", "ports": [["containerPort": 8080]],
                 "readinessProbe": ["httpGet": ["path": "/ready", "port": 8080], "periodSeconds": 5]],
                ["name": "latest", "image": "registry.example/tool"],
                ["name": "pinned", "image": "registry.example/tool@sha256:0123", "imagePullPolicy": "Never"],
            ]
            deployment[path: ["spec", "template", "spec", "volumes"]] = [["name": "config", "configMap": ["name": "app"]]]
            let created = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: deployment)
            #expect(created.status == 201, "\(created.json)")
            let spec = try #require(created.json[path: ["spec", "template", "spec"]])
            #expect(spec["restartPolicy"] == "Always" && spec["dnsPolicy"] == "ClusterFirst" && spec["terminationGracePeriodSeconds"] == 30)
            let containers = spec["containers"]?.arrayValue ?? []
            #expect(containers.map { $0["imagePullPolicy"] } == ["IfNotPresent", "Always", "Never"])
            #expect(containers[0]["terminationMessagePath"] == "/dev/termination-log")
            #expect(containers[0][path: ["ports"]]?.arrayValue?.first?["protocol"] == "TCP")
            #expect(containers[0][path: ["readinessProbe", "periodSeconds"]] == 5)
            #expect(containers[0][path: ["readinessProbe", "timeoutSeconds"]] == 1)
            #expect(containers[0][path: ["readinessProbe", "httpGet", "scheme"]] == "HTTP")
            #expect(spec["volumes"]?.arrayValue?.first?[path: ["configMap", "defaultMode"]] == 420)
        }
    }

    @Test func scaleSubresourceReadsAndWritesReplicasOnly() async throws {
        try await withSandbox(.init(rolloutDelay: .seconds(3600))) { h in
        let path = "/apis/apps/v1/namespaces/default/deployments"
        let created = try await h.request(.post, path, body: deploymentJSON).json
        let apps = try await h.request(.get, "/apis/apps/v1")
        let entry = apps.json["resources"]?.arrayValue?.first { $0["name"] == "deployments/scale" }
        #expect(entry?["group"] == "autoscaling" && entry?["version"] == "v1" && entry?["kind"] == "Scale")

        let scale = try await h.request(.get, "\(path)/product-service/scale")
        #expect(scale.status == 200)
        #expect(scale.json["kind"] == "Scale" && scale.json["apiVersion"] == "autoscaling/v1")
        #expect(scale.json[path: ["spec", "replicas"]] == 3)
        #expect(scale.json[path: ["status", "selector"]] == "app=product-service,version=v1")

        // PUT with the current resourceVersion: only spec.replicas changes, and generation follows.
        var desired = scale.json
        desired[path: ["spec", "replicas"]] = 6
        let put = try await h.request(.put, "\(path)/product-service/scale", body: desired)
        #expect(put.status == 200, "\(put.json)")
        #expect(put.json[path: ["spec", "replicas"]] == 6)
        let deployment = try await h.request(.get, "\(path)/product-service").json
        #expect(deployment[path: ["spec", "replicas"]] == 6)
        #expect(deployment[path: ["metadata", "generation"]] == 2)
        #expect(deployment[path: ["spec", "template"]] == created[path: ["spec", "template"]])

        // The same PUT again carries a stale resourceVersion.
        let stale = try await h.request(.put, "\(path)/product-service/scale", body: desired)
        #expect(stale.status == 409)
        #expect(stale.json["reason"] == "Conflict")

        // Patches of the Scale: merge (what kubectl scale sends) and JSON Patch.
        let merged = try await h.raw(.patch, "\(path)/product-service/scale", body: #"{"spec":{"replicas":2}}"#, contentType: "application/merge-patch+json")
        #expect(merged.status == 200 && merged.json[path: ["spec", "replicas"]] == 2)
        let jsonPatched = try await h.raw(
            .patch, "\(path)/product-service/scale", body: #"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":4}]"#,
            contentType: "application/json-patch+json")
        #expect(jsonPatched.json[path: ["spec", "replicas"]] == 4)

        // Bad input: negative and non-integer replicas, a failed test op, a type without scale, a method it does not take.
        let negative = try await h.raw(.patch, "\(path)/product-service/scale", body: #"{"spec":{"replicas":-1}}"#, contentType: "application/merge-patch+json")
        #expect(negative.status == 422)
        #expect(negative.json["message"]?.stringValue?.contains("spec.replicas") == true)
        let text = try await h.raw(.patch, "\(path)/product-service/scale", body: #"{"spec":{"replicas":"many"}}"#, contentType: "application/merge-patch+json")
        #expect(text.status == 422)
        let failedTest = try await h.raw(
            .patch, "\(path)/product-service/scale", body: #"[{"op":"test","path":"/spec/replicas","value":9}]"#, contentType: "application/json-patch+json")
        #expect(failedTest.status == 422)
        let noScale = try await h.request(.get, "/api/v1/namespaces/default/configmaps/anything/scale")
        #expect(noScale.status == 404)
        let delete = try await h.request(.delete, "\(path)/product-service/scale")
        #expect(delete.status == 405)
        let missing = try await h.request(.get, "\(path)/nope/scale")
        #expect(missing.status == 404)
        #expect(try await h.request(.get, "\(path)/product-service").json[path: ["spec", "replicas"]] == 4)
        }
    }

    @Test func serverSideApplyTracksManagersAndConflicts() async throws {
        try await withSandbox(.init(rolloutDelay: .seconds(3600))) { h in
        let path = "/apis/apps/v1/namespaces/default/deployments/product-service"
        let body = deploymentJSON.serializedString()
        let apply = "application/apply-patch+yaml"
        let missingManager = try await h.raw(.patch, path, body: body, contentType: apply)
        #expect(missingManager.status == 400)
        #expect(missingManager.json["message"]?.stringValue?.contains("fieldManager") == true)

        let created = try await h.raw(.patch, "\(path)?fieldManager=ci", body: body, contentType: apply)
        #expect(created.status == 201, "\(created.json)")
        #expect(created.json[path: ["metadata", "managedFields"]]?[0]?["manager"] == "ci")
        #expect(created.json[path: ["metadata", "managedFields"]]?[0]?[path: ["fieldsV1", "f:spec", "f:replicas"]] == [:])

        // Applying the same configuration again is a no-op.
        let again = try await h.raw(.patch, "\(path)?fieldManager=ci", body: body, contentType: apply)
        #expect(again.status == 200)
        #expect(again.json[path: ["metadata", "generation"]] == 1)

        // Another manager changing replicas conflicts, then forces; a container merges by name.
        let other = #"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"product-service"},"spec":{"replicas":9}}"#
        let conflict = try await h.raw(.patch, "\(path)?fieldManager=hpa", body: other, contentType: apply)
        #expect(conflict.status == 409)
        #expect(conflict.json["message"] == #"Apply failed with 1 conflict: conflict with "ci" using apps/v1: .spec.replicas"#)
        #expect(conflict.json[path: ["details", "causes"]]?[0]?["field"] == ".spec.replicas")
        let forced = try await h.raw(.patch, "\(path)?fieldManager=hpa&force=true", body: other, contentType: apply)
        #expect(forced.status == 200)
        #expect(forced.json[path: ["spec", "replicas"]] == 9)
        #expect(forced.json[path: ["spec", "template", "spec", "containers"]]?.arrayValue?.count == 1)
        let managers = forced.json[path: ["metadata", "managedFields"]]?.arrayValue ?? []
        #expect(managers.compactMap { $0["manager"]?.stringValue } == ["ci", "hpa"])
        #expect(managers[0][path: ["fieldsV1", "f:spec", "f:replicas"]] == nil)

        // ci drops a label it applied: it goes. Replicas, now hpa's, stay when ci stops applying them.
        var reduced = deploymentJSON
        reduced[path: ["metadata", "labels"]] = nil
        reduced[path: ["spec", "replicas"]] = nil
        let dropped = try await h.raw(.patch, "\(path)?fieldManager=ci", body: reduced.serializedString(), contentType: apply)
        #expect(dropped.status == 200, "\(dropped.json)")
        #expect(dropped.json[path: ["metadata", "labels", "app"]] == nil)
        #expect(dropped.json[path: ["spec", "replicas"]] == 9)

        // A plain update keeps managedFields it does not send.
        var update = dropped.json
        update[path: ["metadata", "managedFields"]] = nil
        update[path: ["metadata", "annotations"]] = ["note": "x"]
        let updated = try await h.request(.put, path, body: update)
        #expect(updated.json[path: ["metadata", "managedFields"]]?.arrayValue?.count == 2)

        let notAnObject = try await h.raw(.patch, "\(path)?fieldManager=ci", body: "[1]", contentType: apply)
        #expect(notAnObject.status == 400)
        }
    }

    /// As apps/v1 SetDefaults_Deployment and ValidateDeploymentStrategy: a strategy given in part gets the rest, a
    /// Recreate one none of a rolling update's, and a rolling update next to Recreate is refused.
    @Test func deploymentStrategiesAreDefaultedAndCheckedAsTheAPIServerDoes() async throws {
        try await withSandbox() { h in
        let path = "/apis/apps/v1/namespaces/default/deployments"
        var partial = deploymentJSON
        partial[path: ["spec", "strategy"]] = ["rollingUpdate": ["maxSurge": 0]]
        let created = try await h.request(.post, path, body: partial)
        #expect(created.status == 201)
        #expect(created.json[path: ["spec", "strategy"]] == ["rollingUpdate": ["maxSurge": 0, "maxUnavailable": "25%"], "type": "RollingUpdate"])
        var recreate = deploymentJSON
        recreate[path: ["metadata", "name"]] = "recreate"
        recreate[path: ["spec", "strategy"]] = ["type": "Recreate"]
        #expect(try await h.request(.post, path, body: recreate).json[path: ["spec", "strategy"]] == ["type": "Recreate"])
        let both = try await h.request(
            .patch, "\(path)/product-service", body: ["spec": ["strategy": ["type": "Recreate"]]], contentType: "application/merge-patch+json")
        #expect(both.status == 422)
        #expect(both.json["message"]?.stringValue?.contains("spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'") == true, "\(both.json)")
        }
    }

    @Test func invalidObjectsAnswer422WithFieldPaths() async throws {
        try await withSandbox() { h in
        var bad = deploymentJSON
        bad[path: ["spec", "template", "metadata", "labels"]] = ["app": "other"]
        let mismatch = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: bad)
        #expect(mismatch.status == 422)
        #expect(mismatch.json["reason"] == "Invalid")
        #expect(mismatch.json["message"]?.stringValue?.contains("spec.template.metadata.labels") == true)
        var badName = deploymentJSON
        badName[path: ["metadata", "name"]] = "Product_Service"
        let name = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: badName)
        #expect(name.status == 422)
        #expect(name.json[path: ["details", "causes"]]?[0]?["field"] == "metadata.name")
        let wrongKind = try await h.request(.post, "/api/v1/namespaces/default/configmaps", body: deploymentJSON)
        #expect(wrongKind.status == 400)
        let notJSON = try await h.raw(.post, "/api/v1/namespaces/default/configmaps", body: "{nope", contentType: "application/json")
        #expect(notJSON.status == 400)
        }
    }

    @Test func patchesMergeJSONStrategicAndUnsupported() async throws {
        try await withSandbox() { h in
        try await h.server.store.apply(try yaml(seedIstioYAML))
        let vs = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/product-service"
        // Merge patch replaces the list; everything else survives.
        let merged = try await h.raw(.patch, vs, body: #"{"metadata":{"labels":{"x":"y"}}}"#, contentType: "application/merge-patch+json")
        #expect(merged.status == 200)
        #expect(merged.json[path: ["spec", "http"]]?[1]?["retries"] == ["attempts": 3, "perTryTimeout": "2s"])
        #expect(merged.json[path: ["metadata", "labels", "x"]] == "y")
        // JSON patch with a test guard.
        let weights = #"""
            [{"op":"test","path":"/spec/http/1/route/0/weight","value":90},
             {"op":"replace","path":"/spec/http/1/route/0/weight","value":75},
             {"op":"replace","path":"/spec/http/1/route/1/weight","value":25}]
            """#
        let patched = try await h.raw(.patch, vs, body: weights, contentType: "application/json-patch+json")
        #expect(patched.status == 200)
        #expect(patched.json[path: ["spec", "http"]]?[1]?["route"]?[0]?["weight"] == 75)
        #expect(patched.json[path: ["spec", "http"]]?[1]?["timeout"] == "10s")
        // The same guarded patch again fails: 422, nothing changes.
        let failed = try await h.raw(.patch, vs, body: weights, contentType: "application/json-patch+json")
        #expect(failed.status == 422)
        #expect(failed.json["message"]?.stringValue?.contains("test failed") == true)
        let unchanged = try await h.request(.get, vs)
        #expect(unchanged.json[path: ["metadata", "resourceVersion"]] == patched.json[path: ["metadata", "resourceVersion"]])
        // Strategic merge is refused for custom resources, like the real server.
        let smp = try await h.raw(.patch, vs, body: "{}", contentType: "application/strategic-merge-patch+json")
        #expect(smp.status == 415)
        let unknown = try await h.raw(.patch, vs, body: "{}", contentType: "text/plain")
        #expect(unknown.status == 415)
        #expect(unknown.json["reason"] == "UnsupportedMediaType")
        // Strategic merge on a Deployment merges containers by name.
        _ = try await h.request(.post, "/apis/apps/v1/namespaces/default/deployments", body: deploymentJSON)
        let sidecar = #"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"envoy:1"},{"name":"app","image":"registry.example/product-service:2.0.0"}]}}}}"#
        let dep = try await h.raw(.patch, "/apis/apps/v1/namespaces/default/deployments/product-service", body: sidecar, contentType: "application/strategic-merge-patch+json")
        #expect(dep.status == 200)
        let containers = dep.json[path: ["spec", "template", "spec", "containers"]]?.arrayValue ?? []
        #expect(containers.count == 2)
        #expect(containers.first { $0["name"] == "app" }?["image"] == "registry.example/product-service:2.0.0")
        #expect(dep.json[path: ["metadata", "generation"]] == 2)
        // Patching a missing object is a 404; a malformed patch a 400.
        let missing = try await h.raw(.patch, vs + "x", body: "{}", contentType: "application/merge-patch+json")
        #expect(missing.status == 404)
        let malformed = try await h.raw(.patch, vs, body: "[{", contentType: "application/json-patch+json")
        #expect(malformed.status == 400)
        // A resourceVersion in a patch is a precondition.
        let stalePatch = try await h.raw(.patch, vs, body: #"{"metadata":{"resourceVersion":"1"},"spec":{"hosts":["x"]}}"#, contentType: "application/merge-patch+json")
        #expect(stalePatch.status == 409)
        }
    }

    @Test func labelSelectorsAndPagination() async throws {
        try await withSandbox() { h in
        for index in 0..<7 {
            let tier = ["web", "api", "db"][index % 3]
            var labels: JSONValue = ["tier": .string(tier), "n": .string(String(index))]
            if index % 2 == 0 { labels["even"] = "yes" }
            _ = try await h.request(
                .post, "/api/v1/namespaces/default/configmaps",
                body: ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string("cm-\(index)"), "labels": labels], "data": ["k": "v"]])
        }
        func names(_ selector: String) async throws -> [String] {
            let encoded = selector.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let list = try await h.request(.get, "/api/v1/namespaces/default/configmaps?labelSelector=\(encoded)")
            #expect(list.status == 200, "\(selector): \(list.json)")
            return list.json["items"]?.arrayValue?.compactMap { $0[path: ["metadata", "name"]]?.stringValue } ?? []
        }
        #expect(try await names("tier=web") == ["cm-0", "cm-3", "cm-6"])
        #expect(try await names("tier!=web,even") == ["cm-2", "cm-4"])
        #expect(try await names("tier in (api, db)") == ["cm-1", "cm-2", "cm-4", "cm-5"])
        #expect(try await names("tier notin (api,db)") == ["cm-0", "cm-3", "cm-6"])
        #expect(try await names("!even") == ["cm-1", "cm-3", "cm-5"])
        #expect(try await names("even,tier==db") == ["cm-2"])
        let bad = try await h.request(.get, "/api/v1/namespaces/default/configmaps?labelSelector=tier%20%3C%3E%20x")
        #expect(bad.status == 400)

        var seen: [String] = []
        var token: String? = nil
        var pages = 0
        repeat {
            let path = "/api/v1/namespaces/default/configmaps?limit=3" + (token.map { "&continue=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)" } ?? "")
            let page = try await h.request(.get, path)
            seen += page.json["items"]?.arrayValue?.compactMap { $0[path: ["metadata", "name"]]?.stringValue } ?? []
            token = page.json[path: ["metadata", "continue"]]?.stringValue
            #expect(page.json[path: ["metadata", "resourceVersion"]]?.stringValue != nil)
            pages += 1
        } while token != nil
        #expect(pages == 3)
        #expect(seen == (0..<7).map { "cm-\($0)" })
        let allNamespaces = try await h.request(.get, "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm-4")
        #expect(allNamespaces.json["items"]?.arrayValue?.count == 1)
        }
    }

    @Test func tableOutputForKubectlGet() async throws {
        try await withSandbox() { h in
        try await h.server.store.apply(try yaml(seedIstioYAML))
        let table = try await h.request(
            .get, "/apis/networking.istio.io/v1/namespaces/default/virtualservices",
            accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        #expect(table.json["kind"] == "Table")
        let columns = table.json["columnDefinitions"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(columns == ["Name", "Gateways", "Hosts", "Age"])
        #expect(table.json["rows"]?[0]?["cells"]?[0] == "product-service")
        #expect(table.json["rows"]?[0]?["cells"]?[2] == "[\"product-service\"]")
        #expect(table.json["rows"]?[0]?[path: ["object", "kind"]] == "PartialObjectMetadata")
        }
    }
}
