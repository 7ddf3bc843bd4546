@testable import FledgeHTTP
import FledgeJSON
import Foundation
import Synchronization
import Testing

@testable import FledgeKubernetes

/// A scripted transport for the list/watch state machine: every request is
/// recorded and answered by `handler`.
final class ScriptedHTTPClient: HTTPClient {
    enum Answer {
        case response(Int, String)
        case stream([String], end: StreamEnd)
        case failure(HTTPError)
    }
    enum StreamEnd { case close, drop }

    let handler: @Sendable (HTTPRequest, Int) -> Answer
    private let log = Mutex<[HTTPRequest]>([])

    init(_ handler: @escaping @Sendable (HTTPRequest, Int) -> Answer) { self.handler = handler }

    var requests: [HTTPRequest] { log.withLock { $0 } }

    private func answer(_ request: HTTPRequest) -> Answer {
        let index = log.withLock { log in
            log.append(request)
            return log.count - 1
        }
        return handler(request, index)
    }

    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        switch answer(request) {
        case .response(let status, let body): return HTTPResponse(status: status, body: Array(body.utf8))
        case .failure(let error): throw error
        case .stream: Issue.record("stream answer to send"); return HTTPResponse(status: 500)
        }
    }

    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        switch answer(request) {
        case .response(let status, let body):
            throw HTTPError(kind: .status(status), method: request.method, url: request.url, message: "", body: Array(body.utf8))
        case .failure(let error): throw error
        case .stream(let lines, let end):
            let (stream, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
            for line in lines { continuation.yield(Array(line.utf8)) }
            switch end {
            case .close: continuation.finish()
            case .drop:
                continuation.finish(throwing: HTTPError(kind: .transfer, method: .get, url: request.url, message: "connection reset"))
            }
            return HTTPStreamingResponse(status: 200, headers: [:], lines: stream)
        }
    }
}

func object(_ name: String, rv: String, namespace: String = "shop", labels: JSONValue = [:]) -> JSONValue {
    ["apiVersion": "v1", "kind": "ConfigMap",
     "metadata": ["name": .string(name), "namespace": .string(namespace), "resourceVersion": .string(rv), "labels": labels]]
}

func listBody(_ items: [JSONValue], rv: String, continueToken: String? = nil) -> String {
    var metadata: JSONObject = ["resourceVersion": .string(rv)]
    if let continueToken { metadata["continue"] = .string(continueToken) }
    return JSONValue.object(["kind": "ConfigMapList", "apiVersion": "v1", "metadata": .object(metadata), "items": .array(items)])
        .serializedString()
}

func eventLine(_ type: String, _ object: JSONValue) -> String {
    JSONValue.object(["type": .string(type), "object": object]).serializedString()
}

func query(_ url: String, _ key: String) -> String? {
    URLComponents(string: url)?.queryItems?.first { $0.name == key }?.value
}

