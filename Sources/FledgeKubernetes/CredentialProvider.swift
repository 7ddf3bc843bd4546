import FledgeHTTP
import FledgeJSON
import Foundation
import Synchronization

/// What a request carries to authenticate: an Authorization header and,
/// for exec plugins that hand out certificates, a client certificate and key.
struct ResolvedCredentials: Sendable, Equatable {
    var authorization: String?
    var clientCertificate: [UInt8]?
    var clientKey: [UInt8]?
}

/// Turns `KubernetesCredentials` into request credentials, re-reading token files
/// when they change and caching exec plugin output until it expires.
final class CredentialProvider: Sendable {
    let credentials: KubernetesCredentials
    let server: String
    let tls: TLSOptions
    let now: @Sendable () -> Date

    private struct TokenFileState {
        var stamp: FileStamp?
        var token: String?
    }

    private struct ExecState {
        var cached: ResolvedCredentials?
        var expiry: Date?
    }

    private let tokenFileState = Mutex(TokenFileState())
    private let execState = Mutex(ExecState())

    init(credentials: KubernetesCredentials, server: String, tls: TLSOptions, now: @escaping @Sendable () -> Date = Date.init) {
        self.credentials = credentials
        self.server = server
        self.tls = tls
        self.now = now
    }

    /// The credentials for the next request.
    func resolve() async throws(KubernetesError) -> ResolvedCredentials {
        switch credentials {
        case .none: return ResolvedCredentials()
        case .token(let token): return ResolvedCredentials(authorization: "Bearer \(token)")
        case .basic(let username, let password):
            return ResolvedCredentials(authorization: HTTPAuthorization.basic(username: username, password: password).headerValue)
        case .tokenFile(let path, let fallback):
            return ResolvedCredentials(authorization: "Bearer \(try token(from: path, fallback: fallback))")
        case .exec(let plugin):
            let current = now()
            if let cached = execState.withLock({ state -> ResolvedCredentials? in
                guard let cached = state.cached else { return nil }
                if let expiry = state.expiry, expiry <= current { return nil }
                return cached
            }) {
                return cached
            }
            let (fresh, expiry) = try await ExecCredentialRunner(plugin: plugin, server: server, tls: tls).run()
            execState.withLock { $0 = ExecState(cached: fresh, expiry: expiry) }
            return fresh
        }
    }

    /// After a 401: forget cached credentials so the next `resolve` reads them again.
    /// Returns whether anything could change (so a retry is worthwhile).
    func invalidate() -> Bool {
        switch credentials {
        case .tokenFile:
            tokenFileState.withLock { $0 = TokenFileState() }
            return true
        case .exec:
            execState.withLock { $0 = ExecState() }
            return true
        default:
            return false
        }
    }

    private func token(from path: String, fallback: String?) throws(KubernetesError) -> String {
        let stamp = FileStamp(path: path)
        if let stamp, let token = tokenFileState.withLock({ $0.stamp == stamp ? $0.token : nil }) {
            return token
        }
        do {
            let token = try readTrimmedFile(path, field: "tokenFile")
            guard !token.isEmpty else {
                throw KubernetesError.configuration("the token file is empty", file: path, field: "tokenFile")
            }
            tokenFileState.withLock { $0 = TokenFileState(stamp: stamp, token: token) }
            return token
        } catch let error as KubernetesError {
            // A token read earlier keeps working while the file is being replaced.
            if let token = tokenFileState.withLock({ $0.token }) { return token }
            if let fallback { return fallback }
            throw error
        } catch {
            throw KubernetesError.configuration("cannot read the token: \(error)", file: path, field: "tokenFile")
        }
    }
}

/// Identifies a file version cheaply: a rotated token (a new file, an atomic
/// rename or a changed symlink target) changes inode, size or modification time.
struct FileStamp: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var seconds: Int
    var nanoseconds: Int

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        #if canImport(Darwin)
            seconds = info.st_mtimespec.tv_sec
            nanoseconds = info.st_mtimespec.tv_nsec
        #else
            seconds = info.st_mtim.tv_sec
            nanoseconds = info.st_mtim.tv_nsec
        #endif
    }
}

