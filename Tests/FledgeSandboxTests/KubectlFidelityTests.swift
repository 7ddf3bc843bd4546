import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation
import Testing

/// Real kubectl against the sandbox, through the kubeconfig it writes (HTTPS, bearer token, RBAC on).
@Suite(.serialized) struct KubectlFidelityTests {
    struct KubectlMissing: Error, CustomStringConvertible {
        var description: String {
            "kubectl is not installed: the kubectl fidelity tests need it (Debian: apt-get install kubernetes-client, "
                + "or put kubectl 1.32 on PATH). CI installs it; this is a failure, not a skip."
        }
    }

    static func kubectlPath() throws -> String {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/usr/local/bin").split(separator: ":") {
            let candidate = "\(folder)/kubectl"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw KubectlMissing()
    }

    /// A TLS sandbox with RBAC on, an admin (`admin-token`, whose kubeconfig is written to `kubeconfigPath`) and a
    /// service account `default/reader` (`reader-token`), and a temporary folder removed afterwards.
    static func withRBACSandbox(_ body: (Harness, URL, String, String) async throws -> Void) async throws {
        let kubectlPath = try kubectlPath()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-kubectl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificates = try SandboxCertificates.generate()
        let configuration = SandboxServer.Configuration(
            tls: certificates,
            tokens: ["admin-token": .admin(), "reader-token": .serviceAccount(namespace: "default", name: "reader")],
            rbac: true, tickInterval: .milliseconds(20))
        try await withSandbox(configuration, token: "admin-token", caPEM: certificates.certificateAuthorityPEM) { h in
            let kubeconfigPath = folder.appendingPathComponent("kubeconfig").path
            try h.server.kubeconfig(token: "admin-token").write(toFile: kubeconfigPath, atomically: true, encoding: .utf8)
            try await body(h, folder, kubectlPath, kubeconfigPath)
        }
    }

    struct Kubectl {
        let path: String
        let folder: URL
        let kubeconfig: String

        @discardableResult
        func run(_ arguments: [String], kubeconfig: String? = nil) async throws -> (status: Int32, out: String, err: String) {
            let process = try start(arguments, kubeconfig: kubeconfig)
            return try await finish(process)
        }

