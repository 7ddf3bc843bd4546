import FledgeJSON
import Foundation

/// An `events.k8s.io/v1` Event to record about an object (what `kubectl describe`
/// and `kubectl get events` show).
public struct EventRecord: Sendable, Equatable {
    public enum EventType: String, Sendable {
        case normal = "Normal"
        case warning = "Warning"
    }

    /// The object the event is about (needs apiVersion, kind, metadata.name/namespace/uid).
    public var regarding: JSONValue
    /// UpperCamelCase, machine-readable (`Progressing`, `RolledBack`).
    public var reason: String
    /// Human-readable; trimmed to the API's 1 kB limit.
    public var note: String
    public var type: EventType
    /// What the controller did (`SetWeight`, `Promote`).
    public var action: String
    public var reportingController: String
    public var reportingInstance: String
    public var time: Date
    /// The Event's `metadata.name`. Nil: `<object>.<hex time><hex random>`, new on every call. A fixed name makes
    /// recording the same Event again answer 409 AlreadyExists instead of making a second one.
    public var name: String?

    public init(
        regarding: JSONValue, reason: String, note: String, type: EventType = .normal, action: String,
        reportingController: String = "fledge.dev/rollout-controller", reportingInstance: String, time: Date, name: String? = nil
    ) {
        self.regarding = regarding
        self.reason = reason
        self.note = note
        self.type = type
        self.action = action
        self.reportingController = reportingController
        self.reportingInstance = reportingInstance
        self.time = time
        self.name = name
    }

    /// A name for an Event about `object` at `time` that no other Event has: `<object>.<hex nanoseconds><hex random>`,
    /// the form client-go uses, with a random part so that two Events of one instant differ.
    public static func uniqueName(regarding object: JSONValue, time: Date) -> String {
        let regardingName = object["metadata"]?["name"]?.stringValue ?? "object"
        let nanos = UInt64(min(max(0, time.timeIntervalSince1970 * 1_000_000_000), 9e18))
        return "\(regardingName).\(String(nanos, radix: 16))\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    /// An `eventTime` as the API writes it (RFC 3339 with microseconds), and back.
    public static func formatTime(_ date: Date) -> String { formatRFC3339(date, microseconds: true) }
    public static func parseTime(_ text: String) -> Date? { parseRFC3339(text) }

    /// The object reference part of an object.
    static func reference(to object: JSONValue) -> JSONValue {
        var reference = JSONObject()
        if let v = object["apiVersion"] { reference["apiVersion"] = v }
        if let v = object["kind"] { reference["kind"] = v }
        let metadata = object["metadata"]
        for key in ["namespace", "name", "uid", "resourceVersion"] {
            if let v = metadata?[key] { reference[key] = v }
        }
        return .object(reference)
    }

    /// The Event object this record becomes.
    public func eventObject(namespace: String, name: String) -> JSONValue {
        // The API server refuses a note over 1 KB. A cut one says so: a rollback's reason with the judge's numbers and
        // every metric can pass it, and a silently cut "harm e-value 1 < 2" reads as a whole (wrong) number.
        var trimmed = note
        if trimmed.utf8.count > 1024 {
            let mark = " … (cut: an Event holds 1 KB)"
            while trimmed.utf8.count > 1024 - mark.utf8.count { trimmed.removeLast() }
            trimmed += mark
        }
        return [
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": ["name": .string(name), "namespace": .string(namespace)],
            "eventTime": .string(formatRFC3339(time, microseconds: true)),
            "reportingController": .string(reportingController),
            "reportingInstance": .string(reportingInstance),
            "action": .string(action),
            "reason": .string(reason),
            "regarding": Self.reference(to: regarding),
            "note": .string(trimmed),
            "type": .string(type.rawValue),
        ]
    }
}

extension KubernetesClient {
    /// Creates an Event about `record.regarding` in that object's namespace.
    @discardableResult
    public func recordEvent(_ record: EventRecord) async throws(KubernetesError) -> JSONValue {
        let namespace = record.regarding["metadata"]?["namespace"]?.stringValue ?? configuration.namespace
        let name = record.name ?? EventRecord.uniqueName(regarding: record.regarding, time: record.time)
        return try await create(.events, namespace: namespace, record.eventObject(namespace: namespace, name: name))
    }
}

/// What an Event says, read the same way from `events.k8s.io/v1` (`note`, `series`, `eventTime`) and core `v1`
/// (`message`, `count`, `lastTimestamp`), which a real API server serves from the same storage.
public struct EventSummary: Sendable {
    /// The uid, else `namespace/name`: the same Event seen through both APIs has one key.
    public var key: String
    /// Every timestamp the Event carries, newest kind first (series, last, event time, first, creation).
    public var times: [String]
    public var resourceVersion: Int64
    public var type: String
    public var reason: String
    /// On one line.
    public var message: String
    public var count: Int

    public init?(_ event: JSONValue) {
        guard let name = event[path: ["metadata", "name"]]?.stringValue else { return nil }
        key = event[path: ["metadata", "uid"]]?.stringValue ?? "\(event[path: ["metadata", "namespace"]]?.stringValue ?? "")/\(name)"
        times = [
            event[path: ["series", "lastObservedTime"]], event["lastTimestamp"], event["deprecatedLastTimestamp"], event["eventTime"],
            event["firstTimestamp"], event[path: ["metadata", "creationTimestamp"]],
        ].compactMap { $0?.stringValue }
        resourceVersion = Int64(event[path: ["metadata", "resourceVersion"]]?.stringValue ?? "") ?? 0
        type = event["type"]?.stringValue ?? "Normal"
        reason = event["reason"]?.stringValue ?? ""
        message = (event["note"]?.stringValue ?? event["message"]?.stringValue ?? "").split(whereSeparator: \.isNewline).joined(separator: " ")
        count = Int(event[path: ["series", "count"]]?.intValue ?? event["count"]?.intValue ?? event["deprecatedCount"]?.intValue ?? 1)
    }
}
