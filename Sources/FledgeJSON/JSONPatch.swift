/// JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902), as the Kubernetes API applies them.
///
/// Both are pure functions on `JSONValue`; the sandbox API server applies them to stored objects
/// and the client can use them to compute or preview writes.

/// Why a patch could not be read or applied. `description` names the operation and path.
public struct JSONPatchError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - RFC 7386 merge patch

extension JSONValue {
    /// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes a key, anything
    /// else (arrays included) replaces the target.
    public func applyingMergePatch(_ patch: JSONValue) -> JSONValue {
        guard case .object(let patchObject) = patch else { return patch }
        var result: JSONObject
        if case .object(let object) = self { result = object } else { result = [:] }
        for (key, value) in patchObject {
            if value.isNull {
                result.removeValue(forKey: key)
            } else {
                result[key] = (result[key] ?? .null).applyingMergePatch(value)
            }
        }
        return .object(result)
    }

    /// The RFC 7386 merge patch that turns `self` into `target` (`null` for removed keys).
    public func mergePatch(to target: JSONValue) -> JSONValue {
        guard case .object(let source) = self, case .object(let destination) = target else { return target }
        var patch: JSONObject = [:]
        for (key, _) in source where destination[key] == nil { patch[key] = .null }
        for (key, value) in destination {
            if let old = source[key] {
                if old == value { continue }
                if case .object = old, case .object = value {
                    patch[key] = old.mergePatch(to: value)
                } else {
                    patch[key] = value
                }
            } else {
                patch[key] = value
            }
        }
        return .object(patch)
    }
}

// MARK: - RFC 6901 JSON Pointer

/// A parsed RFC 6901 JSON Pointer such as `/spec/http/0/route/1/weight`.
public struct JSONPointer: Sendable, Equatable, CustomStringConvertible {
    public var tokens: [String]

    public init(tokens: [String]) { self.tokens = tokens }

    public init(_ text: String) throws(JSONPatchError) {
        if text.isEmpty {
            tokens = []
            return
        }
        guard text.hasPrefix("/") else {
            throw JSONPatchError("invalid JSON pointer \"\(text)\": it must be empty or start with \"/\"")
        }
        tokens = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    public var description: String {
        tokens.map { "/" + $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }
            .joined()
    }
}

/// A pointer written in source, e.g. `.replace(path: "/spec/replicas", value: 3)`.
/// A literal that is not a valid pointer is a programming error, so it traps with the literal's text.
/// Note that `JSONPointer("...")` with a literal argument is this initializer too (SE-0213);
/// pointers from input (a `String` value) go through the throwing `init(_:)`.
extension JSONPointer: ExpressibleByStringLiteral {
    public init(stringLiteral text: String) {
        do {
            try self.init(text)
        } catch {
            preconditionFailure("\(error)")
        }
    }
}

/// Escapes one reference token (`~` → `~0`, `/` → `~1`), for callers building pointer text by hand.
extension JSONPointer {
    public static func escape(_ token: String) -> String {
        token.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    /// This pointer with one more reference token, e.g. an annotation key containing `/`.
    public func appending(_ token: String) -> JSONPointer { JSONPointer(tokens: tokens + [token]) }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard contains(target) else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[rest.startIndex..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}

extension Substring {
    fileprivate func range(of target: String) -> Range<Substring.Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) {
                return index..<self.index(index, offsetBy: target.count)
            }
            index = self.index(after: index)
        }
        return nil
    }
}

// MARK: - RFC 6902 JSON Patch

/// One RFC 6902 operation.
public enum JSONPatchOperation: Sendable, Equatable {
    case add(path: JSONPointer, value: JSONValue)
    case remove(path: JSONPointer)
    case replace(path: JSONPointer, value: JSONValue)
    case move(from: JSONPointer, path: JSONPointer)
    case copy(from: JSONPointer, path: JSONPointer)
    case test(path: JSONPointer, value: JSONValue)