@Suite struct WatchEventParsingTests {
    @Test func parsesEveryType() throws {
        for type in ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"] {
            let event = try WatchEvent(parsing: Array(eventLine(type, object("a", rv: "7")).utf8))
            #expect(event.type.rawValue == type)
            #expect(event.resourceVersion == "7")
            #expect(event.object["metadata"]?["name"] == "a")
        }
        let error = try WatchEvent(
            parsing: Array(#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#.utf8))
        #expect(error.type == .error)
        let status = error.statusError(RequestContext(verb: "watch", resource: "configmaps"))
        #expect(status.isGone)
        #expect(status.message == "too old")
    }

    @Test func keepsUnknownFieldsExactly() throws {
        let line = #"{"type":"ADDED","object":{"metadata":{"name":"x","resourceVersion":"1"},"spec":{"z":1,"a":[1.5,"s",null,true],"big":9007199254740993}}}"#
        let event = try WatchEvent(parsing: Array(line.utf8))
        #expect(event.object.serializedString() == #"{"metadata":{"name":"x","resourceVersion":"1"},"spec":{"z":1,"a":[1.5,"s",null,true],"big":9007199254740993}}"#)
    }

    @Test(arguments: [
        ("not json", "not JSON"),
        ("[]", "expected an object"),
        (#"{"object":{}}"#, "no type"),
        (#"{"type":"EXPLODED","object":{}}"#, "unknown watch event type"),
        (#"{"type":"ADDED"}"#, "no object"),
        (#"{"type":"ADDED","object":"x"}"#, "no object"),
    ])
    func badLinesAreErrors(line: String, words: String) {
        do {
            _ = try WatchEvent(parsing: Array(line.utf8))
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .invalidResponse)
            #expect(error.description.contains(words), "\(error)")
        }
    }

    @Test func backoffGrowsToItsLimit() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), multiplier: 2)
        #expect(backoff.delay(attempt: 1) == .milliseconds(100))
        #expect(backoff.delay(attempt: 2) == .milliseconds(200))
        #expect(backoff.delay(attempt: 4) == .milliseconds(800))
        #expect(backoff.delay(attempt: 5) == .seconds(1))
        #expect(backoff.delay(attempt: 50) == .seconds(1))
    }
}

@Suite struct ListWatchUnitTests {
    let config = KubernetesConfiguration(server: "http://127.0.0.1:1", namespace: "shop", credentials: .token("t"))

