import FledgeCore
import FledgeLint
import Foundation
import TestSupport
import Testing

/// The repository's `rollouts/product-service/` folder.
let seedFolder: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.appendingPathComponent("rollouts/product-service").path
}()

/// The seed manifests as in-memory sources, so broken variants can be made by editing text.
func seedSources() throws -> [(file: String, text: String)] {
    try FileManager.default.contentsOfDirectory(atPath: seedFolder).filter { $0.hasSuffix(".yaml") }.sorted().map { name in
        (name, try String(contentsOfFile: seedFolder + "/" + name, encoding: .utf8))
    }
}

/// The seed with one text replacement in one file.
func variant(_ file: String, _ old: String, _ new: String) throws -> [(file: String, text: String)] {
    var found = false
    let sources = try seedSources().map { source -> (file: String, text: String) in
        guard source.file == file else { return source }
        #expect(source.text.contains(old), "fixture edit: '\(old)' not in \(file)")
        found = true
        return (source.file, source.text.replacingOccurrences(of: old, with: new))
    }
    #expect(found)
    return sources
}

func errors(_ report: LintReport) -> [Finding] { report.findings.filter { $0.severity == .error } }

@Suite("fledge lint")
struct LintTests {
    @Test func seedFolderHasNoErrorsAndWarnsAboutTheNinetyTenSplit() {
        let report = Linter.lint(paths: [seedFolder])
        #expect(report.files.count == 6)
        #expect(errors(report) == [], "\(report.findings)")
        let warning = report.findings.first { $0.path == "spec.http[1].route[1]" }
        #expect(warning?.severity == .warning)
        #expect(warning?.object == "VirtualService shop/product-service")
        #expect(warning?.message.contains("10% of route http[1]'s traffic goes to subset 'canary'") == true)
        #expect(warning?.file.hasSuffix("virtualservice.yaml") == true)
        #expect(warning?.line == 25)
    }

