import ArgumentParser
import FledgeHTTP
import FledgePrometheus
import Foundation
import LocalPrometheus

/// Fledge's Prometheus client against one `curl` process, same queries, same server, same run.
struct PrometheusClientBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prometheus-client",
        abstract: "N sequential instant queries through Fledge's client vs one kept-alive curl process."
    )

    @Option(help: "Queries per measurement.")
    var queries = 2000

    @Option(help: "Measurements of each side (the median is reported).")
    var rounds = 3

    func validate() throws {
        guard queries >= 1 else { throw ValidationError("--queries must be at least 1") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() async throws {
        let server = try PrometheusServer()
        defer { server.stop() }
        try PrometheusServer.backfill(openMetrics: ProductServiceSample.openMetrics, into: server.dataDirectory)
        try await server.start()

        let forms = try (0..<queries).map { i -> [(String, String)] in
            let workload = i % 2 == 0 ? "product-service" : "product-service-canary"
            let query: String
            switch i % 3 {
            case 0: query = try IstioQueries.successRate(namespace: "shop", workload: workload, window: "1m")
            case 1: query = try IstioQueries.latency(quantile: 0.99, namespace: "shop", workload: workload, window: "1m")
            default: query = try IstioQueries.requestVolume(namespace: "shop", workload: workload, window: "1m")
            }
            return [("query", query), ("time", String(ProductServiceSample.evaluationTime + i % 600))]
        }

        let configFile = "\(server.workDirectory)/curl.config"
        var config = ""
        for (i, form) in forms.enumerated() {
            if i > 0 { config += "next\n" }
            let body = form.map { "\(formEncode($0.0))=\(formEncode($0.1))" }.joined(separator: "&")
            config += "url = \"\(server.url)/api/v1/query\"\ndata = \"\(body)\"\noutput = \"/dev/null\"\n"
        }
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)

        let client = PrometheusClient(baseURL: server.url, http: CurlHTTPClient())
        // Warm up both sides (connection set-up, Prometheus's caches).
        for form in forms.prefix(100) { _ = try await client.query(form[0].1, at: Double(form[1].1)) }
        _ = try runCurl(configFile)

        var fledgeTimes: [Double] = []
        var curlTimes: [Double] = []
        for round in 1...rounds {
            let clock = ContinuousClock()
            let start = clock.now
            for form in forms {
                _ = try await client.query(form[0].1, at: Double(form[1].1))
            }
            fledgeTimes.append((clock.now - start).seconds)
            curlTimes.append(try runCurl(configFile))
            print("round \(round): fledge \(format(fledgeTimes.last!)) s, curl \(format(curlTimes.last!)) s")
        }
        let fledge = median(fledgeTimes)
        let curl = median(curlTimes)
        print("""

            \(queries) sequential instant queries to Prometheus \(prometheusVersion()) on loopback (median of \(rounds)):
              fledge client (libcurl, POST form, JSON parsed): \(format(fledge)) s  (\(format(fledge / Double(queries) * 1e6)) µs/query)
              curl, one process, kept-alive connection:      \(format(curl)) s  (\(format(curl / Double(queries) * 1e6)) µs/query)
              ratio fledge / curl: \(String(format: "%.2f", fledge / curl))×  (target ≤ 1.30×)
            """)
    }

    private func runCurl(_ configFile: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["--silent", "--show-error", "--fail", "--config", configFile]
        let clock = ContinuousClock()
        let start = clock.now
        try process.run()
        process.waitUntilExit()
        let elapsed = (clock.now - start).seconds
        guard process.terminationStatus == 0 else { throw ValidationError("curl exited with \(process.terminationStatus)") }
        return elapsed
    }

    private func prometheusVersion() -> String {
        let pipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (try? PrometheusServer.locate("prometheus")) ?? "/usr/bin/prometheus")
        process.arguments = ["--version"]
        process.standardOutput = pipe
        process.standardError = pipe
        try? process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: " ").dropFirst(2).first.map(String.init) ?? "?"
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func format(_ value: Double) -> String { String(format: "%.3f", value) }

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
