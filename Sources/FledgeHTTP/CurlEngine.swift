import CCurl
import Foundation
import Synchronization

/// Drives a libcurl multi handle on one dedicated thread.
///
/// libcurl handles are not Sendable, so every easy and multi handle lives and
/// dies on this thread; other threads only queue commands and wake it up with
/// `curl_multi_wakeup`, which libcurl allows from any thread.
final class CurlEngine: @unchecked Sendable {
    private enum Command {
        case start(Transfer)
        case cancel(Transfer)
    }

    private static let globalInit: Void = { _ = fledge_global_init() }()

    private let multi: UnsafeMutableRawPointer
    private let commands = Mutex<(queue: [Command], shuttingDown: Bool)>(([], false))
    /// Transfers in flight, retained for exactly the life of their libcurl transfer.
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]

    init() {
        Self.globalInit
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed: out of memory") }
        self.multi = multi
        let thread = Thread { [self] in run() }
        thread.name = "fledge-curl"
        thread.start()
    }

    func submit(_ transfer: Transfer) { enqueue(.start(transfer)) }

    func cancel(_ transfer: Transfer) {
        transfer.cancelRequested.store(true, ordering: .releasing)
        enqueue(.cancel(transfer))
    }

    func shutdown() {
        commands.withLock { $0.shuttingDown = true }
        curl_multi_wakeup(multi)
    }

    private func enqueue(_ command: Command) {
        commands.withLock { $0.queue.append(command) }
        curl_multi_wakeup(multi)
    }

    // MARK: - The engine thread

    private func run() {
        while true {
            let (queue, shuttingDown) = commands.withLock { state in
                defer { state.queue.removeAll() }
                return (state.queue, state.shuttingDown)
            }
            for command in queue {
                switch command {
                case .start(let transfer): start(transfer)
                case .cancel(let transfer): abort(transfer, with: transfer.error(.cancelled))
                }
            }
            if shuttingDown {
                for transfer in Array(active.values) {
                    abort(transfer, with: transfer.error(.cancelled, "HTTP client shut down"))
                }
                break
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            collectFinished()
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        curl_multi_cleanup(multi)
    }

    private func start(_ transfer: Transfer) {
        if transfer.cancelRequested.load(ordering: .acquiring) {
            transfer.finish(.failure(transfer.error(.cancelled)))
            return
        }
        guard let handle = curl_easy_init() else {
            transfer.finish(.failure(transfer.error(.transfer, "curl_easy_init failed")))
            return
        }
        transfer.handle = handle
        do {
            try configure(handle, for: transfer)
        } catch {
            curl_easy_cleanup(handle)
            transfer.handle = nil
            transfer.finish(.failure(error))
            return
        }
        active[handle] = transfer
        curl_multi_add_handle(multi, handle)
    }

    private func abort(_ transfer: Transfer, with error: HTTPError) {
        guard let handle = transfer.handle, active[handle] != nil else { return }
        release(handle)
        transfer.finish(.failure(error))
    }

    private func release(_ handle: UnsafeMutableRawPointer) {
        curl_multi_remove_handle(multi, handle)
        curl_easy_cleanup(handle)
        active[handle]?.handle = nil
        active[handle] = nil
    }

    private func collectFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle,
                let transfer = active[handle]
            else { continue }
            let code = message.pointee.data.result
            var osErrno = 0
            _ = fledge_easy_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
            if code == CURLE_OK {
                var status = 0
                _ = fledge_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
                if status != 0 { transfer.status = status }
            }
            release(handle)
            if code == CURLE_OK {
                transfer.finish(Result<Void, HTTPError>.success(()))
            } else {
                transfer.finish(Result<Void, HTTPError>.failure(Self.mapError(code, osErrno: osErrno, transfer: transfer)))
            }
        }
    }

    static func mapError(_ code: CURLcode, osErrno: Int, transfer: Transfer) -> HTTPError {
        var detail = String(cString: transfer.errorBuffer)
        if detail.isEmpty { detail = String(cString: curl_easy_strerror(code)) }
        let kind: HTTPError.Kind
        switch code {
        case CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT, CURLE_BAD_FUNCTION_ARGUMENT:
            kind = .invalidRequest
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            kind = .dnsFailure
        case CURLE_COULDNT_CONNECT:
            kind = osErrno == Int(ECONNREFUSED) ? .connectionRefused : .connectionFailed
        case CURLE_OPERATION_TIMEDOUT:
            kind = .timeout
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM,
            CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
            CURLE_SSL_CRL_BADFILE, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_ENGINE_INITFAILED:
            kind = .tls
        case CURLE_WRITE_ERROR where transfer.exceededLimit, CURLE_FILESIZE_EXCEEDED:
            kind = .responseTooLarge(limit: transfer.limit)
            detail = "the server sent more than \(transfer.limit) bytes"
        case CURLE_ABORTED_BY_CALLBACK:
            kind = .cancelled
        default:
            kind = .transfer
        }
        return transfer.error(kind, detail)
    }

    // MARK: - Options

    private func configure(_ handle: UnsafeMutableRawPointer, for transfer: Transfer) throws(HTTPError) {
        let request = transfer.request
        let config = transfer.configuration
        var failure: HTTPError?
        func check(_ code: CURLcode, _ what: String) {
            if code != CURLE_OK, failure == nil {
                failure = transfer.error(.invalidRequest, "\(what): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        func setLong(_ option: CURLoption, _ value: Int, _ what: String) {
            check(fledge_easy_setopt_long(handle, option, value), what)
        }
        func setString(_ option: CURLoption, _ value: String, _ what: String) {
            check(fledge_easy_setopt_string(handle, option, value), what)
        }
        func setPEM(_ source: PEMSource, file: CURLoption, blob: CURLoption, _ what: String) {
            switch source {
            case .file(let path): setString(file, path, what)
            case .pem(var bytes):
                bytes.withUnsafeMutableBytes { raw in
                    var value = curl_blob(data: raw.baseAddress, len: raw.count, flags: UInt32(CURL_BLOB_COPY))
                    check(fledge_easy_setopt_blob(handle, blob, &value), what)
                }
            }
        }

        setString(CURLOPT_URL, request.url, "URL")
        setLong(CURLOPT_NOSIGNAL, 1, "no signals")
        setString(CURLOPT_PROTOCOLS_STR, "http,https", "protocols")
        setLong(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS), "HTTP version")
        setString(CURLOPT_ACCEPT_ENCODING, "", "accept encoding")
        setLong(CURLOPT_TCP_KEEPALIVE, 1, "TCP keep-alive")
        setLong(CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(config.connectTimeout.milliseconds)), "connect timeout")
        let total = request.timeout ?? config.timeout
        setLong(CURLOPT_TIMEOUT_MS, total == .zero ? 0 : max(1, Int(total.milliseconds)), "timeout")
        check(fledge_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, transfer.errorBuffer), "error buffer")
        if !transfer.streaming {
            check(fledge_easy_setopt_offset(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(config.maxResponseBytes)), "size cap")
        }

        switch request.method {
        case .get: setLong(CURLOPT_HTTPGET, 1, "method")
        case .head: setLong(CURLOPT_NOBODY, 1, "method")
        case .post: break
        default: setString(CURLOPT_CUSTOMREQUEST, request.method.rawValue, "method")
        }
        if let body = request.body ?? (request.method == .post ? [] : nil) {
            check(fledge_easy_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)), "body size")
            // COPYPOSTFIELDS copies, so the bytes need not outlive this call; a
            // zero-length body still needs a valid pointer.
            var bytes = body.isEmpty ? [0] : body
            bytes.withUnsafeMutableBytes { raw in
                check(fledge_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, raw.baseAddress), "body")
            }
            if request.method != .post { setString(CURLOPT_CUSTOMREQUEST, request.method.rawValue, "method") }
        }

        var list: UnsafeMutablePointer<curl_slist>?
        for field in request.headers {
            // "Name;" sends an empty header, "Name:" removes one libcurl would add.
            let line = field.value.isEmpty ? "\(field.name):" : "\(field.name): \(field.value)"
            list = curl_slist_append(list, line)
        }
        transfer.headerList = list
        check(fledge_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, list), "headers")

        let tls = config.tls
        if let ca = tls.certificateAuthority { setPEM(ca, file: CURLOPT_CAINFO, blob: CURLOPT_CAINFO_BLOB, "CA certificate") }
        if let certificate = tls.clientCertificate {
            setPEM(certificate, file: CURLOPT_SSLCERT, blob: CURLOPT_SSLCERT_BLOB, "client certificate")
            setString(CURLOPT_SSLCERTTYPE, "PEM", "client certificate type")
        }
        if let key = tls.clientKey {
            setPEM(key, file: CURLOPT_SSLKEY, blob: CURLOPT_SSLKEY_BLOB, "client key")
            setString(CURLOPT_SSLKEYTYPE, "PEM", "client key type")
        }
        if tls.insecureSkipVerify {
            setLong(CURLOPT_SSL_VERIFYPEER, 0, "verify peer")
            setLong(CURLOPT_SSL_VERIFYHOST, 0, "verify host")
        }

        let context = Unmanaged.passUnretained(transfer).toOpaque()
        check(fledge_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context), "write data")
        check(fledge_easy_setopt_write_function(handle, CURLOPT_WRITEFUNCTION, curlWriteBody), "write function")
        check(fledge_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, context), "header data")
        check(fledge_easy_setopt_write_function(handle, CURLOPT_HEADERFUNCTION, curlWriteHeader), "header function")
        if let failure { throw failure }
    }
}

// The transfer outlives these callbacks: the engine retains it in `active`
// until libcurl has finished with its easy handle.
private func curlWriteBody(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let context else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: size * count)
    return transfer.receiveBody(bytes) ? size * count : 0
}

private func curlWriteHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let context else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
    transfer.receiveHeader(UnsafeRawBufferPointer(start: data, count: size * count))
    return size * count
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
