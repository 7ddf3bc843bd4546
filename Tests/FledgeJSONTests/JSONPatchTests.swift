import FledgeJSON
import Testing

@Suite struct MergePatchTests {
    // The examples of RFC 7386 appendix A.
    @Test(arguments: [
        (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
        (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
        (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
        (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
        (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
        (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
        (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
        (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
        (#"{"a":"foo"}"#, #"null"#, #"null"#),
        (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
        (#"{"e":null}"#, #"{"a":1}"#, #"{"e":null,"a":1}"#),
        (#"[1,2]"#, #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
        (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
    ])
    func rfc7386Examples(original: String, patch: String, expected: String) throws {
        let result = try JSONValue(parsing: original).applyingMergePatch(try JSONValue(parsing: patch))
        #expect(result == (try JSONValue(parsing: expected)))
    }

    @Test func keepsKeyOrderAndUnknownFields() throws {
        let vs = try JSONValue(parsing: #"{"spec":{"hosts":["a"],"http":[{"retries":{"attempts":3}}],"zzz":1}}"#)
        let patched = vs.applyingMergePatch(try JSONValue(parsing: #"{"spec":{"hosts":["b"]}}"#))
        #expect(patched.serializedString() == #"{"spec":{"hosts":["b"],"http":[{"retries":{"attempts":3}}],"zzz":1}}"#)
    }

    @Test func diffRoundTrips() throws {
        let a = try JSONValue(parsing: #"{"a":1,"b":{"c":2,"d":3},"e":[1]}"#)
        let b = try JSONValue(parsing: #"{"a":1,"b":{"c":5},"e":[2],"f":true}"#)
        let patch = a.mergePatch(to: b)
        #expect(patch == (try JSONValue(parsing: #"{"b":{"c":5,"d":null},"e":[2],"f":true}"#)))
        #expect(a.applyingMergePatch(patch) == b)
    }
}

@Suite struct JSONPatchTests {
    func run(_ document: String, _ patch: String) throws -> JSONValue {
        try JSONPatch(json: try JSONValue(parsing: patch)).apply(to: try JSONValue(parsing: document))
    }

    // Examples from RFC 6902 appendix A.
    @Test(arguments: [
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"baz":"qux","foo":"bar"}"#),
        (#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#),
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#),
        (#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#),
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#, #"{"baz":"boo","foo":"bar"}"#),
        (#"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#,
         #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
         #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#),
        (#"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#,
         #"{"foo":["all","cows","eat","grass"]}"#),
        (#"{"baz":"qux","foo":["a",2,"c"]}"#,
         #"[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]"#,
         #"{"baz":"qux","foo":["a",2,"c"]}"#),
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#,
         #"{"foo":"bar","child":{"grandchild":{}}}"#),
        (#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#, #"{"foo":["bar",["abc","def"]]}"#),
        (#"{"/":9,"~1":10}"#, #"[{"op":"test","path":"/~01","value":10},{"op":"copy","from":"/~1","path":"/x"}]"#,
         #"{"/":9,"~1":10,"x":9}"#),
        (#"{"a":1}"#, #"[{"op":"replace","path":"","value":[1]}]"#, #"[1]"#),
    ])
    func rfc6902Examples(document: String, patch: String, expected: String) throws {
        #expect(try run(document, patch) == (try JSONValue(parsing: expected)))
    }

    @Test(arguments: [
        (#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#, "test failed"),
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#, "does not exist"),
        (#"{"foo":[1]}"#, #"[{"op":"add","path":"/foo/5","value":1}]"#, "out of bounds"),
        (#"{"foo":1}"#, #"[{"op":"remove","path":"/bar"}]"#, "does not exist"),
        (#"{"foo":1}"#, #"[{"op":"replace","path":"/bar","value":2}]"#, "does not exist"),
        (#"{"foo":{"a":1}}"#, #"[{"op":"move","from":"/foo","path":"/foo/a/b"}]"#, "own child"),
        (#"{"foo":1}"#, #"[{"op":"frob","path":"/foo"}]"#, "unknown op"),
        (#"{"foo":1}"#, #"[{"op":"add","path":"/foo"}]"#, "missing \"value\""),
        (#"{"foo":1}"#, #"{"op":"add"}"#, "must be an array"),
        (#"{"foo":1}"#, #"[{"op":"add","path":"foo","value":1}]"#, "must be empty or start"),
        (#"{"foo":[1]}"#, #"[{"op":"add","path":"/foo/01","value":1}]"#, "out of bounds"),
    ])
    func failuresNameTheProblem(document: String, patch: String, message: String) throws {
        do {
            _ = try run(document, patch)
            Issue.record("expected failure containing \(message)")
        } catch let error as JSONPatchError {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }

    @Test func failedPatchChangesNothing() throws {
        let document = try JSONValue(parsing: #"{"a":1}"#)
        let patch = try JSONPatch(json: try JSONValue(parsing:
            #"[{"op":"replace","path":"/a","value":2},{"op":"test","path":"/a","value":3}]"#))
        #expect(throws: JSONPatchError.self) { try patch.apply(to: document) }
        #expect(document == ["a": 1])
    }

    @Test func pointerRoundTrip() throws {
        // Through a variable: `JSONPointer("…")` with a literal argument is the literal initializer, not the parser.
        let text = "/a~1b/c~0d/0"
        let pointer = try JSONPointer(text)
        #expect(pointer.tokens == ["a/b", "c~d", "0"])
        #expect(pointer.description == "/a~1b/c~0d/0")
        // Literals (how the Kubernetes client's callers write patches) parse the same way.
        let literal: JSONPointer = "/a~1b/c~0d/0"
        #expect(literal == pointer)
        #expect(JSONPointer("/metadata/annotations").appending("fledge.dev/step").description == "/metadata/annotations/fledge.dev~1step")
        #expect(JSONPointer.escape("a/b~c") == "a~1b~0c")
        // Text from input goes through the throwing initializer (a literal would trap instead).
        let fromInput = String("no-leading-slash")
        #expect(throws: JSONPatchError.self) { try JSONPointer(fromInput) }
    }
}
