import Dispatch
import FledgeHTTP
import LocalPrometheus

/// Runs `body` against a real Prometheus loaded with `openMetrics`, and stops it afterwards.
///
/// The backfill (`promtool`) and the stop (SIGTERM, up to 5 s, then SIGKILL) wait for a process: they run on a
/// Dispatch thread, not on one of Swift's cooperative threads. With one per core, two tests blocking theirs at once
/// stopped every other test in the process, and Prometheus servers that were up waited out their start timeout.
public func withBackfilledPrometheus<T>(
    _ openMetrics: String, _ body: (PrometheusServer) async throws -> T
) async throws -> T {
    let server = try PrometheusServer()
    do {
        try await offTheCooperativePool { try PrometheusServer.backfill(openMetrics: openMetrics, into: server.dataDirectory) }
        try await server.start()
        let result = try await body(server)
        await offTheCooperativePool { server.stop() }
        return result
    } catch {
        await offTheCooperativePool { server.stop() }
        throw error
    }
}

/// Runs blocking `work` on a Dispatch thread and waits for it without holding a cooperative thread.
public func offTheCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
    }
}

public func offTheCooperativePool(_ work: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            work()
            continuation.resume()
        }
    }
}
