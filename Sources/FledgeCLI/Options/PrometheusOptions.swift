import ArgumentParser
import FledgeHTTP
import FledgePrometheus

/// How to reach Prometheus; shared by every command that queries it.
struct PrometheusOptions: ParsableArguments {
    @Option(name: .customLong("prometheus"), help: "Prometheus base URL, e.g. http://127.0.0.1:9090.")
    var url: String

    @Option(name: .customLong("prometheus-token"), help: "Bearer token for Prometheus.")
    var token: String?

    @Option(name: .customLong("prometheus-user"), help: "Basic-auth user for Prometheus (password from FLEDGE_PROMETHEUS_PASSWORD).")
    var user: String?

    @Option(name: .customLong("prometheus-header"), help: "Extra header for Prometheus, as NAME=VALUE (repeatable).")
    var headers: [String] = []

    @Option(name: .customLong("prometheus-ca"), help: "CA bundle (PEM file) to verify an HTTPS Prometheus.")
    var caFile: String?

    @Option(name: .customLong("prometheus-timeout"), help: "Seconds to wait for each query.")
    var timeoutSeconds: Double = 10

    func validate() throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("--prometheus: \"\(url)\" is not an http:// or https:// URL")
        }
        for header in headers where !header.contains("=") {
            throw ValidationError("--prometheus-header: \"\(header)\" is not NAME=VALUE")
        }
        if token != nil, user != nil {
            throw ValidationError("--prometheus-token and --prometheus-user cannot be used together")
        }
        guard timeoutSeconds > 0 else { throw ValidationError("--prometheus-timeout: must be above 0") }
    }

    func makeClient() -> PrometheusClient {
        var configuration = HTTPClientConfiguration(
            connectTimeout: .milliseconds(Int64(min(timeoutSeconds, 5) * 1000)),
            timeout: .milliseconds(Int64(timeoutSeconds * 1000)))
        if let token { configuration.authorization = .bearer(token) }
        if let user {
            configuration.authorization = .basic(username: user, password: ProcessEnvironment["FLEDGE_PROMETHEUS_PASSWORD"] ?? "")
        }
        if let caFile { configuration.tls.certificateAuthority = .file(caFile) }
        var extra = HTTPHeaders()
        for header in headers {
            let parts = header.split(separator: "=", maxSplits: 1)
            extra.add(String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        return PrometheusClient(baseURL: url, http: CurlHTTPClient(configuration: configuration), headers: extra)
    }
}
