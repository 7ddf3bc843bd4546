// A kubeconfig user's `as`, `as-groups`, `as-uid` and `as-user-extra`: parsed with their paths, sent as client-go
// sends them, and decided by the sandbox (with RBAC on) as the identity they name.
import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

@testable import FledgeKubernetes

@Suite(.serialized) struct ImpersonationTests {
    static func kubeconfig(server: String = "https://127.0.0.1:6443", token: String = "t", user extra: String) -> String {
        """
        apiVersion: v1
        kind: Config
        current-context: c
        clusters:
        - name: c
          cluster: {server: "\(server)", insecure-skip-tls-verify: true}
        users:
        - name: u
          user:
            token: \(token)
        \(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        contexts:
        - name: c
          context: {cluster: c, user: u}
        """
    }

    @Test func everyImpersonationFieldIsRead() throws {
        let text = Self.kubeconfig(user: """
            as: system:serviceaccount:default:nobody
            as-uid: "1234"
            as-groups: [team-a, team-b]
            as-user-extra:
              scopes: [view, edit]
              reason/why: [audit]
            """)
        let configuration = try Kubeconfig.parse(yaml: text, file: "/k").configuration()
        let impersonation = try #require(configuration.impersonation)
        #expect(impersonation == Impersonation(
            user: "system:serviceaccount:default:nobody", uid: "1234", groups: ["team-a", "team-b"],
            extra: ["scopes": ["view", "edit"], "reason/why": ["audit"]]))
        #expect(impersonation.headers.map { "\($0.name): \($0.value)" } == [
            "Impersonate-User: system:serviceaccount:default:nobody", "Impersonate-Uid: 1234",
            "Impersonate-Group: team-a", "Impersonate-Group: team-b",
            "Impersonate-Extra-reason%2Fwhy: audit", "Impersonate-Extra-scopes: view", "Impersonate-Extra-scopes: edit",
        ])
        // Without `as` nothing is impersonated.
        #expect(try Kubeconfig.parse(yaml: Self.kubeconfig(user: ""), file: "/k").configuration().impersonation == nil)
    }

    @Test(arguments: [
        ("as-groups: [team-a]", "users[0].user.as-groups", "as-groups needs `as` (the user to impersonate)"),
        ("as-uid: \"1\"\nas-user-extra: {a: [b]}", "users[0].user.as-uid", "as-uid, as-user-extra need `as`"),
        ("as: jane\nas-groups: team-a", "as-groups", "must be a list"),
        ("as: jane\nas-groups: [\"\"]", "users[0].user.as-groups[0]", "must be a non-empty string"),
        ("as: jane\nas-user-extra: [a]", "users[0].user.as-user-extra", "must be a mapping"),
        ("as: [jane]", "users[0].user.as", "must be a string"),
    ])
    func badImpersonationNamesTheField(extra: String, field: String, message: String) {
        do {
            _ = try Kubeconfig.parse(yaml: Self.kubeconfig(user: extra), file: "/k").configuration()
            Issue.record("accepted \(extra)")
        } catch {
            #expect(error.field == field, "\(error)")
            #expect(error.message.contains(message), "\(error)")
            #expect(error.file == "/k")
        }
    }

    static func apply(_ server: SandboxServer, _ json: String) async throws {
        _ = try await server.store.apply(try JSONValue(parsing: json).arrayValue ?? [])
    }

    /// The issue's case: an admin's kubeconfig that says `as: …:nobody` must act as nobody, as kubectl does, not
    /// with the admin's own rights. Lists, writes and watches are all impersonated.
    @Test func requestsActAsTheImpersonatedUser() async throws {
        let configuration = SandboxServer.Configuration(tokens: [SandboxHarness.token: .admin()], rbac: true)
        try await SandboxHarness.with(tls: true, configuration: configuration) { h in
            _ = try await h.client.create(.configMaps, namespace: "shop", configMap("existing"))
            let base = try String(contentsOfFile: h.kubeconfigPath, encoding: .utf8)
            let asNobody = base.replacingOccurrences(
                of: "    token: \(SandboxHarness.token)\n",
                with: "    token: \(SandboxHarness.token)\n    as: system:serviceaccount:default:nobody\n")
            #expect(asNobody != base)
            let nobody = try h.client(kubeconfig: asNobody, name: "nobody")
            #expect(nobody.configuration.impersonation?.user == "system:serviceaccount:default:nobody")
            do {
                _ = try await nobody.list(.configMaps)
                Issue.record("nobody listed configmaps")
            } catch let error as KubernetesError {
                #expect(error.code == 403, "\(error)")
                #expect(error.message.contains(#"User "system:serviceaccount:default:nobody" cannot list resource "configmaps""#), "\(error)")
            }
            await #expect(throws: KubernetesError.self) { _ = try await nobody.create(.configMaps, namespace: "shop", configMap("mine")) }
            await #expect(throws: KubernetesError.self) { _ = try await nobody.watch(.configMaps, resourceVersion: nil) }

            // Granted list in shop, the impersonated identity may list there, and still nothing else.
            try await Self.apply(h.server, """
                [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-cm", "namespace": "shop"},
                  "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "nobody-reads", "namespace": "shop"},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
                  "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": "default"}]}]
                """)
            let listed = try await nobody.list(.configMaps)
            #expect(listed.items.map(name) == ["existing"])
            await #expect(throws: KubernetesError.self) { _ = try await nobody.create(.configMaps, namespace: "shop", configMap("mine")) }
        }
    }

    /// Groups, uid and extras are sent too: a token that may impersonate users and groups, but no uids or extras,
    /// is refused exactly for those, and acts with the groups' rights when given only groups.
    @Test func groupsUidAndExtrasAreSent() async throws {
        let configuration = SandboxServer.Configuration(
            tokens: [SandboxHarness.token: .admin(), "impersonator-token": .serviceAccount(namespace: "default", name: "impersonator")],
            rbac: true)
        try await SandboxHarness.with(tls: true, configuration: configuration) { h in
            try await Self.apply(h.server, """
                [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "impersonate-people"},
                  "rules": [{"apiGroups": [""], "resources": ["users", "groups", "serviceaccounts"], "verbs": ["impersonate"]}]},
                 {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "impersonator"},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-people"},
                  "subjects": [{"kind": "ServiceAccount", "name": "impersonator", "namespace": "default"}]}]
                """)
            let base = try String(contentsOfFile: h.kubeconfigPath, encoding: .utf8)
                .replacingOccurrences(of: "    token: \(SandboxHarness.token)\n", with: "    token: impersonator-token\n")
            func client(_ lines: String, _ name: String) throws -> KubernetesClient {
                let indented = lines.split(separator: "\n").map { "    " + $0 + "\n" }.joined()
                return try h.client(kubeconfig: base.replacingOccurrences(of: "    token: impersonator-token\n", with: "    token: impersonator-token\n" + indented), name: name)
            }
            // The impersonator itself may not list; as jane in system:masters it may.
            await #expect(throws: KubernetesError.self) { _ = try await client("", "plain").list(.configMaps) }
            let masters = try client("as: jane\nas-groups: [system:masters]", "masters")
            _ = try await masters.create(.configMaps, namespace: "shop", configMap("by-jane"))
            #expect(try await masters.list(.configMaps).items.map(name) == ["by-jane"])

            do {
                _ = try await client("as: jane\nas-groups: [system:masters]\nas-uid: \"1234\"", "uid").list(.configMaps)
                Issue.record("the uid was not checked")
            } catch let error as KubernetesError {
                #expect(error.message.contains(#"uids.authentication.k8s.io "1234" is forbidden"#), "\(error)")
            }
            do {
                _ = try await client("as: jane\nas-groups: [system:masters]\nas-user-extra: {scopes: [view]}", "extra").list(.configMaps)
                Issue.record("the extra was not checked")
            } catch let error as KubernetesError {
                #expect(error.message.contains(#"cannot impersonate resource "userextras/scopes""#), "\(error)")
            }
        }
    }
}