    /// `kubectl get … -o yaml` writes a `kind: List`: its items are linted like documents, with their own lines.
    @Test func aListIsLintedItemByItem() throws {
        let seed = try seedSources().map(\.text).joined(separator: "\n---\n")
        let items = seed.components(separatedBy: "\n---\n").filter { $0.contains("kind:") }.map { doc in
            "- " + doc.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "\n  ")
        }
        let list = "apiVersion: v1\nkind: List\nitems:\n" + items.joined(separator: "\n") + "\n"
        let report = Linter.lint(sources: [("all.yaml", list)])
        #expect(errors(report) == [], "\(report.findings)")
        #expect(report.findings.contains { $0.object == "VirtualService shop/product-service" && $0.severity == .warning })
        // A broken item is found, on its own line.
        let broken = Linter.lint(sources: [("all.yaml", list.replacingOccurrences(of: "version: v2", with: "verison: v2"))])
        let finding = errors(broken).first { $0.path?.contains("verison") == true }
        #expect(finding != nil, "\(broken.findings)")
        #expect(finding.flatMap(\.line).map { list.split(separator: "\n", omittingEmptySubsequences: false)[$0 - 1].contains("v2") } == true)
    }

    /// `kind: rollout` passed lint with no finding at all (nothing checked it; the API server refuses the kind), and
    /// an Argo Rollouts Rollout beside Fledge's was linted as Fledge's (spec.target is required, spec.strategy is
    /// unknown …), failing a folder that holds both.
    @Test func kindsOfFledgesGroupAndArgoRollouts() throws {
        let lower = Linter.lint(sources: [("r.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: rollout\nmetadata: {name: web}\nspec: {target: {deployment: web}}\n")])
        #expect(
            errors(lower).map(\.message) == ["'rollout' is not a kind of fledge.dev: it serves only Rollout (kinds are case-sensitive)"],
            "\(lower.findings)")
        #expect(errors(lower).first?.line == 2)

        let argo = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: shop}\nspec:\n  strategy: {canary: {steps: [{setWeight: 20}]}}\n"
        let both = Linter.lint(sources: try seedSources() + [("argo.yaml", argo)])
        #expect(errors(both) == [], "\(both.findings)")
        let note = both.findings.first { $0.file == "argo.yaml" }
        #expect(note?.severity == .info && note?.message == "an Argo Rollouts Rollout (argoproj.io/v1alpha1), not Fledge's (fledge.dev/v1alpha1): not checked", "\(both.findings)")
        // Another group is still a Fledge Rollout with the wrong apiVersion (a typo of fledge.dev).
        let typo = Linter.lint(sources: [("r.yaml", argo.replacingOccurrences(of: "argoproj.io", with: "fledge.io"))])
        #expect(errors(typo).contains { $0.message == "'fledge.io/v1alpha1' is not fledge.dev/v1alpha1" }, "\(typo.findings)")
    }

    @Test func anEmptyFileNamedOnTheCommandLineIsAnError() {
        for text in ["", "# only a comment\n", "---\n---\n"] {
            let report = Linter.lint(sources: [("empty.yaml", text)])
            #expect(errors(report).map(\.message) == ["holds no Kubernetes object (the file is empty)"], "\(text): \(report.findings)")
        }
    }

    /// A custom metric's placeholders are checked by the scanner that fills them in: an unclosed or unknown one is
    /// an error naming the metric and the field; spaces inside the braces are fine.
    @Test func customMetricPlaceholders() throws {
        func findings(_ query: String) throws -> [Finding] {
            let metric = "    - name: latency-p99\n      max: 500\n    - name: errors\n      query: '\(query)'\n      max: 1\n"
            return errors(Linter.lint(sources: try variant("rollout.yaml", "    - name: latency-p99\n      max: 500\n", metric)))
        }
        #expect(try findings(#"sum(rate(x{namespace="{{ namespace }}",w="{{workload}}"}[{{ interval }}]))"#) == [])
        let unclosed = try findings(#"sum(rate(x{namespace="{{namespace}"}[1m]))"#)
        #expect(unclosed.map(\.path) == ["spec.analysis.metrics[2].query"], "\(unclosed)")
        #expect(unclosed.first?.message.hasPrefix("metric 'errors': '{{namespace}\"}[1m]))' opens a placeholder that is never closed") == true, "\(unclosed)")
        let unknown = try findings(#"sum(rate(x{namespace="{{ ns }}"}[1m]))"#)
        #expect(unknown.map(\.message) == ["metric 'errors': unknown placeholder {{ns}}; use {{namespace}}, {{workload}} or {{interval}}"], "\(unknown)")
    }

    /// Decoding stops at an entry that is not a string; the empty and repeated entries before it are reported too.
    @Test func everyBadRouteEntryIsReported() throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "    canarySubset: canary\n", "    canarySubset: canary\n    routes: [\"\", \"\", 3]\n"))
        let paths = Set(errors(report).map(\.path))
        #expect(paths == ["spec.traffic.routes[0]", "spec.traffic.routes[1]", "spec.traffic.routes[2]"], "\(report.findings)")
        #expect(errors(report).contains { $0.path == "spec.traffic.routes[1]" && $0.message == "'' is listed twice" }, "\(report.findings)")
    }

    /// /dev/null (or any device or pipe) is read as a stream: empty, not unreadable.
    @Test func devNullIsEmptyNotUnreadable() {
        let report = Linter.lint(paths: ["/dev/null"])
        #expect(errors(report).map(\.message) == ["holds no Kubernetes object (the file is empty)"], "\(report.findings)")
    }

    @Test func twoRolloutsOnOneDeploymentAreAnError() throws {
        var sources = try seedSources()
        let rollout = try #require(sources.first { $0.file == "rollout.yaml" })
        sources.append(("rollout-2.yaml", rollout.text.replacingOccurrences(of: "name: product-service\n", with: "name: product-service-2\n")))
        let report = Linter.lint(sources: sources)
        let shared = errors(report).filter { $0.path == "spec.target.deployment" }
        #expect(shared.count == 1, "\(report.findings)")
        #expect(shared.first?.file == "rollout.yaml" || shared.first?.file == "rollout-2.yaml")
        #expect(shared.first?.message.contains("Deployment product-service is also the target of Rollout") == true, "\(shared)")
        // In another namespace it is another Deployment.
        sources[sources.count - 1].text = sources[sources.count - 1].text.replacingOccurrences(of: "namespace: shop", with: "namespace: other")
        #expect(!errors(Linter.lint(sources: sources)).contains { $0.path == "spec.target.deployment" })
    }

    @Test func stableSubsetLabelTypoPointsAtTheLabel() throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "version: v1", "verison: v1"))
        let e = errors(report)
        #expect(e.count >= 1)
        let finding = e.first { $0.path == "spec.subsets[0].labels.verison" }
        #expect(finding != nil, "\(e)")
        #expect(finding?.object == "DestinationRule shop/product-service")
        #expect(finding?.line == 20)
        #expect(finding?.message.contains("no label verison") == true)
        // The working canary subset is not blamed for the stable subset's typo.
        #expect(!e.contains { $0.path?.hasPrefix("spec.subsets[1]") == true }, "\(e)")
    }

    @Test func stableSubsetLabelValueTypo() throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "version: v1", "version: v11"))
        #expect(errors(report).contains { $0.path == "spec.subsets[0].labels.version" && $0.message.contains("version=v1") })
    }

    @Test func canarySubsetLabelKeyTypoPointsAtTheLabel() throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "version: v2", "verison: v2"))
        let finding = errors(report).first { $0.path == "spec.subsets[1].labels.verison" }
        #expect(finding != nil, "\(report.findings)")
        #expect(finding?.message.contains("did you mean 'version'") == true)
    }

    @Test func subsetNameTypoInARoute() throws {
        let report = Linter.lint(sources: try variant("virtualservice.yaml", "subset: stable", "subset: stabel"))
        let finding = errors(report).first { $0.path == "spec.http[1].route[0].destination.subset" }
        #expect(finding != nil, "\(report.findings)")
        #expect(finding?.message.contains("subset 'stabel' is not defined") == true)
        #expect(finding?.message.contains("did you mean 'stable'") == true)
    }

    @Test func subsetNameTypoInTheDestinationRule() throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "name: canary", "name: canery"))
        let e = errors(report)
        #expect(e.contains { $0.object == "Rollout shop/product-service" && $0.path == "spec.traffic.canarySubset" })
        #expect(e.contains { $0.path == "spec.http[0].route[0].destination.subset" })
    }

    @Test func weightsNotSummingTo100() throws {
        let report = Linter.lint(sources: try variant("virtualservice.yaml", "weight: 90", "weight: 80"))
        let finding = errors(report).first { $0.path == "spec.http[1].route" }
        #expect(finding?.message.contains("sum to 90, not 100") == true, "\(report.findings)")
        #expect(finding?.line == 20)
    }

    @Test func deadRoutesAfterACatchAll() throws {
        // Move the weighted route (no match) before the header route.
        let vs = """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: product-service
              namespace: shop
            spec:
              hosts:
              - product-service
              http:
              - route:
                - destination:
                    host: product-service
                    subset: stable
                  weight: 100
                - destination:
                    host: product-service
                    subset: canary
                  weight: 0
              - match:
                - headers:
                    x-canary:
                      exact: "true"
                route:
                - destination:
                    host: product-service
                    subset: canary
            """
        let sources = try seedSources().map { $0.file == "virtualservice.yaml" ? ($0.file, vs) : $0 }
        let report = Linter.lint(sources: sources)
        let finding = errors(report).first { $0.path == "spec.http[1]" }
        #expect(finding?.message.contains("unreachable") == true, "\(report.findings)")
        #expect(finding?.line == 19)
    }

    @Test func badStagesAndDurations() throws {
        var sources = try variant("rollout.yaml", "- {weight: 50, hold: 20s}", "- {weight: 20, hold: 2 minutes}")
        sources = sources.map { s in
            s.file == "rollout.yaml" ? (s.file, s.text.replacingOccurrences(of: "interval: 10s", with: "interval: 10")) : s
        }
        let report = Linter.lint(sources: sources)
        let e = errors(report)
        #expect(e.contains { $0.path == "spec.stages[2].weight" && $0.message == "20 is not above the previous stage's 25" }, "\(e)")
        #expect(e.contains { $0.path == "spec.stages[2].hold" && $0.message.contains("'2 minutes' is not a duration") })
        #expect(e.contains { $0.path == "spec.analysis.interval" && $0.message.contains("'10' has no unit") })
        #expect(e.first { $0.path == "spec.stages[2].weight" }?.line == 21)
    }

    /// Lint says the same limits as the docs: 235 for the target, 63 for the Rollout's name (a label value).
    @Test func nameLengths() throws {
        let longTarget = String(repeating: "a", count: 240)
        let target = errors(Linter.lint(sources: try variant("rollout.yaml", "    deployment: product-service", "    deployment: \(longTarget)")))
        #expect(target.contains { $0.path == "spec.target.deployment" && $0.message.hasPrefix("is 240 characters long; at most 235") }, "\(target)")
        #expect(!target.contains { $0.message.contains("253)") || $0.message.contains("246") }, "\(target)")
        let longName = String(repeating: "r", count: 64)
        let name = errors(Linter.lint(sources: try variant("rollout.yaml", "  name: product-service", "  name: \(longName)")))
        #expect(name.map { "\($0.path ?? "-"): \($0.message)" } == [
            "metadata.name: is 64 characters long; at most 63: the canary Deployment is labelled fledge.dev/rollout=<name>, and label values end at 63",
        ])
    }

    @Test func unknownFieldIsReported() throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "failureLimit: 3", "failureLimt: 3"))
        let finding = errors(report).first { $0.path == "spec.analysis.failureLimt" }
        #expect(finding?.message.contains("did you mean 'failureLimit'") == true, "\(report.findings)")
    }

    @Test func wrongTypeIsReportedWithItsPath() throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "failureLimit: 3", "failureLimit: three"))
        #expect(errors(report).contains { $0.path == "spec.analysis.failureLimit" && $0.message.contains("expected an integer") }, "\(report.findings)")
    }

    /// A number that does not fit the field is named by its path and value, not "spec: The given data was not
    /// valid JSON." at the spec's line.
    @Test(arguments: [
        ("- {weight: 50.5, hold: 20s}", "expected an integer, found 50.5"),
        ("- {weight: 99999999999999999999999, hold: 20s}", "1e+23 is too large for an integer"),
        ("- {weight: [10], hold: 20s}", "expected an integer, found a list"),
    ])
    func numberThatDoesNotFitIsReportedWithItsPath(stage: String, message: String) throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "- {weight: 10, hold: 20s}", stage))
        #expect(errors(report).map { "\($0.path ?? "-"): \($0.message)" } == ["spec.stages[0].weight: \(message)"], "\(report.findings)")
        #expect(errors(report).first?.line == 19)
    }

    /// One field of the wrong type hides neither the other wrong fields nor the spec's other problems.
    @Test func everyProblemOfTheSpecAtOnce() throws {
        var sources = try variant("rollout.yaml", "- {weight: 10, hold: 20s}", "- {weight: 50.5, hold: 20s}")
        sources = sources.map { s in
            guard s.file == "rollout.yaml" else { return s }
            return (s.file, s.text.replacingOccurrences(of: "failureLimit: 3", with: "failureLimit: three")
                .replacingOccurrences(of: "- {weight: 50, hold: 20s}", with: "- {weight: 50, hold: 20}")
                .replacingOccurrences(of: "    deployment: product-service", with: "    deployment: {name: product-service}"))
        }
        let found = errors(Linter.lint(sources: sources)).map { "\($0.path ?? "-"): \($0.message)" }
        #expect(found.contains("spec.stages[0].weight: expected an integer, found 50.5"), "\(found)")
        #expect(found.contains("spec.analysis.failureLimit: expected an integer, found \"three\""), "\(found)")
        #expect(found.contains("spec.target.deployment: expected a string, found an object"), "\(found)")
        #expect(found.contains { $0.hasPrefix("spec.stages[2].hold: '20' is not a duration") }, "\(found)")
        // A field that did not decode is not also "required".
        #expect(!found.contains { $0.contains("is required") }, "\(found)")
        #expect(found.count == 4, "\(found)")
    }

    @Test func brokenYAMLIsAFindingWithALine() throws {
        let report = Linter.lint(sources: try variant("virtualservice.yaml", "    retries:\n", "    retries: [\n"))
        let finding = errors(report).first { $0.file == "virtualservice.yaml" }
        #expect(finding?.line != nil)
        #expect(finding?.message.hasPrefix("invalid YAML") == true, "\(report.findings)")
        // The Rollout still finds nothing to cross-check against.
        #expect(report.findings.contains { $0.object == "Rollout shop/product-service" && $0.message.contains("VirtualService product-service is not among") })
    }

    @Test func tabIndentationIsBrokenYAML() {
        let report = Linter.lint(sources: [("x.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n\tname: x\n")])
        #expect(errors(report).first?.line == 4, "\(report.findings)")
    }

    /// An object the Rollout names but the files do not hold may be in the cluster already: a warning for each of
    /// the three, and lint passes.
    @Test func referencesMissingFromTheFilesAreWarnings() throws {
        let report = Linter.lint(sources: try seedSources().filter { $0.file == "rollout.yaml" })
        #expect(errors(report) == [], "\(report.findings)")
        let warned = report.findings.filter { $0.severity == .warning }.map { "\($0.path ?? "-"): \($0.message)" }
        #expect(warned == [
            "spec.target.deployment: Deployment product-service is not among the linted manifests; not checked (it may be in the cluster already)",
            "spec.traffic.virtualService: VirtualService product-service is not among the linted manifests; not checked (it may be in the cluster already)",
            "spec.traffic.destinationRule: DestinationRule product-service is not among the linted manifests; not checked (it may be in the cluster already)",
        ])
    }

    /// The same for what a VirtualService or DestinationRule refers to: each seed file linted alone has no errors.
    @Test func eachSeedFileAloneHasNoErrors() throws {
        for source in try seedSources() {
            let report = Linter.lint(sources: [source])
            #expect(errors(report) == [], "\(source.file): \(report.findings)")
        }
        let vs = Linter.lint(sources: try seedSources().filter { $0.file == "virtualservice.yaml" })
        #expect(vs.findings.contains { $0.severity == .warning && $0.path == "spec.http[1].route[0].destination.host" && $0.message.contains("no DestinationRule among the linted manifests") })
        let dr = Linter.lint(sources: try seedSources().filter { $0.file == "destinationrule.yaml" })
        #expect(dr.warnings == 2, "\(dr.findings)")
    }

    @Test func missingVirtualServiceAndDestinationRule() throws {
        let sources = try seedSources().filter { $0.file != "virtualservice.yaml" && $0.file != "destinationrule.yaml" }
        let report = Linter.lint(sources: sources)
        #expect(!report.hasErrors, "\(report.findings)")
        #expect(report.findings.contains { $0.severity == .warning && $0.path == "spec.traffic.virtualService" && $0.message.hasPrefix("VirtualService product-service is not among the linted manifests") })
        #expect(report.findings.contains { $0.severity == .warning && $0.path == "spec.traffic.destinationRule" })
    }

    @Test func missingDeployment() throws {
        let report = Linter.lint(sources: try seedSources().filter { $0.file != "deployment.yaml" })
        #expect(report.findings.contains { $0.severity == .warning && $0.path == "spec.target.deployment" }, "\(report.findings)")
    }

    /// This repository's deploy/: the kustomization.yaml and the Grafana dashboard are not manifests; skipped.
    @Test func folderFilesThatAreNotManifestsAreSkipped() {
        let deploy = URL(fileURLWithPath: seedFolder).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("deploy").path
        let report = Linter.lint(paths: [deploy])
        #expect(errors(report) == [], "\(report.findings)")
        let skipped = report.findings.filter { $0.severity == .info }
        #expect(skipped.map(\.file) == [deploy + "/grafana/fledge-dashboard.json", deploy + "/kustomization.yaml"], "\(report.findings)")
        #expect(skipped.allSatisfy { $0.message.hasPrefix("skipped: ") })
        #expect(skipped.last?.message.contains("Kustomization") == true)
        // Named on the command line, they must be manifests.
        let named = Linter.lint(paths: [deploy + "/kustomization.yaml", deploy + "/grafana/fledge-dashboard.json"])
        #expect(errors(named).count == 2, "\(named.findings)")
        #expect(named.infos == 0)
    }

    /// In a folder, a file with a manifest in it is linted whole: a document without apiVersion next to one with it
    /// is a mistake, not a file to skip.
    @Test func aBrokenManifestInAFolderIsNotSkipped() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-lint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\nkind: Service\nmetadata: {name: b}\n"
            .write(to: folder.appendingPathComponent("services.yaml"), atomically: true, encoding: .utf8)
        let report = Linter.lint(paths: [folder.path])
        #expect(errors(report).map(\.message) == ["document 2 has no apiVersion; not a Kubernetes object"], "\(report.findings)")
    }

    @Test func noManagedRoute() throws {
        let report = Linter.lint(sources: try variant("virtualservice.yaml", "        subset: stable\n      weight: 90", "        subset: canary\n      weight: 90"))
        #expect(errors(report).contains { $0.object == "Rollout shop/product-service" && $0.path == "spec.traffic" && $0.message.contains("no HTTP route") }, "\(report.findings)")
    }

    @Test func namedRouteThatDoesNotExist() throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "    canarySubset: canary\n", "    canarySubset: canary\n    routes: [primary]\n"))
        #expect(errors(report).contains { $0.path == "spec.traffic.routes" && $0.message.contains("no HTTP route named 'primary'") }, "\(report.findings)")
    }

    @Test func selectorThatWouldAdoptCanaryPods() throws {
        let report = Linter.lint(sources: try variant("deployment.yaml", "      app: product-service\n      version: v1\n  template", "      app: product-service\n  template"))
        #expect(errors(report).contains { $0.object == "Deployment shop/product-service" && $0.path == "spec.selector.matchLabels" }, "\(report.findings)")
    }

    /// `matchExpressions` narrow the selector: `version in (v1)` keeps the canary's pods (version=v2) out, so there
    /// is no overlap; `version notin (v3)` does not, and the finding shows the whole selector.
    @Test func selectorWithMatchExpressions() throws {
        let narrowed = Linter.lint(
            sources: try variant(
                "deployment.yaml", "      app: product-service\n      version: v1\n  template",
                "      app: product-service\n    matchExpressions:\n    - {key: version, operator: In, values: [v1]}\n  template"))
        #expect(errors(narrowed) == [], "\(narrowed.findings)")
        let open = Linter.lint(
            sources: try variant(
                "deployment.yaml", "      app: product-service\n      version: v1\n  template",
                "      app: product-service\n    matchExpressions:\n    - {key: version, operator: NotIn, values: [v3]}\n  template"))
        #expect(
            errors(open).map(\.message) == ["the selector (app=product-service, version notin (v3)) would also select the canary's pods; add version to it"],
            "\(open.findings)")
        #expect(errors(open).first?.path == "spec.selector")
    }

    /// Two different stable destinations in the managed route: the controller will not rewrite it, and lint says so.
    @Test func managedRouteWithTwoDifferentStableDestinations() throws {
        let report = Linter.lint(
            sources: try variant(
                "virtualservice.yaml", "        subset: stable\n      weight: 90",
                "        subset: stable\n        port: {number: 81}\n      weight: 80\n    - destination:\n        host: product-service\n        subset: stable\n      weight: 10"))
        #expect(
            errors(report).contains {
                $0.path == "spec.traffic" && $0.message.hasPrefix("route http[1] of VirtualService product-service has 2 different destinations for subset stable")
            }, "\(report.findings)")
    }

    /// A second VirtualService for the gateway that also splits between the subsets: its weights never move.
    @Test func aSecondVirtualServiceSplittingTheSameSubsetsIsAWarning() throws {
        let gateway = """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: product-service-public, namespace: shop}
            spec:
              hosts: [shop.example.com]
              gateways: [istio-system/public]
              http:
              - name: stable-only
                match: [{uri: {prefix: /v1}}]
                route:
                - destination: {host: product-service, subset: stable}
              - name: public
                route:
                - destination: {host: product-service.shop.svc.cluster.local, subset: stable}
                  weight: 100
                - destination: {host: product-service.shop.svc.cluster.local, subset: canary}
                  weight: 0
            """
        let report = Linter.lint(sources: try seedSources() + [("gateway.yaml", gateway)])
        let warnings = report.findings.filter { $0.object == "VirtualService shop/product-service-public" && $0.severity == .warning }
        #expect(
            warnings.map(\.message) == [
                "route public splits host product-service between subsets 'stable' and 'canary', but the Rollout for DestinationRule product-service shifts the weights of VirtualService product-service only: this route's weights never move"
            ], "\(report.findings)")
        #expect(warnings.first?.path == "spec.http[1].route")
        #expect(errors(report) == [], "\(report.findings)")
    }

    /// A DestinationRule for a wildcard host covers the routes' host, as Istio matches it; lint said the subsets were
    /// undefined while the controller (which takes the DestinationRule by name) went on.
    @Test(arguments: ["'*.shop.svc.cluster.local'", "'*'"])
    func aDestinationRuleForAWildcardHost(host: String) throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "  host: product-service\n", "  host: \(host)\n"))
        #expect(errors(report) == [], "\(report.findings)")
        // One for another namespace's services does not cover them.
        let other = Linter.lint(sources: try variant("destinationrule.yaml", "  host: product-service\n", "  host: '*.other.svc.cluster.local'\n"))
        #expect(errors(other).contains { $0.message.contains("has no DestinationRule among the linted manifests") }, "\(other.findings)")
    }

    @Test func subsetsThatSelectTheSameLabelsAsArgoRolloutsUsersWriteThem() throws {
        let report = Linter.lint(sources: try variant("destinationrule.yaml", "      version: v2", "      version: v1"))
        #expect(
            errors(report).contains {
                $0.message == "canary subset 'canary' selects the same labels as stable subset 'stable'" + identicalSubsetsHint
            }, "\(report.findings)")
    }

    @Test func weightOnASubsetNothingProvidesWithoutARolloutIsAnError() throws {
        let report = Linter.lint(sources: try seedSources().filter { $0.file != "rollout.yaml" })
        #expect(errors(report).contains { $0.path == "spec.http[1].route[1]" && $0.message.contains("no Deployment provides") }, "\(report.findings)")
    }

    @Test func multiDocumentFileLintsLikeTheFolder() throws {
        let joined = try seedSources().map(\.text).joined(separator: "\n---\n")
        let report = Linter.lint(sources: [("all.yaml", joined)])
        #expect(errors(report) == [], "\(report.findings)")
        #expect(report.warnings >= 1)
    }

    @Test func notAKubernetesObject() {
        let report = Linter.lint(sources: [("x.yaml", "- a\n- b\n"), ("y.yaml", "foo: bar\n")])
        #expect(errors(report).count == 2)
        #expect(errors(report).first?.message == "document 1 is an array, not a Kubernetes object", "\(report.findings)")
    }

    @Test func missingPath() {
        let report = Linter.lint(paths: ["/nonexistent/fledge"])
        #expect(errors(report).first?.message == "no such file or directory")
    }
}

