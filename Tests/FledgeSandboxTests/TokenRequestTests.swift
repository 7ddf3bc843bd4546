import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

/// TokenRequests over the API, with the sandbox's clock moved by the test: how long a token lasts and what ends it.
/// (`kubectl create token` itself: KubectlFidelityTests.createTokenActsAsTheServiceAccountWithItsRBAC.)
@Suite struct TokenRequestTests {
    static let accounts: JSONValue = try! JSONValue(parsing: Array("""
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fledge", "namespace": "default"}}
        """.utf8))

    static func pod(serviceAccount: String) -> JSONValue {
        [
            "apiVersion": "v1", "kind": "Pod", "metadata": ["name": "controller-0", "namespace": "default"],
            "spec": ["serviceAccountName": .string(serviceAccount), "containers": [["name": "fledge", "image": "fledge:dev"]]],
        ]
    }

    static let tokenPath = "/api/v1/namespaces/default/serviceaccounts/fledge/token"

    static func withTokenSandbox(_ body: (Harness, ManualSandboxClock) async throws -> Void) async throws {
        let clock = ManualSandboxClock()
        try await withSandbox(.init(tokens: ["admin-token": .admin()], clock: clock), token: "admin-token") { h in
            try await h.server.store.apply([accounts])
            try await body(h, clock)
        }
    }

    @Test func aTokenLastsItsGrantedDurationAndNoLonger() async throws {
        try await Self.withTokenSandbox { h, clock in
            let answer = try await h.request(.post, Self.tokenPath, body: [
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": ["expirationSeconds": 900],
            ])
            #expect(answer.status == 201, "\(answer.json)")
            #expect(answer.json["kind"] == "TokenRequest")
            #expect(answer.json[path: ["metadata", "name"]] == "fledge" && answer.json[path: ["metadata", "namespace"]] == "default")
            #expect(answer.json[path: ["spec", "expirationSeconds"]] == 900)
            #expect(answer.json[path: ["spec", "audiences"]] == ["https://kubernetes.default.svc.cluster.local"])
            let issued = ISO8601DateFormatter().date(from: answer.json[path: ["metadata", "creationTimestamp"]]?.stringValue ?? "")
            let expires = ISO8601DateFormatter().date(from: answer.json[path: ["status", "expirationTimestamp"]]?.stringValue ?? "")
            #expect(issued == clock.now && expires == clock.now.addingTimeInterval(900), "\(answer.json)")
            let token = try #require(answer.json[path: ["status", "token"]]?.stringValue)

            // It authenticates as the service account (RBAC is off here, so it may read)…
            var whoAmI = try await h.request(.post, "/apis/authentication.k8s.io/v1/selfsubjectreviews", body: ["kind": "SelfSubjectReview"], token: token)
            #expect(whoAmI.json[path: ["status", "userInfo", "username"]] == "system:serviceaccount:default:fledge", "\(whoAmI.json)")
            clock.advance(by: .seconds(899))
            #expect(try await h.request(.get, "/api/v1/namespaces/default/pods", token: token).status == 200)
            // …until it expires; an unknown token never does.
            clock.advance(by: .seconds(1))
            whoAmI = try await h.request(.post, "/apis/authentication.k8s.io/v1/selfsubjectreviews", body: ["kind": "SelfSubjectReview"], token: token)
            #expect(whoAmI.status == 401 && whoAmI.json["reason"] == "Unauthorized", "\(whoAmI.json)")
            #expect(try await h.request(.get, "/api/v1/namespaces/default/pods", token: "made-up").status == 401)

            // Without a duration a token lasts an hour.
            let hour = try await h.request(.post, Self.tokenPath, body: ["kind": "TokenRequest", "spec": [:]])
            #expect(hour.json[path: ["spec", "expirationSeconds"]] == 3600, "\(hour.json)")
        }
    }