/// Runs an exec credential plugin and reads its `ExecCredential`.
struct ExecCredentialRunner {
    var plugin: ExecCredentialPlugin
    var server: String
    var tls: TLSOptions

    private func fail(_ message: String) -> KubernetesError {
        .configuration(message, file: plugin.configFile, field: "exec (\(plugin.command))")
    }

    func run() async throws(KubernetesError) -> (ResolvedCredentials, Date?) {
        var spec: JSONObject = ["interactive": false]
        if plugin.provideClusterInfo {
            var cluster: JSONObject = ["server": .string(server)]
            if case .pem(let bytes) = tls.certificateAuthority {
                cluster["certificate-authority-data"] = .string(Data(bytes).base64EncodedString())
            }
            if tls.insecureSkipVerify { cluster["insecure-skip-tls-verify"] = true }
            spec["cluster"] = .object(cluster)
        }
        let info: JSONValue = [
            "apiVersion": .string(plugin.apiVersion), "kind": "ExecCredential", "spec": .object(spec),
        ]
        var environment = ProcessInfo.processInfo.environment
        for variable in plugin.env { environment[variable.name] = variable.value }
        environment["KUBERNETES_EXEC_INFO"] = info.serializedString()

        let output: ProcessOutput
        do {
            output = try await retryingTextFileBusy {
                try await runProcess(command: plugin.command, arguments: plugin.args, environment: environment)
            }
        } catch {
            var message = "could not run the credential plugin: \(error)"
            if let hint = plugin.installHint { message += "\n\(hint)" }
            throw fail(message)
        }
        guard output.status == 0 else {
            let stderr = String(decoding: output.stderr.prefix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw fail("the credential plugin exited with status \(output.status)\(stderr.isEmpty ? "" : ": \(stderr)")")
        }
        return try parse(output.stdout)
    }

    func parse(_ stdout: [UInt8]) throws(KubernetesError) -> (ResolvedCredentials, Date?) {
        let value: JSONValue
        do {
            value = try JSONValue(parsing: stdout)
        } catch {
            throw fail("the credential plugin printed something that is not JSON: \(error)")
        }
        guard value["kind"]?.stringValue == "ExecCredential" else {
            throw fail("the credential plugin's output has kind \(value["kind"]?.serializedString() ?? "missing"), expected ExecCredential")
        }
        guard let version = value["apiVersion"]?.stringValue, version == plugin.apiVersion else {
            throw fail(
                "the credential plugin answered apiVersion \(value["apiVersion"]?.serializedString() ?? "missing"), but the kubeconfig asks for \(plugin.apiVersion)")
        }
        guard let status = value["status"], status.objectValue != nil else {
            throw fail("the credential plugin's ExecCredential has no status")
        }
        var credentials = ResolvedCredentials()
        if let token = status["token"]?.stringValue, !token.isEmpty {
            credentials.authorization = "Bearer \(token)"
        }
        let certificate = status["clientCertificateData"]?.stringValue
        let key = status["clientKeyData"]?.stringValue
        if (certificate == nil) != (key == nil) {
            throw fail("the credential plugin's status has \(certificate == nil ? "clientKeyData without clientCertificateData" : "clientCertificateData without clientKeyData")")
        }
        if let certificate, let key {
            credentials.clientCertificate = Array(certificate.utf8)
            credentials.clientKey = Array(key.utf8)
        }
        if credentials.authorization == nil, credentials.clientCertificate == nil {
            throw fail("the credential plugin's status has neither token nor clientCertificateData/clientKeyData")
        }
        var expiry: Date?
        if let stamp = status["expirationTimestamp"]?.stringValue {
            guard let date = parseRFC3339(stamp) else {
                throw fail("the credential plugin's status.expirationTimestamp \"\(stamp)\" is not an RFC 3339 time")
            }
            expiry = date
        }
        return (credentials, expiry)
    }
}

/// Runs `start` again, a few times over about a second, while it fails with ETXTBSY: the executable is still open for
/// writing somewhere, most often because another process forked while it was being written (a plugin just installed
/// or updated, or a test that writes one) and holds that descriptor for a moment. Any other error is thrown at once.
func retryingTextFileBusy<T>(attempts: Int = 10, _ start: () async throws -> T) async throws -> T {
    var attempt = 1
    while true {
        do {
            return try await start()
        } catch where attempt < attempts && isTextFileBusy(error) {
            attempt += 1
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// ETXTBSY, as Foundation's Process reports it (an NSError with the POSIX error underneath) or directly.
func isTextFileBusy(_ error: any Error) -> Bool {
    let error = error as NSError
    if error.domain == NSPOSIXErrorDomain { return error.code == Int(ETXTBSY) }
    guard let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError else { return false }
    return underlying.domain == NSPOSIXErrorDomain && underlying.code == Int(ETXTBSY)
}

struct ProcessOutput: Sendable {
    var status: Int32
    var stdout: [UInt8]
    var stderr: [UInt8]
}

/// Runs a program to completion off the cooperative pool and collects its output.
func runProcess(command: String, arguments: [String], environment: [String: String]) async throws -> ProcessOutput {
    let executable: String
    if command.contains("/") {
        executable = command
    } else {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        guard
            let found = path.split(separator: ":").map({ "\($0)/\(command)" })
                .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw KubernetesError(kind: .configuration, message: "\(command) not found in PATH")
        }
        executable = found
    }
    guard FileManager.default.isExecutableFile(atPath: executable) else {
        throw KubernetesError(kind: .configuration, message: "\(executable) does not exist or is not executable")
    }
    return try await withCheckedThrowingContinuation { continuation in
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        // Read both pipes on their own threads so a chatty plugin cannot block on a full pipe.
        let collected = Mutex(ProcessOutput(status: 0, stdout: [], stderr: []))
        let pending = Mutex(3)
        let finish: @Sendable () -> Void = {
            if pending.withLock({ count -> Bool in
                count -= 1
                return count == 0
            }) {
                continuation.resume(returning: collected.withLock { $0 })
            }
        }
        process.terminationHandler = { finished in
            let status = finished.terminationStatus
            collected.withLock { $0.status = status }
            finish()
        }
        do {
            try process.run()
        } catch {
            continuation.resume(throwing: error)
            return
        }
        let outHandle = stdout.fileHandleForReading
        let errHandle = stderr.fileHandleForReading
        Thread.detachNewThread {
            let data = outHandle.readDataToEndOfFile()
            collected.withLock { $0.stdout = Array(data) }
            finish()
        }
        Thread.detachNewThread {
            let data = errHandle.readDataToEndOfFile()
            collected.withLock { $0.stderr = Array(data) }
            finish()
        }
    }
}

/// Parses RFC 3339 times as Kubernetes writes them (`2024-01-02T03:04:05Z`, with optional fraction and offset).
func parseRFC3339(_ text: String) -> Date? {
    let plain = ISO8601DateFormatter()
    plain.formatOptions = [.withInternetDateTime]
    if let date = plain.date(from: text) { return date }
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return fractional.date(from: text)
}

/// Formats a time as Kubernetes `Time` (seconds) or `MicroTime` (microseconds).
func formatRFC3339(_ date: Date, microseconds: Bool) -> String {
    let seconds = date.timeIntervalSince1970
    let whole = seconds.rounded(.down)
    var time = time_t(whole)
    var parts = tm()
    gmtime_r(&time, &parts)
    var text = String(
        format: "%04d-%02d-%02dT%02d:%02d:%02d", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
        Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    if microseconds {
        let micros = min(999_999, Int(((seconds - whole) * 1_000_000).rounded()))
        text += String(format: ".%06d", micros)
    }
    return text + "Z"
}
