import FledgeJSON
import Foundation

/// Server-side printing (`meta.k8s.io/v1` Table), which `kubectl get` asks for.
enum Table {
    static let contentType = "application/json;as=Table;v=v1;g=meta.k8s.io"

    static func table(type: ResourceType, objects: [JSONValue], resourceVersion: Int64?, now: Date) -> JSONValue {
        var columns: [PrinterColumn] = [
            PrinterColumn(name: "Name", type: "string", jsonPath: ".metadata.name", description: "Name must be unique within a namespace.")
        ]
        columns += type.printerColumns
        // Built-in types and CRDs without printer columns end with Age, like the real server; a CRD's own columns
        // replace that default (the Rollout CRD lists its own Age last), and the tables that show "Created At"
        // (CustomResourceDefinitions, Roles, ClusterRoles) have no Age.
        let showsCreationTime = type.printerColumns.contains { $0.jsonPath == PrinterColumn.createdAt.jsonPath }
        if (!type.isCustom && !showsCreationTime) || type.printerColumns.isEmpty || type.group == "networking.istio.io" {
            columns.append(PrinterColumn(name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp"))
        }
        // Events have columns of their own, the same through both groups (rows are read from the stored, core form).
        if type.storageResource == .events { columns = eventColumns }
        var definitions: [JSONValue] = []
        for column in columns {
            var definition: JSONObject = [:]
            definition["name"] = .string(column.name)
            definition["type"] = .string(column.type == "date" ? "string" : column.type)
            definition["format"] = .string(column.jsonPath == ".metadata.name" ? "name" : "")
            definition["description"] = .string(column.description)
            definition["priority"] = .int(Int64(column.priority))
            definitions.append(.object(definition))
        }
        var rows: [JSONValue] = []
        for object in objects {
            let cells: [JSONValue] = columns.map { (column: PrinterColumn) -> JSONValue in cell(object, column, now: now) }
            var metadata: JSONValue = object["metadata"] ?? .object([:])
            metadata["managedFields"] = nil
            var partial: JSONObject = [:]
            partial["kind"] = "PartialObjectMetadata"
            partial["apiVersion"] = "meta.k8s.io/v1"
            partial["metadata"] = metadata
            var row: JSONObject = [:]
            row["cells"] = .array(cells)
            row["object"] = .object(partial)
            rows.append(.object(row))
        }
        var metadata: JSONValue = [:]
        if let resourceVersion { metadata["resourceVersion"] = .string(String(resourceVersion)) }
        return [
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": .array(definitions), "rows": .array(rows),
        ]
    }

    /// The real server's Event columns (`kubectl get events`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; more with -o wide).
    static let eventColumns: [PrinterColumn] = [
        PrinterColumn(name: "Last Seen", type: "string", jsonPath: "#eventLastSeen", description: "The time at which the most recent occurrence of this event was recorded."),
        PrinterColumn(name: "Type", type: "string", jsonPath: ".type", description: "Type of this event (Normal, Warning)."),
        PrinterColumn(name: "Reason", type: "string", jsonPath: ".reason", description: "Short, machine understandable string that gives the reason for the transition."),
        PrinterColumn(name: "Object", type: "string", jsonPath: "#eventObject", description: "The object that this event is about."),
        PrinterColumn(name: "Subobject", type: "string", jsonPath: ".involvedObject.fieldPath", priority: 1),
        PrinterColumn(name: "Source", type: "string", jsonPath: "#eventSource", description: "The component reporting this event.", priority: 1),
        PrinterColumn(name: "Message", type: "string", jsonPath: "#eventMessage", description: "A human-readable description of the status of this operation."),
        PrinterColumn(name: "First Seen", type: "string", jsonPath: "#eventFirstSeen", priority: 1),
        PrinterColumn(name: "Count", type: "string", jsonPath: "#eventCount", priority: 1),
        PrinterColumn(name: "Name", type: "string", jsonPath: "#eventName", priority: 1),
    ]

    /// An RFC 3339 time, with or without a fraction of a second (Events carry microseconds).
    static func parseTime(_ text: String) -> Date? {
        var text = text
        if let dot = text.firstIndex(of: "."), let end = text[dot...].firstIndex(where: { !$0.isNumber && $0 != "." }) {
            text.removeSubrange(dot..<end)
        }
        return try? Date(text, strategy: .iso8601)
    }

    /// How long ago, as kubectl shows it; `<unknown>` for no time.
    static func since(_ value: JSONValue?, now: Date) -> String? {
        guard let text = value?.stringValue, let date = parseTime(text) else { return nil }
        return age(from: date, to: now)
    }

    static func eventCell(_ event: JSONValue, _ path: String, now: Date) -> JSONValue? {
        let firstSeen = since(event["firstTimestamp"], now: now) ?? since(event["eventTime"], now: now) ?? "<unknown>"
        switch path {
        case "#eventFirstSeen":
            return .string(firstSeen)
        case "#eventLastSeen":
            return .string(since(event[path: ["series", "lastObservedTime"]], now: now) ?? since(event["lastTimestamp"], now: now) ?? firstSeen)
        case "#eventObject":
            let kind = (event[path: ["involvedObject", "kind"]]?.stringValue ?? "").lowercased()
            let name = event[path: ["involvedObject", "name"]]?.stringValue ?? ""
            return .string(name.isEmpty ? kind : "\(kind)/\(name)")
        case "#eventSource":
            let component = event[path: ["source", "component"]]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                ?? event["reportingComponent"]?.stringValue ?? ""
            let instance = event[path: ["source", "host"]]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                ?? event["reportingInstance"]?.stringValue ?? ""
            return .string(instance.isEmpty ? component : "\(component), \(instance)")
        case "#eventMessage":
            return .string((event["message"]?.stringValue ?? "").trimmingSpaces)
        case "#eventCount":
            let count = event[path: ["series", "count"]]?.intValue ?? event["count"]?.intValue ?? 0
            return .int(count == 0 ? 1 : count)
        case "#eventName":
            return event[path: ["metadata", "name"]] ?? ""
        default:
            return nil
        }
    }

    static func cell(_ object: JSONValue, _ column: PrinterColumn, now: Date) -> JSONValue {
        if column.jsonPath.hasPrefix("#event"), let value = eventCell(object, column.jsonPath, now: now) { return value }
        switch column.jsonPath {
        case "#deploymentReady":
            let ready = object[path: ["status", "readyReplicas"]]?.intValue ?? 0
            let wanted = object[path: ["spec", "replicas"]]?.intValue ?? 0
            return .string("\(ready)/\(wanted)")
        case "#podReady":
            let statuses = object[path: ["status", "containerStatuses"]]?.arrayValue ?? []
            let ready = statuses.filter { $0["ready"]?.boolValue == true }.count
            let total = object[path: ["spec", "containers"]]?.arrayValue?.count ?? statuses.count
            return .string("\(ready)/\(total)")
        case "#dataCount":
            let data: Int = object["data"]?.objectValue?.count ?? 0
            let binary: Int = object["binaryData"]?.objectValue?.count ?? 0
            return .int(Int64(data + binary))
        case "#createdAt":
            let text = object[path: ["metadata", "creationTimestamp"]]?.stringValue ?? ""
            guard let date = parseTime(text) else { return .string(text) }
            return .string(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false)))
        case "#secretCount":
            return .int(Int64(object["secrets"]?.arrayValue?.count ?? 0))
        case "#roleRef":
            let kind = object[path: ["roleRef", "kind"]]?.stringValue ?? ""
            let name = object[path: ["roleRef", "name"]]?.stringValue ?? ""
            return .string("\(kind)/\(name)")
        default:
            break
        }
        let values = JSONPathLite.evaluate(column.jsonPath, on: object)
        if column.type == "date" {
            guard let text = values.first?.stringValue, let date = try? Date(text, strategy: .iso8601) else { return "<unknown>" }
            return .string(age(from: date, to: now))
        }
        if values.isEmpty { return column.type == "string" ? "" : .null }
        if values.count == 1 {
            switch values[0] {
            case .string, .int, .double, .bool: return values[0]
            default: return .string(values[0].serializedString())
            }
        }
        return .string(values.map { $0.stringValue ?? $0.serializedString() }.joined(separator: ","))
    }

