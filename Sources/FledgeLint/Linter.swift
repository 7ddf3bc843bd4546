import FledgeCore
import FledgeJSON
import Foundation

/// How bad a finding is. Any error makes `fledge lint` exit 1; warnings and infos (a file skipped because it is no
/// Kubernetes manifest) do not.
public enum Severity: String, Sendable, Codable, Comparable {
    case info, warning, error
    var rank: Int {
        switch self {
        case .info: return 0
        case .warning: return 1
        case .error: return 2
        }
    }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One problem found: where (file, line, object, field path), what, how bad.
public struct Finding: Sendable, Equatable, Codable, CustomStringConvertible {
    public var severity: Severity
    public var file: String
    public var line: Int?
    /// `Rollout shop/product-service`; nil for problems of a whole file.
    public var object: String?
    /// Field path inside the object, e.g. `spec.subsets[0].labels.version`.
    public var path: String?
    public var message: String

    public init(severity: Severity, file: String, line: Int?, object: String?, path: String?, message: String) {
        self.severity = severity
        self.file = file
        self.line = line
        self.object = object
        self.path = path
        self.message = message
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        let what = [object, path].compactMap { $0 }.joined(separator: " ")
        return "\(severity.rawValue): \(location): \(what.isEmpty ? "" : "\(what): ")\(message)"
    }
}

/// The result of linting a set of files.
public struct LintReport: Sendable, Equatable, Codable {
    public var files: [String]
    public var findings: [Finding]
    public var errors: Int { findings.filter { $0.severity == .error }.count }
    public var warnings: Int { findings.filter { $0.severity == .warning }.count }
    public var infos: Int { findings.filter { $0.severity == .info }.count }
    public var hasErrors: Bool { errors > 0 }
}

/// Lints Rollouts together with the Kubernetes and Istio manifests found with them.
public enum Linter {
    /// Reads files and folders (recursively: `*.yaml`, `*.yml`, `*.json`) and lints everything found together.
    /// A file found in a folder that holds no Kubernetes object (a kustomization.yaml, a Grafana dashboard) is
    /// skipped with an info finding; a file named in `paths` must be Kubernetes manifests.
    public static func lint(paths: [String]) -> LintReport {
        var sources: [Source] = []
        var findings: [Finding] = []
        let fm = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
                findings.append(Finding(severity: .error, file: path, line: nil, object: nil, path: nil, message: "no such file or directory"))
                continue
            }
            var files: [String] = []
            let inFolder = isDirectory.boolValue
            if isDirectory.boolValue {
                let base = URL(fileURLWithPath: path)
                if let walker = fm.enumerator(at: base, includingPropertiesForKeys: nil) {
                    for case let url as URL in walker where ["yaml", "yml", "json"].contains(url.pathExtension.lowercased()) {
                        files.append(path.hasSuffix("/") ? path + relative(url.path, to: base.path) : path + "/" + relative(url.path, to: base.path))
                    }
                }
                files.sort()
                if files.isEmpty {
                    findings.append(Finding(severity: .error, file: path, line: nil, object: nil, path: nil, message: "no YAML files in this folder"))
                }
            } else {
                files = [path]
            }
            for file in files {
                // A device or a pipe (/dev/null, /dev/stdin, <(…)) is read as a stream: FileManager gives nil for those.
                guard let data = fm.contents(atPath: file) ?? FileHandle(forReadingAtPath: file).flatMap({ try? $0.readToEnd() ?? Data() }) else {
                    findings.append(Finding(severity: .error, file: file, line: nil, object: nil, path: nil, message: "cannot be read"))
                    continue
                }
                guard let text = String(data: data, encoding: .utf8) else {
                    findings.append(Finding(severity: .error, file: file, line: nil, object: nil, path: nil, message: "is not UTF-8 text"))
                    continue
                }
                sources.append(Source(file: file, text: text, inFolder: inFolder))
            }
        }
        var report = lint(sources)
        report.findings = sorted(findings + report.findings)
        return report
    }

    /// Lints in-memory sources: (file name, YAML text), each as if named on the command line.
    public static func lint(sources: [(file: String, text: String)]) -> LintReport {
        lint(sources.map { Source(file: $0.file, text: $0.text, inFolder: false) })
    }

    /// A file's text, and whether it was found in a folder (rather than named): only those may be skipped.
    struct Source {
        var file: String
        var text: String
        var inFolder: Bool
    }

    /// kustomize's own files (`Kustomization`, `Component`): they sit next to manifests but are not applied.
    static func isKustomizeFile(_ doc: LintDocument) -> Bool {
        doc.apiVersion?.hasPrefix("kustomize.config.k8s.io/") == true
    }

    static func lint(_ sources: [Source]) -> LintReport {
        var documents: [LintDocument] = []
        var findings: [Finding] = []
        var unparsed: [String] = []
        for source in sources {
            let file = source.file
            let (docs, problem) = YAMLReader.documents(of: source.text, file: file)
            if let problem {
                // libyaml reports an unexpected end of the stream on the line after the last one: name the last.
                let line = problem.line.map { min($0, max(1, lastLine(of: source.text))) }
                findings.append(Finding(severity: .error, file: file, line: line, object: nil, path: nil, message: problem.message))
                unparsed.append(file)
            }
            // Named on the command line and empty (or only comments): nothing was checked, which is no pass.
            if !source.inFolder, problem == nil, docs.allSatisfy({ $0.json.isNull }) {
                findings.append(
                    Finding(severity: .error, file: file, line: nil, object: nil, path: nil, message: "holds no Kubernetes object (the file is empty)"))
                continue
            }
            // Found in a folder and nothing in it has an apiVersion or kind (a Grafana dashboard, a values file):
            // not a manifest, so not a mistake in one.
            if source.inFolder, problem == nil, !docs.contains(where: { $0.apiVersion != nil || $0.kind != nil }) {
                findings.append(
                    Finding(severity: .info, file: file, line: nil, object: nil, path: nil, message: "skipped: no apiVersion or kind, not a Kubernetes manifest"))
                continue
            }
            for doc in docs.flatMap({ $0.listItems ?? [$0] }) {
                if doc.json.isNull { continue }
                if Self.isKustomizeFile(doc) {
                    let what = "\(doc.kind ?? "?") (\(doc.apiVersion ?? "")) is kustomize's configuration, not a Kubernetes object"
                    findings.append(
                        source.inFolder
                            ? Finding(severity: .info, file: file, line: doc.line(of: ""), object: nil, path: nil, message: "skipped: \(what)")
                            : Finding(severity: .error, file: file, line: doc.line(of: ""), object: nil, path: nil, message: "document \(doc.index + 1): \(what)"))
                    continue
                }
                guard case .object = doc.json else {
                    findings.append(
                        Finding(severity: .error, file: file, line: doc.line(of: ""), object: nil, path: nil, message: "document \(doc.index + 1) is \(doc.json.typeNameWithArticle), not a Kubernetes object"))
                    continue
                }
                if doc.kind == nil || doc.apiVersion == nil || doc.name == nil {
                    let missing = [doc.apiVersion == nil ? "apiVersion" : nil, doc.kind == nil ? "kind" : nil, doc.name == nil ? "metadata.name" : nil].compactMap { $0 }
                    findings.append(
                        Finding(severity: .error, file: file, line: doc.line(of: ""), object: doc.kind.map { "\($0) \(doc.name ?? "?")" }, path: nil,
                            message: "document \(doc.index + 1) has no \(missing.joined(separator: ", ")); not a Kubernetes object"))
                    continue
                }
                documents.append(doc)
            }
        }
        var checker = Checker(documents: documents, unparsed: unparsed)
        checker.run()
        findings += checker.findings
        return LintReport(files: sources.map(\.file), findings: sorted(findings))
    }

    /// The number of the last line of `text` (a final newline ends that line, it does not start another).
    static func lastLine(of text: String) -> Int {
        var count = 1
        for byte in text.utf8 where byte == UInt8(ascii: "\n") { count += 1 }
        return text.utf8.last == UInt8(ascii: "\n") ? count - 1 : count
    }

    /// Findings by file, then line (a whole file's first), then severity (errors first); ties keep their order.
    static func sorted(_ findings: [Finding]) -> [Finding] {
        findings.enumerated().sorted { a, b in
            let (x, y) = (a.element, b.element)
            if x.file != y.file { return x.file < y.file }
            if x.line != y.line { return (x.line ?? 0) < (y.line ?? 0) }
            if x.severity != y.severity { return x.severity > y.severity }
            return a.offset < b.offset
        }.map(\.element)
    }

    static func relative(_ path: String, to base: String) -> String {
        let b = base.hasSuffix("/") ? base : base + "/"
        return path.hasPrefix(b) ? String(path.dropFirst(b.count)) : path
    }
}

