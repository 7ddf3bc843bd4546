#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Free TCP ports on 127.0.0.1, for servers that tests and the demo start.
public enum LoopbackPort {
    /// Asks the kernel for a free port by binding port 0, then releases it.
    public static func free() throws(LocalServerError) -> Int {
        let (fd, port) = try bindLoopback(listening: false)
        _ = close(fd)
        return port
    }

    /// A TCP socket bound to 127.0.0.1 on a port the kernel picks (listening when asked), and that port. The
    /// caller closes the socket.
    static func bindLoopback(listening: Bool) throws(LocalServerError) -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalServerError("cannot open a socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, !listening || listen(fd, 128) == 0 else {
            let code = errno
            _ = close(fd)
            throw LocalServerError("cannot \(listening ? "listen on" : "bind") 127.0.0.1:0: errno \(code)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            let code = errno
            _ = close(fd)
            throw LocalServerError("getsockname failed: errno \(code)")
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}

/// A local server (Prometheus, promtool) could not be started or used.
public struct LocalServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