    @Test func aTokenBoundToAPodEndsWithThePod() async throws {
        try await Self.withTokenSandbox { h, _ in
            try await h.server.store.apply([Self.pod(serviceAccount: "fledge")])
            let uid = try #require(await h.server.store.object(.pods, namespace: "default", name: "controller-0")?[path: ["metadata", "uid"]]?.stringValue)
            let answer = try await h.request(.post, Self.tokenPath, body: [
                "kind": "TokenRequest",
                "spec": ["boundObjectRef": ["kind": "Pod", "apiVersion": "v1", "name": "controller-0", "uid": .string(uid)]],
            ])
            #expect(answer.status == 201, "\(answer.json)")
            #expect(answer.json[path: ["spec", "boundObjectRef", "name"]] == "controller-0")
            let token = try #require(answer.json[path: ["status", "token"]]?.stringValue)
            #expect(try await h.request(.get, "/api/v1/namespaces/default/pods", token: token).status == 200)
            _ = try await h.request(.delete, "/api/v1/namespaces/default/pods/controller-0")
            #expect(try await h.request(.get, "/api/v1/namespaces/default/pods", token: token).status == 401)

            // A re-created pod of the same name has another uid: the reference no longer matches.
            try await h.server.store.apply([Self.pod(serviceAccount: "fledge")])
            #expect(try await h.request(.get, "/api/v1/namespaces/default/pods", token: token).status == 401)
            let stale = try await h.request(.post, Self.tokenPath, body: [
                "kind": "TokenRequest",
                "spec": ["boundObjectRef": ["kind": "Pod", "apiVersion": "v1", "name": "controller-0", "uid": .string(uid)]],
            ])
            #expect(stale.status == 409, "\(stale.json)")
            #expect(stale.json["message"]?.stringValue?.contains("does not match the UID in record") == true, "\(stale.json)")
        }
    }

    @Test func badRequestsAreRefusedNamingWhatIsWrong() async throws {
        try await Self.withTokenSandbox { h, _ in
            try await h.server.store.apply([Self.pod(serviceAccount: "default")])
            let cases: [(JSONValue, Int, String)] = [
                (["kind": "TokenRequest", "spec": ["expirationSeconds": 599]], 422,
                 "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"),
                (["kind": "TokenRequest", "spec": ["expirationSeconds": 4_294_967_297]], 422,
                 "may not specify a duration larger than 2^32 seconds"),
                (["kind": "TokenRequest", "spec": ["expirationSeconds": "1h"]], 422, "spec.expirationSeconds: must be an integer"),
                (["kind": "TokenRequest", "spec": ["audiences": "api"]], 422, "spec.audiences: must be a list of strings"),
                (["kind": "ConfigMap"], 400, "the kind in the body (ConfigMap) does not match the kind of the resource (TokenRequest)"),
                (["kind": "TokenRequest", "spec": ["boundObjectRef": ["kind": "Deployment", "apiVersion": "apps/v1", "name": "x"]]], 400,
                 "cannot bind token to object of type apps/v1, Kind=Deployment"),
                (["kind": "TokenRequest", "spec": ["boundObjectRef": ["kind": "Pod", "apiVersion": "v1", "name": "missing"]]], 404,
                 #"pods "missing" not found"#),
                (["kind": "TokenRequest", "spec": ["boundObjectRef": ["kind": "Pod", "apiVersion": "v1", "name": "controller-0"]]], 400,
                 #"cannot bind token for serviceaccount "fledge" to pod running with different serviceaccount name."#),
            ]
            for (body, status, message) in cases {
                let answer = try await h.request(.post, Self.tokenPath, body: body)
                #expect(answer.status == status, "\(body): \(answer.json)")
                #expect(answer.json["message"]?.stringValue?.contains(message) == true, "\(body): \(answer.json)")
            }
            // Only POST is served, and only on serviceaccounts.
            #expect(try await h.request(.get, Self.tokenPath).status == 405)
            #expect(try await h.request(.post, "/api/v1/namespaces/default/configmaps/fledge/token", body: ["kind": "TokenRequest"]).status == 404)
            #expect(try await h.request(.post, "/api/v1/namespaces/default/serviceaccounts/nobody/token", body: ["kind": "TokenRequest"]).status == 404)
        }
    }
}
