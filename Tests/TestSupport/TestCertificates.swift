import Foundation
import LocalPrometheus

/// A throw-away PKI made with the `openssl` command: a CA, a server certificate
/// for 127.0.0.1/localhost, and a client certificate, all signed by the CA.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caCertificate: String { "\(directory)/ca.crt" }
    public var serverCertificate: String { "\(directory)/server.crt" }
    public var serverKey: String { "\(directory)/server.key" }
    public var clientCertificate: String { "\(directory)/client.crt" }
    public var clientKey: String { "\(directory)/client.key" }

    public static func make() throws -> TestCertificates {
        let directory = try TemporaryDirectory.make(prefix: "fledge-pki")
        let certificates = TestCertificates(directory: directory)
        try certificates.generate()
        return certificates
    }

    private func generate() throws {
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                     "-days", "2", "-subj", "/CN=Fledge Test CA"])
        try """
            subjectAltName=IP:127.0.0.1,DNS:localhost
            extendedKeyUsage=serverAuth
            """.write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: "\(directory)/client.ext", atomically: true, encoding: .utf8)
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=fledge-test-client/O=system:masters")] {
            try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject])
            try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                         "-out", "\(name).crt", "-days", "2", "-extfile", "\(name).ext"])
        }
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw LocalServerError("openssl \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