/// The cross-object checks.
struct Checker {
    let documents: [LintDocument]
    /// Files with a YAML syntax error: objects in them are missing from the checks.
    let unparsed: [String]
    var findings: [Finding] = []

    init(documents: [LintDocument], unparsed: [String] = []) {
        self.documents = documents
        self.unparsed = unparsed
    }

    /// An error that rests on some object being absent from the files (no Rollout manages a subset, no Deployment
    /// provides its pods, no DestinationRule for a host). When a file failed to parse the object may be in it: then
    /// a warning that says so, not an error of its own.
    mutating func addAbsence(_ doc: LintDocument, _ path: String?, _ message: String) {
        if unparsed.isEmpty {
            add(.error, doc, path, message)
        } else {
            let which = unparsed.count == 1 ? "\(unparsed[0]) failed to parse, and an object in it" : "\(unparsed.joined(separator: ", ")) failed to parse, and an object in them"
            add(.warning, doc, path, "\(message) — not certain: \(which) may change this")
        }
    }

    func objects(_ kind: String) -> [LintDocument] {
        // Argo Rollouts' Rollout shares the kind: another controller's object, not checked as Fledge's.
        documents.filter { $0.kind == kind && !(kind == "Rollout" && Self.group(of: $0) == Self.argoGroup) }
    }

