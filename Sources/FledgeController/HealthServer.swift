import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// `/healthz`, `/readyz` and `/metrics` on one port, as a Service.
public struct HealthServer: Service {
    public let host: String
    public let port: Int
    let controller: Controller
    let logger: Logger
    let onBound: @Sendable (Int) -> Void

    public init(controller: Controller, host: String = "0.0.0.0", port: Int, logger: Logger, onBound: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.controller = controller
        self.host = host
        self.port = port
        self.logger = logger
        self.onBound = onBound
    }

    public func run() async throws {
        let router = Router()
        let controller = self.controller
        router.get("healthz") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            let (ready, message) = controller.readiness
            return Response(status: ready ? .ok : .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: message + "\n")))
        }
        router.get("metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            let metrics = controller.metrics
            let caches = controller.caches.all
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    for chunk in metrics.textChunks(caches: caches) { try await writer.write(ByteBuffer(string: chunk)) }
                    try await writer.finish(nil)
                })
        }
        var appLogger = logger
        appLogger.logLevel = .warning
        let onBound = self.onBound
        let bound = Mutex(false)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "fledge"),
            onServerRunning: { channel in
                bound.withLock { $0 = true }
                onBound(channel.localAddress?.port ?? 0)
            },
            logger: appLogger)
        do {
            try await app.run()
        } catch where !bound.withLock({ $0 }) {
            throw ListenError(host: host, port: port, error: error)
        }
    }

    /// The server could not listen on its address (the port is taken, the address is not this host's, …).
    public struct ListenError: Error, CustomStringConvertible {
        public var host: String
        public var port: Int
        /// The system's words (`Address already in use`), or the error's.
        public var reason: String
        /// Another socket holds the port (EADDRINUSE).
        public var addressInUse: Bool

        init(host: String, port: Int, error: any Error) {
            self.host = host
            self.port = port
            if let error = error as? IOError {
                reason = String(cString: strerror(error.errnoCode))
                addressInUse = error.errnoCode == EADDRINUSE
            } else {
                reason = "\(error)"
                addressInUse = false
            }
        }

        public var description: String { "cannot listen on \(host):\(port): \(reason)" }
    }
}
