/// The order in which an `Encodable` value's `encode(to:)` writes its keys (for synthesized conformances: the
/// declaration order of its properties, or of its `CodingKeys`), which Foundation's `JSONEncoder` does not keep.
///
/// `KeyOrder.of(value)` is a skeleton of the value: objects with their keys in encoding order, arrays with their
/// elements, and `.null` for every scalar. `JSONValue.reordered(like:)` puts a value's keys in a skeleton's order.
/// Dictionaries (`[String: T]`) write their keys in no fixed order; their skeleton has them sorted.
public enum KeyOrder {
    public static func of<T: Encodable>(_ value: T) throws -> JSONValue {
        let root = Node()
        try value.encode(to: RecordingEncoder(node: root, codingPath: []))
        return root.skeleton
    }

    final class Node {
        enum Kind { case scalar, object, array }
        var kind = Kind.scalar
        var keys: [String] = []
        var children: [String: Node] = [:]
        var items: [Node] = []
        /// A dictionary's keys: no order to keep.
        var sorted = false

        func child(_ key: String) -> Node {
            kind = .object
            if let existing = children[key] { return existing }
            let node = Node()
            keys.append(key)
            children[key] = node
            return node
        }

        func item() -> Node {
            kind = .array
            let node = Node()
            items.append(node)
            return node
        }

        var skeleton: JSONValue {
            switch kind {
            case .scalar: return .null
            case .array: return .array(items.map(\.skeleton))
            case .object:
                let ordered = sorted ? keys.sorted() : keys
                return .object(JSONObject(uniqueKeysWithValues: ordered.map { ($0, children[$0]!.skeleton) }))
            }
        }
    }

    struct RecordingEncoder: Encoder {
        let node: Node
        var codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            node.kind = .object
            // Swift's own coding key for `[String: T]` (and `[Int: T]`): its order is the hash order.
            if String(describing: Key.self).contains("DictionaryCodingKey") { node.sorted = true }
            return KeyedEncodingContainer(KeyedRecorder<Key>(node: node, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            node.kind = .array
            return UnkeyedRecorder(node: node, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer {
            SingleRecorder(node: node, codingPath: codingPath)
        }
    }

    struct KeyedRecorder<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        var codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { _ = node.child(key.stringValue) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try value.encode(to: RecordingEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]))
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            RecordingEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            RecordingEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder { RecordingEncoder(node: node.child("super"), codingPath: codingPath) }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            RecordingEncoder(node: node.child(key.stringValue), codingPath: codingPath + [key])
        }
    }

    struct UnkeyedRecorder: UnkeyedEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey]
        var count: Int { node.items.count }

        mutating func encodeNil() throws { _ = node.item() }
        mutating func encode<T: Encodable>(_ value: T) throws {
            try value.encode(to: RecordingEncoder(node: node.item(), codingPath: codingPath))
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            RecordingEncoder(node: node.item(), codingPath: codingPath).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            RecordingEncoder(node: node.item(), codingPath: codingPath).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder { RecordingEncoder(node: node.item(), codingPath: codingPath) }
    }

    struct SingleRecorder: SingleValueEncodingContainer {
        let node: Node
        var codingPath: [any CodingKey]

        mutating func encodeNil() throws {}
        // Scalars end the walk (without these, the generic method below would stand in for them and recurse).
        mutating func encode(_ value: Bool) throws {}
        mutating func encode(_ value: String) throws {}
        mutating func encode(_ value: Double) throws {}
        mutating func encode(_ value: Float) throws {}
        mutating func encode(_ value: Int) throws {}
        mutating func encode(_ value: Int8) throws {}
        mutating func encode(_ value: Int16) throws {}
        mutating func encode(_ value: Int32) throws {}
        mutating func encode(_ value: Int64) throws {}
        mutating func encode(_ value: UInt) throws {}
        mutating func encode(_ value: UInt8) throws {}
        mutating func encode(_ value: UInt16) throws {}
        mutating func encode(_ value: UInt32) throws {}
        mutating func encode(_ value: UInt64) throws {}
        mutating func encode<T: Encodable>(_ value: T) throws {
            // A wrapper (a Timestamp as its string, a raw-value enum) writes through its one value.
            try value.encode(to: RecordingEncoder(node: node, codingPath: codingPath))
        }
    }
}

extension JSONValue {
    /// This value with the keys of each object in `template`'s order (at the same path; array elements matched by
    /// position), keys the template lacks after them in their own order. Only the order changes, never a value.
    public func reordered(like template: JSONValue) -> JSONValue {
        switch (self, template) {
        case (.object(let object), .object(let shape)):
            var out = JSONObject()
            out.reserveCapacity(object.count)
            for (key, child) in shape {
                if let value = object[key] { out[key] = value.reordered(like: child) }
            }
            for (key, value) in object where out[key] == nil { out[key] = value }
            return .object(out)
        case (.array(let items), .array(let shapes)):
            return .array(items.enumerated().map { index, item in index < shapes.count ? item.reordered(like: shapes[index]) : item })
        default:
            return self
        }
    }
}
