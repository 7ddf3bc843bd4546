import FledgeJSON
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// An in-process Kubernetes API server for tests and the local demo.
///
/// ```swift
/// let server = SandboxServer(configuration: .init(tokens: ["t0ken": .admin()]))
/// let url = try await server.start()          // http://127.0.0.1:<free port>
/// try await server.store.apply(ManifestLoader.parseYAML(yaml))
/// try await server.store.setDeploymentReady(namespace: "shop", deployment: "product-service", false)
/// await server.stop()
/// ```
///
/// It is also a swift-service-lifecycle `Service` (`run()`), which is how `fledge sandbox` runs it.
public final class SandboxServer: Service, Sendable {
    public struct Configuration: Sendable {
        public var host: String = "127.0.0.1"
        /// 0 picks a free port.
        public var port: Int = 0
        /// Serve HTTPS with this certificate and key (see `SandboxCertificates.generate()`).
        public var tls: SandboxCertificates? = nil
        /// Bearer token → user. Empty: no authentication, every request acts as a cluster admin.
        public var tokens: [String: SandboxUser] = [:]
        /// Enforce RBAC from the Roles, ClusterRoles and bindings written to the sandbox.
        public var rbac: Bool = false
        public var clock: any SandboxClock = SystemSandboxClock()
        /// How long after a Deployment's spec changes its status (and pods) catch up.
        public var rolloutDelay: Duration = .zero
        /// How often the simulation (deployments, watch timeouts) runs.
        public var tickInterval: Duration = .milliseconds(50)
        /// How often watches that allow bookmarks get one.
        public var bookmarkInterval: Duration = .seconds(10)
        public var simulatePods: Bool = true
        public var requireNamespaces: Bool = true
        /// Watch events kept for resuming watches; older resourceVersions answer 410 Gone.
        public var watchHistoryLimit: Int = 10_000
        public var faults: SandboxFaults = SandboxFaults()

        public init(
            host: String = "127.0.0.1", port: Int = 0, tls: SandboxCertificates? = nil,
            tokens: [String: SandboxUser] = [:], rbac: Bool = false, clock: any SandboxClock = SystemSandboxClock(),
            rolloutDelay: Duration = .zero, tickInterval: Duration = .milliseconds(50),
            bookmarkInterval: Duration = .seconds(10), simulatePods: Bool = true, requireNamespaces: Bool = true,
            watchHistoryLimit: Int = 10_000, faults: SandboxFaults = SandboxFaults()
        ) {
            self.host = host
            self.port = port
            self.tls = tls
            self.tokens = tokens
            self.rbac = rbac
            self.clock = clock
            self.rolloutDelay = rolloutDelay
            self.tickInterval = tickInterval
            self.bookmarkInterval = bookmarkInterval
            self.simulatePods = simulatePods
            self.requireNamespaces = requireNamespaces
            self.watchHistoryLimit = watchHistoryLimit
            self.faults = faults
        }
    }

    public let configuration: Configuration
    /// The server's state: seed, inspect and change it directly from tests.
    public let store: SandboxStore
    private let logger: Logger

    private struct Running {
        var task: Task<Void, any Error>?
        var group: ServiceGroup?
        var url: URL?
    }
    private let running = Mutex(Running())
    private let boundPort = Mutex<Int?>(nil)

    public init(configuration: Configuration = Configuration(), logger: Logger = Logger(label: "fledge.sandbox")) {
        self.configuration = configuration
        self.store = SandboxStore(configuration: configuration)
        self.logger = logger
    }

    /// The URL clients use, once the server listens.
    public var url: URL? { running.withLock { $0.url } ?? boundPort.withLock { $0 }.map(makeURL) }

    private func makeURL(port: Int) -> URL {
        let scheme = configuration.tls == nil ? "http" : "https"
        let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
        return URL(string: "\(scheme)://\(host):\(port)")!
    }

