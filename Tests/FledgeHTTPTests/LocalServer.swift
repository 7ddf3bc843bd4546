import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import ServiceLifecycle
import Logging

/// A request context that knows the client's address, to tell connections apart.
struct PeerContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remotePort: Int?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remotePort = source.channel.remoteAddress?.port
    }
}

/// Routes the transport tests talk to.
func testRouter() -> Router<PeerContext> {
    let router = Router(context: PeerContext.self)
    router.get("hello") { _, _ in "hello" }
    router.get("peer") { _, context in "\(context.remotePort ?? -1)" }
    router.get("authorization") { request, _ in request.headers[.authorization] ?? "(none)" }
    router.get("tenant") { request, _ in request.headers[.init("X-Scope-OrgID")!] ?? "(none)" }
    router.post("echo") { request, _ -> Response in
        let body = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, headers: [.contentType: "text/plain", .init("X-Method")!: request.method.rawValue], body: .init(byteBuffer: body))
    }
    router.on("echo-method", method: .patch) { request, _ -> String in
        let body = try await request.body.collect(upTo: 1 << 20)
        return "\(request.method.rawValue) \(String(buffer: body))"
    }
    router.get("slow") { _, _ -> String in
        try await Task.sleep(for: .seconds(20))
        return "late"
    }
    router.get("big") { request, _ -> Response in
        let size = Int(request.uri.queryParameters.get("bytes") ?? "0") ?? 0
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "a"), count: size)))
    }
    router.get("big-chunked") { request, _ -> Response in
        let size = Int(request.uri.queryParameters.get("bytes") ?? "0") ?? 0
        return Response(status: .ok, body: ResponseBody { writer in
            var left = size
            while left > 0 {
                let chunk = min(left, 64 * 1024)
                try await writer.write(ByteBuffer(repeating: UInt8(ascii: "b"), count: chunk))
                left -= chunk
            }
            try await writer.finish(nil)
        })
    }
    router.get("lines") { _, _ -> Response in
        Response(status: .ok, body: ResponseBody { writer in
            // Chunk boundaries deliberately fall inside lines and between \r and \n.
            for piece in ["{\"n\":1}\n{\"n\"", ":2}\r", "\n", "{\"n\":3}\n\n{\"n\":", "4}"] {
                try await writer.write(ByteBuffer(string: piece))
                try await Task.sleep(for: .milliseconds(30))
            }
            try await writer.finish(nil)
        })
    }
    router.get("endless-lines") { _, _ -> Response in
        Response(status: .ok, body: ResponseBody { writer in
            var n = 0
            while true {
                n += 1
                try await writer.write(ByteBuffer(string: "{\"n\":\(n)}\n"))
                try await Task.sleep(for: .milliseconds(20))
            }
        })
    }
    router.get("status/:code") { _, context -> Response in
        let code = Int(context.parameters.get("code") ?? "500") ?? 500
        return Response(status: .init(code: code), body: .init(byteBuffer: ByteBuffer(string: "{\"kind\":\"Status\",\"message\":\"nope \(code)\"}")))
    }
    return router
}

/// Runs an HTTP(S) server on a free loopback port for the duration of `body`.
func withLocalServer<T: Sendable>(
    tls: TLSConfiguration? = nil, _ body: @Sendable (_ baseURL: String) async throws -> T
) async throws -> T {
    let port = AsyncStream.makeStream(of: Int.self)
    var logger = Logger(label: "test-server")
    logger.logLevel = .critical
    let server: HTTPServerBuilder = try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1()
    let app = Application(
        router: testRouter(),
        server: server,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            port.continuation.yield(channel.localAddress?.port ?? 0)
            port.continuation.finish()
        },
        logger: logger
    )
    let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = port.stream.makeAsyncIterator()
        guard let boundPort = await iterator.next() else { throw CancellationError() }
        let scheme = tls == nil ? "http" : "https"
        do {
            let result = try await body("\(scheme)://127.0.0.1:\(boundPort)")
            await group.triggerGracefulShutdown()
            tasks.cancelAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            tasks.cancelAll()
            throw error
        }
    }
}