        func start(_ arguments: [String], kubeconfig: String? = nil) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["--kubeconfig", kubeconfig ?? self.kubeconfig, "--cache-dir", folder.appendingPathComponent("cache").path] + arguments
            process.environment = ["HOME": folder.path, "PATH": "/usr/bin:/bin"]
            let out = folder.appendingPathComponent("out-\(UUID().uuidString)")
            let err = folder.appendingPathComponent("err-\(UUID().uuidString)")
            guard FileManager.default.createFile(atPath: out.path, contents: nil), FileManager.default.createFile(atPath: err.path, contents: nil)
            else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: out.path]) }
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            process.standardInput = FileHandle.nullDevice
            KubectlFidelityTests.outputs[ObjectIdentifier(process)] = (out, err)
            try process.run()
            return process
        }

        /// Waits by polling: blocking a cooperative thread in waitUntilExit starves the in-process API server kubectl
        /// is talking to when tests run in parallel on two cores.
        func finish(_ process: Process) async throws -> (status: Int32, out: String, err: String) {
            while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            let (out, err) = KubectlFidelityTests.outputs[ObjectIdentifier(process)]!
            return (
                process.terminationStatus,
                try String(contentsOf: out, encoding: .utf8),
                try String(contentsOf: err, encoding: .utf8)
            )
        }

        func write(_ name: String, _ text: String) throws -> String {
            let file = folder.appendingPathComponent(name).path
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            return file
        }
    }

    nonisolated(unsafe) static var outputs: [ObjectIdentifier: (URL, URL)] = [:]

    /// The repository root, from this file's path.
    static let repositoryRoot: URL = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root
    }()

    static let rollouts = GroupResource(group: "fledge.dev", resource: "rollouts")

    /// A fresh sandbox (HTTPS, admin token) holding deploy/crds and rollouts/product-service, and kubectl pointed at it.
    static func withKubectl(_ body: (Harness, Kubectl) async throws -> Void) async throws {
        let kubectlPath = try kubectlPath()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-kubectl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificates = try SandboxCertificates.generate()
        let configuration = SandboxServer.Configuration(
            tls: certificates, tokens: ["admin-token": .admin()], tickInterval: .milliseconds(20))
        try await withSandbox(configuration, token: "admin-token", caPEM: certificates.certificateAuthorityPEM) { h in
            let kubeconfigPath = folder.appendingPathComponent("kubeconfig").path
            try h.server.kubeconfig(token: "admin-token").write(toFile: kubeconfigPath, atomically: true, encoding: .utf8)
            try await h.server.store.apply(try ManifestLoader.load(paths: [repositoryRoot.appendingPathComponent("deploy/crds").path]))
            try await h.server.store.apply(try ManifestLoader.load(paths: [repositoryRoot.appendingPathComponent("rollouts/product-service").path]))
            try await body(h, Kubectl(path: kubectlPath, folder: folder, kubeconfig: kubeconfigPath))
        }
    }

    @Test func serverDryRunDeletesNothing() async throws {
        try await Self.withKubectl { h, kubectl in
            // kubectl sends the dry run in the DeleteOptions body ({"dryRun":["All"]}), not in the query.
            var result = try await kubectl.run(["delete", "ro", "product-service", "-n", "shop", "--dry-run=server"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains(#"rollout.fledge.dev "product-service" deleted (server dry run)"#), "\(result.out)")
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service") != nil)
            result = try await kubectl.run(["delete", "deployment", "product-service", "-n", "shop", "--dry-run=server"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await h.server.store.object(.deployments, namespace: "shop", name: "product-service") != nil)
            result = try await kubectl.run(["get", "ro", "product-service", "-n", "shop", "-o", "name"])
            #expect(result.out == "rollout.fledge.dev/product-service\n", "\(result.out) \(result.err)")

            // The query form, on one object and on a collection; and a collection delete with DeleteOptions.
            let collection = "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts"
            let one = try await h.request(.delete, collection + "/product-service?dryRun=All")
            #expect(one.status == 200)
            #expect(one.json[path: ["metadata", "name"]] == "product-service")
            var all = try await h.request(.delete, collection + "?dryRun=All")
            #expect(all.status == 200)
            #expect(all.json["items"]?.arrayValue?.count == 1)
            all = try await h.request(.delete, collection, body: ["kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]])
            #expect(all.status == 200)
            #expect(all.json["items"]?.arrayValue?.count == 1)
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service") != nil)

            // Only "All" is a dry run; anything else is refused, as by the real server.
            let bad = try await h.request(.delete, collection + "/product-service", body: ["dryRun": ["Everything"]])
            #expect(bad.status == 422)
            #expect(bad.json["message"]?.stringValue?.contains(#"dryRun: Unsupported value"#) == true, "\(bad.json)")
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service") != nil)

            // Without a dry run the collection delete deletes.
            all = try await h.request(.delete, collection, body: ["kind": "DeleteOptions", "apiVersion": "v1"])
            #expect(all.status == 200)
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service") == nil)
        }
    }

    /// Finalizers hold a deletion, as on a real server: the object gets a deletionTimestamp and stays until an
    /// update removes the last one; no new finalizer may be added meanwhile.
    @Test func finalizersHoldADeletionUntilTheyAreRemoved() async throws {
        try await Self.withKubectl { h, kubectl in
            var result = try await kubectl.run([
                "patch", "ro", "product-service", "-n", "shop", "--type=merge", "-p", #"{"metadata":{"finalizers":["example.com/hold"]}}"#,
            ])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["delete", "ro", "product-service", "-n", "shop", "--wait=false"])
            #expect(result.status == 0, "\(result.err)")
            let marked = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            #expect(marked[path: ["metadata", "deletionTimestamp"]] != nil)
            // Deleting again changes nothing; adding a finalizer is refused.
            result = try await kubectl.run(["delete", "ro", "product-service", "-n", "shop", "--wait=false"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run([
                "patch", "ro", "product-service", "-n", "shop", "--type=merge", "-p",
                #"{"metadata":{"finalizers":["example.com/hold","example.com/late"]}}"#,
            ])
            #expect(result.status != 0)
            #expect(result.err.contains("no new finalizers can be added if the object is being deleted"), "\(result.err)")
            result = try await kubectl.run(["get", "ro", "product-service", "-n", "shop", "-o", "jsonpath={.metadata.deletionTimestamp}"])
            #expect(!result.out.isEmpty, "\(result.out) \(result.err)")
            // Removing the last finalizer completes the deletion.
            result = try await kubectl.run([
                "patch", "ro", "product-service", "-n", "shop", "--type=json", "-p", #"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ])
            #expect(result.status == 0, "\(result.err)")
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service") == nil)
            result = try await kubectl.run(["get", "ro", "product-service", "-n", "shop"])
            #expect(result.status != 0 && result.err.contains("not found"), "\(result.err)")
        }
    }

    /// Deleting a namespace works as on a real server: the namespace turns Terminating (deletionTimestamp,
    /// `status.phase`), its content is deleted, an object with a finalizer (a Rollout holding `fledge.dev/traffic`)
    /// is only marked and holds the namespace, nothing new may be created there (403 with the NamespaceLifecycle
    /// message), and the namespace goes once the last finalizer does. default, kube-system and kube-public may not be
    /// deleted; an empty namespace goes at once.
    @Test func deletingANamespaceWaitsForTheFinalizersOfItsContent() async throws {
        try await Self.withKubectl { h, kubectl in
            let store = h.server.store
            var result = try await kubectl.run([
                "patch", "ro", "product-service", "-n", "shop", "--type=merge", "-p", #"{"metadata":{"finalizers":["fledge.dev/traffic"]}}"#,
            ])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(.deployments, namespace: "shop", name: "product-service") != nil)

            result = try await kubectl.run(["delete", "namespace", "shop", "--wait=false"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains(#"namespace "shop" deleted"#), "\(result.out)")
            result = try await kubectl.run(["get", "ns", "shop"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.split(separator: "\n").last?.split(separator: " ", omittingEmptySubsequences: true).prefix(2) == ["shop", "Terminating"], "\(result.out)")
            result = try await kubectl.run(["get", "ns", "shop", "-o", "jsonpath={.metadata.deletionTimestamp}"])
            #expect(!result.out.isEmpty, "\(result.out) \(result.err)")
            // Everything without a finalizer is gone; the Rollout is marked and stays.
            #expect(await store.objects(.deployments, namespace: "shop").isEmpty)
            let marked = try #require(await store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            #expect(marked[path: ["metadata", "deletionTimestamp"]] != nil)
            result = try await kubectl.run([
                "get", "ns", "shop", "-o", #"jsonpath={.status.conditions[?(@.type=="NamespaceFinalizersRemaining")].message}"#,
            ])
            #expect(result.out == "Some content in the namespace has finalizers remaining: fledge.dev/traffic in 1 resource instances", "\(result.out) \(result.err)")

            // Nothing new in a Terminating namespace.
            let configMap = try kubectl.write("cm.yaml", """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: late, namespace: shop}
                data: {a: b}
                """)
            result = try await kubectl.run(["create", "-f", configMap])
            #expect(result.status != 0)
            #expect(result.err.contains(#"configmaps "late" is forbidden: unable to create new content in namespace shop because it is being terminated"#), "\(result.err)")
            let refused = try await h.request(
                .post, "/api/v1/namespaces/shop/configmaps", body: ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "late"]])
            #expect(refused.status == 403)
            #expect(refused.json["reason"] == "Forbidden")
            #expect(refused.json["details"] == [
                "name": "late", "kind": "configmaps",
                "causes": [["reason": "NamespaceTerminating", "message": "namespace shop is being terminated", "field": "metadata.namespace"]],
            ], "\(refused.json)")
            #expect(await store.object(.configMaps, namespace: "shop", name: "late") == nil)
            // Deleting it again changes nothing; it is still there.
            result = try await kubectl.run(["delete", "namespace", "shop", "--wait=false"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(.namespaces, namespace: nil, name: "shop") != nil)

            // The finalizer removed, the Rollout goes, and with it the namespace.
            result = try await kubectl.run([
                "patch", "ro", "product-service", "-n", "shop", "--type=json", "-p", #"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(Self.rollouts, namespace: "shop", name: "product-service") == nil)
            result = try await kubectl.run(["get", "ns", "shop"])
            #expect(result.status != 0)
            #expect(result.err.contains(#"namespaces "shop" not found"#), "\(result.err)")

            // An empty namespace goes at once (kubectl waits for it); default may not be deleted.
            try await store.apply([["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": "empty"]]])
            result = try await kubectl.run(["delete", "namespace", "empty"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(.namespaces, namespace: nil, name: "empty") == nil)
            result = try await kubectl.run(["delete", "namespace", "default"])
            #expect(result.status != 0)
            #expect(result.err.contains(#"namespaces "default" is forbidden: this namespace may not be deleted"#), "\(result.err)")
            #expect(await store.object(.namespaces, namespace: nil, name: "default")?[path: ["metadata", "deletionTimestamp"]] == nil)
            // Nor may namespaces be deleted as a collection (the real server serves no deletecollection for them).
            let collection = try await h.request(.delete, "/api/v1/namespaces")
            #expect(collection.status == 405, "\(collection.json)")
            #expect(await store.object(.namespaces, namespace: nil, name: "default") != nil)
            result = try await kubectl.run(["api-resources", "--api-group=", "-o", "wide"])
            let namespaceLine = result.out.split(separator: "\n").first { $0.hasPrefix("namespaces ") }
            #expect(namespaceLine?.contains(" create,delete,get,list,patch,update,watch") == true, "\(result.out)")
        }
    }

    /// `kubectl get` shows the columns a real server's Table has: a CRD's additionalPrinterColumns replace the default
    /// Age column (the Rollout CRD lists its own Age last, so Age appears once); CustomResourceDefinitions, Roles and
    /// ClusterRoles show "Created At" as an RFC 3339 timestamp and no Age; ServiceAccounts show Secrets.
    @Test func tablesHaveTheRealServersColumns() async throws {
        try await Self.withKubectl { h, kubectl in
            let store = h.server.store
            try await store.apply(try ManifestLoader.load(paths: [
                Self.repositoryRoot.appendingPathComponent("deploy/namespace.yaml").path,
                Self.repositoryRoot.appendingPathComponent("deploy/serviceaccount.yaml").path,
                Self.repositoryRoot.appendingPathComponent("deploy/rbac.yaml").path,
            ]))
            func table(_ arguments: [String]) async throws -> [[String]] {
                let result = try await kubectl.run(["get"] + arguments)
                #expect(result.status == 0, "\(result.err)")
                return result.out.split(separator: "\n").map { line in
                    // Columns are separated by two or more spaces; a header may itself contain one ("CREATED AT").
                    line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                }
            }
            func created(_ groupResource: GroupResource, _ namespace: String?, _ name: String) async -> String {
                await store.object(groupResource, namespace: namespace, name: name)?[path: ["metadata", "creationTimestamp"]]?.stringValue ?? "?"
            }
            var rows = try await table(["rollouts", "-n", "shop"])
            #expect(rows.first == ["NAME", "PHASE", "STAGE", "WEIGHT", "REVISION", "AGE"], "\(rows)")
            rows = try await table(["rollouts", "-n", "shop", "-o", "wide"])
            #expect(rows.first == ["NAME", "PHASE", "STAGE", "WEIGHT", "REVISION", "MESSAGE", "AGE"], "\(rows)")
            rows = try await table(["crd"])
            #expect(rows == [["NAME", "CREATED AT"], ["rollouts.fledge.dev", await created(.customResourceDefinitions, nil, "rollouts.fledge.dev")]], "\(rows)")
            rows = try await table(["clusterroles"])
            #expect(rows == [["NAME", "CREATED AT"], ["fledge-controller", await created(.clusterRoles, nil, "fledge-controller")]], "\(rows)")
            rows = try await table(["roles", "-n", "fledge-system"])
            #expect(rows == [["NAME", "CREATED AT"], ["fledge-leader-election", await created(.roles, "fledge-system", "fledge-leader-election")]], "\(rows)")
            rows = try await table(["rolebindings", "-n", "fledge-system"])
            #expect(rows.first == ["NAME", "ROLE", "AGE"], "\(rows)")
            rows = try await table(["serviceaccounts", "-n", "fledge-system"])
            #expect(rows.first == ["NAME", "SECRETS", "AGE"], "\(rows)")
            #expect(rows.dropFirst().first?.prefix(2) == ["fledge", "0"], "\(rows)")
            rows = try await table(["virtualservices", "-n", "shop"])
            #expect(rows.first == ["NAME", "GATEWAYS", "HOSTS", "AGE"], "\(rows)")
        }
    }

    /// `kubectl auth can-i` (a SelfSubjectAccessReview, which kubectl sends as protobuf) and `--as` (impersonation
    /// headers) with RBAC on: the answers follow deploy/rbac.yaml's ClusterRole and Role for the controller's service
    /// account, exactly as its own requests are decided; only who may impersonate (the admin, system:masters, or a
    /// user granted `impersonate`) can act as someone else.
    @Test func canIAndImpersonationFollowTheLoadedRBAC() async throws {
        try await Self.withRBACSandbox { h, folder, kubectlPath, kubeconfigPath in
            let readerConfig = folder.appendingPathComponent("reader-kubeconfig").path
            try h.server.kubeconfig(token: "reader-token").write(toFile: readerConfig, atomically: true, encoding: .utf8)
            let kubectl = Kubectl(path: kubectlPath, folder: folder, kubeconfig: kubeconfigPath)
            try await h.server.store.apply(try ManifestLoader.load(paths: [
                "deploy/crds", "deploy/namespace.yaml", "deploy/serviceaccount.yaml", "deploy/rbac.yaml", "rollouts/product-service",
            ].map { Self.repositoryRoot.appendingPathComponent($0).path }))
            let fledge = "system:serviceaccount:fledge-system:fledge"

            // Discovery lists the review, so kubectl finds it.
            var result = try await kubectl.run(["api-resources", "--api-group=authorization.k8s.io", "-o", "name"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out == "selfsubjectaccessreviews.authorization.k8s.io\nselfsubjectrulesreviews.authorization.k8s.io\n", "\(result.out)")

            // The controller's service account, impersonated by the admin: yes exactly where deploy/rbac.yaml says.
            let cases: [([String], Bool)] = [
                (["patch", "virtualservices.networking.istio.io", "-n", "default"], true),
                (["get", "virtualservices.networking.istio.io", "-n", "shop"], true),
                (["delete", "virtualservices.networking.istio.io", "-n", "default"], false),
                (["patch", "destinationrules.networking.istio.io", "-n", "default"], false),
                (["update", "rollouts.fledge.dev", "--subresource=status", "-n", "shop"], true),
                (["update", "rollouts.fledge.dev", "-n", "shop"], false),
                (["create", "deployments.apps", "-n", "shop"], true),
                (["delete", "deployments.apps", "-n", "shop"], false),
                (["get", "leases.coordination.k8s.io", "-n", "fledge-system"], true),
                (["get", "leases.coordination.k8s.io", "-n", "default"], false),
            ]
            for (arguments, allowed) in cases {
                result = try await kubectl.run(["auth", "can-i"] + arguments + ["--as", fledge])
                #expect(result.status == (allowed ? 0 : 1), "\(arguments): \(result.out) \(result.err)")
                #expect(result.out == (allowed ? "yes\n" : "no\n"), "\(arguments): \(result.out) \(result.err)")
            }
            // kubectl auth whoami names whom a request acts as.
            result = try await kubectl.run(["auth", "whoami", "--as", fledge])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("Username    system:serviceaccount:fledge-system:fledge"), "\(result.out)")
            #expect(result.out.contains("Groups      [system:serviceaccounts system:serviceaccounts:fledge-system system:authenticated]"), "\(result.out)")
            result = try await kubectl.run(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], kubeconfig: readerConfig)
            #expect(result.out == "system:serviceaccount:default:reader", "\(result.out) \(result.err)")

            // The admin itself may do anything; the reader nothing it was not granted.
            result = try await kubectl.run(["auth", "can-i", "delete", "virtualservices.networking.istio.io", "-n", "default"])
            #expect(result.out == "yes\n", "\(result.out) \(result.err)")
            result = try await kubectl.run(["auth", "can-i", "get", "virtualservices.networking.istio.io", "-n", "shop"], kubeconfig: readerConfig)
            #expect(result.status == 1 && result.out == "no\n", "\(result.out) \(result.err)")

            // The review's answer carries the real authorizer's reason.
            let review: JSONValue = [
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": ["resourceAttributes": ["namespace": "fledge-system", "verb": "update", "group": "coordination.k8s.io", "resource": "leases"]],
            ]
            var headers: HTTPHeaders = ["Accept": "application/json", "Content-Type": "application/json", "Authorization": "Bearer admin-token"]
            headers.set("Impersonate-User", fledge)
            var answer = try await h.client.send(HTTPRequest(
                method: .post, url: h.url + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", headers: headers, body: review.serialized()))
            #expect(answer.status == 201)
            #expect(try JSONValue(parsing: answer.body)["status"] == [
                "allowed": true,
                "reason": #"RBAC: allowed by RoleBinding "fledge-leader-election/fledge-system" of Role "fledge-leader-election" to ServiceAccount "fledge/fledge-system""#,
            ], "\(String(decoding: answer.body, as: UTF8.self))")

            // Impersonation applies to every request, decided as the impersonated identity's own.
            result = try await kubectl.run(["get", "vs", "product-service", "-n", "shop", "-o", "name", "--as", fledge])
            #expect(result.status == 0 && result.out == "virtualservice.networking.istio.io/product-service\n", "\(result.out) \(result.err)")
            result = try await kubectl.run(["delete", "vs", "product-service", "-n", "shop", "--as", fledge])
            #expect(result.status != 0)
            #expect(result.err.contains(#"virtualservices.networking.istio.io "product-service" is forbidden: User "system:serviceaccount:fledge-system:fledge" cannot delete resource "virtualservices" in API group "networking.istio.io" in the namespace "shop""#), "\(result.err)")
            #expect(await h.server.store.object(.virtualServices, namespace: "shop", name: "product-service") != nil)

            // Who may not impersonate is refused, naming what it may not impersonate.
            result = try await kubectl.run(["auth", "can-i", "get", "pods", "--as", fledge], kubeconfig: readerConfig)
            #expect(result.status != 0)
            #expect(result.err.contains(#"serviceaccounts "fledge" is forbidden: User "system:serviceaccount:default:reader" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "fledge-system""#), "\(result.err)")
            result = try await kubectl.run(["get", "vs", "-n", "shop", "--as", "jane"], kubeconfig: readerConfig)
            #expect(result.status != 0)
            #expect(result.err.contains(#"users "jane" is forbidden: User "system:serviceaccount:default:reader" cannot impersonate resource "users" in API group "" at the cluster scope"#), "\(result.err)")
            // Granted impersonation of that one service account, the reader may act as it, and as it only.
            try await h.server.store.apply(try yaml("""
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRole
                metadata: {name: impersonate-fledge}
                rules:
                - {apiGroups: [""], resources: [serviceaccounts], verbs: [impersonate], resourceNames: [fledge]}
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: RoleBinding
                metadata: {name: reader-impersonates-fledge, namespace: fledge-system}
                roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-fledge}
                subjects:
                - {kind: ServiceAccount, name: reader, namespace: default}
                """))
            result = try await kubectl.run(["auth", "can-i", "patch", "virtualservices.networking.istio.io", "-n", "default", "--as", fledge], kubeconfig: readerConfig)
            #expect(result.status == 0 && result.out == "yes\n", "\(result.out) \(result.err)")
            result = try await kubectl.run(["auth", "can-i", "get", "pods", "--as", "system:serviceaccount:fledge-system:other"], kubeconfig: readerConfig)
            #expect(result.status != 0 && result.err.contains(#"serviceaccounts "other" is forbidden"#), "\(result.err)")
            // Impersonating a group needs its own grant.
            result = try await kubectl.run(["auth", "can-i", "get", "pods", "--as", fledge, "--as-group", "system:masters"], kubeconfig: readerConfig)
            #expect(result.status != 0 && result.err.contains(#"groups "system:masters" is forbidden"#), "\(result.err)")

            // Groups without a user are refused, as by the real server.
            headers.remove("Impersonate-User")
            headers.set("Impersonate-Group", "system:masters")
            answer = try await h.client.send(HTTPRequest(method: .get, url: h.url + "/api/v1/namespaces/shop/configmaps", headers: headers))
            #expect(answer.status == 500)
            #expect(String(decoding: answer.body, as: UTF8.self).contains("without impersonating a user"))
        }
    }

    /// `kubectl auth can-i --list` (a SelfSubjectRulesReview, sent as protobuf): the rules of the roles bound to the
    /// user cluster-wide and in the namespace asked about, plus what every authenticated user may do; everything for
    /// the admin.
    @Test func canIListShowsTheRulesBoundToTheUser() async throws {
        try await Self.withRBACSandbox { h, folder, kubectlPath, kubeconfigPath in
            let kubectl = Kubectl(path: kubectlPath, folder: folder, kubeconfig: kubeconfigPath)
            try await h.server.store.apply(try ManifestLoader.load(paths: [
                "deploy/crds", "deploy/namespace.yaml", "deploy/serviceaccount.yaml", "deploy/rbac.yaml",
            ].map { Self.repositoryRoot.appendingPathComponent($0).path }))
            func rows(_ arguments: [String]) async throws -> [String] {
                let result = try await kubectl.run(["auth", "can-i", "--list"] + arguments)
                #expect(result.status == 0, "\(arguments): \(result.err)")
                return result.out.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
            }
            let fledge = "system:serviceaccount:fledge-system:fledge"
            // In a watched namespace: the ClusterRole's rules, and no Lease.
            var list = try await rows(["-n", "shop", "--as", fledge])
            #expect(list.first == "Resources Non-Resource URLs Resource Names Verbs", "\(list)")
            #expect(list.contains("virtualservices.networking.istio.io [] [] [get list watch patch]"), "\(list)")
            #expect(list.contains("rollouts.fledge.dev/status [] [] [update]"), "\(list)")
            #expect(list.contains("selfsubjectaccessreviews.authorization.k8s.io [] [] [create]"), "\(list)")
            #expect(!list.contains { $0.hasPrefix("leases.") }, "\(list)")
            #expect(!list.contains { $0.hasPrefix("*.*") }, "\(list)")
            // In its own namespace, the Role's Lease rule too.
            list = try await rows(["-n", "fledge-system", "--as", fledge])
            #expect(list.contains { $0.hasPrefix("leases.coordination.k8s.io [] [") && $0.hasSuffix("[get create update]") }, "\(list)")
            // Someone bound to nothing may only ask about itself; the admin may do anything.
            list = try await rows(["--as", "jane"])
            #expect(list.dropFirst().allSatisfy { $0.hasPrefix("self") || $0 == "[*] [] [get]" }, "\(list)")
            list = try await rows([])
            #expect(list.contains("*.* [] [] [*]"), "\(list)")
        }
    }

    /// `kubectl create token` (a TokenRequest, sent as protobuf): the token acts as the service account with exactly
    /// what deploy/rbac.yaml grants it, so the controller can be run locally as itself; the real server's checks on
    /// the request (RBAC on `serviceaccounts/token`, the account exists, at least 10 minutes) and on the token (its
    /// audience, the account still there) apply.
    @Test func createTokenActsAsTheServiceAccountWithItsRBAC() async throws {
        try await Self.withRBACSandbox { h, folder, kubectlPath, kubeconfigPath in
            let kubectl = Kubectl(path: kubectlPath, folder: folder, kubeconfig: kubeconfigPath)
            try await h.server.store.apply(try ManifestLoader.load(paths: [
                "deploy/crds", "deploy/namespace.yaml", "deploy/serviceaccount.yaml", "deploy/rbac.yaml", "rollouts/product-service",
            ].map { Self.repositoryRoot.appendingPathComponent($0).path }))
            func kubeconfig(_ token: String) throws -> String {
                let path = folder.appendingPathComponent("kubeconfig-\(UUID().uuidString)").path
                try h.server.kubeconfig(token: token).write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }

            // Discovery lists the subresource next to serviceaccounts.
            var result = try await kubectl.run(["get", "--raw", "/api/v1"])
            let entry = try JSONValue(parsing: Array(result.out.utf8))["resources"]?.arrayValue?.first { $0["name"] == "serviceaccounts/token" }
            #expect(entry?["kind"] == "TokenRequest" && entry?["group"] == "authentication.k8s.io" && entry?["verbs"] == ["create"], "\(result.out)")

            result = try await kubectl.run(["create", "token", "fledge", "-n", "fledge-system"])
            #expect(result.status == 0, "\(result.err)")
            let token = result.out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(token.count >= 40 && !token.contains(" "), "\(result.out)")
            let asFledge = try kubeconfig(token)
            result = try await kubectl.run(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], kubeconfig: asFledge)
            #expect(result.out == "system:serviceaccount:fledge-system:fledge", "\(result.out) \(result.err)")
            // What the controller needs it may do; what it does not, it may not.
            result = try await kubectl.run(["get", "vs", "product-service", "-n", "shop", "-o", "name"], kubeconfig: asFledge)
            #expect(result.status == 0 && result.out == "virtualservice.networking.istio.io/product-service\n", "\(result.out) \(result.err)")
            result = try await kubectl.run(["delete", "vs", "product-service", "-n", "shop"], kubeconfig: asFledge)
            #expect(result.err.contains(#"User "system:serviceaccount:fledge-system:fledge" cannot delete resource "virtualservices""#), "\(result.err)")
            #expect(await h.server.store.object(.virtualServices, namespace: "shop", name: "product-service") != nil)
            // The service account itself may not mint tokens.
            result = try await kubectl.run(["create", "token", "fledge", "-n", "fledge-system"], kubeconfig: asFledge)
            #expect(result.status != 0)
            #expect(result.err.contains(#"serviceaccounts "fledge" is forbidden: User "system:serviceaccount:fledge-system:fledge" cannot create resource "serviceaccounts/token" in API group "" in the namespace "fledge-system""#), "\(result.err)")

            // The request's own checks, with the real server's messages.
            result = try await kubectl.run(["create", "token", "nobody", "-n", "fledge-system"])
            #expect(result.status != 0 && result.err.contains(#"serviceaccounts "nobody" not found"#), "\(result.err)")
            result = try await kubectl.run(["create", "token", "fledge", "-n", "fledge-system", "--duration", "5m"])
            #expect(result.status != 0 && result.err.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"), "\(result.err)")
            result = try await kubectl.run(["create", "token", "fledge", "-n", "fledge-system", "--duration", "2h", "-o", "jsonpath={.spec.expirationSeconds} {.spec.audiences}"])
            #expect(result.out == #"7200 ["https://kubernetes.default.svc.cluster.local"]"#, "\(result.out) \(result.err)")
            // A token for another audience is not accepted by this API server.
            result = try await kubectl.run(["create", "token", "fledge", "-n", "fledge-system", "--audience", "vault"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["get", "vs", "-n", "shop"], kubeconfig: try kubeconfig(result.out.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(result.status != 0 && result.err.contains("Unauthorized"), "\(result.err)")

            // Deleting the service account ends its tokens, as on a real cluster.
            result = try await kubectl.run(["delete", "serviceaccount", "fledge", "-n", "fledge-system"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["get", "vs", "-n", "shop"], kubeconfig: asFledge)
            #expect(result.status != 0 && result.err.contains("Unauthorized"), "\(result.err)")
        }
    }

    /// kubectl 1.32's typed clients (`kubectl create namespace|configmap|secret|service|role|…|deployment`, `kubectl run`)
    /// send the built-in objects they build as protobuf, and client-go falls back to JSON after a 415 only for CBOR.
    /// The sandbox reads those kinds' protobuf: each command creates exactly the object kubectl meant, which is
    /// what `--dry-run=client -o json` prints. Other protobuf bodies get a 415 that names the way round.
    @Test func imperativeCreateOfBuiltInTypesReadsKubectlsProtobuf() async throws {
        try await Self.withKubectl { h, kubectl in
            let commands: [(command: [String], resource: GroupResource, namespace: String?, name: String)] = [
                (["create", "namespace", "team-a"], .namespaces, nil, "team-a"),
                (["create", "configmap", "settings", "-n", "team-a", "--from-literal=mode=fast", "--from-literal=empty="], .configMaps, "team-a", "settings"),
                (["create", "secret", "generic", "credentials", "-n", "team-a", "--from-literal=password=s3cr3t", "--type=example.com/basic"], .secrets, "team-a", "credentials"),
                (["create", "secret", "docker-registry", "pull", "-n", "team-a", "--docker-server=registry.example", "--docker-username=u", "--docker-password=p"], .secrets, "team-a", "pull"),
                (["create", "serviceaccount", "runner", "-n", "team-a"], .serviceAccounts, "team-a", "runner"),
                (["create", "role", "reader", "-n", "team-a", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=web"], .roles, "team-a", "reader"),
                (["create", "clusterrole", "health", "--verb=get", "--non-resource-url=/healthz"], .clusterRoles, nil, "health"),
                (["create", "clusterrole", "aggregate", "--aggregation-rule=rbac.example.com/aggregate=true"], .clusterRoles, nil, "aggregate"),
                (["create", "rolebinding", "readers", "-n", "team-a", "--role=reader", "--serviceaccount=team-a:runner", "--user=jane", "--group=devs"], .roleBindings, "team-a", "readers"),
                (["create", "clusterrolebinding", "health", "--clusterrole=health", "--group=system:authenticated"], .clusterRoleBindings, nil, "health"),
                (["create", "deployment", "web", "-n", "team-a", "--image=nginx:1.27", "--port=8080", "--replicas=2", "--", "/bin/server", "--flag"], .deployments, "team-a", "web"),
                (["create", "deployment", "idle", "-n", "team-a", "--image=busybox", "--replicas=0"], .deployments, "team-a", "idle"),
                (["create", "service", "clusterip", "api", "-n", "team-a", "--tcp=80:8080", "--tcp=9090"], .services, "team-a", "api"),
                (["create", "service", "nodeport", "edge", "-n", "team-a", "--tcp=443:8443", "--node-port=30443"], .services, "team-a", "edge"),
                (["create", "service", "externalname", "db", "-n", "team-a", "--external-name=db.example.com"], .services, "team-a", "db"),
                (["run", "debug", "-n", "team-a", "--image=busybox:1.36", "--labels=purpose=debug", "--env=MODE=x", "--port=7000", "--restart=Never", "--", "sleep", "3600"], .pods, "team-a", "debug"),
            ]
            for entry in commands {
                // The flags go before a `--`, after which kubectl passes everything to the container.
                let split = entry.command.firstIndex(of: "--") ?? entry.command.endIndex
                let intended = try await kubectl.run(
                    entry.command[..<split] + ["--dry-run=client", "-o", "json"] + entry.command[split...])
                #expect(intended.status == 0, "\(entry.command): \(intended.err)")
                let created = try await kubectl.run(entry.command)
                #expect(created.status == 0, "\(entry.command): \(created.err)")
                let stored = try #require(await h.server.store.object(entry.resource, namespace: entry.namespace, name: entry.name), "\(entry.command)")
                let mismatches = Self.missing(try JSONValue(parsing: Array(intended.out.utf8)), in: stored, path: "")
                #expect(mismatches.isEmpty, "\(entry.command): \(mismatches)\nstored: \(stored)")
            }
            // What was read is what RBAC then applies: the rule for pods is the core group's ("").
            let rules = await h.server.store.object(.roles, namespace: "team-a", name: "reader")?["rules"]
            #expect(rules?.arrayValue?.first?["apiGroups"] == [""], "\(String(describing: rules))")
            #expect(await h.server.store.object(.deployments, namespace: "team-a", name: "idle")?[path: ["spec", "replicas"]] == 0)

            // Bodies in kubectl's protobuf envelope, built here: a kind whose protobuf the sandbox does not read (a
            // Lease), and a ConfigMap with a field it does not read (9) set. Each is refused naming what is not read
            // and the way round, and nothing is created.
            func message(_ number: UInt8, _ bytes: [UInt8]) -> [UInt8] { [number << 3 | 2, UInt8(bytes.count)] + bytes }
            func envelope(_ apiVersion: String, _ kind: String, _ object: [UInt8]) -> [UInt8] {
                Array("k8s".utf8) + [0] + message(1, message(1, Array(apiVersion.utf8)) + message(2, Array(kind.utf8))) + message(2, object)
            }
            func post(_ path: String, _ body: [UInt8]) async throws -> (Int, String) {
                let answer = try await h.client.send(HTTPRequest(
                    method: .post, url: h.url + path,
                    headers: ["Accept": "application/json", "Content-Type": "application/vnd.kubernetes.protobuf", "Authorization": "Bearer admin-token"],
                    body: body))
                return (answer.status, String(decoding: answer.body, as: UTF8.self))
            }
            var (status, text) = try await post(
                "/apis/coordination.k8s.io/v1/namespaces/default/leases", envelope("coordination.k8s.io/v1", "Lease", message(1, message(1, Array("l".utf8)))))
            #expect(status == 415)
            #expect(text.contains("the body of the request was in an unknown format (application/vnd.kubernetes.protobuf)"), "\(text)")
            #expect(text.contains("only when creating ClusterRole, ClusterRoleBinding, ConfigMap, Deployment, Namespace, Pod, Role, RoleBinding, Secret, Service, ServiceAccount"), "\(text)")
            #expect(text.contains("--dry-run=client -o yaml | kubectl create -f -"), "\(text)")
            (status, text) = try await post(
                "/api/v1/namespaces/default/configmaps", envelope("v1", "ConfigMap", message(1, message(1, Array("odd".utf8))) + [9 << 3, 1]))
            #expect(status == 415)
            #expect(text.contains("ConfigMap has field 9 of ConfigMap set, which the Fledge sandbox does not read from protobuf"), "\(text)")
            #expect(await h.server.store.object(.configMaps, namespace: "default", name: "odd") == nil)

            // Any other unsupported body: 415 naming its type and what is accepted.
            let plain = try await h.raw(.post, "/api/v1/namespaces/default/configmaps", body: "a=b", contentType: "text/plain; charset=utf-8")
            #expect(plain.status == 415)
            #expect(plain.json["reason"] == "UnsupportedMediaType")
            #expect(plain.json["message"] == "the body of the request was in an unknown format (text/plain) - accepted media types include: application/json, application/yaml")
            let put = try await h.raw(.put, "/api/v1/namespaces/team-a/configmaps/settings", body: "a=b", contentType: "application/xml")
            #expect(put.status == 415)
            let patch = try await h.raw(.patch, "/api/v1/namespaces/team-a/configmaps/settings", body: "a=b", contentType: "application/vnd.kubernetes.protobuf")
            #expect(patch.status == 415)
            #expect(patch.json["message"]?.stringValue?.hasPrefix("the body of the request was in an unknown format (application/vnd.kubernetes.protobuf) - accepted media types include: application/json-patch+json") == true, "\(patch.json)")
            // YAML and JSON bodies, and none named (JSON), are read.
            let yaml = try await h.raw(.post, "/api/v1/namespaces/default/configmaps", body: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n", contentType: "application/yaml")
            #expect(yaml.status == 201)
        }
    }

    /// Where `actual` differs from what `expected` sets (nulls, `{}` and `[]` in `expected` set nothing).
    static func missing(_ expected: JSONValue, in actual: JSONValue?, path: String) -> [String] {
        switch expected {
        case .null: return []
        case .object(let fields):
            if fields.isEmpty { return [] }
            return fields.flatMap { key, value in missing(value, in: actual?[key], path: path + "." + key) }
        case .array(let items):
            if items.isEmpty { return [] }
            guard let actualItems = actual?.arrayValue, actualItems.count == items.count else {
                return ["\(path): \(String(describing: actual)) for \(expected)"]
            }
            return zip(items, actualItems).enumerated().flatMap { index, pair in missing(pair.0, in: pair.1, path: "\(path)[\(index)]") }
        default:
            return actual == expected ? [] : ["\(path): \(String(describing: actual)) for \(expected)"]
        }
    }

    /// Events are one store served through core `v1` and `events.k8s.io/v1`, converted as a real API server does:
    /// what Fledge records (events.k8s.io) is what `kubectl get events` (core) lists, and the other way round.
    @Test func eventsAreServedThroughBothGroupsFromOneStore() async throws {
        try await Self.withKubectl { h, kubectl in
            let uid = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service")?[path: ["metadata", "uid"]])
            // As Fledge's controller records it (FledgeKubernetes.EventRecord): events.k8s.io/v1, regarding the Rollout.
            let recorded = try await h.request(.post, "/apis/events.k8s.io/v1/namespaces/shop/events", body: [
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": ["name": "product-service.18a1b2c3d4", "namespace": "shop"],
                "eventTime": "2026-11-26T14:02:00.123456Z", "reportingController": "fledge.dev/rollout-controller",
                "reportingInstance": "fledge-controller-0", "action": "SetWeight", "reason": "StageStarted",
                "regarding": ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "namespace": "shop", "name": "product-service", "uid": uid],
                "note": "stage 1: canary weight 10%", "type": "Normal",
            ])
            #expect(recorded.status == 201, "\(recorded.json)")
            #expect(recorded.json["apiVersion"] == "events.k8s.io/v1")
            #expect(recorded.json["note"] == "stage 1: canary weight 10%")
            #expect(recorded.json["message"] == nil && recorded.json["involvedObject"] == nil)

            // The README's command (core v1, involvedObject), and its table: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
            var result = try await kubectl.run(["get", "events", "-n", "shop", "--field-selector", "involvedObject.name=product-service"])
            #expect(result.status == 0, "\(result.err)")
            let lines = result.out.split(separator: "\n").map(String.init)
            #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") == "LAST SEEN TYPE REASON OBJECT MESSAGE", "\(result.out)")
            #expect(lines.count == 2 && lines[1].contains("Normal") && lines[1].contains("StageStarted")
                && lines[1].contains("rollout/product-service") && lines[1].hasSuffix("stage 1: canary weight 10%"), "\(result.out)")
            result = try await kubectl.run(["get", "events", "-n", "shop", "--field-selector", "involvedObject.name=other"])
            #expect(result.status == 0 && !result.out.contains("StageStarted"), "\(result.out) \(result.err)")
            result = try await kubectl.run(["get", "events", "-n", "shop", "-o", "wide"])
            #expect(result.out.contains("fledge.dev/rollout-controller, fledge-controller-0"), "\(result.out)")

            // The core view: fields converted, nothing of the other group's shape left.
            result = try await kubectl.run(["get", "events", "-n", "shop", "-o", "json"])
            #expect(result.status == 0, "\(result.err)")
            let core = try #require(try JSONValue(parsing: result.out)["items"]?[0])
            #expect(core["apiVersion"] == "v1")
            #expect(core["involvedObject"]?["uid"] == uid && core["involvedObject"]?["kind"] == "Rollout")
            #expect(core["message"] == "stage 1: canary weight 10%")
            #expect(core["reportingComponent"] == "fledge.dev/rollout-controller" && core["reportingInstance"] == "fledge-controller-0")
            #expect(core["eventTime"] == "2026-11-26T14:02:00.123456Z" && core["action"] == "SetWeight")
            #expect(core["regarding"] == nil && core["note"] == nil && core["reportingController"] == nil)

            // A core Event (kubectl create -f) is seen through events.k8s.io with its fields converted.
            let coreEvent = try kubectl.write("core-event.yaml", """
                apiVersion: v1
                kind: Event
                metadata: {name: product-service.manual, namespace: shop}
                involvedObject: {apiVersion: fledge.dev/v1alpha1, kind: Rollout, namespace: shop, name: product-service}
                reason: ManualCheck
                message: checked by hand
                source: {component: operator, host: laptop}
                firstTimestamp: "2026-11-26T14:00:00Z"
                lastTimestamp: "2026-11-26T14:05:00Z"
                count: 3
                type: Warning
                """)
            result = try await kubectl.run(["create", "-f", coreEvent])
            #expect(result.status == 0, "\(result.err)")
            let converted = try await h.request(.get, "/apis/events.k8s.io/v1/namespaces/shop/events/product-service.manual")
            #expect(converted.json["apiVersion"] == "events.k8s.io/v1")
            #expect(converted.json["note"] == "checked by hand" && converted.json["regarding"]?["name"] == "product-service")
            #expect(converted.json["deprecatedCount"] == 3 && converted.json["deprecatedSource"] == ["component": "operator", "host": "laptop"])
            #expect(converted.json["deprecatedFirstTimestamp"] == "2026-11-26T14:00:00Z" && converted.json["deprecatedLastTimestamp"] == "2026-11-26T14:05:00Z")
            #expect(converted.json["message"] == nil && converted.json["count"] == nil && converted.json["involvedObject"] == nil)

            // events.k8s.io's own field selector; the other group's is refused, as by the real server.
            result = try await kubectl.run(["get", "events.events.k8s.io", "-n", "shop", "--field-selector", "regarding.name=product-service,type=Warning", "-o", "jsonpath={.items[*].metadata.name}"])
            #expect(result.out == "product-service.manual", "\(result.out) \(result.err)")
            let wrongGroup = try await h.request(.get, "/api/v1/namespaces/shop/events?fieldSelector=regarding.name%3Dproduct-service")
            #expect(wrongGroup.status == 400)
            #expect(wrongGroup.json["message"] == "field label not supported: regarding.name")

            // One store: a name taken through one group is taken in the other; an update through one shows in the other.
            var again = recorded.json
            again["metadata"] = ["name": "product-service.manual", "namespace": "shop"]
            #expect(try await h.request(.post, "/apis/events.k8s.io/v1/namespaces/shop/events", body: again).status == 409)
            let patched = try await h.raw(.patch, "/apis/events.k8s.io/v1/namespaces/shop/events/product-service.manual", body: #"{"note":"checked twice","deprecatedCount":4}"#, contentType: "application/merge-patch+json")
            #expect(patched.json["note"] == "checked twice")
            let seen = try await h.request(.get, "/api/v1/namespaces/shop/events/product-service.manual")
            #expect(seen.json["message"] == "checked twice" && seen.json["count"] == 4 && seen.json["apiVersion"] == "v1")

            // A watch through events.k8s.io sees a change made through core v1, in its own shape.
            let since = try #require(seen.json[path: ["metadata", "resourceVersion"]]?.stringValue)
            let watch = try await h.watch("/apis/events.k8s.io/v1/namespaces/shop/events?watch=true&resourceVersion=\(since)&fieldSelector=regarding.name%3Dproduct-service")
            result = try await kubectl.run(["delete", "events", "product-service.manual", "-n", "shop"])
            #expect(result.status == 0, "\(result.err)")
            let events = try await collect(watch, count: 1)
            #expect(events.first?["type"] == "DELETED")
            #expect(events.first?["object"]?["apiVersion"] == "events.k8s.io/v1" && events.first?["object"]?["note"] == "checked twice")
            #expect(try await h.request(.get, "/apis/events.k8s.io/v1/namespaces/shop/events/product-service.manual").status == 404)
        }
    }

    /// The Rollout CRD's `pattern`s and exclusive bounds are enforced with the real server's messages, and its
    /// `default`s are applied to absent fields of objects that are there.
    @Test func rolloutSchemaPatternsBoundsAndDefaults() async throws {
        try await Self.withKubectl { h, kubectl in
            func apply(_ name: String, _ spec: String) async throws -> (status: Int32, out: String, err: String) {
                let file = try kubectl.write("\(name).yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: \(name), namespace: shop}\nspec: \(spec)\n")
                return try await kubectl.run(["apply", "-f", file])
            }
            let duration = "'^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$'"
            var result = try await apply("hold", #"{target: {deployment: product-service}, stages: [{weight: 10, hold: "-5s"}]}"#)
            #expect(result.status != 0)
            #expect(result.err.contains(#"The Rollout "hold" is invalid: spec.stages[0].hold: Invalid value: "-5s": spec.stages[0].hold in body should match "# + duration), "\(result.err)")
            result = try await apply("interval", "{target: {deployment: product-service}, stages: [{weight: 10}], analysis: {interval: 1.5m}}")
            #expect(result.err.contains(#"spec.analysis.interval: Invalid value: "1.5m": spec.analysis.interval in body should match "# + duration), "\(result.err)")
            result = try await apply("judge", "{target: {deployment: product-service}, stages: [{weight: 10}], analysis: {judge: {falseRollbackRate: 0, errorRateRatioMargin: 1, falsePromotionRate: 1}}}")
            #expect(result.status != 0)
            #expect(result.err.contains("spec.analysis.judge.falseRollbackRate: Invalid value: 0: spec.analysis.judge.falseRollbackRate in body should be greater than 0"), "\(result.err)")
            #expect(result.err.contains("spec.analysis.judge.errorRateRatioMargin: Invalid value: 1: spec.analysis.judge.errorRateRatioMargin in body should be greater than 1"), "\(result.err)")
            #expect(result.err.contains("spec.analysis.judge.falsePromotionRate: Invalid value: 1: spec.analysis.judge.falsePromotionRate in body should be less than or equal to 0.5"), "\(result.err)")
            result = try await apply("hook", #"{target: {deployment: product-service}, stages: [{weight: 10}], webhooks: [{name: gate, type: stage-gate, url: "ftp://gate"}]}"#)
            #expect(result.err.contains(#"spec.webhooks[0].url: Invalid value: "ftp://gate": spec.webhooks[0].url in body should match '^https?://'"#), "\(result.err)")
            for name in ["hold", "interval", "judge", "hook"] {
                #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: name) == nil)
            }
            // Values inside the bounds pass.
            result = try await apply("judge", "{target: {deployment: product-service}, stages: [{weight: 10, hold: 1h30m}], analysis: {interval: 45s, judge: {falseRollbackRate: 0.001, errorRateRatioMargin: 1.01, errorRateAbsoluteMargin: 0}}}")
            #expect(result.status == 0, "\(result.err)")

            // Defaults fill absent fields of the objects that are there, and nothing else.
            result = try await apply("minimal", #"{target: {deployment: product-service}, stages: [{weight: 10}, {weight: 100, approval: manual}], traffic: {}, analysis: {judge: {}, metrics: [{name: success-rate, min: 99}]}, webhooks: [{name: gate, type: stage-gate, url: "http://gate"}]}"#)
            #expect(result.status == 0, "\(result.err)")
            var stored = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "minimal"))
            #expect(stored[path: ["spec", "stages"]] == [["weight": 10, "approval": "auto"], ["weight": 100, "approval": "manual"]])
            #expect(stored[path: ["spec", "traffic"]] == ["stableSubset": "stable", "canarySubset": "canary"])
            #expect(stored[path: ["spec", "analysis"]] == [
                "judge": ["enabled": true], "metrics": [["name": "success-rate", "min": 99]],
                "interval": "30s", "failureLimit": 3, "minRequests": 10, "noData": "inconclusive", "providerErrorLimit": 5,
            ])
            #expect(stored[path: ["spec", "webhooks", "0", "timeout"]] == nil && stored[path: ["spec", "webhooks"]]?[0]?["timeout"] == "10s")
            #expect(stored[path: ["spec", "canary"]] == nil && stored[path: ["spec", "progressDeadline"]] == nil)
            #expect(stored[path: ["metadata", "generation"]] == 1)
            // A defaulted field removed comes back; the spec is then unchanged, so the generation stays.
            result = try await kubectl.run(["patch", "rollout", "minimal", "-n", "shop", "--type", "merge", "-p", #"{"spec":{"analysis":{"interval":null}}}"#])
            #expect(result.status == 0, "\(result.err)")
            stored = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "minimal"))
            #expect(stored[path: ["spec", "analysis", "interval"]] == "30s")
            #expect(stored[path: ["metadata", "generation"]] == 1)

            // The repository's own Rollouts, with their namespaces, Deployments, Services and Istio objects.
            result = try await kubectl.run(["apply", "-R", "-f", Self.repositoryRoot.appendingPathComponent("rollouts").path])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("rollout.fledge.dev/checkout created") && result.out.contains("rollout.fledge.dev/search-api created"), "\(result.out)")
        }
    }

    @Test func kubectlDrivesTheSandboxLikeACluster() async throws {
        try await Self.withRBACSandbox { h, folder, kubectlPath, kubeconfigPath in
            let kubectl = Kubectl(path: kubectlPath, folder: folder, kubeconfig: kubeconfigPath)

            // create -f the seed's VirtualService and DestinationRule.
            let seed = try kubectl.write("seed.yaml", seedIstioYAML)
            var result = try await kubectl.run(["create", "-f", seed])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("virtualservice.networking.istio.io/product-service created"))
            #expect(result.out.contains("destinationrule.networking.istio.io/product-service created"))
            result = try await kubectl.run(["create", "-f", seed])
            #expect(result.status != 0)
            #expect(result.err.contains("AlreadyExists") || result.err.contains("already exists"))

            // apply -f a Deployment, then apply a change to it.
            let deployment = try kubectl.write("deployment.yaml", deploymentJSON.serializedString(pretty: true))
            result = try await kubectl.run(["apply", "-f", deployment])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("deployment.apps/product-service created"))
            var scaled = deploymentJSON
            scaled[path: ["spec", "replicas"]] = 5
            _ = try kubectl.write("deployment.yaml", scaled.serializedString(pretty: true))
            result = try await kubectl.run(["apply", "-f", deployment])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("deployment.apps/product-service configured"))
            let stored = await h.server.store.object(.deployments, namespace: "default", name: "product-service")
            #expect(stored?[path: ["spec", "replicas"]] == 5)
            #expect(stored?[path: ["metadata", "generation"]] == 2)
            // The same file applied again changes nothing.
            result = try await kubectl.run(["apply", "-f", deployment])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("deployment.apps/product-service unchanged"), "\(result.out)")
            let reapplied = await h.server.store.object(.deployments, namespace: "default", name: "product-service")
            // (The rollout simulation keeps writing status, so the resourceVersion may move; the spec may not.)
            #expect(reapplied?[path: ["metadata", "generation"]] == 2)
            #expect(reapplied?["spec"] == stored?["spec"])

            // kubectl scale goes through the autoscaling/v1 Scale subresource; with --current-replicas
            // it reads the Scale first and writes it back with its resourceVersion.
            result = try await kubectl.run(["scale", "deployment", "product-service", "--replicas=4"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("deployment.apps/product-service scaled"), "\(result.out)")
            #expect(await h.server.store.object(.deployments, namespace: "default", name: "product-service")?[path: ["spec", "replicas"]] == 4)
            result = try await kubectl.run(["scale", "deployment", "product-service", "--current-replicas=4", "--replicas=3"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["scale", "deployment", "product-service", "--current-replicas=9", "--replicas=1"])
            #expect(result.status != 0)
            #expect(result.err.contains("Expected replicas to be 9, was 3"), "\(result.err)")
            result = try await kubectl.run(["get", "deployment", "product-service", "-o", "jsonpath={.spec.replicas}"])
            #expect(result.out == "3", "\(result.out) \(result.err)")
            result = try await kubectl.run(["scale", "deployment", "product-service", "--replicas=-1"])
            #expect(result.status != 0)

            // Server-side apply: created, re-applied with a key dropped, refused when another
            // manager would change a field kubectl owns, then taken over with --force-conflicts.
            let settings = try kubectl.write("settings.yaml", """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: fledge-settings}
                data: {interval: "30s", threshold: "5"}
                """)
            result = try await kubectl.run(["apply", "--server-side", "-f", settings])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("configmap/fledge-settings serverside-applied"), "\(result.out)")
            _ = try kubectl.write("settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fledge-settings}\ndata: {interval: \"60s\"}\n")
            result = try await kubectl.run(["apply", "--server-side", "-f", settings])
            #expect(result.status == 0, "\(result.err)")
            var configMap = await h.server.store.object(.configMaps, namespace: "default", name: "fledge-settings")
            #expect(configMap?["data"] == ["interval": "60s"])
            let managers = configMap?[path: ["metadata", "managedFields"]]?.arrayValue ?? []
            #expect(managers.count == 1)
            #expect(managers.first?["manager"] == "kubectl" && managers.first?["operation"] == "Apply")
            #expect(managers.first?[path: ["fieldsV1", "f:data", "f:interval"]] == [:])
            let other = try kubectl.write("other.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fledge-settings}\ndata: {interval: \"10s\"}\n")
            result = try await kubectl.run(["apply", "--server-side", "--field-manager=tuner", "-f", other])
            #expect(result.status != 0)
            #expect(result.err.contains(#"conflict with "kubectl""#) && result.err.contains(".data.interval"), "\(result.err)")
            result = try await kubectl.run(["apply", "--server-side", "--field-manager=tuner", "--force-conflicts", "-f", other])
            #expect(result.status == 0, "\(result.err)")
            configMap = await h.server.store.object(.configMaps, namespace: "default", name: "fledge-settings")
            #expect(configMap?[path: ["data", "interval"]] == "10s")
            #expect(configMap?[path: ["metadata", "managedFields"]]?.arrayValue?.compactMap { $0["manager"]?.stringValue } == ["tuner"])

            // apply -f the seed with a changed weight: a merge patch that keeps everything else.
            _ = try kubectl.write("seed.yaml", seedIstioYAML.replacingOccurrences(of: "weight: 90", with: "weight: 85")
                .replacingOccurrences(of: "weight: 10", with: "weight: 15"))
            result = try await kubectl.run(["apply", "-f", seed])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("virtualservice.networking.istio.io/product-service configured"))

            // get -o json
            result = try await kubectl.run(["get", "vs", "product-service", "-o", "json"])
            #expect(result.status == 0, "\(result.err)")
            let vs = try JSONValue(parsing: result.out)
            #expect(vs[path: ["spec", "http"]]?[1]?["route"]?[0]?["weight"] == 85)
            #expect(vs[path: ["spec", "http"]]?[1]?["retries"] == ["attempts": 3, "perTryTimeout": "2s"])
            #expect(vs[path: ["spec", "http"]]?[0]?["match"]?[0]?[path: ["headers", "x-canary", "exact"]] == "true")

            // get (server-side table) with short names.
            result = try await kubectl.run(["get", "deploy,vs,dr"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("deployment.apps/product-service"))
            #expect(result.out.contains("virtualservice.networking.istio.io/product-service"))

            // get -w sees a change.
            let watcher = try kubectl.start(["get", "vs", "product-service", "-w", "-o", "jsonpath={.spec.http[1].route[0].weight}{\"\\n\"}", "--request-timeout=20s"])
            while await h.server.store.openWatchCount == 0 && watcher.isRunning {
                try await Task.sleep(for: .milliseconds(20))
            }
            result = try await kubectl.run(["patch", "vs", "product-service", "--type", "json", "-p",
                #"[{"op":"test","path":"/spec/http/1/route/0/weight","value":85},{"op":"replace","path":"/spec/http/1/route/0/weight","value":70},{"op":"replace","path":"/spec/http/1/route/1/weight","value":30}]"#])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("patched"))
            var watched = ""
            for _ in 0..<500 {
                watched = try String(contentsOf: KubectlFidelityTests.outputs[ObjectIdentifier(watcher)]!.0, encoding: .utf8)
                if watched.contains("70") || !watcher.isRunning { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            watcher.terminate()
            _ = try await kubectl.finish(watcher)
            #expect(watched.split(separator: "\n").contains("70"), "kubectl get -w printed: \(watched)")

            // patch --type merge, and a failing json patch test.
            result = try await kubectl.run(["patch", "deploy", "product-service", "--type", "merge", "-p", #"{"spec":{"replicas":2}}"#])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["patch", "vs", "product-service", "--type", "json", "-p", #"[{"op":"test","path":"/spec/http/1/route/0/weight","value":1}]"#])
            #expect(result.status != 0)
            // Strategic merge (kubectl patch's default) on a Deployment.
            result = try await kubectl.run(["patch", "deploy", "product-service", "-p", #"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/product-service:2.0.0"}]}}}}"#])
            #expect(result.status == 0, "\(result.err)")
            let patched = await h.server.store.object(.deployments, namespace: "default", name: "product-service")
            #expect(patched?[path: ["spec", "template", "spec", "containers"]]?.arrayValue?.count == 1)
            #expect(patched?[path: ["spec", "template", "spec", "containers"]]?[0]?["image"] == "registry.example/product-service:2.0.0")

            // delete
            result = try await kubectl.run(["delete", "dr", "product-service"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("destinationrule.networking.istio.io \"product-service\" deleted"))
            result = try await kubectl.run(["get", "dr", "product-service"])
            #expect(result.status != 0)
            #expect(result.err.contains("NotFound") || result.err.contains("not found"))

            // A CRD applied, then used.
            let crd = try kubectl.write("crd.yaml", testCRDYAML)
            result = try await kubectl.run(["apply", "-f", crd])
            #expect(result.status == 0, "\(result.err)")
            let widget = try kubectl.write("widget.yaml", """
                apiVersion: test.fledge.dev/v1
                kind: Widget
                metadata: {name: gizmo}
                spec: {size: 3, color: red}
                """)
            result = try await kubectl.run(["apply", "-f", widget])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("widget.test.fledge.dev/gizmo created"))
            result = try await kubectl.run(["get", "wg"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("SIZE") && result.out.contains("gizmo"))
            _ = try kubectl.write("widget.yaml", "apiVersion: test.fledge.dev/v1\nkind: Widget\nmetadata: {name: gizmo}\nspec: {size: 42}\n")
            result = try await kubectl.run(["apply", "-f", widget])
            #expect(result.status != 0)
            #expect(result.err.contains("spec.size"))

            // Fledge's own Rollout CRD from deploy/, then the product-service directory (namespace,
            // Deployment, Service, VirtualService, DestinationRule and Rollout), as the README's demo does.
            var root = URL(fileURLWithPath: #filePath)
            for _ in 0..<3 { root.deleteLastPathComponent() }
            result = try await kubectl.run(["apply", "-f", root.appendingPathComponent("deploy/crds/rollouts.fledge.dev.yaml").path])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("customresourcedefinition.apiextensions.k8s.io/rollouts.fledge.dev created"), "\(result.out)")
            result = try await kubectl.run(["apply", "-f", root.appendingPathComponent("rollouts/product-service").path])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("rollout.fledge.dev/product-service created"), "\(result.out)")
            result = try await kubectl.run(["get", "ro", "-n", "shop"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("PHASE") && result.out.contains("product-service"), "\(result.out)")
            result = try await kubectl.run(["patch", "rollout", "product-service", "-n", "shop", "--type", "merge", "-p",
                #"{"spec":{"canary":{"image":"registry.example/product-service:2.0.0"}}}"#])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["patch", "rollout", "product-service", "-n", "shop", "--subresource=status", "--type", "merge", "-p",
                #"{"status":{"phase":"Progressing"}}"#])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["get", "rollout", "product-service", "-n", "shop", "-o", "jsonpath={.status.phase} {.metadata.generation} {.spec.canary.image}"])
            #expect(result.out == "Progressing 2 registry.example/product-service:2.0.0", "\(result.out) \(result.err)")
            // The Stage column is status.stageProgress (`2/4`, as `fledge list` shows it), not the 0-based index.
            result = try await kubectl.run(["patch", "rollout", "product-service", "-n", "shop", "--subresource=status", "--type", "merge", "-p",
                #"{"status":{"stage":1,"stageProgress":"2/4","canaryWeight":25}}"#])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["get", "ro", "-n", "shop"])
            let header = result.out.split(separator: "\n").first.map { $0.split(separator: " ").map(String.init) }
            let row = result.out.split(separator: "\n").dropFirst().first.map { $0.split(separator: " ").map(String.init) }
            #expect(header.map { Array($0.prefix(5)) } == ["NAME", "PHASE", "STAGE", "WEIGHT", "REVISION"], "\(result.out)")
            #expect(row.map { Array($0.prefix(4)) } == ["product-service", "Progressing", "2/4", "25"], "\(result.out)")
            // The schema keeps the field to what the controller writes.
            result = try await kubectl.run(["patch", "rollout", "product-service", "-n", "shop", "--subresource=status", "--type", "merge", "-p",
                #"{"status":{"stageProgress":"second"}}"#])
            #expect(result.status != 0)
            #expect(result.err.contains("status.stageProgress"), "\(result.err)")

            // RBAC: a user without rights is refused with the real server's message.
            let readerConfig = folder.appendingPathComponent("reader-kubeconfig").path
            try h.server.kubeconfig(token: "reader-token").write(toFile: readerConfig, atomically: true, encoding: .utf8)
            result = try await kubectl.run(["delete", "vs", "product-service"], kubeconfig: readerConfig)
            #expect(result.status != 0)
            #expect(result.err.contains(#"virtualservices.networking.istio.io "product-service" is forbidden: User "system:serviceaccount:default:reader" cannot delete resource "virtualservices" in API group "networking.istio.io" in the namespace "default""#), "\(result.err)")
        }
    }

    /// Deleting an owner deletes its dependents (background cascading deletion, as the real garbage collector
    /// does): the Rollout's canary Deployment, the Deployment's Pods, a ConfigMap owned by the canary in turn (held by
    /// its finalizer until that is removed); an object with another live owner stays, without the dead reference.
    /// The Deployment simulation keeps ReplicaSets as the Deployment controller does, so kubectl's rollout commands
    /// (which read them) work: history, undo to an earlier template, describe's NewReplicaSet, and pods owned by their
    /// ReplicaSet. Simulated pods have no logs, and say so.
    @Test func deploymentsKeepReplicaSetsForKubectlRolloutHistoryAndUndo() async throws {
        try await Self.withKubectl { h, kubectl in
            func image() async -> String? {
                await h.server.store.object(.deployments, namespace: "shop", name: "product-service")?[path: ["spec", "template", "spec", "containers"]]?.arrayValue?.first?["image"]?.stringValue
            }
            func replicaSets() async -> [JSONValue] { await h.server.store.objects(.replicaSets, namespace: "shop") }
            let firstImage = await image()
            #expect(firstImage != nil)
            var result = try await kubectl.run(["-n", "shop", "rollout", "status", "deployment/product-service", "--timeout=20s"])
            #expect(result.status == 0, "\(result.err)")
            let first = await replicaSets()
            try #require(first.count == 1, "\(first)")
            #expect(first[0][path: ["metadata", "annotations", "deployment.kubernetes.io/revision"]] == "1")
            #expect(first[0][path: ["metadata", "ownerReferences"]]?.arrayValue?.first?["kind"] == "Deployment")
            #expect(first[0][path: ["spec", "replicas"]] == 3)
            let pods = await h.server.store.objects(.pods, namespace: "shop")
            #expect(pods.count == 3)
            #expect(pods.allSatisfy { $0[path: ["metadata", "ownerReferences"]]?.arrayValue?.first?["uid"] == first[0][path: ["metadata", "uid"]] }, "\(pods)")

            // A new template: a second ReplicaSet at revision 2 takes the pods, the first is scaled to 0 and kept.
            result = try await kubectl.run(["-n", "shop", "set", "image", "deployment/product-service", "product-service=registry.example/product-service:9.9.9"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["-n", "shop", "annotate", "deployment/product-service", "kubernetes.io/change-cause=ship 9.9.9"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["-n", "shop", "rollout", "status", "deployment/product-service", "--timeout=20s"])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["-n", "shop", "get", "rs"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("DESIRED") && result.out.contains("CURRENT") && result.out.contains("READY"), "\(result.out)")
            #expect(await replicaSets().count == 2)
            result = try await kubectl.run(["-n", "shop", "rollout", "history", "deployment/product-service"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("1 ") && result.out.contains("2 ") && result.out.contains("ship 9.9.9"), "\(result.out)")
            result = try await kubectl.run(["-n", "shop", "describe", "deployment", "product-service"])
            #expect(result.status == 0, "\(result.err)")
            #expect(result.out.contains("NewReplicaSet:") && !result.out.contains("NewReplicaSet:    <none>"), "\(result.out)")

            // Undo: the first template is back, its ReplicaSet at revision 3, the pods its again.
            result = try await kubectl.run(["-n", "shop", "rollout", "undo", "deployment/product-service"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await image() == firstImage)
            result = try await kubectl.run(["-n", "shop", "rollout", "status", "deployment/product-service", "--timeout=20s"])
            #expect(result.status == 0, "\(result.err)")
            let back = await replicaSets().first { $0[path: ["metadata", "name"]] == first[0][path: ["metadata", "name"]] }
            #expect(back?[path: ["metadata", "annotations", "deployment.kubernetes.io/revision"]] == "3", "\(String(describing: back))")
            #expect(back?[path: ["spec", "replicas"]] == 3)
            let deployment = await h.server.store.object(.deployments, namespace: "shop", name: "product-service")
            #expect(deployment?[path: ["metadata", "annotations", "deployment.kubernetes.io/revision"]] == "3")

            // revisionHistoryLimit: 0 keeps no scaled-down ReplicaSet.
            result = try await kubectl.run(["-n", "shop", "patch", "deployment/product-service", "--type=merge", "-p", #"{"spec":{"revisionHistoryLimit":0}}"#])
            #expect(result.status == 0, "\(result.err)")
            result = try await kubectl.run(["-n", "shop", "rollout", "status", "deployment/product-service", "--timeout=20s"])
            #expect(result.status == 0, "\(result.err)")
            // (rollout status waited for the Deployment's observedGeneration: the settle that pruned has happened.)
            #expect(await replicaSets().count == 1)

            let pod = await h.server.store.objects(.pods, namespace: "shop")[0][path: ["metadata", "name"]]?.stringValue ?? ""
            result = try await kubectl.run(["-n", "shop", "logs", pod])
            #expect(result.status != 0)
            #expect(result.err.contains("simulated by the sandbox and runs no containers"), "\(result.err)")

            // Deleting the Deployment takes its ReplicaSets and their pods.
            result = try await kubectl.run(["-n", "shop", "delete", "deployment/product-service"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await replicaSets().isEmpty)
            #expect(await h.server.store.objects(.pods, namespace: "shop").isEmpty)
        }
    }

    @Test func deletingAnOwnerGarbageCollectsItsDependents() async throws {
        try await Self.withKubectl { h, kubectl in
            let store = h.server.store
            let rollout = try #require(await store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            let rolloutUID = try #require(rollout[path: ["metadata", "uid"]]?.stringValue)
            func owner(_ apiVersion: String, _ kind: String, _ name: String, _ uid: String) -> JSONValue {
                ["apiVersion": .string(apiVersion), "kind": .string(kind), "name": .string(name), "uid": .string(uid), "controller": true]
            }
            var canary = deploymentJSON
            canary[path: ["metadata", "name"]] = "product-service-canary"
            canary[path: ["metadata", "namespace"]] = "shop"
            canary[path: ["metadata", "ownerReferences"]] = [owner("fledge.dev/v1alpha1", "Rollout", "product-service", rolloutUID)]
            let stored = try await store.apply([canary])
            let canaryUID = try #require(stored[0][path: ["metadata", "uid"]]?.stringValue)
            await store.settleDeployments()
            #expect(await store.objects(.pods, namespace: "shop").contains {
                $0[path: ["metadata", "name"]]?.stringValue?.hasPrefix("product-service-canary-") == true
            })
            let keeper = try await store.apply([["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "keeper", "namespace": "shop"]]])
            let keeperUID = try #require(keeper[0][path: ["metadata", "uid"]]?.stringValue)
            try await store.apply([
                ["apiVersion": "v1", "kind": "ConfigMap", "metadata": [
                    "name": "chained", "namespace": "shop", "finalizers": ["example.com/hold"],
                    "ownerReferences": [owner("apps/v1", "Deployment", "product-service-canary", canaryUID)],
                ]],
                ["apiVersion": "v1", "kind": "ConfigMap", "metadata": [
                    "name": "shared", "namespace": "shop",
                    "ownerReferences": [
                        owner("fledge.dev/v1alpha1", "Rollout", "product-service", rolloutUID),
                        owner("v1", "ConfigMap", "keeper", keeperUID),
                    ],
                ]],
                // No owner: untouched.
                ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": "unrelated", "namespace": "shop"]],
            ])

            var result = try await kubectl.run(["delete", "ro", "product-service", "-n", "shop"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(Self.rollouts, namespace: "shop", name: "product-service") == nil)
            #expect(await store.object(.deployments, namespace: "shop", name: "product-service-canary") == nil)
            #expect(await store.object(.deployments, namespace: "shop", name: "product-service") != nil)
            #expect(!(await store.objects(.pods, namespace: "shop").contains {
                $0[path: ["metadata", "name"]]?.stringValue?.hasPrefix("product-service-canary-") == true
            }))
            let shared = try #require(await store.object(.configMaps, namespace: "shop", name: "shared"))
            #expect(shared[path: ["metadata", "ownerReferences"]] == [owner("v1", "ConfigMap", "keeper", keeperUID)])
            #expect(await store.object(.configMaps, namespace: "shop", name: "unrelated") != nil)
            // The chained dependent's own finalizer holds its deletion.
            let chained = try #require(await store.object(.configMaps, namespace: "shop", name: "chained"))
            #expect(chained[path: ["metadata", "deletionTimestamp"]] != nil)
            result = try await kubectl.run([
                "patch", "configmap", "chained", "-n", "shop", "--type=json", "-p", #"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(.configMaps, namespace: "shop", name: "chained") == nil)
            // The last owner gone, the shared ConfigMap goes too.
            result = try await kubectl.run(["delete", "configmap", "keeper", "-n", "shop"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(.configMaps, namespace: "shop", name: "shared") == nil)

            // Deleting the namespace still removes everything in it.
            result = try await kubectl.run(["delete", "namespace", "shop", "--wait=false"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.objects(.deployments, namespace: "shop").isEmpty)
            #expect(await store.objects(.configMaps, namespace: "shop").isEmpty)
        }
    }

    /// `--cascade=orphan` (DeleteOptions `propagationPolicy: Orphan`, or the query parameter) leaves the dependents,
    /// without their references to the deleted owner.
    @Test func orphanDeletionLeavesDependentsWithoutTheOwnerReference() async throws {
        try await Self.withKubectl { h, kubectl in
            let store = h.server.store
            func ownedCanary(_ name: String, by rollout: JSONValue) -> JSONValue {
                var canary = deploymentJSON
                canary[path: ["metadata", "name"]] = .string(name)
                canary[path: ["metadata", "namespace"]] = "shop"
                canary[path: ["metadata", "ownerReferences"]] = [[
                    "apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "name": rollout[path: ["metadata", "name"]] ?? "",
                    "uid": rollout[path: ["metadata", "uid"]] ?? "", "controller": true,
                ]]
                return canary
            }
            let rollout = try #require(await store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            try await store.apply([ownedCanary("product-service-canary", by: rollout)])
            var result = try await kubectl.run(["delete", "ro", "product-service", "-n", "shop", "--cascade=orphan"])
            #expect(result.status == 0, "\(result.err)")
            #expect(await store.object(Self.rollouts, namespace: "shop", name: "product-service") == nil)
            let orphan = try #require(await store.object(.deployments, namespace: "shop", name: "product-service-canary"))
            #expect(orphan[path: ["metadata", "ownerReferences"]] == nil, "\(orphan)")

            // The query parameter does the same; an unknown policy is refused.
            var second = rollout
            second[path: ["metadata"]] = ["name": "second", "namespace": "shop"]
            second["status"] = nil
            let created = try await store.apply([second])
            try await store.apply([ownedCanary("second-canary", by: created[0])])
            let path = "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/second"
            let bad = try await h.request(.delete, path + "?propagationPolicy=Sometimes")
            #expect(bad.status == 422, "\(bad.json)")
            #expect(bad.json["message"]?.stringValue?.contains("propagationPolicy: Unsupported value: \"Sometimes\"") == true, "\(bad.json)")
            let deleted = try await h.request(.delete, path + "?propagationPolicy=Orphan")
            #expect(deleted.status == 200, "\(deleted.json)")
            let secondOrphan = try #require(await store.object(.deployments, namespace: "shop", name: "second-canary"))
            #expect(secondOrphan[path: ["metadata", "ownerReferences"]] == nil)
            result = try await kubectl.run(["get", "deployment", "second-canary", "-n", "shop", "-o", "name"])
            #expect(result.out == "deployment.apps/second-canary\n", "\(result.out) \(result.err)")
        }
    }

    /// A PUT of a custom resource must carry metadata.resourceVersion (custom resources allow no unconditional
    /// update); built-in types may leave it out. kubectl replace fills it in from the server's object when the file
    /// has none, so it works either way.
    @Test func replacingACustomResourceNeedsItsResourceVersion() async throws {
        try await Self.withKubectl { h, kubectl in
            var rollout = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            rollout[path: ["metadata", "resourceVersion"]] = nil
            rollout[path: ["metadata", "labels"]] = ["edited": "yes"]
            let path = "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/product-service"
            for suffix in ["", "/status"] {
                let answer = try await h.request(.put, path + suffix, body: rollout)
                #expect(answer.status == 422, "\(answer.json)")
                #expect(answer.json["message"] == #"rollouts.fledge.dev "product-service" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"#, "\(answer.json)")
                #expect(answer.json["details"] == [
                    "name": "product-service", "group": "fledge.dev", "kind": "rollouts",
                    "causes": [["reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"]],
                ], "\(answer.json)")
            }
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service")?[path: ["metadata", "labels", "edited"]] == nil)
            // A missing object is not found first.
            var other = rollout
            other[path: ["metadata", "name"]] = "other"
            let missing = try await h.request(.put, "/apis/fledge.dev/v1alpha1/namespaces/shop/rollouts/other", body: other)
            #expect(missing.status == 404, "\(missing.json)")

            // A built-in type may be replaced unconditionally.
            var deployment = try #require(await h.server.store.object(.deployments, namespace: "shop", name: "product-service"))
            deployment[path: ["metadata", "resourceVersion"]] = nil
            deployment[path: ["metadata", "labels", "edited"]] = "yes"
            let replaced = try await h.request(.put, "/apis/apps/v1/namespaces/shop/deployments/product-service", body: deployment)
            #expect(replaced.status == 200, "\(replaced.json)")

            // kubectl replace of a file without the resourceVersion: kubectl fetches it first.
            let result = try await kubectl.run(["replace", "-f", try kubectl.write("rollout.json", rollout.serializedString())])
            #expect(result.status == 0, "\(result.err)")
            #expect(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service")?[path: ["metadata", "labels", "edited"]] == "yes")
        }
    }

    /// A named object in a namespace that does not exist is not found as that object (only a create there names the
    /// namespace), as on a real server. kubectl 1.32's get and patch then look the namespace up themselves (after
    /// the object's 404 they GET /api/v1/namespaces/<ns>, visible at -v=6) and print `namespaces "…" not found`, as
    /// they do against a real cluster; its delete prints the server's answer.
    @Test func anObjectInAMissingNamespaceIsNotFoundAsItself() async throws {
        try await Self.withKubectl { h, kubectl in
            let path = "/apis/fledge.dev/v1alpha1/namespaces/nonexistent/rollouts/x"
            let body: JSONValue = ["apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": ["name": "x", "resourceVersion": "1"], "spec": [:]]
            for (method, body, contentType) in [
                (HTTPMethod.get, nil, "application/json"), (.delete, nil, "application/json"), (.put, body, "application/json"),
                (.patch, ["metadata": ["labels": ["a": "b"]]] as JSONValue?, "application/merge-patch+json"),
            ] {
                let answer = try await h.request(method, path, body: body, contentType: contentType)
                #expect(answer.status == 404, "\(method): \(answer.json)")
                #expect(answer.json["message"] == #"rollouts.fledge.dev "x" not found"#, "\(method): \(answer.json)")
                #expect(answer.json["details"] == ["name": "x", "group": "fledge.dev", "kind": "rollouts"], "\(method): \(answer.json)")
            }
            var result = try await kubectl.run(["delete", "ro", "x", "-n", "nonexistent"])
            #expect(result.status != 0)
            #expect(result.err.contains(#"rollouts.fledge.dev "x" not found"#), "\(result.err)")
            result = try await kubectl.run(["get", "ro", "x", "-n", "nonexistent"])
            #expect(result.status != 0)
            #expect(result.err.contains(#"namespaces "nonexistent" not found"#), "\(result.err)")
            var rollout = try #require(await h.server.store.object(Self.rollouts, namespace: "shop", name: "product-service"))
            rollout["metadata"] = ["name": "x", "namespace": "nonexistent"]
            rollout["status"] = nil
            result = try await kubectl.run(["create", "-f", try kubectl.write("x.json", rollout.serializedString())])
            #expect(result.status != 0)
            #expect(result.err.contains(#"namespaces "nonexistent" not found"#), "\(result.err)")
        }
    }
}
