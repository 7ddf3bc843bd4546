import Hummingbird
import LocalPrometheus
import Logging
import ServiceLifecycle
import Synchronization

/// A Prometheus API behind an authenticating proxy, on loopback: it answers the query endpoints with empty results
/// only when the request carries the expected Authorization and tenant header, 401 otherwise, and records what
/// every request carried.
final class AuthenticatingPrometheus: Sendable {
    struct Seen: Sendable, Equatable {
        var path: String
        var authorization: String?
        var tenant: String?
    }

    final class Log: Sendable {
        let requests = Mutex<[Seen]>([])
    }

    let port: Int
    let log = Log()
    private let group: ServiceGroup
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)
    private let running = AsyncStream.makeStream(of: Void.self)

    var url: String { "http://127.0.0.1:\(port)" }
    var seen: [Seen] { log.requests.withLock { $0 } }

    init(authorization: String, tenant: String) throws {
        port = try LoopbackPort.free()
        let router = Router()
        let log = self.log
        let answer: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            let seen = Seen(
                path: request.uri.path, authorization: request.headers[.authorization], tenant: request.headers[.init("X-Scope-OrgID")!])
            log.requests.withLock { $0.append(seen) }
            guard seen.authorization == authorization, seen.tenant == tenant else {
                return Response(
                    status: .unauthorized, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "no such user or tenant")))
            }
            let resultType = request.uri.path.hasSuffix("query_range") ? "matrix" : "vector"
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"status":"success","data":{"resultType":"\#(resultType)","result":[]}}"#)))
        }
        router.post("api/v1/query", use: answer)
        router.post("api/v1/query_range", use: answer)
        var logger = Logger(label: "test.prometheus-proxy")
        logger.logLevel = .critical
        let running = self.running.continuation
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { _ in
                running.yield()
                running.finish()
            }, logger: logger)
        group = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: logger))
        let group = self.group
        task.withLock { $0 = Task { try await group.run() } }
    }

    /// Returns once the server accepts connections.
    func listening() async {
        for await _ in running.stream { return }
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
    }
}