    /// Starts serving in the background and returns the URL once the port is bound.
    /// Call `stop()` to end it (tests must).
    @discardableResult
    public func start() async throws -> URL {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [ServiceGroupConfiguration.ServiceConfiguration(service: BoundNotifier(server: self, notify: continuation))],
                logger: logger))
        // The one background task, owned by this server and ended by stop().
        let task = Task {
            defer { continuation.finish() }
            try await group.run()
        }
        running.withLock {
            $0.task = task
            $0.group = group
        }
        for await port in ports {
            let url = makeURL(port: port)
            running.withLock { $0.url = url }
            return url
        }
        try await task.value
        throw SandboxError.startup("the server stopped before it listened on \(configuration.host):\(configuration.port)")
    }

    /// Stops a server started with `start()`: closes watches, shuts down gracefully, waits.
    public func stop() async {
        let (task, group) = running.withLock { state -> (Task<Void, any Error>?, ServiceGroup?) in
            defer { state = Running() }
            return (state.task, state.group)
        }
        await store.closeWatches()
        await group?.triggerGracefulShutdown()
        _ = try? await task?.value
    }

    /// Runs the API server and the simulation until cancelled or gracefully shut down.
    public func run() async throws {
        try await run(onBound: { _ in })
    }

    func run(onBound: @escaping @Sendable (Int) -> Void) async throws {
        let server: HTTPServerBuilder
        if let tls = configuration.tls {
            do {
                var tlsConfiguration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(tls.serverCertificatePEM.utf8), format: .pem))],
                    privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.serverKeyPEM.utf8), format: .pem)))
                tlsConfiguration.applicationProtocols = ["http/1.1"]
                // On shutdown NIOSSL waits for each client's close_notify, 5 s by default; an idle keep-alive
                // connection in a client's pool never answers, so every stop took 5 s.
                tlsConfiguration.shutdownTimeout = .milliseconds(200)
                server = try .tls(.http1(), tlsConfiguration: tlsConfiguration)
            } catch {
                throw SandboxError.startup("invalid TLS certificate or key: \(error)")
            }
        } else {
            server = .http1()
        }
        var appLogger = logger
        appLogger.logLevel = .warning
        let app = Application(
            responder: APIHandler(store: store),
            server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "fledge-sandbox"),
            onServerRunning: { [self] channel in
                let bound = channel.localAddress?.port ?? 0
                self.boundPort.withLock { $0 = bound }
                onBound(bound)
            },
            logger: appLogger)
        let (host, port) = (configuration.host, configuration.port)
        let store = self.store
        let clock = configuration.clock
        let tick = configuration.tickInterval
        let bookmarkInterval = SandboxStore.seconds(configuration.bookmarkInterval)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await app.run()
                } catch where self.boundPort.withLock({ $0 }) == nil {
                    if let error = error as? IOError {
                        throw SandboxError.cannotListen(
                            host: host, port: port, reason: String(cString: strerror(error.errnoCode)), addressInUse: error.errnoCode == EADDRINUSE)
                    }
                    throw SandboxError.cannotListen(host: host, port: port, reason: "\(error)", addressInUse: false)
                }
            }
            group.addTask {
                // The simulation: deployment rollouts, watch timeouts and bookmarks, on the injected clock.
                await cancelWhenGracefulShutdown {
                    var lastBookmark = clock.now
                    while !Task.isCancelled {
                        do { try await clock.sleep(for: tick) } catch { break }
                        await store.advanceDeployments()
                        let sendBookmarks = clock.now.timeIntervalSince(lastBookmark) >= bookmarkInterval
                        if sendBookmarks { lastBookmark = clock.now }
                        await store.serviceWatchers(bookmarks: sendBookmarks)
                    }
                }
                // Open watches end, and any a client opens again over its kept-alive connection ends at once: the
                // HTTP server waits for every response to finish before it stops.
                await store.closeWatches()
            }
        }
    }

    /// Runs the server inside `start()`'s service group and reports the bound port.
    private struct BoundNotifier: Service {
        let server: SandboxServer
        let notify: AsyncStream<Int>.Continuation
        func run() async throws {
            try await server.run(onBound: { notify.yield($0) })
        }
    }

    /// A kubeconfig for kubectl (and the Fledge client): this server, the token, and for TLS the CA.
    public func kubeconfig(token: String?, namespace: String = "default", contextName: String = "fledge-sandbox") -> String {
        let server = url?.absoluteString ?? makeURL(port: configuration.port).absoluteString
        return SandboxServer.kubeconfig(
            server: server, token: token, certificateAuthorityPEM: configuration.tls?.certificateAuthorityPEM,
            namespace: namespace, contextName: contextName)
    }

    public static func kubeconfig(
        server: String, token: String?, certificateAuthorityPEM: String?, namespace: String = "default",
        contextName: String = "fledge-sandbox"
    ) -> String {
        var cluster = "    server: \(server)\n"
        if let certificateAuthorityPEM {
            cluster += "    certificate-authority-data: \(Data(certificateAuthorityPEM.utf8).base64EncodedString())\n"
        }
        let user = token.map { "    token: \($0)\n" } ?? "    {}\n"
        return """
            apiVersion: v1
            kind: Config
            clusters:
            - name: \(contextName)
              cluster:
            \(cluster)users:
            - name: \(contextName)
              user:
            \(user)contexts:
            - name: \(contextName)
              context:
                cluster: \(contextName)
                user: \(contextName)
                namespace: \(namespace)
            current-context: \(contextName)

            """
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost, made with the `openssl` command at start.
public struct SandboxCertificates: Sendable {
    public var certificateAuthorityPEM: String
    public var serverCertificatePEM: String
    public var serverKeyPEM: String

    public init(certificateAuthorityPEM: String, serverCertificatePEM: String, serverKeyPEM: String) {
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.serverCertificatePEM = serverCertificatePEM
        self.serverKeyPEM = serverKeyPEM
    }

    /// Generates a fresh self-signed CA and a server certificate it signs, valid for `hosts`.
    public static func generate(hosts: [String] = ["127.0.0.1", "localhost", "::1"]) throws(SandboxError) -> SandboxCertificates {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-sandbox-tls-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw SandboxError.startup("cannot create a folder for TLS material: \(error)")
        }
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = { (name: String) in folder.appendingPathComponent(name).path }
        var names: [String] = []
        for host in hosts {
            let isAddress: Bool = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
            names.append(isAddress ? "IP:\(host)" : "DNS:\(host)")
        }
        let altNames = names.joined(separator: ",")
        let extensions = """
            subjectAltName=\(altNames)
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth

            """
        do {
            try extensions.write(toFile: path("server.ext"), atomically: true, encoding: .utf8)
        } catch {
            throw SandboxError.startup("cannot write TLS extensions file: \(error)")
        }
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", path("ca.key"), "-out", path("ca.crt"), "-days", "30", "-subj", "/CN=fledge-sandbox-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try openssl([
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=fledge-sandbox",
        ])
        try openssl([
            "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
            "-CAcreateserial", "-out", path("server.crt"), "-days", "30", "-extfile", path("server.ext"),
        ])
        do {
            return SandboxCertificates(
                certificateAuthorityPEM: try String(contentsOfFile: path("ca.crt"), encoding: .utf8),
                serverCertificatePEM: try String(contentsOfFile: path("server.crt"), encoding: .utf8),
                serverKeyPEM: try String(contentsOfFile: path("server.key"), encoding: .utf8))
        } catch {
            throw SandboxError.startup("cannot read generated TLS material: \(error)")
        }
    }

    private static func openssl(_ arguments: [String]) throws(SandboxError) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw SandboxError.startup("cannot run openssl (is it installed?): \(error)")
        }
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw SandboxError.startup(
                "openssl \(arguments.first ?? "") failed (exit \(process.terminationStatus)): \(String(decoding: output, as: UTF8.self))")
        }
    }
}