    public var json: JSONValue {
        switch self {
        case .add(let path, let value): return ["op": "add", "path": .string(path.description), "value": value]
        case .remove(let path): return ["op": "remove", "path": .string(path.description)]
        case .replace(let path, let value): return ["op": "replace", "path": .string(path.description), "value": value]
        case .move(let from, let path):
            return ["op": "move", "from": .string(from.description), "path": .string(path.description)]
        case .copy(let from, let path):
            return ["op": "copy", "from": .string(from.description), "path": .string(path.description)]
        case .test(let path, let value): return ["op": "test", "path": .string(path.description), "value": value]
        }
    }
}

/// An RFC 6902 JSON Patch document: operations applied in order, all or nothing.
public struct JSONPatch: Sendable, Equatable {
    public var operations: [JSONPatchOperation]

    public init(_ operations: [JSONPatchOperation]) { self.operations = operations }

    /// Reads a patch document (a JSON array of operation objects).
    public init(json: JSONValue) throws(JSONPatchError) {
        guard case .array(let items) = json else {
            throw JSONPatchError("a JSON patch must be an array of operations, got \(json.typeNameWithArticle)")
        }
        var operations: [JSONPatchOperation] = []
        for (index, item) in items.enumerated() {
            guard case .object(let object) = item else {
                throw JSONPatchError("operation \(index): expected an object, got \(item.typeNameWithArticle)")
            }
            guard let op = object["op"]?.stringValue else {
                throw JSONPatchError("operation \(index): missing \"op\"")
            }
            func pointer(_ key: String) throws(JSONPatchError) -> JSONPointer {
                guard let text = object[key]?.stringValue else {
                    throw JSONPatchError("operation \(index) (\(op)): missing \"\(key)\"")
                }
                do {
                    return try JSONPointer(text)
                } catch {
                    throw JSONPatchError("operation \(index) (\(op)): \(error.message)")
                }
            }
            func value() throws(JSONPatchError) -> JSONValue {
                guard let value = object["value"] else {
                    throw JSONPatchError("operation \(index) (\(op)): missing \"value\"")
                }
                return value
            }
            switch op {
            case "add": operations.append(.add(path: try pointer("path"), value: try value()))
            case "remove": operations.append(.remove(path: try pointer("path")))
            case "replace": operations.append(.replace(path: try pointer("path"), value: try value()))
            case "move": operations.append(.move(from: try pointer("from"), path: try pointer("path")))
            case "copy": operations.append(.copy(from: try pointer("from"), path: try pointer("path")))
            case "test": operations.append(.test(path: try pointer("path"), value: try value()))
            default: throw JSONPatchError("operation \(index): unknown op \"\(op)\"")
            }
        }
        self.operations = operations
    }

    public var json: JSONValue { .array(operations.map(\.json)) }

    /// Applies every operation in order; throws on the first that cannot be applied.
    public func apply(to document: JSONValue) throws(JSONPatchError) -> JSONValue {
        var document = document
        for (index, operation) in operations.enumerated() {
            do {
                try JSONPatch.apply(operation, to: &document)
            } catch {
                throw JSONPatchError("operation \(index) (\(operation.json["op"]?.stringValue ?? "?")): \(error.message)")
            }
        }
        return document
    }

    static func apply(_ operation: JSONPatchOperation, to document: inout JSONValue) throws(JSONPatchError) {
        switch operation {
        case .add(let path, let value):
            try add(value, at: path.tokens[...], in: &document, full: path)
        case .remove(let path):
            _ = try remove(at: path.tokens[...], in: &document, full: path)
        case .replace(let path, let value):
            guard resolve(path, in: document) != nil else {
                throw JSONPatchError("path \"\(path)\" does not exist")
            }
            if path.tokens.isEmpty {  // "" is the whole document
                document = value
                return
            }
            _ = try remove(at: path.tokens[...], in: &document, full: path)
            try add(value, at: path.tokens[...], in: &document, full: path)
        case .move(let from, let path):
            if path.tokens.count > from.tokens.count, Array(path.tokens.prefix(from.tokens.count)) == from.tokens {
                throw JSONPatchError("cannot move \"\(from)\" into its own child \"\(path)\"")
            }
            let value = try remove(at: from.tokens[...], in: &document, full: from)
            try add(value, at: path.tokens[...], in: &document, full: path)
        case .copy(let from, let path):
            guard let value = resolve(from, in: document) else {
                throw JSONPatchError("path \"\(from)\" does not exist")
            }
            try add(value, at: path.tokens[...], in: &document, full: path)
        case .test(let path, let expected):
            guard let actual = resolve(path, in: document) else {
                throw JSONPatchError("test failed: path \"\(path)\" does not exist")
            }
            guard actual == expected else {
                throw JSONPatchError("test failed: \"\(path)\" is \(actual.serializedString()), expected \(expected.serializedString())")
            }
        }
    }

