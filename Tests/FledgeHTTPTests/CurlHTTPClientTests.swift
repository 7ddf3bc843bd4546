import FledgeHTTP
import Foundation
import HummingbirdTLS
import NIOSSL
import Testing
import TestSupport
import LocalPrometheus

@Suite("libcurl transport over plain HTTP")
struct PlainHTTPTests {
    @Test func getReturnsStatusHeadersAndBody() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let response = try await client.send(HTTPRequest(url: "\(base)/hello"))
            #expect(response.status == 200)
            #expect(response.bodyText == "hello")
            #expect(response.headers["content-length"] == "5")
        }
    }

    @Test func postSendsTheBodyAndMethod() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let payload = Array("{\"a\":[1,2,3]}".utf8)
            let response = try await client.send(HTTPRequest(method: .post, url: "\(base)/echo", headers: ["Content-Type": "application/json"], body: payload))
            #expect(response.body == payload)
            #expect(response.headers["x-method"] == "POST")
            let patched = try await client.send(HTTPRequest(method: .patch, url: "\(base)/echo-method", body: Array("x=1".utf8)))
            #expect(patched.bodyText == "PATCH x=1")
        }
    }

    @Test func nonSuccessStatusIsAResponseAndEnsureSuccessKeepsTheBody() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let url = "\(base)/status/409"
            let response = try await client.send(HTTPRequest(url: url))
            #expect(response.status == 409)
            let error = #expect(throws: HTTPError.self) { try response.ensureSuccess(url: url) }
            #expect(error?.kind == .status(409))
            #expect(error?.description.contains("nope 409") == true)
        }
    }

    @Test func bearerAndBasicAuthorizationAreSent() async throws {
        try await withLocalServer { base in
            let bearer = CurlHTTPClient(configuration: .init(authorization: .bearer("s3cret")))
            #expect(try await bearer.send(HTTPRequest(url: "\(base)/authorization")).bodyText == "Bearer s3cret")
            let basic = CurlHTTPClient(configuration: .init(authorization: .basic(username: "fledge", password: "pw")))
            #expect(try await basic.send(HTTPRequest(url: "\(base)/authorization")).bodyText == "Basic ZmxlZGdlOnB3")
            // A request's own Authorization wins over the client's.
            let own = try await bearer.send(HTTPRequest(url: "\(base)/authorization", headers: ["Authorization": "Bearer rotated"]))
            #expect(own.bodyText == "Bearer rotated")
        }
    }

    @Test func defaultHeadersAreAddedUnlessTheRequestSetsThem() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient(configuration: .init(defaultHeaders: ["X-Scope-OrgID": "tenant-a"]))
            #expect(try await client.send(HTTPRequest(url: "\(base)/tenant")).bodyText == "tenant-a")
            let own = try await client.send(HTTPRequest(url: "\(base)/tenant", headers: ["X-Scope-OrgID": "tenant-b"]))
            #expect(own.bodyText == "tenant-b")
        }
    }

    @Test func connectionsAreKeptAliveAndReused() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            var ports = Set<String>()
            for _ in 0..<20 {
                ports.insert(try await client.send(HTTPRequest(url: "\(base)/peer")).bodyText)
            }
            #expect(ports.count == 1, "20 sequential requests used \(ports.count) connections")
        }
    }

    @Test func concurrentRequestsAllComplete() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let bodies = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<50 { group.addTask { try await client.send(HTTPRequest(url: "\(base)/hello")).bodyText } }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(bodies.count == 50)
            #expect(Set(bodies) == ["hello"])
        }
    }

    @Test func cancellingTheTaskAbortsTheTransfer() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient(configuration: .init(timeout: .seconds(60)))
            let task = Task { try await client.send(HTTPRequest(url: "\(base)/slow")) }
            try await Task.sleep(for: .milliseconds(300))
            task.cancel()
            let result = await task.result
            guard case .failure(let error as HTTPError) = result else {
                Issue.record("expected a cancelled HTTPError, got \(result)")
                return
            }
            #expect(error.kind == .cancelled)
            // The client still works afterwards.
            #expect(try await client.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")
        }
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient(configuration: .init(timeout: .milliseconds(400)))
            let error = await #expect(throws: HTTPError.self) { try await client.send(HTTPRequest(url: "\(base)/slow")) }
            #expect(error?.kind == .timeout)
            #expect(error?.description.contains("/slow: timed out") == true)
        }
    }

    @Test func aClosedPortIsConnectionRefused() async throws {
        let port = try LoopbackPort.free()
        let client = CurlHTTPClient()
        let error = await #expect(throws: HTTPError.self) { try await client.send(HTTPRequest(url: "http://127.0.0.1:\(port)/")) }
        #expect(error?.kind == .connectionRefused)
        #expect(error?.description.contains("http://127.0.0.1:\(port)/: connection refused") == true)
    }

    @Test func malformedURLsAndOtherSchemesAreInvalidRequests() async throws {
        let client = CurlHTTPClient()
        for url in ["ftp://127.0.0.1/file", "file:///etc/passwd", "http://[::1"] {
            let error = await #expect(throws: HTTPError.self) { try await client.send(HTTPRequest(url: url)) }
            #expect(error?.kind == .invalidRequest, "\(url)")
        }
    }

    @Test(arguments: ["big", "big-chunked"])
    func responsesAboveTheCapFail(route: String) async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient(configuration: .init(maxResponseBytes: 1 << 20))
            let fits = try await client.send(HTTPRequest(url: "\(base)/\(route)?bytes=\(1 << 20)"))
            #expect(fits.body.count == 1 << 20)
            let error = await #expect(throws: HTTPError.self) {
                try await client.send(HTTPRequest(url: "\(base)/\(route)?bytes=\(3 << 20)"))
            }
            #expect(error?.kind == .responseTooLarge(limit: 1 << 20))
        }
    }
}