@Suite("fledge lint: more broken variants")
struct MoreLintTests {
    @Test func hostTypo() throws {
        let report = Linter.lint(sources: try variant("virtualservice.yaml", "        host: product-service\n        subset: stable", "        host: product-servce\n        subset: stable"))
        let finding = errors(report).first { $0.path == "spec.http[1].route[0].destination.host" }
        #expect(finding?.message.contains("did you mean 'product-service'") == true, "\(report.findings)")
    }

    @Test func deploymentLabelTypo() throws {
        let report = Linter.lint(sources: try variant("deployment.yaml", "      labels:\n        app: product-service\n        version: v1", "      labels:\n        app: product-service\n        verison: v1"))
        let e = errors(report)
        #expect(e.contains { $0.object == "Deployment shop/product-service" && $0.path == "spec.selector.matchLabels.version" }, "\(e)")
        #expect(e.contains { $0.path == "spec.subsets[0].labels.version" })
    }

    /// Aliases are refused before Yams composes the document (and expands them): the bomb's 9⁹ values are never
    /// made, and the finding names the line and the alias.
    @Test(.timeLimit(.minutes(1))) func yamlAliasesAreRefusedBeforeTheyExpand() throws {
        let small = Linter.lint(sources: [("small.yaml", yamlBomb(levels: 1))])
        let finding = try #require(errors(small).first, "an alias was accepted: \(small.findings)")
        #expect(finding.file == "small.yaml" && finding.line == 6, "\(finding)")
        #expect(finding.message.hasPrefix("YAML alias '*l0' is not supported"), "\(finding)")
        #expect(errors(small).count == 1)
        let bomb = Linter.lint(sources: [("laughs.yaml", yamlBomb(levels: 8))])
        #expect(errors(bomb).map(\.line) == [6], "\(bomb.findings)")
        // An alias after other documents: the file is refused, at the alias's line.
        let later = Linter.lint(sources: [("later.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + yamlBomb(levels: 1))])
        #expect(errors(later).map(\.line) == [10], "\(later.findings)")
        // Anchors alone expand nothing and are fine.
        let anchored = Linter.lint(sources: [("anchor.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: &d {x: y}\n")])
        #expect(anchored.findings == [], "\(anchored.findings)")
    }

    @Test func duplicateKeyIsBrokenYAML() {
        let report = Linter.lint(sources: [("d.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n")])
        #expect(errors(report).first?.line == 4, "\(report.findings)")
        #expect(errors(report).first?.message.contains("key 'name' appears more than once") == true, "\(report.findings)")
    }

    /// libyaml puts an unexpected end of the stream on the line after the last: the finding names the last real line.
    @Test(arguments: [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n", 4),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"x\n", 4),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x", 4),
        ("a: [\n\n\n", 3),
    ])
    func aSyntaxErrorAtTheEndIsOnTheLastLine(text: String, line: Int) {
        let report = Linter.lint(sources: [("broken.yaml", text)])
        #expect(report.findings.count == 1 && report.findings.first?.line == line, "\(report.findings)")
    }

    /// By file, then line (a whole file's findings first), then severity (errors first).
    @Test func findingsAreSortedByFileLineAndSeverity() throws {
        var sources = try variant("virtualservice.yaml", "weight: 90", "weight: 80")
        sources.append(("a-empty.yaml", ""))
        sources.append(("z-broken.yaml", "a: [\n"))
        let report = Linter.lint(sources: sources)
        let keys = report.findings.map { ($0.file, $0.line ?? 0, [Severity.error: 0, .warning: 1, .info: 2][$0.severity]!) }
        #expect(report.findings.count >= 4, "\(report.findings)")
        #expect(zip(keys, keys.dropFirst()).allSatisfy { $0 <= $1 }, "\(report.findings)")
        #expect(report.findings.first?.file == "a-empty.yaml" && report.findings.last?.file == "z-broken.yaml")
        // The same through paths (files that cannot be read are findings too).
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-lint-sort-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (name, text) in sources { try text.write(to: folder.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        let fromPaths = Linter.lint(paths: [folder.path + "/z-missing.yaml", folder.path])
        let files = fromPaths.findings.map(\.file)
        #expect(files == files.sorted(), "\(fromPaths.findings)")
    }

    /// A duplicate key in rollout.yaml: that is the error. The VirtualService and DestinationRule checks that rest on
    /// no Rollout managing the canary subset become warnings that name the file, not errors of their own.
    @Test func aFileThatFailsToParseTurnsItsConsequencesIntoWarnings() throws {
        let report = Linter.lint(sources: try variant("rollout.yaml", "  name: product-service\n", "  name: product-service\n  name: product-service\n"))
        #expect(errors(report).count == 1, "\(report.findings)")
        #expect(errors(report).first?.file == "rollout.yaml" && errors(report).first?.message.contains("appears more than once") == true)
        let others = report.findings.filter { $0.file != "rollout.yaml" }
        #expect(others.count >= 2, "\(report.findings)")
        #expect(others.allSatisfy { $0.severity == .warning && $0.message.contains("not certain: rollout.yaml failed to parse") }, "\(others)")
        // Without the Rollout at all (not a broken file) the same is an error, as before.
        #expect(!errors(Linter.lint(sources: try seedSources().filter { $0.file != "rollout.yaml" })).isEmpty)
    }
}