    static let argoGroup = "argoproj.io"

    /// The API group of an object's apiVersion ("" for the core group).
    static func group(of doc: LintDocument) -> String {
        let parts = (doc.apiVersion ?? "").split(separator: "/")
        return parts.count == 2 ? String(parts[0]) : ""
    }

    /// Same namespace, where a missing namespace matches any (it is given at apply time).
    func sameNamespace(_ a: LintDocument, _ b: LintDocument) -> Bool {
        a.namespace == nil || b.namespace == nil || a.namespace == b.namespace
    }

    func find(_ kind: String, named name: String, near doc: LintDocument) -> LintDocument? {
        objects(kind).first { $0.name == name && sameNamespace($0, doc) }
    }

    mutating func add(_ severity: Severity, _ doc: LintDocument, _ path: String?, _ message: String) {
        let f = Finding(severity: severity, file: doc.file, line: doc.line(of: path ?? ""), object: doc.objectDescription, path: path, message: message)
        if !findings.contains(f) { findings.append(f) }
    }

    func podLabels(_ deployment: LintDocument) -> [String: String] {
        ObservedDeployment(json: deployment.json).podLabels
    }

    /// Objects of Fledge's group other than a Rollout (`kind: rollout`, a typo: kinds are case-sensitive) would
    /// be refused by the API server and are otherwise checked by nothing; Argo Rollouts' Rollouts are said to be
    /// left alone, so a folder holding both lints.
    mutating func checkKinds() {
        for doc in documents {
            let group = Self.group(of: doc)
            if group == Rollout.apiVersion.split(separator: "/").first.map(String.init), doc.kind != "Rollout" {
                add(.error, doc, "kind", "'\(doc.kind ?? "")' is not a kind of \(group): it serves only Rollout (kinds are case-sensitive)")
            } else if group == Self.argoGroup, doc.kind == "Rollout" {
                add(.info, doc, nil, "an Argo Rollouts Rollout (\(doc.apiVersion ?? "")), not Fledge's (\(Rollout.apiVersion)): not checked")
            }
        }
    }

