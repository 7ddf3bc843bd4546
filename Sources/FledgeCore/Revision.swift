import Crypto
import FledgeJSON

/// Canonical JSON, the input of a revision hash. Fixed forever: changing it would change every revision and
/// redeploy every rollout (see docs/revision.md).
///
/// - Objects: members with a `null` value are dropped (Kubernetes treats null as absent, e.g. the
///   `creationTimestamp: null` kubectl shows in templates); the others are sorted by the UTF-8 bytes of
///   their keys; no whitespace anywhere.
/// - Arrays keep their order.
/// - Strings: UTF-8, `"` and `\` escaped with a backslash, other bytes below 0x20 as `\u00xx` (lowercase hex),
///   everything else as is (no `\/`, no escaping of non-ASCII).
/// - Numbers: integers (and doubles with no fraction below 2^53) in plain decimal; other doubles in Swift's
///   shortest round-trip form (`0.5`, `1e-07`).
/// - `true`, `false`, `null` (inside arrays only).
public func canonicalJSON(_ value: JSONValue) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(1024)
    writeCanonical(value, into: &out)
    return out
}

private func writeCanonical(_ value: JSONValue, into out: inout [UInt8]) {
    switch value {
    case .null: out.append(contentsOf: "null".utf8)
    case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
    case .int(let i): out.append(contentsOf: String(i).utf8)
    case .double(let d):
        if d.rounded() == d, abs(d) < 9_007_199_254_740_992 {
            out.append(contentsOf: String(Int64(d)).utf8)
        } else {
            out.append(contentsOf: String(d).utf8)
        }
    case .string(let s): writeCanonicalString(s, into: &out)
    case .array(let a):
        out.append(UInt8(ascii: "["))
        for (i, e) in a.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            writeCanonical(e, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    case .object(let o):
        out.append(UInt8(ascii: "{"))
        var members: [(key: [UInt8], value: JSONValue)] = []
        members.reserveCapacity(o.count)
        for (key, value) in o where !value.isNull { members.append((Array(key.utf8), value)) }
        members.sort { $0.key.lexicographicallyPrecedes($1.key) }
        for (i, member) in members.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            writeCanonicalBytes(member.key, into: &out)
            out.append(UInt8(ascii: ":"))
            writeCanonical(member.value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }
}

private func writeCanonicalString(_ s: String, into out: inout [UInt8]) {
    writeCanonicalBytes(s.utf8, into: &out)
}

private func writeCanonicalBytes(_ bytes: some Collection<UInt8>, into out: inout [UInt8]) {
    if !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: bytes)
        out.append(UInt8(ascii: "\""))
        return
    }
    let hex: [UInt8] = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"):
            out.append(UInt8(ascii: "\\"))
            out.append(byte)
        case 0..<0x20:
            out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
        default: out.append(byte)
        }
    }
    out.append(UInt8(ascii: "\""))
}

