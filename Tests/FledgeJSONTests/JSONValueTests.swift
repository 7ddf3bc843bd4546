import FledgeJSON
import Foundation
import Testing

@Suite("JSONValue")
struct JSONValueTests {
    @Test func roundTripKeepsKeyOrderAndExactIntegers() throws {
        let text = #"{"spec":{"http":[{"match":[{"headers":{"x-canary":{"exact":"true"}}}],"route":[{"destination":{"host":"product-service","subset":"canary"}}]}],"hosts":["product-service"]},"big":9007199254740993,"neg":-5,"f":0.1,"e":1.5e-07,"t":true,"n":null,"apiVersion":"networking.istio.io/v1"}"#
        let value = try JSONValue(parsing: text)
        #expect(value.serializedString() == text)
        #expect(value["big"] == .int(9_007_199_254_740_993))
        #expect(value.objectValue.map { Array($0.keys) } == ["spec", "big", "neg", "f", "e", "t", "n", "apiVersion"])
    }

    @Test func stringsEscapesAndUnicode() throws {
        let value = try JSONValue(parsing: #"["a\"b\\c\/d\n\t\u00e9\ud83d\ude00", "ü€"]"#)
        #expect(value[0] == .string("a\"b\\c/d\n\té😀"))
        #expect(value[1] == .string("ü€"))
        #expect(value.serializedString() == #"["a\"b\\c/d\n\té😀","ü€"]"#)
        #expect(JSONValue.string("\u{01}").serializedString() == #""\u0001""#)
    }

    @Test func equalityFollowsJSONMeaning() throws {
        #expect(try JSONValue(parsing: #"{"a":1,"b":2}"#) == JSONValue(parsing: #"{"b":2,"a":1.0}"#))
        #expect(try JSONValue(parsing: #"{"a":1}"#) != JSONValue(parsing: #"{"a":1,"b":null}"#))
        #expect(try JSONValue(parsing: "[1,2]") != JSONValue(parsing: "[2,1]"))
        let set: Set<JSONValue> = [try JSONValue(parsing: #"{"a":1,"b":2}"#), try JSONValue(parsing: #"{"b":2,"a":1}"#)]
        #expect(set.count == 1)
    }

    @Test func pathsReadAndWrite() throws {
        var value = try JSONValue(parsing: #"{"spec":{"template":{"metadata":{"labels":{"app":"a"}}}},"z":1}"#)
        #expect(value[path: ["spec", "template", "metadata", "labels", "app"]] == "a")
        value[path: ["spec", "template", "metadata", "labels", "version"]] = "v2"
        value[path: ["status", "phase"]] = "Progressing"
        #expect(value.serializedString() == #"{"spec":{"template":{"metadata":{"labels":{"app":"a","version":"v2"}}}},"z":1,"status":{"phase":"Progressing"}}"#)
        value["z"] = nil
        #expect(value["z"] == nil)
    }

    @Test(arguments: [
        ("", "unexpected end of input"),
        ("{", "expected a string key"),
        (#"{"a" 1}"#, "expected ':'"),
        (#"{"a":1,}"#, "expected a string key"),
        ("[1,2", "unexpected end of input"),
        ("[1 2]", "expected ',' or ']'"),
        ("01", "leading zero"),
        ("1.", "no digit after '.'"),
        ("1e", "no digit in the exponent"),
        ("-", "invalid number"),
        ("tru", "unexpected end of input"),
        ("nul!", "invalid literal"),
        (#""abc"#, "unterminated string"),
        ("\"a\u{01}b\"", "control character"),
        (#""\x""#, "invalid escape"),
        (#""\u12G4""#, "invalid hex digit"),
        ("1 2", "unexpected content after the JSON value"),
        ("<html>", "unexpected character '<'"),
        ("1e999", "number out of range"),
    ])
    func syntaxErrorsSayWhatAndWhere(input: String, expected: String) {
        #expect {
            _ = try JSONValue(parsing: input)
        } throws: { error in
            (error as? JSONParseError)?.message.contains(expected) == true
        }
    }

    @Test func errorPositionsHaveLineAndColumn() {
        #expect {
            _ = try JSONValue(parsing: "{\n  \"a\": 1,\n  \"b\": ?\n}")
        } throws: { error in
            guard let error = error as? JSONParseError else { return false }
            return error.line == 3 && error.column == 8
        }
    }

    @Test func hostileNestingIsRefusedNotACrash() {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: String(repeating: "[", count: 1_000_000)) }
        let deepButAllowed = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect(throws: Never.self) { try JSONValue(parsing: deepButAllowed) }
    }

    @Test func integersAreExactAcrossTheFastPathBoundary() throws {
        // Up to 18 digits take the no-text fast path; 19 digits and beyond go through Int64(text) or Double.
        let text = "[999999999999999999,-999999999999999999,1000000000000000000,9223372036854775807,-9223372036854775808,0,-0,7]"
        let value = try JSONValue(parsing: text)
        #expect(value.arrayValue == [
            .int(999_999_999_999_999_999), .int(-999_999_999_999_999_999), .int(1_000_000_000_000_000_000),
            .int(Int64.max), .int(Int64.min), .int(0), .int(0), .int(7),
        ])
        #expect(value.serializedString() == "[999999999999999999,-999999999999999999,1000000000000000000,9223372036854775807,-9223372036854775808,0,0,7]")
        if case .double(let d) = try JSONValue(parsing: "9223372036854775808") {
            #expect(d == 9_223_372_036_854_775_808)
        } else {
            Issue.record("Int64.max + 1 must become a double")
        }
        if case .double(let d) = try JSONValue(parsing: "-12.5e1") { #expect(d == -125) } else { Issue.record("expected a double") }
    }

    @Test func repeatedKeysKeepFirstPositionAndLastValue() throws {
        let value = try JSONValue(parsing: #"{"a":1,"b":2,"a":3}"#)
        #expect(value.serializedString() == #"{"a":3,"b":2}"#)
        // The same key spelled with an escape is still the same key.
        #expect(try JSONValue(parsing: #"{"a":1,"\u0061":2,"c":3}"#).serializedString() == #"{"a":2,"c":3}"#)
        #expect(try JSONValue(parsing: #"{"":1,"":2}"#).serializedString() == #"{"":2}"#)
        // Same length, different bytes: two keys.
        #expect(try JSONValue(parsing: #"{"ab":1,"ac":2,"ba":3}"#).objectValue?.count == 3)
        // Large objects take the hashing check.
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(try JSONValue(parsing: "{\(many)}").objectValue?.count == 40)
        let repeated = try JSONValue(parsing: "{\(many),\"k7\":\"last\"}")
        #expect(repeated.objectValue?.count == 40)
        #expect(repeated["k7"] == "last")
        #expect(repeated.objectValue?.keys.firstIndex(of: "k7") == 7)
    }

    @Test func nestedContainersShareNoMembers() throws {
        // Members of inner containers must not leak into outer ones (the parser collects them on shared stacks).
        let text = #"{"a":{"x":1,"y":[1,{"z":2},[]]},"b":[[],{},[{}]],"c":{"x":3},"d":[{"k":"v"},{"k":"w"}]}"#
        let value = try JSONValue(parsing: text)
        #expect(value.serializedString() == text)
        #expect(value[path: ["a", "y"]]?[1]?["z"] == 2)
        #expect(value["d"]?[1]?["k"] == "w")
    }

    @Test func escapesAndSurrogatesDecodeToUTF8() throws {
        #expect(try JSONValue(parsing: #""\u20ac\u00e9\u0041\u0000""#) == .string("€éA\u{0}"))
        #expect(try JSONValue(parsing: #""x\ud83d\ude00y""#) == .string("x😀y"))
        // Lone surrogates are replaced, as Go's decoder does.
        #expect(try JSONValue(parsing: #""\ud83d""#) == .string("\u{FFFD}"))
        #expect(try JSONValue(parsing: #""\ude00x""#) == .string("\u{FFFD}x"))
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: #""\ud83d\u0041""#) }
        // Raw multi-byte UTF-8 passes through the no-escape path untouched.
        #expect(try JSONValue(parsing: #""ü€😀""#) == .string("ü€😀"))
        // An escape in a key.
        #expect(try JSONValue(parsing: #"{"a\nb":1}"#).objectValue?.keys.first == "a\nb")
    }

    @Test func nestingLimitAppliesToObjectsToo() throws {
        func nested(_ depth: Int) -> String {
            String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        }
        #expect(throws: Never.self) { try JSONValue(parsing: nested(JSONValue.maximumDepth)) }
        #expect {
            _ = try JSONValue(parsing: nested(JSONValue.maximumDepth + 1))
        } throws: { error in
            (error as? JSONParseError)?.message.contains("nesting deeper") == true
        }
    }

    @Test func prettyPrinting() throws {
        let value = try JSONValue(parsing: #"{"a":[1,{"b":null}],"c":{}}"#)
        #expect(value.serializedString(pretty: true) == """
            {
              "a": [
                1,
                {
                  "b": null
                }
              ],
              "c": {}
            }
            """)
        #expect(value.serializedString(sortedKeys: true) == #"{"a":[1,{"b":null}],"c":{}}"#)
    }

    @Test func codableBridge() throws {
        struct Weight: Codable, Equatable { var subset: String; var weight: Int }
        let value = try JSONValue(encoding: Weight(subset: "stable", weight: 90))
        #expect(value["weight"] == 90)
        #expect(try value.decode(Weight.self) == Weight(subset: "stable", weight: 90))
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"x":[1,2.5,"s",null,true]}"#.utf8))
        #expect(decoded == ["x": [1, 2.5, "s", nil, true]])
    }
}

@Suite("JSONValueDecoder")
struct JSONValueDecoderTests {
    struct Stage: Decodable, Equatable {
        var weight: Int?
        var hold: String?
    }

    struct Spec: Decodable, Equatable {
        var name: String
        var ratio: Double?
        var enabled: Bool?
        var stages: [Stage]?
        var labels: [String: String]?
        var patch: JSONValue?
        var count: Int64?
    }

    @Test func decodesWhatFoundationsDecoderDecodes() throws {
        let value: JSONValue = [
            "name": "a", "ratio": 2, "enabled": true, "stages": [["weight": 10, "hold": "1m"], ["weight": 5.0]],
            "labels": ["app": "web"], "patch": ["z": 1, "a": [1, "x"]], "count": .int(Int64.max),
        ]
        let spec = try JSONValueDecoder.decode(Spec.self, from: value)
        #expect(spec == (try value.decode(Spec.self)))
        #expect(spec.stages == [Stage(weight: 10, hold: "1m"), Stage(weight: 5)])
        // A JSONValue field is taken as it is, key order kept.
        #expect(spec.patch?.objectValue.map { Array($0.keys) } == ["z", "a"])
        #expect(try JSONValueDecoder.decode(Spec.self, from: ["name": "a", "ratio": .null]).ratio == nil)
    }

    @Test func errorsCarryThePathAndWhatWasFound() {
        func failure(_ value: JSONValue) -> String {
            do {
                _ = try JSONValueDecoder.decode(Spec.self, from: value)
                return "decoded"
            } catch let error as DecodingError {
                switch error {
                case .typeMismatch(_, let c), .dataCorrupted(let c), .valueNotFound(_, let c):
                    return c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() + ": " + c.debugDescription
                case .keyNotFound(let key, _): return "missing \(key.stringValue)"
                @unknown default: return "\(error)"
                }
            } catch {
                return "\(error)"
            }
        }
        #expect(failure(["name": "a", "stages": [["weight": 1], ["weight": 50.5]]]) == ".stages[1].weight: expected an integer, found 50.5")
        #expect(failure(["name": "a", "count": .double(1e23)]) == ".count: 1e+23 is too large for an integer")
        #expect(failure(["name": "a", "enabled": "yes"]) == ".enabled: expected a boolean, found \"yes\"")
        #expect(failure(["name": "a", "stages": "x"]) == ".stages: expected a list, found \"x\"")
        #expect(failure(["name": "a", "labels": ["app": 1]]) == ".labels.app: expected a string, found 1")
        #expect(failure(["name": .null]) == ".name: must not be null")
        #expect(failure([:]) == "missing name")
        #expect(failure(["name": "a", "ratio": [1]]) == ".ratio: expected a number, found a list")
    }

    @Test func collectingReadsWrongOptionalFieldsAsAbsent() throws {
        let value: JSONValue = ["name": "a", "ratio": "high", "stages": [["weight": 10], ["weight": "x", "hold": 3]], "enabled": false]
        let (spec, problems) = try JSONValueDecoder.decodeCollectingProblems(Spec.self, from: value)
        #expect(spec == Spec(name: "a", ratio: nil, enabled: false, stages: [Stage(weight: 10), Stage(weight: nil, hold: nil)]))
        #expect(problems.map { $0.absentField.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: "/") } == ["ratio", "stages/1/weight", "stages/1/hold"])
        // A required field stays an error.
        #expect(throws: DecodingError.self) { try JSONValueDecoder.decodeCollectingProblems(Spec.self, from: ["ratio": 1]) }
    }
}