@Suite("libcurl transport streaming")
struct StreamingTests {
    @Test func linesSplitAcrossChunksArriveWhole() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let response = try await client.stream(HTTPRequest(url: "\(base)/lines"))
            #expect(response.status == 200)
            var lines: [String] = []
            for try await line in response.lines { lines.append(String(decoding: line, as: UTF8.self)) }
            #expect(lines == ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"])
        }
    }

    @Test func stoppingEarlyAbortsAnEndlessStream() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let response = try await client.stream(HTTPRequest(url: "\(base)/endless-lines", timeout: .zero))
            var count = 0
            for try await _ in response.lines {
                count += 1
                if count == 3 { break }
            }
            #expect(count == 3)
            #expect(try await client.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")
        }
    }

    @Test func cancellingTheConsumerEndsTheStream() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let task = Task {
                var count = 0
                let response = try await client.stream(HTTPRequest(url: "\(base)/endless-lines", timeout: .zero))
                for try await _ in response.lines { count += 1 }
                return count
            }
            try await Task.sleep(for: .milliseconds(300))
            task.cancel()
            _ = await task.result  // returns instead of hanging on an endless stream
        }
    }

    @Test func aNonSuccessStatusThrowsWithTheBody() async throws {
        try await withLocalServer { base in
            let client = CurlHTTPClient()
            let error = await #expect(throws: HTTPError.self) { try await client.stream(HTTPRequest(url: "\(base)/status/410")) }
            #expect(error?.kind == .status(410))
            let body = String(decoding: error?.body ?? [], as: UTF8.self)
            #expect(body.contains("nope 410"))
        }
    }
}

@Suite("libcurl transport over TLS")
struct TLSTests {
    static func serverTLS(_ certificates: TestCertificates, requireClientCertificate: Bool = false) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificates.serverCertificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certificates.serverKey, format: .pem)))
        if requireClientCertificate {
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificates.caCertificate))
        }
        return configuration
    }

    @Test func verificationSucceedsWithTheCAFileOrPEMBytes() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        try await withLocalServer(tls: Self.serverTLS(certificates)) { base in
            let fromFile = CurlHTTPClient(configuration: .init(tls: .init(certificateAuthority: .file(certificates.caCertificate))))
            #expect(try await fromFile.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")
            let pem = try [UInt8](Data(contentsOf: URL(fileURLWithPath: certificates.caCertificate)))
            let fromBytes = CurlHTTPClient(configuration: .init(tls: .init(certificateAuthority: .pem(pem))))
            #expect(try await fromBytes.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")
        }
    }

    @Test func verificationFailsWithoutTheCA() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        try await withLocalServer(tls: Self.serverTLS(certificates)) { base in
            let client = CurlHTTPClient()
            let error = await #expect(throws: HTTPError.self) { try await client.send(HTTPRequest(url: "\(base)/hello")) }
            #expect(error?.kind == .tls)
            #expect(error?.message.lowercased().contains("certificate") == true, "\(String(describing: error))")
        }
    }

    @Test func insecureSkipsVerification() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        try await withLocalServer(tls: Self.serverTLS(certificates)) { base in
            let client = CurlHTTPClient(configuration: .init(tls: .init(insecureSkipVerify: true)))
            let response = try await client.send(HTTPRequest(url: "\(base)/hello"))
            #expect(response.bodyText == "hello")
        }
    }

    @Test func clientCertificateAuthentication() async throws {
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        try await withLocalServer(tls: Self.serverTLS(certificates, requireClientCertificate: true)) { base in
            let ca = PEMSource.file(certificates.caCertificate)
            let withFiles = CurlHTTPClient(configuration: .init(tls: .init(
                certificateAuthority: ca, clientCertificate: .file(certificates.clientCertificate), clientKey: .file(certificates.clientKey))))
            #expect(try await withFiles.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")

            let certificate = try [UInt8](Data(contentsOf: URL(fileURLWithPath: certificates.clientCertificate)))
            let key = try [UInt8](Data(contentsOf: URL(fileURLWithPath: certificates.clientKey)))
            let withBytes = CurlHTTPClient(configuration: .init(tls: .init(certificateAuthority: ca, clientCertificate: .pem(certificate), clientKey: .pem(key))))
            #expect(try await withBytes.send(HTTPRequest(url: "\(base)/hello")).bodyText == "hello")

            let without = CurlHTTPClient(configuration: .init(tls: .init(certificateAuthority: ca)))
            await #expect(throws: HTTPError.self) { try await without.send(HTTPRequest(url: "\(base)/hello")) }
        }
    }
}