/// The revision of a pod template: the first 16 lowercase hex digits (64 bits) of the SHA-256 of
/// `canonicalJSON(template)`. For a rollout, `template` is the canary's effective pod template in the stable
/// slot's form (see `effectiveTemplate(stable:change:keepingLabels:)`), so after promotion the stable
/// Deployment's template has the same revision. Golden-tested; see docs/revision.md.
public func revision(of template: JSONValue) -> String {
    let digest = SHA256.hash(data: canonicalJSON(template))
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in digest.prefix(8) {
        out.append(hex[Int(byte >> 4)])
        out.append(hex[Int(byte & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces.
public func mergePatch(_ target: JSONValue, _ patch: JSONValue) -> JSONValue {
    guard case .object(let patchObject) = patch else { return patch }
    var result: JSONObject
    if case .object(let t) = target { result = t } else { result = [:] }
    for (key, value) in patchObject {
        if value.isNull {
            result.removeValue(forKey: key)
        } else {
            result[key] = mergePatch(result[key] ?? .null, value)
        }
    }
    return .object(result)
}

/// Why a canary template cannot be built from the stable one.
public struct TemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The canary's effective pod template in the stable slot's form: the stable Deployment's `spec.template`
/// with the template patch merged in, then the images set, then the labels named in `keepingLabels` (the
/// stable subset's label keys and the stable selector's keys) put back to the stable template's values, so a
/// patch cannot move the template out of the stable slot. This is what promotion writes into the stable
/// Deployment and what the revision hashes.
public func effectiveTemplate(stable: JSONValue, change: CanaryPlan, keepingLabels keys: some Collection<String>) throws(TemplateError) -> JSONValue {
    guard case .object = stable else { throw TemplateError(message: "the stable Deployment has no spec.template") }
    var template = stable
    if let patch = change.templatePatch {
        template = mergePatch(template, patch)
        guard case .object = template else { throw TemplateError(message: "spec.canary.templatePatch does not leave an object") }
    }
    if !change.images.isEmpty {
        guard var containers = template[path: ["spec", "containers"]]?.arrayValue, !containers.isEmpty else {
            throw TemplateError(message: "the pod template has no spec.containers to set images on")
        }
        // A named container may also be an init container (a migration step released with the app), as with
        // `kubectl set image`.
        var initContainers = template[path: ["spec", "initContainers"]]?.arrayValue ?? []
        let names = containers.map { $0["name"]?.stringValue ?? "" }
        let initNames = initContainers.map { $0["name"]?.stringValue ?? "" }
        for change in change.images {
            if let name = change.container {
                if let i = names.firstIndex(of: name) {
                    containers[i]["image"] = .string(change.image)
                } else if let i = initNames.firstIndex(of: name) {
                    initContainers[i]["image"] = .string(change.image)
                } else {
                    throw TemplateError(
                        message: "spec.canary: container '\(name)' is not in the pod template (it has \(names.map { "'\($0)'" }.joined(separator: ", "))"
                            + (initNames.isEmpty ? "" : "; init containers \(initNames.map { "'\($0)'" }.joined(separator: ", "))") + ")")
                }
            } else {
                guard containers.count == 1 else {
                    throw TemplateError(
                        message: "spec.canary.image names no container but the pod template has \(containers.count) (\(names.joined(separator: ", "))); write CONTAINER=IMAGE")
                }
                containers[0]["image"] = .string(change.image)
            }
        }
        template[path: ["spec", "containers"]] = .array(containers)
        if !initContainers.isEmpty { template[path: ["spec", "initContainers"]] = .array(initContainers) }
    }
    let original = stable[path: ["metadata", "labels"]]?.objectValue ?? [:]
    if template[path: ["metadata", "labels"]]?.objectValue != nil || !original.isEmpty {
        var labels = template[path: ["metadata", "labels"]]?.objectValue ?? [:]
        for key in Set(keys).sorted() {
            if let value = original[key] { labels[key] = value } else { labels.removeValue(forKey: key) }
        }
        if labels != (template[path: ["metadata", "labels"]]?.objectValue ?? [:]) {
            template[path: ["metadata", "labels"]] = .object(labels)
        }
    }
    return template
}

/// The canary Deployment's pod template: the effective template with the stable subset's label keys removed
/// and the canary subset's labels added, so the canary subset selects it and the stable subset does not.
public func canaryTemplate(effective: JSONValue, stableLabels: [String: String], canaryLabels: [String: String]) -> JSONValue {
    var template = effective
    var labels = template[path: ["metadata", "labels"]]?.objectValue ?? [:]
    for key in stableLabels.keys { labels.removeValue(forKey: key) }
    for (key, value) in canaryLabels.sorted(by: { $0.key < $1.key }) { labels[key] = .string(value) }
    template[path: ["metadata", "labels"]] = .object(labels)
    return template
}

/// The canary Deployment's selector: the stable selector without the stable subset's keys, plus the canary
/// subset's labels.
public func canarySelector(stable: [String: String], stableLabels: [String: String], canaryLabels: [String: String]) -> [String: String] {
    var selector = stable
    for key in stableLabels.keys { selector.removeValue(forKey: key) }
    for (key, value) in canaryLabels { selector[key] = value }
    return selector
}