    mutating func run() {
        checkKinds()
        var rolloutSubsets: [(dr: String, namespace: String?, stable: String, canary: String, vs: String, routes: [String])] = []
        for doc in objects("Rollout") {
            _ = checkRollout(doc)
            // Even an invalid Rollout says which objects it manages; use that so the other checks know.
            let target = doc.json[path: ["spec", "target", "deployment"]]?.stringValue ?? ""
            let traffic = doc.json[path: ["spec", "traffic"]]
            rolloutSubsets.append(
                (traffic?["destinationRule"]?.stringValue ?? target, doc.namespace, traffic?["stableSubset"]?.stringValue ?? Defaults.stableSubset,
                    traffic?["canarySubset"]?.stringValue ?? Defaults.canarySubset, traffic?["virtualService"]?.stringValue ?? target,
                    (traffic?["routes"]?.arrayValue ?? []).compactMap(\.stringValue)))
        }
        checkSharedTargets()
        for doc in objects("Deployment") { checkDeployment(doc) }
        for doc in objects("VirtualService") {
            let managing = rolloutSubsets.filter { $0.vs == doc.name && (doc.namespace == nil || $0.namespace == nil || $0.namespace == doc.namespace) }
            checkVirtualService(doc, canarySubsets: Set(managing.map(\.canary)))
        }
        for doc in objects("DestinationRule") {
            let managed = rolloutSubsets.filter { $0.dr == doc.name && (doc.namespace == nil || $0.namespace == nil || $0.namespace == doc.namespace) }
            checkDestinationRule(doc, rolloutSubsets: managed.map { ($0.stable, $0.canary) })
        }
        checkSplitsNoRolloutMoves(rolloutSubsets.map { ($0.dr, $0.namespace, $0.stable, $0.canary, $0.vs) })
    }

    /// A second VirtualService for the same host that also splits between a Rollout's subsets (one for the mesh, one
    /// bound to an ingress gateway, as Argo Rollouts users keep them): a Rollout shifts the weights of one
    /// VirtualService only, so this split never moves, and the canary never gets that traffic (or keeps it after a
    /// rollback).
    mutating func checkSplitsNoRolloutMoves(_ rollouts: [(dr: String, namespace: String?, stable: String, canary: String, vs: String)]) {
        func together(_ a: String?, _ b: String?) -> Bool { a == nil || b == nil || a == b }
        for doc in objects("VirtualService") {
            for rollout in rollouts where together(rollout.namespace, doc.namespace) && rollout.vs != doc.name {
                guard let dr = objects("DestinationRule").first(where: { $0.name == rollout.dr && together($0.namespace, rollout.namespace) }),
                    let host = dr.json[path: ["spec", "host"]]?.stringValue
                else { continue }
                // A Rollout that manages this VirtualService itself is not in the way.
                if rollouts.contains(where: { $0.vs == doc.name && together($0.namespace, doc.namespace) && $0.stable == rollout.stable && $0.canary == rollout.canary }) {
                    continue
                }
                for route in httpRoutes(of: doc.json) {
                    let subsets = Set(route.destinations.compactMap(\.subset))
                    guard subsets.contains(rollout.stable), subsets.contains(rollout.canary),
                        route.destinations.allSatisfy({ shortHost($0.host ?? "") == shortHost(host) })
                    else { continue }
                    add(.warning, doc, "spec.http[\(route.index)].route",
                        "route \(route.id) splits host \(host) between subsets '\(rollout.stable)' and '\(rollout.canary)', but the Rollout for DestinationRule \(rollout.dr) shifts the weights of VirtualService \(rollout.vs) only: this route's weights never move")
                }
            }
        }
    }

    // MARK: Rollout

    /// One Deployment, one Rollout: two would take turns scaling and routing the same canary (the controller lets
    /// the one that made it act and holds the other with TargetInUse).
    mutating func checkSharedTargets() {
        let rollouts = objects("Rollout")
        for (index, doc) in rollouts.enumerated() {
            guard let target = doc.json[path: ["spec", "target", "deployment"]]?.stringValue else { continue }
            let earlier = rollouts[..<index].first {
                sameNamespace($0, doc) && $0.json[path: ["spec", "target", "deployment"]]?.stringValue == target
            }
            guard let earlier else { continue }
            add(.error, doc, "spec.target.deployment",
                "Deployment \(target) is also the target of Rollout \(earlier.name ?? "?") (\(earlier.file)); one Deployment can have only one Rollout")
        }
    }

