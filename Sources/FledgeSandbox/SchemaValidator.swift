import FledgeJSON
import Foundation
import Synchronization

/// Structural-schema checks for custom resources, as the API server applies a CRD's
/// `openAPIV3Schema`: unknown fields are pruned, `default`s applied, and types, required fields, enums,
/// bounds (inclusive and exclusive), lengths and patterns are validated (422 with the field path and the
/// real server's messages).
enum SchemaValidator {
    static func preservesUnknown(_ schema: JSONValue) -> Bool {
        schema["x-kubernetes-preserve-unknown-fields"]?.boolValue == true
    }

    /// Drops fields the schema does not declare (metadata, apiVersion and kind are always kept at the root).
    static func prune(_ value: JSONValue, schema: JSONValue, root: Bool = true) -> JSONValue {
        switch value {
        case .object(let object):
            if preservesUnknown(schema) && schema["properties"] == nil { return value }
            let properties = schema["properties"]?.objectValue
            let additional = schema["additionalProperties"]
            var result: JSONObject = [:]
            for (key, child) in object {
                if root && (key == "metadata" || key == "apiVersion" || key == "kind") {
                    result[key] = child
                } else if let propertySchema = properties?[key] {
                    result[key] = prune(child, schema: propertySchema, root: false)
                } else if let additional, case .object = additional {
                    result[key] = prune(child, schema: additional, root: false)
                } else if additional?.boolValue == true || preservesUnknown(schema) {
                    result[key] = child
                } else if properties == nil && additional == nil && schema["type"]?.stringValue != "object" {
                    result[key] = child
                }
            }
            return .object(result)
        case .array(let items):
            guard let itemSchema = schema["items"] else { return value }
            return .array(items.map { prune($0, schema: itemSchema, root: false) })
        default:
            return value
        }
    }

    /// Applies the schema's `default`s as the API server does on every write: a property with a default that is
    /// absent (or null, unless `nullable`) gets it, in every object that is there, recursively (into the defaults
    /// just applied too, array items and `additionalProperties` values). Objects that are not there get nothing.
    static func applyDefaults(_ value: JSONValue, schema: JSONValue) -> JSONValue {
        switch value {
        case .object(var object):
            let properties = schema["properties"]?.objectValue ?? [:]
            for (key, propertySchema) in properties {
                guard let defaultValue = propertySchema["default"] else { continue }
                if let current = object[key], !(current.isNull && propertySchema["nullable"]?.boolValue != true) { continue }
                object[key] = defaultValue
            }
            for (key, child) in object {
                if let propertySchema = properties[key] {
                    object[key] = applyDefaults(child, schema: propertySchema)
                } else if let additional = schema["additionalProperties"], case .object = additional {
                    object[key] = applyDefaults(child, schema: additional)
                }
            }
            return .object(object)
        case .array(let items):
            guard let itemSchema = schema["items"] else { return value }
            return .array(items.map { applyDefaults($0, schema: itemSchema) })
        default:
            return value
        }
    }

    /// A number as Go's `%v` prints it in the API server's messages: `0`, `1` (also for 1.0), `0.5`, `1e-07`.
    static func goNumber(_ value: JSONValue) -> String {
        switch value {
        case .int(let number): return String(number)
        case .double(let number) where number.rounded() == number && abs(number) < 1e21: return String(Int64(number))
        case .double(let number): return "\(number)"
        default: return value.serializedString()
        }
    }

    /// Compiled `pattern`s, shared by every validation (a CRD's few patterns are checked on every write).
    /// NSRegularExpression is immutable and safe to use from several threads.
    private static let patterns = Mutex<[String: NSRegularExpression]>([:])

