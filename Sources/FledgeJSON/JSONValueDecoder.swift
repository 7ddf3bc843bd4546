/// Decodes a typed view straight from a `JSONValue`, without writing JSON text for Foundation's decoder first.
///
/// Its errors say where and what: a `DecodingError` whose coding path is the field's and whose debug description
/// is a message for people (`expected an integer, found 50.5`, `1e+23 is too large for an integer`). Foundation's
/// decoder loses both for a number that does not fit the field (`The given data was not valid JSON.`, no path).
///
/// With `collectingProblems`, a value of the wrong type under an optional field (`decodeIfPresent`, which is how
/// Swift decodes every optional property) is recorded and read as absent, so one wrong field does not hide the
/// others.
public enum JSONValueDecoder {
    /// Decodes `type`, throwing at the first problem.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try ValueDecoder(value: value, codingPath: [], state: DecodingState(collecting: false)).decode(T.self)
    }

    /// A value that did not decode, and the optional field read as absent because of it (the field itself, or the
    /// optional field that holds it: a list of which one item is wrong is read as absent as a whole).
    public struct Problem {
        public var error: DecodingError
        public var absentField: [any CodingKey]
    }

    /// Decodes `type`, reading optional fields of the wrong type as absent; returns the problems met, in document
    /// order. Throws only for a problem no optional field absorbs (a required field missing or wrong).
    public static func decodeCollectingProblems<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> (value: T, problems: [Problem]) {
        let state = DecodingState(collecting: true)
        let decoded = try ValueDecoder(value: value, codingPath: [], state: state).decode(T.self)
        return (decoded, state.problems)
    }

    /// What a value is, for messages: `50.5`, `"ten"`, `true`, `null`, `a list`, `an object`.
    public static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return numberText(d)
        case .string(let s): return s.count > 40 ? "\"\(s.prefix(37))...\"" : "\"\(s)\""
        case .array: return "a list"
        case .object: return "an object"
        }
    }

    static func numberText(_ d: Double) -> String {
        if d.rounded() == d, abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }
}

/// Shared by every decoder and container of one decode.
private final class DecodingState {
    let collecting: Bool
    var problems: [JSONValueDecoder.Problem] = []
    init(collecting: Bool) { self.collecting = collecting }
}

private struct IndexKey: CodingKey {
    var index: Int
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { index = intValue }
    var stringValue: String { String(index) }
    var intValue: Int? { index }
}

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    let state: DecodingState
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func mismatch<T>(_ type: T.Type, wanted: String) -> DecodingError {
        .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(wanted), found \(JSONValueDecoder.describe(value))"))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch(JSONObject.self, wanted: "an object") }
        return KeyedDecodingContainer(KeyedContainer<Key>(object: object, codingPath: codingPath, state: state))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let array) = value else { throw mismatch([JSONValue].self, wanted: "a list") }
        return UnkeyedContainer(array: array, codingPath: codingPath, state: state)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleContainer(decoder: self) }

    /// `T` from this value: scalars converted here, `JSONValue` as it is (key order kept), anything else by its
    /// own `init(from:)`.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if T.self == JSONValue.self { return value as! T }
        if case .null = value, !(T.self is any ExpressibleByNilLiteral.Type) {
            throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "must not be null"))
        }
        switch type {
        case is String.Type:
            guard case .string(let s) = value else { throw mismatch(type, wanted: "a string") }
            return s as! T
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch(type, wanted: "a boolean") }
            return b as! T
        case is Double.Type: return try number(type) as! T
        case is Float.Type: return Float(try number(type)) as! T
        case is Int.Type: return try integer(Int.self) as! T
        case is Int8.Type: return try integer(Int8.self) as! T
        case is Int16.Type: return try integer(Int16.self) as! T
        case is Int32.Type: return try integer(Int32.self) as! T
        case is Int64.Type: return try integer(Int64.self) as! T
        case is UInt.Type: return try integer(UInt.self) as! T
        case is UInt8.Type: return try integer(UInt8.self) as! T
        case is UInt16.Type: return try integer(UInt16.self) as! T
        case is UInt32.Type: return try integer(UInt32.self) as! T
        case is UInt64.Type: return try integer(UInt64.self) as! T
        default: return try T(from: self)
        }
    }

    func number<T>(_ type: T.Type) throws -> Double {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: throw mismatch(type, wanted: "a number")
        }
    }

    /// An integer, also from a number with no fractional part (as Foundation's decoder reads `5.0`).
    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let fits: T?
        switch value {
        case .int(let i): fits = T(exactly: i)
        case .double(let d):
            guard d.isFinite, d.rounded() == d else { throw mismatch(type, wanted: "an integer") }
            fits = T(exactly: d)
        default: throw mismatch(type, wanted: "an integer")
        }
        guard let fits else {
            let what = T.isSigned || (value.doubleValue ?? 0) >= 0 ? "is too large for an integer" : "is negative; expected an integer of at least 0"
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(JSONValueDecoder.describe(value)) \(what)"))
        }
        return fits
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]
    let state: DecodingState

    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    func child(_ key: Key) throws -> ValueDecoder {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "is required"))
        }
        return ValueDecoder(value: value, codingPath: codingPath + [key], state: state)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try child(key).value.isNull }

    func required<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T { try child(key).decode(T.self) }

    /// nil when absent or null; when collecting, also when it does not decode (the problem is recorded).
    func optional<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        guard let value = object[key.stringValue], !value.isNull else { return nil }
        let path = codingPath + [key]
        do {
            return try ValueDecoder(value: value, codingPath: path, state: state).decode(T.self)
        } catch let error as DecodingError where state.collecting {
            state.problems.append(JSONValueDecoder.Problem(error: error, absentField: path))
            return nil
        }
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try required(type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try required(type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try required(type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try required(type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try required(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try required(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try required(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try required(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try required(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try required(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try required(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try required(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try required(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try required(type, key) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try required(type, key) }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try optional(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try optional(type, key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try optional(type, key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try optional(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try optional(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try optional(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try optional(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try optional(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try optional(type, key) }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? { try optional(type, key) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }

    func superDecoder() throws -> any Decoder { ValueDecoder(value: .object(object), codingPath: codingPath, state: state) }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ValueDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key], state: state)
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let array: [JSONValue]
    let codingPath: [any CodingKey]
    let state: DecodingState
    var currentIndex = 0

    init(array: [JSONValue], codingPath: [any CodingKey], state: DecodingState) {
        self.array = array
        self.codingPath = codingPath
        self.state = state
    }

    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                JSONValue.self, .init(codingPath: codingPath + [IndexKey(currentIndex)], debugDescription: "the list has only \(array.count) item\(array.count == 1 ? "" : "s")"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(value: array[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)], state: state)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, array[currentIndex].isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(T.self) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }

    mutating func superDecoder() throws -> any Decoder { try next() }
}

private struct SingleContainer: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }
    func decodeNil() -> Bool { decoder.value.isNull }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self) }
}