    /// kubectl's short duration: 45s, 3m20s, 12m, 2h5m, 3d, ...
    static func age(from date: Date, to now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        if seconds < 120 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 { return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s" }
        if minutes < 180 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 8 { return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m" }
        if hours < 48 { return "\(hours)h" }
        let days = hours / 24
        if days < 8 { return hours % 24 == 0 ? "\(days)d" : "\(days)d\(hours % 24)h" }
        if days < 365 * 2 { return "\(days)d" }
        return "\(days / 365)y"
    }
}

/// The JSONPath subset printer columns use: `.a.b`, `[0]`, `[*]`, and filters `[?(@.k=="v")]`.
enum JSONPathLite {
    static func evaluate(_ path: String, on value: JSONValue) -> [JSONValue] {
        var text = Substring(path.trimmingSpaces)
        if text.hasPrefix("{") && text.hasSuffix("}") { text = text.dropFirst().dropLast() }
        if text.hasPrefix("$") { text = text.dropFirst() }
        var current: [JSONValue] = [value]
        while !text.isEmpty {
            if text.hasPrefix(".") {
                text = text.dropFirst()
                let end = text.firstIndex { $0 == "." || $0 == "[" } ?? text.endIndex
                let key = String(text[..<end])
                text = text[end...]
                if key.isEmpty { continue }
                current = current.compactMap { $0[key] }
            } else if text.hasPrefix("[") {
                guard let close = matchingBracket(text) else { return [] }
                let inner = text[text.index(after: text.startIndex)..<close].trimmingSpaces
                text = text[text.index(after: close)...]
                if inner == "*" {
                    current = current.flatMap { $0.arrayValue ?? $0.objectValue.map { Array($0.values) } ?? [] }
                } else if let index = Int(inner) {
                    current = current.compactMap { item in
                        guard let array = item.arrayValue else { return nil }
                        let i = index < 0 ? array.count + index : index
                        return array.indices.contains(i) ? array[i] : nil
                    }
                } else if inner.hasPrefix("?(") && inner.hasSuffix(")") {
                    let condition = inner.dropFirst(2).dropLast().trimmingSpaces
                    current = current.flatMap { ($0.arrayValue ?? []).filter { filterMatches(condition, $0) } }
                } else if inner.hasPrefix("'") || inner.hasPrefix("\"") {
                    let key = String(inner.dropFirst().dropLast())
                    current = current.compactMap { $0[key] }
                } else {
                    return []
                }
            } else {
                return []
            }
        }
        return current
    }

    static func matchingBracket(_ text: Substring) -> Substring.Index? {
        var depth = 0
        var index = text.startIndex
        while index < text.endIndex {
            if text[index] == "[" { depth += 1 }
            if text[index] == "]" {
                depth -= 1
                if depth == 0 { return index }
            }
            index = text.index(after: index)
        }
        return nil
    }

    static func filterMatches(_ condition: String, _ item: JSONValue) -> Bool {
        for op in ["==", "!="] {
            guard let range = condition.range(of: op) else { continue }
            let left = condition[..<range.lowerBound].trimmingSpaces
            var right = condition[range.upperBound...].trimmingSpaces
            if (right.hasPrefix("\"") && right.hasSuffix("\"")) || (right.hasPrefix("'") && right.hasSuffix("'")) {
                right = String(right.dropFirst().dropLast())
            }
            guard left.hasPrefix("@") else { return false }
            let actual = evaluate(String(left.dropFirst()), on: item).first
            let text = actual?.stringValue ?? actual.map { $0.serializedString() } ?? ""
            return (text == right) == (op == "==")
        }
        if condition.hasPrefix("@") { return !evaluate(String(condition.dropFirst()), on: item).isEmpty }
        return false
    }
}
