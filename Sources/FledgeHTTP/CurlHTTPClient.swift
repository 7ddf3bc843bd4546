import CCurl
import Logging
import Synchronization

/// Fledge's HTTP client over libcurl.
///
/// One client owns one libcurl multi handle driven by one dedicated thread, so
/// transfers never block Swift's cooperative pool, connections are kept alive
/// and reused across requests (HTTP/2 multiplexed when the server offers it),
/// and cancelling the calling task aborts its transfer at once.
public final class CurlHTTPClient: HTTPClient {
    public let configuration: HTTPClientConfiguration
    private let engine: CurlEngine
    private let logger: Logger

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration(), logger: Logger = Logger(label: "fledge.http")) {
        self.configuration = configuration
        self.logger = logger
        self.engine = CurlEngine()
    }

    deinit { engine.shutdown() }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = try prepare(request, streaming: false)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                transfer.bufferedContinuation = continuation
                engine.submit(transfer)
            }
        } onCancel: {
            engine.cancel(transfer)
        }
    }

    public func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        let transfer = try prepare(request, streaming: true)
        let (lines, lineContinuation) = AsyncThrowingStream.makeStream(of: [UInt8].self)
        transfer.lineContinuation = lineContinuation
        lineContinuation.onTermination = { [engine] _ in engine.cancel(transfer) }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPStreamingResponse, any Error>) in
                transfer.headContinuation = continuation
                transfer.lines = lines
                engine.submit(transfer)
            }
        } onCancel: {
            engine.cancel(transfer)
        }
    }

    private func prepare(_ request: HTTPRequest, streaming: Bool) throws -> Transfer {
        if Task.isCancelled {
            throw HTTPError(kind: .cancelled, method: request.method, url: request.url, message: "")
        }
        if configuration.tls.insecureSkipVerify {
            logger.warning("TLS certificate verification is disabled for this request", metadata: ["url": "\(request.url)"])
        }
        var headers = request.headers
        for field in configuration.defaultHeaders where !headers.contains(field.name) {
            headers.add(field.name, field.value)
        }
        if let authorization = configuration.authorization, !headers.contains("Authorization") {
            headers.add("Authorization", authorization.headerValue)
        }
        if !headers.contains("User-Agent") { headers.add("User-Agent", configuration.userAgent) }
        // libcurl would otherwise wait for "100 Continue" before sending large bodies.
        if !headers.contains("Expect") { headers.add("Expect", "") }
        var effective = request
        effective.headers = headers
        return Transfer(request: effective, configuration: configuration, streaming: streaming)
    }
}

/// One request in flight. Everything but `cancelRequested` is touched only on the engine's thread.
final class Transfer: @unchecked Sendable {
    let request: HTTPRequest
    let configuration: HTTPClientConfiguration
    let streaming: Bool
    let cancelRequested = Atomic<Bool>(false)

    var bufferedContinuation: CheckedContinuation<HTTPResponse, any Error>?
    var headContinuation: CheckedContinuation<HTTPStreamingResponse, any Error>?
    var lineContinuation: AsyncThrowingStream<[UInt8], any Error>.Continuation?
    var lines: AsyncThrowingStream<[UInt8], any Error>?

    var handle: UnsafeMutableRawPointer?
    var headerList: UnsafeMutablePointer<curl_slist>?
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    var status = 0
    var headers = HTTPHeaders()
    var body: [UInt8] = []
    var partialLine: [UInt8] = []
    var exceededLimit = false
    var finished = false

    init(request: HTTPRequest, configuration: HTTPClientConfiguration, streaming: Bool) {
        self.request = request
        self.configuration = configuration
        self.streaming = streaming
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        if let headerList { curl_slist_free_all(headerList) }
        errorBuffer.deallocate()
    }

    var limit: Int { configuration.maxResponseBytes }
    var streamingSuccess: Bool { streaming && (200..<300).contains(status) }

    func error(_ kind: HTTPError.Kind, _ message: String = "") -> HTTPError {
        HTTPError(kind: kind, method: request.method, url: request.url, message: message,
                  body: Array(body.prefix(HTTPError.keptBodyBytes)))
    }

    /// A response header line; a status line starts a new response (after 1xx).
    func receiveHeader(_ bytes: UnsafeRawBufferPointer) {
        var line = String(decoding: bytes, as: UTF8.self)
        while line.hasSuffix("\n") || line.hasSuffix("\r") { line.removeLast() }
        if line.hasPrefix("HTTP/") {
            headers = HTTPHeaders()
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        } else if line.isEmpty {
            // End of a header block: a stream's head is complete unless this was an interim 1xx.
            if streaming, status >= 200, let head = headContinuation, let lines, streamingSuccess {
                headContinuation = nil
                head.resume(returning: HTTPStreamingResponse(status: status, headers: headers, lines: lines))
            }
        } else if let colon = line.firstIndex(of: ":") {
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingSpaces()
            headers.add(name, value)
        }
    }

    /// Body bytes; returns false to abort the transfer.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard streamingSuccess else {
            if body.count + bytes.count > limit {
                exceededLimit = true
                return false
            }
            body.append(contentsOf: bytes)
            return true
        }
        var start = 0
        for i in 0..<bytes.count where bytes[i] == UInt8(ascii: "\n") {
            partialLine.append(contentsOf: bytes[start..<i])
            emitLine()
            start = i + 1
        }
        partialLine.append(contentsOf: bytes[start..<bytes.count])
        if partialLine.count > limit {
            exceededLimit = true
            return false
        }
        return true
    }

    private func emitLine() {
        if partialLine.last == UInt8(ascii: "\r") { partialLine.removeLast() }
        if !partialLine.isEmpty { lineContinuation?.yield(partialLine) }
        partialLine.removeAll(keepingCapacity: true)
    }

    /// Resumes whoever waits, exactly once.
    func finish(_ result: Result<Void, HTTPError>) {
        guard !finished else { return }
        finished = true
        switch result {
        case .success:
            if !streaming {
                bufferedContinuation?.resume(returning: HTTPResponse(status: status, headers: headers, body: body))
            } else if streamingSuccess {
                if !partialLine.isEmpty { emitLine() }
                if let head = headContinuation, let lines {
                    head.resume(returning: HTTPStreamingResponse(status: status, headers: headers, lines: lines))
                }
                lineContinuation?.finish()
            } else {
                let failure = error(.status(status))
                headContinuation?.resume(throwing: failure)
                lineContinuation?.finish(throwing: failure)
            }
        case .failure(let failure):
            bufferedContinuation?.resume(throwing: failure)
            headContinuation?.resume(throwing: failure)
            lineContinuation?.finish(throwing: failure)
        }
        bufferedContinuation = nil
        headContinuation = nil
        lineContinuation = nil
        lines = nil
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        var slice = self[...]
        while slice.first == " " || slice.first == "\t" { slice.removeFirst() }
        while slice.last == " " || slice.last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
