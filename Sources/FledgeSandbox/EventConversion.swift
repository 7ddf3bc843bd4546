import FledgeJSON

/// A real API server keeps one kind of Event and serves it as core `v1` and as `events.k8s.io/v1`, converting
/// fields on the way (Kubernetes' `pkg/apis/events/v1` conversions). The sandbox does the same: Events are stored
/// in their core form, and `events.k8s.io/v1` reads and writes go through this conversion.
enum EventConversion {
    /// events.k8s.io/v1 field → core/v1 field; every other field keeps its name (`eventTime`, `series`, `action`,
    /// `reason`, `related`, `reportingInstance`, `type`).
    static let coreNames: [String: String] = [
        "regarding": "involvedObject",
        "note": "message",
        "deprecatedSource": "source",
        "deprecatedFirstTimestamp": "firstTimestamp",
        "deprecatedLastTimestamp": "lastTimestamp",
        "deprecatedCount": "count",
        "reportingController": "reportingComponent",
    ]

    static let eventsNames: [String: String] = Dictionary(uniqueKeysWithValues: coreNames.map { ($1, $0) })

    /// An events.k8s.io/v1 Event in its core/v1 form.
    static func toCore(_ event: JSONValue) -> JSONValue {
        rename(event, coreNames, apiVersion: "v1")
    }

    /// A core/v1 Event in its events.k8s.io/v1 form.
    static func toEventsV1(_ event: JSONValue) -> JSONValue {
        rename(event, eventsNames, apiVersion: "events.k8s.io/v1")
    }

    /// Renames the fields `names` maps, keeping their order. A field already named as the other version names it
    /// (`message` sent to events.k8s.io) is no field of this version and is dropped, as the real server's decoding
    /// drops unknown fields; so a renamed field never collides with one sent.
    private static func rename(_ event: JSONValue, _ names: [String: String], apiVersion: String) -> JSONValue {
        guard case .object(let fields) = event else { return event }
        let targets = Set(names.values)
        var result = JSONObject()
        for (key, value) in fields {
            if key == "apiVersion" {
                result[key] = .string(apiVersion)
            } else if let renamed = names[key] {
                result[renamed] = value
            } else if !targets.contains(key) {
                result[key] = value
            }
        }
        return .object(result)
    }

    /// The field selectors each version's Events support, as paths into the stored (core) form. events.k8s.io's
    /// labels are the core ones renamed (`regarding.name` is `involvedObject.name`), as the real server converts them.
    static func fieldPath(_ label: String, eventsV1: Bool) -> [String]? {
        let referenceFields = ["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"]
        switch label {
        case "metadata.name", "metadata.namespace", "reason", "type":
            return label.split(separator: ".").map(String.init)
        default:
            break
        }
        let parts = label.split(separator: ".", maxSplits: 1).map(String.init)
        if eventsV1 {
            if parts.count == 2, parts[0] == "regarding", referenceFields.contains(parts[1]) { return ["involvedObject", parts[1]] }
            if label == "reportingController" { return ["reportingComponent"] }
        } else {
            if parts.count == 2, parts[0] == "involvedObject", referenceFields.contains(parts[1]) { return ["involvedObject", parts[1]] }
            if label == "reportingComponent" { return ["reportingComponent"] }
            if label == "source" { return ["source", "component"] }
        }
        return nil
    }
}
