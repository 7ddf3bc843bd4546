import FledgeHTTP
import FledgePrometheus
import Testing
import TestSupport

/// `queryRange` against a real Prometheus holding `CheckoutData` (a constant 98 % success rate, samples every 15 s
/// for 40 minutes).
@Suite("Prometheus range queries against a real Prometheus", .serialized)
struct RangeQueryTests {
    @Test func answersOnePointPerStepAcrossTheRange() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            let query = try IstioQueries.successRate(namespace: "shop", workload: "checkout", window: "1m")
            let start = Double(CheckoutData.start + 10 * 60)
            let result = try await client.queryRange(query, start: start, end: start + 300, step: 30)
            guard case .matrix(let series) = result else {
                Issue.record("expected a matrix, got \(result)")
                return
            }
            #expect(series.count == 1)
            let points = series.first?.points ?? []
            #expect(points.map(\.timestamp) == stride(from: start, through: start + 300, by: 30).map { $0 })
            #expect(points.allSatisfy { abs($0.value - 98) < 1e-9 }, "\(points)")
        }
    }

    @Test func aRangeBeforeTheDataIsAnEmptyMatrix() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            let query = try IstioQueries.successRate(namespace: "shop", workload: "checkout", window: "1m")
            let start = Double(CheckoutData.start - 7200)
            #expect(try await client.queryRange(query, start: start, end: start + 600, step: 60) == .matrix([]))
        }
    }

    @Test func badRangesAreRefusedWithTheirNumbers() async throws {
        try await withBackfilledPrometheus(CheckoutData.openMetrics) { server in
            let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
            await #expect(throws: PrometheusError.self) { try await client.queryRange("up", start: 100, end: 200, step: 0) }
            do {
                _ = try await client.queryRange("up", start: 200, end: 100, step: 1)
                Issue.record("an end before the start was accepted")
            } catch {
                #expect("\(error)".contains("end 100.0 is before start 200.0"), "\(error)")
            }
            // Prometheus's own refusal (too many points) keeps its message.
            do {
                _ = try await client.queryRange("up", start: 0, end: 1_000_000, step: 1)
                Issue.record("a range of a million points was accepted")
            } catch {
                #expect("\(error)".contains("exceeded maximum resolution"), "\(error)")
            }
        }
    }
}