    mutating func checkRollout(_ doc: LintDocument) -> RolloutPlan? {
        if doc.apiVersion != Rollout.apiVersion {
            add(.error, doc, "apiVersion", "'\(doc.apiVersion ?? "")' is not \(Rollout.apiVersion)")
        }
        // The API server takes names up to 253 characters, but the canary Deployment carries the Rollout's name as a
        // label value, which ends at 63: a longer name could never create its canary.
        if let name = doc.name, name.utf8.count > 63 {
            add(.error, doc, "metadata.name",
                "is \(name.utf8.count) characters long; at most 63: the canary Deployment is labelled fledge.dev/rollout=<name>, and label values end at 63")
        }
        for issue in unknownFields(doc.json["spec"] ?? .null, schema: rolloutSchema, path: "spec") {
            add(.error, doc, issue.path, issue.message)
        }
        let rollout: Rollout
        do {
            rollout = try Rollout(json: doc.json)
        } catch {
            add(.error, doc, error.path, error.message)
            return nil
        }
        let plan: RolloutPlan
        switch rollout.plan() {
        case .failure(let errors):
            for issue in errors.issues { add(.error, doc, issue.path, issue.message) }
            // An entry of the wrong type makes the whole list read as absent; the problems of the entries that are
            // strings (empty, listed twice) are still worth reporting with it.
            if rollout.specFieldsReadAsAbsent.contains("spec.traffic.routes"),
                let routes = doc.json[path: ["spec", "traffic", "routes"]]?.arrayValue
            {
                let named = routes.enumerated().compactMap { entry in entry.element.stringValue.map { (index: entry.offset, name: $0) } }
                for issue in TrafficSpec.routeIssues(named) { add(.error, doc, issue.path, issue.message) }
            }
            return nil
        case .success(let p): plan = p
        }

        // An object the Rollout names that is not among the files may well be in the cluster already: a warning
        // that it was not checked, the same for all three.
        func notLinted(_ kind: String, _ name: String, _ path: String) {
            add(.warning, doc, path,
                "\(kind) \(name) is not among the linted manifests; not checked (it may be in the cluster already)")
        }
        let deployment = find("Deployment", named: plan.target, near: doc)
        if deployment == nil { notLinted("Deployment", plan.target, "spec.target.deployment") }
        let vs = find("VirtualService", named: plan.traffic.virtualService, near: doc)
        if vs == nil {
            notLinted("VirtualService", plan.traffic.virtualService,
                doc.json[path: ["spec", "traffic", "virtualService"]] == nil ? "spec.traffic" : "spec.traffic.virtualService")
        }
        let dr = find("DestinationRule", named: plan.traffic.destinationRule, near: doc)
        if dr == nil {
            notLinted("DestinationRule", plan.traffic.destinationRule,
                doc.json[path: ["spec", "traffic", "destinationRule"]] == nil ? "spec.traffic" : "spec.traffic.destinationRule")
        }
        let subsetList = dr.map { subsets(of: $0.json) } ?? []
        if let dr {
            for (field, name) in [("stableSubset", plan.traffic.stableSubset), ("canarySubset", plan.traffic.canarySubset)]
            where !subsetList.contains(where: { $0.name == name }) {
                add(.error, doc, doc.json[path: ["spec", "traffic", field]] == nil ? "spec.traffic" : "spec.traffic.\(field)",
                    "DestinationRule \(dr.name ?? "") has no subset '\(name)' (it has \(subsetList.map { "'\($0.name)'" }.joined(separator: ", ")))")
            }
        }
        if let vs {
            switch managedRoutes(of: vs.json, traffic: plan.traffic) {
            case .failure(let error):
                add(.error, doc, plan.traffic.routes.isEmpty ? "spec.traffic" : "spec.traffic.routes", error.message)
            case .success(let routes):
                for route in routes {
                    let subsetsUsed = Set(route.destinations.compactMap(\.subset))
                    if !subsetsUsed.contains(plan.traffic.canarySubset) {
                        add(.warning, vs, "spec.http[\(route.index)].route",
                            "managed route \(route.id) has no destination for subset \(plan.traffic.canarySubset); Fledge will add one")
                    }
                }
            }
        }
        // The stable subset must select the target's pods; the stable selector must not select canary pods.
        if let deployment, let dr, let stable = subsetList.first(where: { $0.name == plan.traffic.stableSubset }) {
            let labels = podLabels(deployment)
            if let miss = firstMismatch(stable.labels, labels) {
                let i = subsetList.firstIndex(of: stable)!
                add(.error, dr, "spec.subsets[\(i)].labels.\(miss.key)",
                    "subset '\(stable.name)' selects \(miss.key)=\(miss.wanted) but the pods of Deployment \(plan.target) have \(miss.actual.map { "\(miss.key)=\($0)" } ?? "no label \(miss.key)"); the stable subset would select no pods")
            }
            if let canary = subsetList.first(where: { $0.name == plan.traffic.canarySubset }) {
                let observed = ObservedDeployment(json: deployment.json)
                let canaryPods = canaryTemplate(effective: deployment.json[path: ["spec", "template"]] ?? .null, stableLabels: stable.labels, canaryLabels: canary.labels)
                var canaryLabels: [String: String] = [:]
                for (k, v) in canaryPods[path: ["metadata", "labels"]]?.objectValue ?? [:] { canaryLabels[k] = v.stringValue }
                if !observed.selectorKeys.isEmpty, observed.selects(canaryLabels), firstMismatch(stable.labels, labels) == nil {
                    add(.error, deployment, observed.selectorExpressions.isEmpty ? "spec.selector.matchLabels" : "spec.selector",
                        "the selector (\(observed.selectorText)) would also select the canary's pods; add \(stable.labels.keys.sorted().joined(separator: ", ")) to it")
                }
            }
        }
        return plan
    }

