import FledgeCore
import FledgeJSON
import Testing

/// Golden revisions: these hashes must never change (docs/revision.md). A failure here means an upgrade would
/// redeploy every rollout.
@Suite("revision: canonical JSON and SHA-256")
struct RevisionTests {
    @Test func canonicalForm() throws {
        let value = try JSONValue(parsing: #"{"b": [1, 2.5, true, null], "a": {"z": null, "y": "q\"\\\n"}, "é": 1.0, "B": -3}"#)
        let text = String(decoding: canonicalJSON(value), as: UTF8.self)
        #expect(text == #"{"B":-3,"a":{"y":"q\"\\\u000a"},"b":[1,2.5,true,null],"é":1}"#)
    }

    @Test func keyOrderAndNullsDoNotMatter() throws {
        let a = try JSONValue(parsing: #"{"metadata":{"labels":{"app":"x","version":"v1"},"creationTimestamp":null},"spec":{"containers":[{"name":"app","image":"i:1"}]}}"#)
        let b = try JSONValue(parsing: #"{"spec":{"containers":[{"image":"i:1","name":"app"}]},"metadata":{"labels":{"version":"v1","app":"x"}}}"#)
        #expect(revision(of: a) == revision(of: b))
        let c = try JSONValue(parsing: #"{"spec":{"containers":[{"image":"i:2","name":"app"}]},"metadata":{"labels":{"version":"v1","app":"x"}}}"#)
        #expect(revision(of: a) != revision(of: c))
    }

    // Expected values computed independently: printf '%s' "$canonical" | sha256sum | cut -c1-16
    @Test func goldenEmptyObject() {
        #expect(revision(of: .object([:])) == "44136fa355b3678a")
    }

    @Test func goldenSeedTemplate() {
        // canonical: {"metadata":{"labels":{"app":"product-service","version":"v1"}},"spec":{"containers":[{"image":"registry.example/product-service:1.0.0","name":"app","ports":[{"containerPort":8080}]}]}}
        #expect(revision(of: podTemplate()) == "c4822706c308fd5f")
        #expect(revision(of: podTemplate(image: "registry.example/product-service:2.0.0")) == "34014f885fee0e10")
    }

    @Test func effectiveTemplateAppliesPatchImagesAndStableLabels() throws {
        let patch: JSONValue = ["metadata": ["labels": ["version": "v9", "track": "x"], "annotations": ["a": "b"]], "spec": ["terminationGracePeriodSeconds": 5]]
        let plan = CanaryPlan(templatePatch: patch, images: [ImageChange(container: "app", image: "i:2")], replicas: nil)
        let t = try effectiveTemplate(stable: podTemplate(), change: plan, keepingLabels: ["version"])
        #expect(t[path: ["metadata", "labels"]] == ["app": "product-service", "version": "v1", "track": "x"])
        #expect(t[path: ["spec", "containers"]]?[0]?["image"] == "i:2")
        #expect(t[path: ["spec", "terminationGracePeriodSeconds"]] == 5)
        // Idempotent: applying the change to its own result changes nothing (promotion keeps the revision).
        let again = try effectiveTemplate(stable: t, change: plan, keepingLabels: ["version"])
        #expect(revision(of: again) == revision(of: t))
        let canary = canaryTemplate(effective: t, stableLabels: ["version": "v1"], canaryLabels: ["version": "v2"])
        #expect(canary[path: ["metadata", "labels"]] == ["app": "product-service", "version": "v2", "track": "x"])
    }

    @Test func imageErrors() {
        var twoContainers = podTemplate()
        twoContainers[path: ["spec", "containers"]] = [["name": "app", "image": "a"], ["name": "proxy", "image": "p"]]
        #expect(throws: TemplateError.self) {
            try effectiveTemplate(stable: twoContainers, change: CanaryPlan(templatePatch: nil, images: [ImageChange(container: nil, image: "x")]), keepingLabels: [String]())
        }
        #expect {
            try effectiveTemplate(stable: podTemplate(), change: CanaryPlan(templatePatch: nil, images: [ImageChange(container: "web", image: "x")]), keepingLabels: [String]())
        } throws: { "\($0)".contains("container 'web' is not in the pod template (it has 'app')") }
    }

    /// `CONTAINER=IMAGE` may name an init container (a migration step released with the app), as `kubectl set image`
    /// allows; it used to be refused as not in the pod template.
    @Test func anInitContainersImage() throws {
        var template = podTemplate()
        template[path: ["spec", "initContainers"]] = [["name": "migrate", "image": "registry.example/migrate:1"]]
        let both = CanaryPlan(
            templatePatch: nil, images: [ImageChange(container: "app", image: "registry.example/app:2"), ImageChange(container: "migrate", image: "registry.example/migrate:2")])
        let t = try effectiveTemplate(stable: template, change: both, keepingLabels: ["version"])
        #expect(t[path: ["spec", "initContainers"]] == [["name": "migrate", "image": "registry.example/migrate:2"]])
        #expect(t[path: ["spec", "containers"]]?.arrayValue?.first?["image"] == "registry.example/app:2")
        // Without an init container change, the revision is what it was (the template is left as it is).
        let appOnly = CanaryPlan(templatePatch: nil, images: [ImageChange(container: "app", image: "registry.example/app:2")])
        var expected = template
        expected[path: ["spec", "containers"]] = [["name": "app", "image": "registry.example/app:2", "ports": [["containerPort": 8080]]]]
        #expect(try effectiveTemplate(stable: template, change: appOnly, keepingLabels: ["version"]) == expected)
        #expect {
            try effectiveTemplate(stable: template, change: CanaryPlan(templatePatch: nil, images: [ImageChange(container: "web", image: "x")]), keepingLabels: [String]())
        } throws: { "\($0)" == "spec.canary: container 'web' is not in the pod template (it has 'app'; init containers 'migrate')" }
    }

    @Test func mergePatchFollowsRFC7386() throws {
        let target = try JSONValue(parsing: #"{"a":"b","c":{"d":"e","f":"g"}}"#)
        let patch = try JSONValue(parsing: #"{"a":"z","c":{"f":null}}"#)
        #expect(mergePatch(target, patch) == (try JSONValue(parsing: #"{"a":"z","c":{"d":"e"}}"#)))
        #expect(mergePatch(["a": [1, 2]], ["a": [3]]) == ["a": [3]])
    }
}

@Suite("traffic: managed routes and weights")
struct TrafficTests {
    let traffic = TrafficPlan(virtualService: "product-service", routes: [], destinationRule: "product-service", stableSubset: "stable", canarySubset: "canary")

    @Test func seedRoutes() throws {
        let vs = seedVirtualService()
        let routes = try managedRoutes(of: vs, traffic: traffic).get()
        #expect(routes.map(\.id) == ["http[1]"])
        #expect(routes[0].canaryWeight(stableSubset: "stable", canarySubset: "canary") == 10)
        let written = settingWeights(of: vs, routes: routes, traffic: traffic, canaryWeight: 35)
        var expected = vs
        expected[path: ["spec", "http"]] = .array(
            vs[path: ["spec", "http"]]!.arrayValue!.enumerated().map { i, r in
                guard i == 1 else { return r }
                var r = r
                r["route"] = [
                    ["destination": ["host": "product-service", "subset": "stable"], "weight": 65],
                    ["destination": ["host": "product-service", "subset": "canary"], "weight": 35],
                ]
                return r
            })
        #expect(written == expected)
        // Key order and unknown fields survive byte for byte.
        #expect(written.serializedString().replacingOccurrences(of: "\"weight\":65", with: "\"weight\":90").replacingOccurrences(of: "\"weight\":35", with: "\"weight\":10") == vs.serializedString())
    }

    /// Two different stable destinations (another port) are not managed, which would drop one; taking weight off the
    /// canary still finds the route, and there the duplicate goes.
    @Test func stableOnlyRouteGetsACanaryDestinationAndDuplicatesGoOnlyOnTheWayBack() throws {
        let vs: JSONValue = [
            "spec": ["http": [["route": [
                ["destination": ["host": "a", "subset": "stable"], "weight": 60],
                ["destination": ["host": "a", "subset": "stable", "port": ["number": 81]], "weight": 40],
            ]]]]
        ]
        #expect { try managedRoutes(of: vs, traffic: traffic).get() } throws: { ($0 as? TrafficError)?.reason == .routeNotManageable }
        let routes = try managedRoutes(of: vs, traffic: traffic, allowingDuplicates: true).get()
        #expect(routes[0].canaryWeight(stableSubset: "stable", canarySubset: "canary") == nil)
        let written = settingWeights(of: vs, routes: routes, traffic: traffic, canaryWeight: 0)
        let after = httpRoutes(of: written)[0]
        #expect(after.destinations.map(\.subset) == ["stable", "canary"])
        #expect(after.canaryWeight(stableSubset: "stable", canarySubset: "canary") == 0)
    }

    @Test func namedRoutes() {
        var vs = seedVirtualService()
        vs[path: ["spec", "http"]] = [["name": "primary", "route": [["destination": ["host": "x", "subset": "other"]]]]]
        var named = traffic
        named.routes = ["primary"]
        #expect(throws: TrafficError.self) { try managedRoutes(of: vs, traffic: named).get() }
        named.routes = ["missing"]
        #expect { try managedRoutes(of: vs, traffic: named).get() } throws: { "\($0)".contains("no HTTP route named 'missing'") }
    }
}