    /// list → watch (dropped) → resume from the last version after backoff → ERROR 410 → relist → watch.
    @Test func resumesAfterDropsAndRelistsAfterGone() async throws {
        let transport = ScriptedHTTPClient { request, index in
            let watching = query(request.url, "watch") == "true"
            let rv = query(request.url, "resourceVersion")
            switch (index, watching) {
            case (0, false): return .response(200, listBody([object("a", rv: "5")], rv: "10"))
            case (1, true):
                #expect(rv == "10")
                return .stream([eventLine("ADDED", object("b", rv: "11")), "", eventLine("BOOKMARK", object("", rv: "12"))], end: .drop)
            case (2, true):
                #expect(rv == "12")  // resumes from the bookmark
                return .stream([eventLine("MODIFIED", object("b", rv: "13"))], end: .close)
            case (3, true):
                #expect(rv == "13")
                return .stream([#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","code":410,"reason":"Expired","message":"too old resource version"}}"#], end: .close)
            case (4, false): return .response(200, listBody([object("b", rv: "20")], rv: "21"))
            case (5, true):
                #expect(rv == "21")
                return .response(410, #"{"kind":"Status","code":410,"reason":"Gone","message":"gone"}"#)
            case (6, false): return .response(200, listBody([], rv: "30"))
            case (7, true): return .response(403, #"{"kind":"Status","code":403,"reason":"Forbidden","message":"no watch for you"}"#)
            default: return .stream([eventLine("DELETED", object("z", rv: "99"))], end: .close)
            }
        }
        let client = KubernetesClient(configuration: config, transport: transport)
        let sleeps = Mutex<[Duration]>([])
        let options = ListWatchOptions(
            backoff: Backoff(initial: .milliseconds(100), maximum: .seconds(5)),
            sleep: { duration in sleeps.withLock { $0.append(duration) } })
        var seen: [String] = []
        for try await event in client.listWatch(.configMaps, options: options) {
            switch event {
            case .resync(let items, let rv): seen.append("resync \(items.count) @\(rv)")
            case .resyncPage(let items): seen.append("page \(items.count)")
            case .added(let o): seen.append("added \(o["metadata"]!["name"]!.stringValue!)")
            case .modified(let o): seen.append("modified \(o["metadata"]!["name"]!.stringValue!)")
            case .deleted(let o): seen.append("deleted \(o["metadata"]!["name"]!.stringValue!)")
            case .bookmark(let rv): seen.append("bookmark \(rv)")
            case .failure(let error, let retry): seen.append("failure \(error.code ?? 0) \(retry)")
            }
            if seen.count == 10 { break }
        }
        #expect(
            seen == [
                "resync 1 @10", "added b", "bookmark 12", "failure 0 0.1 seconds", "modified b", "resync 1 @21",
                "resync 0 @30", "failure 403 0.1 seconds", "deleted z", "deleted z",
            ])
        let slept = sleeps.withLock { $0 }
        #expect(slept == [.milliseconds(100), .milliseconds(100)])
        let first = transport.requests[0]
        #expect(first.url.hasPrefix("http://127.0.0.1:1/api/v1/namespaces/shop/configmaps?"))
        #expect(first.headers["Authorization"] == "Bearer t")
        #expect(query(transport.requests[1].url, "allowWatchBookmarks") == "true")
        #expect(transport.requests[1].timeout == .zero)
    }

    @Test func repeatedFailuresBackOffExponentially() async throws {
        let transport = ScriptedHTTPClient { request, index in
            if index < 4 { return .failure(HTTPError(kind: .connectionRefused, method: .get, url: request.url, message: "refused")) }
            return .response(200, listBody([], rv: "1"))
        }
        let client = KubernetesClient(configuration: config, transport: transport)
        let sleeps = Mutex<[Duration]>([])
        let options = ListWatchOptions(
            backoff: Backoff(initial: .seconds(1), maximum: .seconds(5)), sleep: { d in sleeps.withLock { $0.append(d) } })
        var failures: [KubernetesError] = []
        for try await event in client.listWatch(.configMaps, options: options) {
            if case .failure(let error, _) = event { failures.append(error) }
            if case .resync = event { break }
        }
        let slept = sleeps.withLock { $0 }
        #expect(slept == [.seconds(1), .seconds(2), .seconds(4), .seconds(5)])
        #expect(failures.count == 4)
        #expect(failures[0].kind == .transport)
        #expect(failures[0].httpError?.kind == .connectionRefused)
        #expect(failures[0].verb == "list")
    }

    @Test func listAllFollowsContinueTokens() async throws {
        let transport = ScriptedHTTPClient { request, index in
            switch query(request.url, "continue") {
            case nil: return .response(200, listBody([object("a", rv: "1"), object("b", rv: "2")], rv: "50", continueToken: "p2"))
            case "p2": return .response(200, listBody([object("c", rv: "3")], rv: "51", continueToken: "p3"))
            default: return .response(200, listBody([object("d", rv: "4")], rv: "52"))
            }
        }
        let client = KubernetesClient(configuration: config, transport: transport)
        let all = try await client.listAll(.configMaps, namespace: .all, labelSelector: "app in (web,api),!legacy", pageSize: 2)
        #expect(all.items.map { $0["metadata"]!["name"]! } == ["a", "b", "c", "d"])
        #expect(all.resourceVersion == "50")
        #expect(all.continueToken == nil)
        #expect(transport.requests[0].url.hasPrefix("http://127.0.0.1:1/api/v1/configmaps?labelSelector=app%20in%20%28web%2Capi%29%2C%21legacy&limit=2"))

        var pages: [Int] = []
        for try await page in client.listPages(.configMaps, pageSize: 2) { pages.append(page.items.count) }
        #expect(pages == [2, 1, 1])
    }

    @Test func statusErrorsKeepTheServersWords() async throws {
        let transport = ScriptedHTTPClient { request, _ in
            switch request.method {
            case .put:
                return .response(409, #"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Operation cannot be fulfilled on virtualservices.networking.istio.io \"ps\": the object has been modified","reason":"Conflict","code":409}"#)
            case .post: return .response(409, #"{"kind":"Status","reason":"AlreadyExists","code":409,"message":"exists"}"#)
            case .get: return .response(502, "<html>bad gateway</html>")
            default: return .failure(HTTPError(kind: .tls, method: request.method, url: request.url, message: "certificate verify failed"))
            }
        }
        let client = KubernetesClient(configuration: config, transport: transport)
        let vs: JSONValue = ["metadata": ["name": "ps", "resourceVersion": "3"], "spec": [:]]
        do {
            _ = try await client.update(.virtualServices, vs)
            Issue.record("expected a conflict")
        } catch {
            #expect(error.isConflict)
            #expect(error.reason == "Conflict")
            #expect(error.code == 409)
            #expect(error.verb == "update")
            #expect(error.resource == "virtualservices.networking.istio.io")
            #expect(error.namespace == "shop")
            #expect(error.name == "ps")
            #expect(error.message.contains("the object has been modified"))
            #expect(error.description.hasPrefix("update virtualservices.networking.istio.io shop/ps: HTTP 409 Conflict: "))
        }
        do {
            _ = try await client.create(.virtualServices, vs)
            Issue.record("expected an error")
        } catch {
            #expect(error.isAlreadyExists)
            #expect(!error.isConflict)
        }
        do {
            _ = try await client.get(.deployments, name: "web")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == 502)
            #expect(error.message.contains("bad gateway"))
        }
        do {
            _ = try await client.delete(.deployments, name: "web")
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .transport)
            #expect(error.httpError?.kind == .tls)
            #expect(error.description.contains("certificate verify failed"))
        }
        do {
            _ = try await client.update(.virtualServices, ["metadata": [:]])
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .invalidArgument)
        }
    }

    @Test func patchesCarryTheirContentTypes() async throws {
        let transport = ScriptedHTTPClient { request, _ in .response(200, String(decoding: request.body ?? [], as: UTF8.self)) }
        let client = KubernetesClient(configuration: config, transport: transport)
        let merged = try await client.patch(.rollouts, name: "r", .merge(["spec": ["paused": true]]))
        #expect(merged == ["spec": ["paused": true]])
        _ = try await client.patch(
            .virtualServices, namespace: "other", name: "vs",
            .json([.test(path: "/metadata/resourceVersion", value: "5"), .replace(path: "/spec/http/0/route/0/weight", value: 90)]))
        _ = try await client.patchStatus(.rollouts, name: "r", .merge(["status": ["phase": "Progressing"]]))
        let requests = transport.requests
        #expect(requests[0].headers["Content-Type"] == "application/merge-patch+json")
        #expect(requests[0].url == "http://127.0.0.1:1/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/r")
        #expect(requests[1].headers["Content-Type"] == "application/json-patch+json")
        #expect(requests[1].url == "http://127.0.0.1:1/apis/networking.istio.io/v1/namespaces/other/virtualservices/vs")
        #expect(
            String(decoding: requests[1].body!, as: UTF8.self)
                == #"[{"op":"test","path":"/metadata/resourceVersion","value":"5"},{"op":"replace","path":"/spec/http/0/route/0/weight","value":90}]"#)
        #expect(requests[2].url.hasSuffix("/rollouts/r/status"))
        #expect(JSONPointer.escape("a/b~c") == "a~1b~0c")
        let annotation = JSONPointer("/metadata/annotations").appending("fledge.dev/step")
        #expect(JSONPatchOperation.remove(path: annotation).json == ["op": "remove", "path": "/metadata/annotations/fledge.dev~1step"])
    }

    @Test func unauthorizedRereadsTheTokenFileOnce() async throws {
        let dir = try TempDir()
        let path = try dir.write("token", "old")
        let transport = ScriptedHTTPClient { request, _ in
            request.headers["Authorization"] == "Bearer new" ? .response(200, "{}") : .response(401, #"{"kind":"Status","code":401,"reason":"Unauthorized"}"#)
        }
        let client = KubernetesClient(
            configuration: KubernetesConfiguration(server: "http://x", credentials: .tokenFile(path: path, fallback: nil)),
            transport: transport)
        await #expect(throws: KubernetesError.self) { try await client.get(.pods, name: "p") }
        #expect(transport.requests.count == 2)  // retried once after re-reading
        try "new".write(toFile: path, atomically: true, encoding: .utf8)
        _ = try await client.get(.pods, name: "p")
    }
}