    /// Whether `text` matches `pattern` anywhere (JSON Schema patterns are not anchored); nil when the pattern does
    /// not compile.
    static func matches(_ text: String, pattern: String) -> Bool? {
        let expression: NSRegularExpression
        if let cached = patterns.withLock({ $0[pattern] }) {
            expression = cached
        } else {
            guard let compiled = try? NSRegularExpression(pattern: pattern) else { return nil }
            patterns.withLock { $0[pattern] = compiled }
            expression = compiled
        }
        return expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// The paths of fields `prune` would drop, for `fieldValidation=Strict`.
    static func unknownFields(_ value: JSONValue, schema: JSONValue, path: String = "", root: Bool = true) -> [String] {
        switch value {
        case .object(let object):
            if preservesUnknown(schema) && schema["properties"] == nil { return [] }
            let properties = schema["properties"]?.objectValue
            let additional = schema["additionalProperties"]
            var unknown: [String] = []
            for (key, child) in object {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if root && (key == "metadata" || key == "apiVersion" || key == "kind") { continue }
                if let propertySchema = properties?[key] {
                    unknown += unknownFields(child, schema: propertySchema, path: childPath, root: false)
                } else if let additional, case .object = additional {
                    unknown += unknownFields(child, schema: additional, path: childPath, root: false)
                } else if additional?.boolValue == true || preservesUnknown(schema) {
                    continue
                } else if properties != nil || schema["type"]?.stringValue == "object" {
                    unknown.append(childPath)
                }
            }
            return unknown
        case .array(let items):
            guard let itemSchema = schema["items"] else { return [] }
            return items.enumerated().flatMap { unknownFields($1, schema: itemSchema, path: "\(path)[\($0)]", root: false) }
        default:
            return []
        }
    }

    static func validate(
        _ value: JSONValue, schema: JSONValue, path: String, causes: inout [(String, String)], root: Bool = false
    ) {
        let field = path.isEmpty ? "<root>" : path
        if value.isNull {
            if schema["nullable"]?.boolValue == true || root { return }
            causes.append((field, "Invalid value: \"null\": \(field) in body must be of type \(schema["type"]?.stringValue ?? "object")"))
            return
        }
        if schema["x-kubernetes-int-or-string"]?.boolValue == true {
            switch value {
            case .int, .string: break
            case .double(let d) where d.rounded() == d: break
            default:
                causes.append((field, "Invalid value: \"\(value.typeName)\": \(field) in body must be of type integer-or-string"))
            }
            return
        }
        if let type = schema["type"]?.stringValue {
            let ok: Bool
            switch type {
            case "object": if case .object = value { ok = true } else { ok = false }
            case "array": if case .array = value { ok = true } else { ok = false }
            case "string": ok = value.stringValue != nil
            case "boolean": ok = value.boolValue != nil
            case "integer": ok = value.intValue != nil
            case "number": ok = value.doubleValue != nil
            default: ok = true
            }
            if !ok {
                causes.append((field, "Invalid value: \"\(value.typeName)\": \(field) in body must be of type \(type): \"\(value.typeName)\""))
                return
            }
        }
        if let options = schema["enum"]?.arrayValue, !options.contains(value) {
            let supported = options.map { $0.stringValue.map { "\"\($0)\"" } ?? $0.serializedString() }.joined(separator: ", ")
            causes.append((field, "Unsupported value: \(value.serializedString()): supported values: \(supported)"))
        }
        if let number = value.doubleValue {
            // Bounds in both forms: OpenAPI v3.0's (what Kubernetes' structural schemas use), `minimum` with
            // `exclusiveMinimum: true`, and JSON Schema's later numeric `exclusiveMinimum: 0`.
            let shown = goNumber(value)
            if let minimum = schema["minimum"], let bound = minimum.doubleValue {
                if schema["exclusiveMinimum"]?.boolValue == true {
                    if number <= bound { causes.append((field, "Invalid value: \(shown): \(field) in body should be greater than \(goNumber(minimum))")) }
                } else if number < bound {
                    causes.append((field, "Invalid value: \(shown): \(field) in body should be greater than or equal to \(goNumber(minimum))"))
                }
            }
            if let exclusive = schema["exclusiveMinimum"], exclusive.boolValue == nil, let bound = exclusive.doubleValue, number <= bound {
                causes.append((field, "Invalid value: \(shown): \(field) in body should be greater than \(goNumber(exclusive))"))
            }
            if let maximum = schema["maximum"], let bound = maximum.doubleValue {
                if schema["exclusiveMaximum"]?.boolValue == true {
                    if number >= bound { causes.append((field, "Invalid value: \(shown): \(field) in body should be less than \(goNumber(maximum))")) }
                } else if number > bound {
                    causes.append((field, "Invalid value: \(shown): \(field) in body should be less than or equal to \(goNumber(maximum))"))
                }
            }
            if let exclusive = schema["exclusiveMaximum"], exclusive.boolValue == nil, let bound = exclusive.doubleValue, number >= bound {
                causes.append((field, "Invalid value: \(shown): \(field) in body should be less than \(goNumber(exclusive))"))
            }
        }
        if let text = value.stringValue {
            if let minLength = schema["minLength"]?.intValue, text.count < minLength {
                causes.append((field, "Invalid value: \"\(text)\": \(field) in body should be at least \(minLength) chars long"))
            }
            if let maxLength = schema["maxLength"]?.intValue, text.count > maxLength {
                causes.append((field, "Too long: may not be more than \(maxLength) bytes"))
            }
            if let pattern = schema["pattern"]?.stringValue, matches(text, pattern: pattern) == false {
                causes.append((field, "Invalid value: \(value.serializedString()): \(field) in body should match '\(pattern)'"))
            }
        }
        switch value {
        case .object(let object):
            for required in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where object[required] == nil {
                causes.append((path.isEmpty ? required : "\(path).\(required)", "Required value"))
            }
            let properties = schema["properties"]?.objectValue ?? [:]
            for (key, child) in object {
                if root && (key == "metadata" || key == "apiVersion" || key == "kind") { continue }
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                if let propertySchema = properties[key] {
                    validate(child, schema: propertySchema, path: childPath, causes: &causes)
                } else if let additional = schema["additionalProperties"], case .object = additional {
                    validate(child, schema: additional, path: childPath, causes: &causes)
                }
            }
        case .array(let items):
            if let minItems = schema["minItems"]?.intValue, items.count < minItems {
                causes.append((field, "Invalid value: \(items.count): \(field) in body should have at least \(minItems) items"))
            }
            if let maxItems = schema["maxItems"]?.intValue, items.count > maxItems {
                causes.append((field, "Too many: \(items.count): must have at most \(maxItems) items"))
            }
            if let itemSchema = schema["items"] {
                for (index, item) in items.enumerated() {
                    validate(item, schema: itemSchema, path: "\(path)[\(index)]", causes: &causes)
                }
            }
        default:
            break
        }
    }
}