    // MARK: Deployment

    mutating func checkDeployment(_ doc: LintDocument) {
        let d = ObservedDeployment(json: doc.json)
        if doc.json[path: ["spec", "template"]] == nil {
            add(.error, doc, "spec.template", "is required")
            return
        }
        if let miss = firstMismatch(d.selector, d.podLabels) {
            add(.error, doc, "spec.selector.matchLabels.\(miss.key)",
                "selects \(miss.key)=\(miss.wanted) but the pod template has \(miss.actual.map { "\(miss.key)=\($0)" } ?? "no label \(miss.key)"); Kubernetes rejects this Deployment")
        }
    }

    // MARK: VirtualService

    mutating func checkVirtualService(_ doc: LintDocument, canarySubsets: Set<String>) {
        let routes = httpRoutes(of: doc.json)
        let drs = objects("DestinationRule").filter { sameNamespace($0, doc) }
        // Dead routes: first match wins, so everything after a route without match is unreachable.
        if let catchAll = routes.first(where: { !$0.hasMatch }) {
            for route in routes where route.index > catchAll.index {
                add(.error, doc, "spec.http[\(route.index)]",
                    "route \(route.id) is unreachable: route \(catchAll.id) before it has no match and takes every request (first match wins)")
            }
        }
        for route in routes {
            let base = "spec.http[\(route.index)]"
            if route.destinations.isEmpty {
                if doc.json[path: ["spec", "http"]]?[route.index]?["redirect"] == nil && doc.json[path: ["spec", "http"]]?[route.index]?["directResponse"] == nil {
                    add(.error, doc, "\(base).route", "route \(route.id) has no destinations")
                }
                continue
            }
            let weights = route.destinations.map(\.weight)
            if weights.contains(where: { ($0 ?? 0) < 0 || ($0 ?? 0) > 100 }) {
                add(.error, doc, "\(base).route", "weights must be within 0…100")
            }
            if route.destinations.count > 1 || weights.contains(where: { $0 != nil }) {
                let sum = weights.map { $0 ?? 0 }.reduce(0, +)
                if sum != 100 {
                    add(.error, doc, "\(base).route",
                        "weights of route \(route.id) sum to \(sum), not 100 (\(route.destinations.map { "\($0.subset ?? $0.host ?? "?")=\($0.weight.map(String.init) ?? "unset")" }.joined(separator: ", ")))")
                }
            }
            for (i, dest) in route.destinations.enumerated() {
                let path = "\(base).route[\(i)].destination"
                guard let subset = dest.subset else { continue }
                let host = dest.host ?? ""
                let hostDRs = drs.filter { serves(($0.json[path: ["spec", "host"]]?.stringValue) ?? "", host, namespace: doc.namespace ?? "default") }
                guard !hostDRs.isEmpty else {
                    // A DestinationRule for another host next to this route: likely a typo in the host. None at all: it
                    // may be in the cluster already.
                    let known = drs.compactMap { $0.json[path: ["spec", "host"]]?.stringValue }.map(shortHost)
                    if drs.isEmpty {
                        add(.warning, doc, "\(path).host",
                            "host '\(host)' has no DestinationRule among the linted manifests; subset '\(subset)' not checked (it may be in the cluster already)")
                    } else {
                        addAbsence(doc, "\(path).host",
                            "host '\(host)' has no DestinationRule among the linted manifests, so its subset '\(subset)' is undefined\(closest(shortHost(host), known))")
                    }
                    continue
                }
                guard let (dr, s, si) = hostDRs.lazy.compactMap({ dr -> (LintDocument, Subset, Int)? in
                    let all = subsets(of: dr.json)
                    guard let i = all.firstIndex(where: { $0.name == subset }) else { return nil }
                    return (dr, all[i], i)
                }).first else {
                    let names = hostDRs.flatMap { subsets(of: $0.json).map { "'\($0.name)'" } }
                    add(.error, doc, "\(path).subset",
                        "subset '\(subset)' is not defined in DestinationRule \(hostDRs[0].name ?? "") (it has \(names.joined(separator: ", ")))\(closest(subset, names.map { String($0.dropFirst().dropLast()) }))")
                    continue
                }
                _ = dr
                _ = si
                // Weight on a subset whose pods nothing provides (unknown without any Deployment among the files).
                let share = route.destinations.count == 1 ? (dest.weight ?? 100) : (dest.weight ?? 0)
                guard share > 0, objects("Deployment").contains(where: { sameNamespace($0, doc) }), !providedByDeployment(s, near: doc) else { continue }
                let what = route.hasMatch ? "requests matching route \(route.id)" : "\(share)% of route \(route.id)'s traffic"
                if canarySubsets.contains(subset) {
                    add(.warning, doc, "\(base).route[\(i)]",
                        route.hasMatch
                            ? "\(what) go to subset '\(subset)' (\(labelList(s.labels))), whose pods exist only while a rollout runs; until then those requests fail"
                            : "\(what) goes to subset '\(subset)' (\(labelList(s.labels))), whose pods no Deployment provides until a rollout starts; those requests fail. Fledge moves it to stable while nothing is in flight")
                } else {
                    addAbsence(doc, "\(base).route[\(i)]",
                        "\(what) go\(route.hasMatch ? "" : "es") to subset '\(subset)' (\(labelList(s.labels))), whose pods no Deployment provides; those requests fail")
                }
            }
        }
    }

