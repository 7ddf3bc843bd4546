#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP server on 127.0.0.1 that takes connections and never answers: the kernel completes each handshake into the
/// listen backlog and nothing ever reads. What a hung Prometheus (or one behind a black-holing proxy) looks like to
/// a client: the request goes out, no byte comes back. For tests and benchmarks; `close()` it when done.
public final class SilentServer: @unchecked Sendable {
    public let port: Int
    private var fd: Int32

    public init() throws(LocalServerError) {
        (fd, port) = try LoopbackPort.bindLoopback(listening: true)
    }

    /// `http://127.0.0.1:<port>`.
    public var url: String { "http://127.0.0.1:\(port)" }

    public func close() {
        guard fd >= 0 else { return }
        closeSocket(fd)
        fd = -1
    }

    deinit { close() }
}

/// `close(2)`, named apart from `SilentServer.close()`.
private func closeSocket(_ fd: Int32) {
    _ = close(fd)
}
