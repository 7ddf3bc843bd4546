@testable import FledgeHTTP
import Testing

@Suite struct HTTPTypesTests {
    @Test func formEncodingEscapesPromQL() {
        #expect(formEncode("sum(rate(x{a=\"b c\"}[1m]))") == "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29")
        #expect(formEncode("ümlaut~._-") == "%C3%BCmlaut~._-")
    }

    @Test func headersAreCaseInsensitive() {
        var headers: HTTPHeaders = ["Content-Type": "text/plain"]
        #expect(headers["content-type"] == "text/plain")
        headers.set("CONTENT-TYPE", "application/json")
        #expect(headers.fields.count == 1)
        #expect(headers["Content-Type"] == "application/json")
    }

    @Test func base64MatchesKnownValues() {
        #expect(base64Encode(Array("".utf8)) == "")
        #expect(base64Encode(Array("f".utf8)) == "Zg==")
        #expect(base64Encode(Array("fo".utf8)) == "Zm8=")
        #expect(base64Encode(Array("foo".utf8)) == "Zm9v")
        #expect(base64Encode(Array("foobar".utf8)) == "Zm9vYmFy")
    }

    @Test func errorDescriptionsNameTheURLAndCause() {
        let error = HTTPError(kind: .connectionRefused, method: .get, url: "http://127.0.0.1:9/x", message: "Failed to connect")
        #expect(error.description == "GET http://127.0.0.1:9/x: connection refused (Failed to connect)")
    }
}