    func providedByDeployment(_ subset: Subset, near doc: LintDocument) -> Bool {
        objects("Deployment").contains { sameNamespace($0, doc) && selects(subset.labels, podLabels($0)) }
    }

    // MARK: DestinationRule

    mutating func checkDestinationRule(_ doc: LintDocument, rolloutSubsets: [(stable: String, canary: String)]) {
        let all = subsets(of: doc.json)
        var seen: Set<String> = []
        for (i, s) in all.enumerated() where !seen.insert(s.name).inserted {
            add(.error, doc, "spec.subsets[\(i)].name", "subset '\(s.name)' is defined twice")
        }
        let deployments = objects("Deployment").filter { sameNamespace($0, doc) }
        let canaryNames = Set(rolloutSubsets.map(\.canary))
        let stableNames = Set(rolloutSubsets.map(\.stable))
        for (i, s) in all.enumerated() {
            let base = "spec.subsets[\(i)].labels"
            if s.labels.isEmpty {
                add(.error, doc, base, "subset '\(s.name)' has no labels; it selects every pod of the host")
                continue
            }
            if canaryNames.contains(s.name) {
                // Provided by the rollout's canary Deployment; its label keys must match the stable subset's.
                for pair in rolloutSubsets where pair.canary == s.name {
                    // Compare label keys with a stable subset that works; a broken stable subset has its own finding.
                    guard let stable = all.first(where: { $0.name == pair.stable }),
                        deployments.contains(where: { selects(stable.labels, podLabels($0)) })
                    else { continue }
                    let extra = Set(s.labels.keys).subtracting(stable.labels.keys).sorted()
                    let missing = Set(stable.labels.keys).subtracting(s.labels.keys).sorted()
                    if let key = extra.first {
                        add(.error, doc, "\(base).\(key)",
                            "canary subset '\(s.name)' selects on label '\(key)' which stable subset '\(stable.name)' does not use (it uses \(stable.labels.keys.sorted().joined(separator: ", ")))\(closest(key, Array(stable.labels.keys)))")
                    } else if let key = missing.first {
                        add(.error, doc, base, "canary subset '\(s.name)' does not select on label '\(key)' that stable subset '\(stable.name)' uses")
                    } else if s.labels == stable.labels {
                        add(.error, doc, base, "canary subset '\(s.name)' selects the same labels as stable subset '\(stable.name)'\(identicalSubsetsHint)")
                    }
                }
                continue
            }
            if stableNames.contains(s.name) { continue }  // checked against the Rollout's target
            if deployments.isEmpty {
                add(.warning, doc, base, "no Deployment among the linted manifests; subset '\(s.name)' (\(labelList(s.labels))) not checked (its pods may be in the cluster already)")
                continue
            }
            if !deployments.contains(where: { selects(s.labels, podLabels($0)) }) {
                // Point at the label that keeps it from the closest Deployment.
                let best = deployments.max { a, b in
                    matchCount(s.labels, podLabels(a)) < matchCount(s.labels, podLabels(b))
                }
                if let best, let miss = firstMismatch(s.labels, podLabels(best)) {
                    addAbsence(doc, "\(base).\(miss.key)",
                        "subset '\(s.name)' selects \(miss.key)=\(miss.wanted) but no Deployment's pods have it (closest: Deployment \(best.name ?? "") has \(miss.actual.map { "\(miss.key)=\($0)" } ?? "no label \(miss.key)"))")
                } else {
                    addAbsence(doc, base, "subset '\(s.name)' (\(labelList(s.labels))) selects the pods of no Deployment among the linted manifests")
                }
            }
        }
    }
}

