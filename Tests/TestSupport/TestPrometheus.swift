import FledgeHTTP
import LocalPrometheus

/// Runs `body` against a real Prometheus loaded with `openMetrics`, and stops it afterwards.
public func withBackfilledPrometheus<T>(
    _ openMetrics: String, _ body: (PrometheusServer) async throws -> T
) async throws -> T {
    let server = try PrometheusServer()
    defer { server.stop() }
    try PrometheusServer.backfill(openMetrics: openMetrics, into: server.dataDirectory)
    try await server.start()
    return try await body(server)
}
