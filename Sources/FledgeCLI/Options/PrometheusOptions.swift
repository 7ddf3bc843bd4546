import ArgumentParser
import FledgeCore
import FledgeHTTP
import FledgePrometheus
import Foundation
import Logging

/// How to reach Prometheus; shared by every command that queries it and must be told where it is.
struct PrometheusOptions: ParsableArguments {
    @Option(name: .customLong("prometheus"), help: "Prometheus base URL, e.g. http://127.0.0.1:9090.")
    var url: String

    @OptionGroup var access: PrometheusAccessOptions

    func validate() throws {
        try PrometheusAccessOptions.validateURL(url)
        try access.validateCAFile()
    }

    func makeClient() -> PrometheusClient { access.makeClient(url: url) }
}

/// How to authenticate to Prometheus and how long to wait: every `--prometheus-*` flag but the URL itself. Commands
/// whose Prometheus is optional (`report`) declare their own `--prometheus` and take this group, so that the
/// authentication flags are the same, and checked the same, wherever Prometheus is read.
struct PrometheusAccessOptions: ParsableArguments {
    @Option(name: .customLong("prometheus-token"), help: ArgumentHelp("Bearer token for Prometheus.", valueName: "token"))
    var token: String?

    @Option(
        name: .customLong("prometheus-user"),
        help: ArgumentHelp("Basic-auth user for Prometheus (password from FLEDGE_PROMETHEUS_PASSWORD).", valueName: "user"))
    var user: String?

    @Option(
        name: .customLong("prometheus-header"),
        help: ArgumentHelp("Extra header for Prometheus, as NAME=VALUE (repeatable).", valueName: "name=value"))
    var headers: [String] = []

    @Option(name: .customLong("prometheus-ca"), help: ArgumentHelp("CA bundle (PEM file) to verify an HTTPS Prometheus.", valueName: "file"))
    var caFile: String?

    @Option(name: .customLong("prometheus-timeout"), parsing: .unconditional, help: ArgumentHelp("Seconds to wait for each query.", valueName: "seconds"))
    var timeoutSeconds: Double = 10

    func validate() throws {
        for header in headers {
            let name = header.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard header.contains("="), !name.isEmpty, name.allSatisfy(Self.isTokenCharacter) else {
                throw ValidationError("--prometheus-header: \"\(header)\" is not NAME=VALUE")
            }
        }
        if token != nil, user != nil {
            throw ValidationError("--prometheus-token and --prometheus-user cannot be used together")
        }
        guard timeoutSeconds > 0, timeoutSeconds <= Self.maximumTimeoutSeconds else {
            throw ValidationError(
                "--prometheus-timeout: must be above 0 and at most \(Int(Self.maximumTimeoutSeconds)) seconds (a day), got \(QueryCommand.decimal(timeoutSeconds))")
        }
    }

    /// The longest `--prometheus-timeout`: a day. A query that has not answered by then never will.
    static let maximumTimeoutSeconds: Double = 86_400

    /// The flags given other than the defaults, as written (for "... need --prometheus").
    var givenFlags: [String] {
        var flags: [String] = []
        if token != nil { flags.append("--prometheus-token") }
        if user != nil { flags.append("--prometheus-user") }
        if !headers.isEmpty { flags.append("--prometheus-header") }
        if caFile != nil { flags.append("--prometheus-ca") }
        return flags
    }

    static func validateURL(_ url: String) throws {
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), let parsed = URL(string: url), parsed.host?.isEmpty == false else {
            throw ValidationError("--prometheus: \"\(url)\" is not an http:// or https:// URL")
        }
    }

    /// For commands whose `--prometheus` is optional: checks it, and refuses these flags without it. They are sent
    /// to that Prometheus only, never to an address a Rollout names (which anyone who may edit it can point anywhere).
    func validate(optionalURL url: String?) throws {
        if let url {
            try Self.validateURL(url)
            try validateCAFile()
        } else if !givenFlags.isEmpty {
            throw ValidationError(
                "\(givenFlags.joined(separator: ", ")) \(givenFlags.count == 1 ? "needs" : "need") --prometheus (credentials go to that Prometheus only)")
        }
    }

    /// `--prometheus-ca` must name a file, whatever the URL's scheme (an http:// URL never uses it, which is worth
    /// hearing about rather than a CA silently ignored). Checked once the URL is known to be given.
    func validateCAFile() throws {
        guard let caFile else { return }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: caFile, isDirectory: &isFolder) else {
            throw ValidationError("--prometheus-ca: \(caFile): no such file")
        }
        if isFolder.boolValue { throw ValidationError("--prometheus-ca: \(caFile) is a directory, not a PEM file") }
        // libcurl reads PEM only; anything else failed every query later with "error setting certificate file"
        // (fledge run logged provider errors each interval instead of refusing to start).
        let head = FileHandle(forReadingAtPath: caFile).flatMap { try? $0.read(upToCount: 1 << 20) } ?? Data()
        guard String(decoding: head, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
            throw ValidationError(
                "--prometheus-ca: \(caFile) holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER one converts with openssl x509 -inform der -in \(caFile) -out ca.pem"
            )
        }
    }

    /// An HTTP header name is an RFC 9110 token.
    static func isTokenCharacter(_ c: Character) -> Bool {
        guard c.isASCII, let ascii = c.asciiValue else { return false }
        return c.isLetter || c.isNumber || "!#$%&'*+-.^_`|~".utf8.contains(ascii)
    }

    /// `--prometheus-timeout` as a Duration, for every Prometheus client made from it.
    var requestTimeout: Duration { .milliseconds(RolloutDuration.milliseconds(clampingSeconds: timeoutSeconds)) }

    func makeClient(url: String, logger: Logger = Logger(label: "fledge.prometheus")) -> PrometheusClient {
        var configuration = HTTPClientConfiguration(
            connectTimeout: .milliseconds(RolloutDuration.milliseconds(clampingSeconds: min(timeoutSeconds, 5))),
            timeout: .milliseconds(RolloutDuration.milliseconds(clampingSeconds: timeoutSeconds)))
        if let token { configuration.authorization = .bearer(token) }
        if let user {
            configuration.authorization = .basic(username: user, password: ProcessEnvironment["FLEDGE_PROMETHEUS_PASSWORD"] ?? "")
        }
        if let caFile { configuration.tls.certificateAuthority = .file(caFile) }
        var extra = HTTPHeaders()
        for header in headers {
            let parts = header.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            extra.add(String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        return PrometheusClient(baseURL: url, http: CurlHTTPClient(configuration: configuration, logger: logger), headers: extra, logger: logger)
    }
}
