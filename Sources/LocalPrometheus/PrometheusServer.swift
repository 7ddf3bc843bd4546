import FledgeHTTP
import Foundation

/// A real Prometheus (Debian's `prometheus` package) on a loopback port with a
/// temporary data folder: for tests, benchmarks and the local demo.
///
/// `stop()` (also run on deinit) terminates the process and removes the folder
/// unless it was given by the caller.
public final class PrometheusServer: @unchecked Sendable {
    public struct ScrapeTarget: Sendable {
        public var job: String
        /// `host:port`, e.g. `127.0.0.1:9464`.
        public var address: String
        public var metricsPath: String

        public init(job: String, address: String, metricsPath: String = "/metrics") {
            self.job = job
            self.address = address
            self.metricsPath = metricsPath
        }
    }

    public struct Configuration: Sendable {
        public var scrapeTargets: [ScrapeTarget] = []
        public var scrapeInterval: String = "1s"
        /// Existing data folder (e.g. with backfilled blocks); nil creates a temporary one.
        public var dataDirectory: String?
        public var port: Int?

        public init(scrapeTargets: [ScrapeTarget] = [], scrapeInterval: String = "1s", dataDirectory: String? = nil, port: Int? = nil) {
            self.scrapeTargets = scrapeTargets
            self.scrapeInterval = scrapeInterval
            self.dataDirectory = dataDirectory
            self.port = port
        }
    }

    public let configuration: Configuration
    public private(set) var url: String = ""
    public private(set) var port: Int = 0
    public let workDirectory: String
    private var process: Process?
    private let lock = NSLock()

    public init(configuration: Configuration = Configuration()) throws(LocalServerError) {
        self.configuration = configuration
        self.workDirectory = try TemporaryDirectory.make(prefix: "fledge-prometheus")
    }

    deinit { stop() }

    /// Path of an installed binary, or an error that says how to install it.
    public static func locate(_ name: String) throws(LocalServerError) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw LocalServerError("\(name) is not installed: on Debian run `sudo apt-get install prometheus` (it provides prometheus and promtool), or run ./scripts/setup.sh")
    }

    /// The running prometheus process's id (nil before `start()` and after `stop()`): the demo prints it so that
    /// a test can check the process is gone afterwards.
    public var processIdentifier: Int32? { lock.withLock { process?.processIdentifier } }

    public var dataDirectory: String { configuration.dataDirectory ?? "\(workDirectory)/data" }
    public var logFile: String { "\(workDirectory)/prometheus.log" }

    /// Starts Prometheus and waits until `/-/ready` answers.
    public func start(timeout: Duration = .seconds(120)) async throws {
        let binary = try Self.locate("prometheus")
        let port = try configuration.port ?? LoopbackPort.free()
        let configFile = "\(workDirectory)/prometheus.yml"
        try writeConfig(to: configFile)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--config.file=\(configFile)",
            "--storage.tsdb.path=\(dataDirectory)",
            "--storage.tsdb.retention.time=100y",
            "--web.listen-address=127.0.0.1:\(port)",
            "--query.lookback-delta=5m",
        ]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        lock.withLock {
            self.process = process
            self.port = port
            self.url = "http://127.0.0.1:\(port)"
        }

        let http = CurlHTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(1), timeout: .seconds(2)))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !process.isRunning {
                throw LocalServerError("prometheus exited with status \(process.terminationStatus) while starting; its log (\(logFile)) ends with: \(tail(of: logFile))")
            }
            if let response = try? await http.send(HTTPRequest(url: "\(url)/-/ready")), response.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        // The log is read before stop() removes the folder it is in.
        let lastLines = tail(of: logFile)
        stop()
        throw LocalServerError("prometheus on port \(port) was not ready within \(timeout); its log ends with: \(lastLines)")
    }

    /// Terminates the process (SIGTERM, then SIGKILL after 5 s) and removes temporary files.
    public func stop() {
        let process = lock.withLock { () -> Process? in
            defer { self.process = nil }
            return self.process
        }
        if let process, process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        if configuration.dataDirectory == nil || process == nil {
            try? FileManager.default.removeItem(atPath: workDirectory)
        }
    }

    private func writeConfig(to path: String) throws {
        var yaml = """
            global:
              scrape_interval: \(configuration.scrapeInterval)
              evaluation_interval: \(configuration.scrapeInterval)
            scrape_configs:

            """
        for target in configuration.scrapeTargets {
            yaml += """
                  - job_name: "\(target.job)"
                    metrics_path: "\(target.metricsPath)"
                    static_configs:
                      - targets: ["\(target.address)"]

                """
        }
        if configuration.scrapeTargets.isEmpty { yaml += "  []\n" }
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Backfills OpenMetrics text into a data folder with `promtool tsdb create-blocks-from openmetrics`.
    public static func backfill(openMetrics: String, into dataDirectory: String) throws {
        let promtool = try locate("promtool")
        let scratch = try TemporaryDirectory.make(prefix: "fledge-backfill")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let input = "\(scratch)/input.om"
        try openMetrics.write(toFile: input, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let output = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool)
        process.arguments = ["tsdb", "create-blocks-from", "openmetrics", input, dataDirectory]
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw LocalServerError("promtool could not backfill the sample data (exit \(process.terminationStatus)): \(text.suffix(600))")
        }
    }

    private func tail(of path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "(no log)" }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(5)
        return lines.joined(separator: " | ")
    }
}

/// Creates uniquely named folders under the system's temporary directory.
public enum TemporaryDirectory {
    public static func make(prefix: String) throws(LocalServerError) -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let created else { throw LocalServerError("cannot create a temporary folder under \(base): errno \(errno)") }
        return String(cString: created)
    }
}