func matchCount(_ selector: [String: String], _ labels: [String: String]) -> Int {
    selector.filter { labels[$0.key] == $0.value }.count
}

func labelList(_ labels: [String: String]) -> String {
    labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
}

/// Whether a DestinationRule for `ruleHost` applies to a route to `host` in `namespace`: the same service (compared by
/// its short name, as everywhere in lint), or a wildcard host (`*.shop.svc.cluster.local`, `*`) that covers it, as
/// Istio matches them (the controller takes the DestinationRule by name whatever its host).
func serves(_ ruleHost: String, _ host: String, namespace: String) -> Bool {
    if ruleHost == "*" { return true }
    if ruleHost.hasPrefix("*.") {
        return qualifiedHost(host, namespace: namespace).hasSuffix(String(ruleHost.dropFirst()))
    }
    return shortHost(ruleHost) == shortHost(host)
}

/// `product-service.shop.svc.cluster.local` → `product-service`.
func shortHost(_ host: String) -> String {
    String(host.split(separator: ".").first ?? Substring(host))
}

/// ` (did you mean 'stable'?)` when a name is one or two edits from a known one.
func closest(_ name: String, _ candidates: [String]) -> String {
    let scored = candidates.map { ($0, editDistance(name, $0)) }.filter { $0.1 > 0 && $0.1 <= 2 }.sorted { $0.1 < $1.1 }
    return scored.first.map { " (did you mean '\($0.0)'?)" } ?? ""
}

func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var previous = Array(0...y.count)
    for i in 1...x.count {
        var current = [i] + Array(repeating: 0, count: y.count)
        for j in 1...y.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[y.count]
}
