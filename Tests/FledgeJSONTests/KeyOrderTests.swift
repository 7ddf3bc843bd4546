import FledgeJSON
import Foundation
import Testing

/// `JSONValue(encoding:)` keeps a type's declaration order (Foundation's JSONEncoder does not), and
/// `reordered(like:)` changes only the order.
@Suite("key order")
struct KeyOrderTests {
    struct Inner: Codable { var zeta: Int; var alpha: String; var mid: Double? }
    enum Kind: String, Codable { case one }
    struct Outer: Codable {
        var phase: Kind
        var stableRevision: String?
        var lastProgressAt: String
        var failedChecks: Int
        var items: [Inner]
        var labels: [String: Int]
        var nested: Inner
        var absent: String?
    }

    static let value = Outer(
        phase: .one, stableRevision: "s", lastProgressAt: "t", failedChecks: 3,
        items: [Inner(zeta: 1, alpha: "a", mid: 0.5), Inner(zeta: 2, alpha: "b", mid: nil)],
        labels: ["q": 1, "c": 2, "x": 3, "a": 4, "m": 5, "b": 6], nested: Inner(zeta: 9, alpha: "z", mid: 1.5), absent: nil)

    @Test func encodingKeepsDeclarationOrder() throws {
        // Many times: the hash order of JSONEncoder's dictionaries changes from one encoding to the next.
        for _ in 0..<20 {
            let json = try JSONValue(encoding: Self.value)
            #expect(json.objectValue.map { Array($0.keys) } == ["phase", "stableRevision", "lastProgressAt", "failedChecks", "items", "labels", "nested"])
            #expect(json["items"]?[0]?.objectValue.map { Array($0.keys) } == ["zeta", "alpha", "mid"])
            #expect(json["items"]?[1]?.objectValue.map { Array($0.keys) } == ["zeta", "alpha"])
            #expect(json["nested"]?.objectValue.map { Array($0.keys) } == ["zeta", "alpha", "mid"])
            #expect(json["labels"]?.objectValue.map { Array($0.keys) } == ["a", "b", "c", "m", "q", "x"])
            // The values are JSONEncoder's.
            #expect(json == (try JSONValue(parsing: Array(JSONEncoder().encode(Self.value)))))
            #expect(json.serializedString().hasPrefix(#"{"phase":"one","stableRevision":"s","lastProgressAt":"t","failedChecks":3,"items":[{"zeta":1,"#))
        }
    }

    @Test func reorderedChangesOnlyTheOrder() throws {
        let stored = try JSONValue(parsing: #"{"failedChecks":3,"extra":{"y":1,"x":2},"items":[{"alpha":"a","zeta":1},{"alpha":"b","zeta":2},{"k":1}],"phase":"one"}"#)
        let ordered = stored.reordered(like: try KeyOrder.of(Self.value))
        #expect(ordered == stored)
        #expect(ordered.serializedString() == #"{"phase":"one","failedChecks":3,"items":[{"zeta":1,"alpha":"a"},{"zeta":2,"alpha":"b"},{"k":1}],"extra":{"y":1,"x":2}}"#)
        // A shape that does not match (a scalar where the template has an object) is left alone.
        #expect(JSONValue.string("x").reordered(like: try KeyOrder.of(Self.value)) == .string("x"))
        #expect(try KeyOrder.of(Self.value)["phase"] == .null)
    }
}
