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
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalServerError("cannot open a socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            let code = errno
            closeSocket(fd)
            throw LocalServerError("cannot listen on 127.0.0.1:0: errno \(code)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            closeSocket(fd)
            throw LocalServerError("getsockname failed: errno \(errno)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
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