    /// The value a pointer designates, or nil.
    public static func resolve(_ pointer: JSONPointer, in document: JSONValue) -> JSONValue? {
        var current = document
        for token in pointer.tokens {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let array):
                guard let index = arrayIndex(token), array.indices.contains(index) else { return nil }
                current = array[index]
            default:
                return nil
            }
        }
        return current
    }

    private static func arrayIndex(_ token: String) -> Int? {
        guard !token.isEmpty, token.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        if token.count > 1 && token.hasPrefix("0") { return nil }
        return Int(token)
    }

    private static func add(
        _ value: JSONValue, at tokens: ArraySlice<String>, in document: inout JSONValue, full: JSONPointer
    ) throws(JSONPatchError) {
        guard let first = tokens.first else {
            document = value
            return
        }
        let rest = tokens.dropFirst()
        switch document {
        case .object(var object):
            if rest.isEmpty {
                document = .null
                object[first] = value
                document = .object(object)
                return
            }
            guard var child = object[first] else {
                throw JSONPatchError("path \"\(full)\": parent \"\(first)\" does not exist")
            }
            document = .null
            object[first] = .null
            try add(value, at: rest, in: &child, full: full)
            object[first] = child
            document = .object(object)
        case .array(var array):
            if rest.isEmpty {
                if first == "-" {
                    document = .null
                    array.append(value)
                    document = .array(array)
                    return
                }
                guard let index = arrayIndex(first), index <= array.count else {
                    throw JSONPatchError("path \"\(full)\": index \"\(first)\" is out of bounds (array has \(array.count) item\(array.count == 1 ? "" : "s"))")
                }
                document = .null
                array.insert(value, at: index)
                document = .array(array)
                return
            }
            guard let index = arrayIndex(first), array.indices.contains(index) else {
                throw JSONPatchError("path \"\(full)\": index \"\(first)\" is out of bounds (array has \(array.count) item\(array.count == 1 ? "" : "s"))")
            }
            var child = array[index]
            document = .null
            array[index] = .null
            try add(value, at: rest, in: &child, full: full)
            array[index] = child
            document = .array(array)
        default:
            throw JSONPatchError("path \"\(full)\": cannot add into \(document.typeNameWithArticle)")
        }
    }

    private static func remove(
        at tokens: ArraySlice<String>, in document: inout JSONValue, full: JSONPointer
    ) throws(JSONPatchError) -> JSONValue {
        guard let first = tokens.first else {
            throw JSONPatchError("cannot remove the whole document")
        }
        let rest = tokens.dropFirst()
        switch document {
        case .object(var object):
            guard var child = object[first] else {
                throw JSONPatchError("path \"\(full)\" does not exist")
            }
            document = .null
            if rest.isEmpty {
                object.removeValue(forKey: first)
                document = .object(object)
                return child
            }
            object[first] = .null
            defer {
                object[first] = child
                document = .object(object)
            }
            return try remove(at: rest, in: &child, full: full)
        case .array(var array):
            guard let index = arrayIndex(first), array.indices.contains(index) else {
                throw JSONPatchError("path \"\(full)\": index \"\(first)\" is out of bounds (array has \(array.count) item\(array.count == 1 ? "" : "s"))")
            }
            var child = array[index]
            document = .null
            if rest.isEmpty {
                array.remove(at: index)
                document = .array(array)
                return child
            }
            array[index] = .null
            defer {
                array[index] = child
                document = .array(array)
            }
            return try remove(at: rest, in: &child, full: full)
        default:
            throw JSONPatchError("path \"\(full)\" does not exist (\"\(first)\" is inside \(document.typeNameWithArticle))")
        }
    }
}
