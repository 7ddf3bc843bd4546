import FledgePrometheus
import Testing

@Suite("Prometheus API answers, parsed without a network")
struct PrometheusResponseTests {
    func decode(_ text: String, status: Int = 200) throws(PrometheusError.Kind) -> QueryResult {
        try PrometheusResponse.decode(status: status, body: Array(text.utf8)).result
    }

    @Test func vectorWithLabelsAndSpecialValues() throws {
        let result = try decode("""
            {"status":"success","data":{"resultType":"vector","result":[
              {"metric":{"destination_workload":"a"},"value":[1767227407.5,"95.83"]},
              {"metric":{"destination_workload":"b"},"value":[1767227407.5,"NaN"]},
              {"metric":{},"value":[1767227407.5,"+Inf"]},
              {"metric":{},"value":[1767227407.5,"-Inf"]}]}}
            """)
        guard case .vector(let samples) = result else {
            Issue.record("not a vector: \(result)")
            return
        }
        #expect(samples.count == 4)
        #expect(samples[0].labels == ["destination_workload": "a"])
        #expect(samples[0].point == SamplePoint(timestamp: 1767227407.5, value: 95.83))
        #expect(samples[1].point.value.isNaN)
        #expect(samples[2].point.value == .infinity)
        #expect(samples[3].point.value == -.infinity)
        #expect(result.values(groupedBy: ["destination_workload"]) == [["a"]: 95.83, [""]: -.infinity])
    }

    @Test func scalarMatrixAndString() throws {
        #expect(try decode(#"{"status":"success","data":{"resultType":"scalar","result":[10,"2.5"]}}"#) == .scalar(SamplePoint(timestamp: 10, value: 2.5)))
        #expect(try decode(#"{"status":"success","data":{"resultType":"string","result":[10,"hi"]}}"#) == .string(timestamp: 10, value: "hi"))
        let matrix = try decode(#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"],[2,"3"]]}]}}"#)
        #expect(matrix == .matrix([RangeSeries(labels: ["a": "1"], points: [SamplePoint(timestamp: 1, value: 1), SamplePoint(timestamp: 2, value: 3)])]))
    }

    @Test func noDataIsNeverANumber() throws {
        #expect(try decode(#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).singleValue == nil)
        #expect(try decode(#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#).singleValue == nil)
        #expect(try decode(#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#).singleValue == nil)
        // Several series where one was expected is not a number either.
        #expect(try decode(#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#).singleValue == nil)
        #expect(try decode(#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0"]}]}}"#).singleValue == 0)
    }

    @Test func apiErrorsKeepTypeAndMessage() {
        let body = #"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#
        #expect {
            _ = try decode(body, status: 400)
        } throws: { error in
            guard case .api(let type, let message) = error as? PrometheusError.Kind else { return false }
            return type == "bad_data" && message == "1:5: parse error: unexpected end of input"
        }
        let wrapped = PrometheusError(kind: .api(errorType: "bad_data", message: "parse error"), server: "http://p:9090", query: "sum(")
        #expect(wrapped.description == "Prometheus at http://p:9090 rejected the query: bad_data: parse error (query: sum()")
    }

    @Test(arguments: [
        ("<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"#, "not JSON"),
        ("", "not JSON"),
        ("[1,2]", "expected a JSON object"),
        (#"{"data":{}}"#, "no \"status\""),
        (#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#, "unreadable sample value"),
        (#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}}"#, "is not a string"),
        (#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#, "unknown resultType"),
        (#"{"status":"success","data":{"resultType":"vector"}}"#, "missing data.resultType or data.result"),
    ])
    func malformedAnswersAreClearErrors(body: String, expected: String) {
        #expect {
            _ = try decode(body, status: 200)
        } throws: { error in
            guard case .malformedResponse(let detail) = error as? PrometheusError.Kind else { return false }
            return detail.contains(expected)
        }
    }

    @Test func deeplyNestedHostileJSONIsRefused() {
        let body = String(repeating: "[", count: 100_000)
        #expect(throws: PrometheusError.Kind.self) { _ = try decode(body) }
    }

    @Test func sampleValueNotation() {
        #expect(PrometheusResponse.parseSampleValue("1e3") == 1000)
        #expect(PrometheusResponse.parseSampleValue("-0.5") == -0.5)
        #expect(PrometheusResponse.parseSampleValue("NaN")?.isNaN == true)
        #expect(PrometheusResponse.parseSampleValue("inf") == nil)
        #expect(PrometheusResponse.parseSampleValue("") == nil)
    }
}

@Suite("Istio query templates")
struct IstioQueryTests {
    @Test func successRateIsFlaggersQueryWithExactMatches() throws {
        let query = try IstioQueries.successRate(namespace: "shop", workload: "product-service-canary", window: "1m")
        #expect(query == #"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="product-service-canary",response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="product-service-canary"}[1m])) * 100"#)
    }

    @Test func latencyAndVolume() throws {
        let latency = try IstioQueries.latency(quantile: 0.99, namespace: "shop", workload: "w", window: "30s", reporter: "source")
        #expect(latency == #"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source",destination_workload_namespace="shop",destination_workload="w"}[30s])) by (le))"#)
        let volume = try IstioQueries.requestVolume(namespace: "shop", workload: "w", window: "2m")
        #expect(volume == #"sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="w"}[2m]))"#)
        #expect(throws: PromQLTemplate.Error.self) { try IstioQueries.latency(quantile: 99, namespace: "a", workload: "b", window: "1m") }
    }

    @Test func labelValuesAreEscaped() throws {
        let query = try IstioQueries.requestVolume(namespace: #"a"}or vector(1)"#, workload: #"b\"#, window: "1m")
        #expect(query.contains(#"destination_workload_namespace="a\"}or vector(1)""#))
        #expect(query.contains(#"destination_workload="b\\""#))
    }

    @Test func customTemplatesAndTheirErrors() throws {
        let rendered = try PromQLTemplate.render(
            "sum(rate(checkout_errors{namespace=\"{{ namespace }}\",workload=\"{{workload}}\"}[{{interval}}]))",
            labels: ["namespace": "shop", "workload": "w"], window: "45s")
        #expect(rendered == "sum(rate(checkout_errors{namespace=\"shop\",workload=\"w\"}[45s]))")
        #expect(throws: PromQLTemplate.Error(message: "unknown template variable {{pod}} (known: interval, namespace, window, workload)")) {
            try PromQLTemplate.render("{{pod}}", labels: ["namespace": "a", "workload": "b"], window: "1m")
        }
        #expect(throws: PromQLTemplate.Error.self) { try PromQLTemplate.render("{{namespace", labels: ["namespace": "a"], window: "1m") }
        #expect(throws: PromQLTemplate.Error.self) { try PromQLTemplate.render("x", labels: [:], window: "1 minute") }
    }

    @Test(arguments: ["30s", "1m", "1h30m", "500ms", "2d", "1w"]) func durations(_ text: String) {
        #expect(PromQLTemplate.isDuration(text))
    }

    @Test(arguments: ["", "1", "m", "1.5m", "1M", "-1m", "1m "]) func notDurations(_ text: String) {
        #expect(!PromQLTemplate.isDuration(text))
    }
}

@Suite("Evaluation times")
struct PrometheusTimeTests {
    @Test func rfc3339AndUnixSeconds() throws {
        #expect(try PrometheusTime.parse("2026-01-01T00:00:00Z") == 1_767_225_600)
        #expect(try PrometheusTime.parse("2026-01-01T01:30:00+01:30") == 1_767_225_600)
        #expect(try PrometheusTime.parse("2026-01-01T00:00:00.250Z") == 1_767_225_600.25)
        #expect(try PrometheusTime.parse("1767225600") == 1_767_225_600)
        #expect(try PrometheusTime.parse("1767225600.5") == 1_767_225_600.5)
        #expect(try PrometheusTime.parse("2000-02-29T12:00:00Z") == 951_825_600)
    }

    @Test(arguments: ["yesterday", "2026-13-01T00:00:00Z", "2026-01-01", "2026-01-01T00:00:00", "2026-01-01T00:00:00Zjunk", "nan", "inf"])
    func badTimes(_ text: String) {
        #expect(throws: PrometheusTime.ParseError.self) { try PrometheusTime.parse(text) }
    }

    @Test func formatting() {
        #expect(PrometheusTime.format(1_767_225_600) == "1767225600")
        #expect(PrometheusTime.format(1_767_225_600.25) == "1767225600.250")
    }

    /// Times beyond the years 1970–9999 are refused by name, and the formatter never traps on any Double (it
    /// used to convert 1e20 s to Int64 and crash `fledge query --at 1e20` with SIGILL).
    @Test(arguments: ["1e20", "-1e20", "1e308", "-1", "253402300800", "0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
    func timesOutsideTheYears1970To9999(_ text: String) {
        #expect(throws: PrometheusTime.ParseError.self) { try PrometheusTime.parse(text) }
        do {
            _ = try PrometheusTime.parse(text)
        } catch {
            #expect(error.description.contains("outside the years 1970 to 9999"), "\(error)")
        }
    }

    @Test func rangeEnds() throws {
        #expect(try PrometheusTime.parse("0") == 0)
        #expect(try PrometheusTime.parse("9999-12-31T23:59:59Z") == 253_402_300_799)
    }

    @Test(arguments: [1e20, -1e20, 1e308, -Double.greatestFiniteMagnitude, .infinity, -.infinity, .nan])
    func formattingNeverTraps(_ seconds: Double) {
        let text = PrometheusTime.format(seconds)
        #expect(!text.isEmpty)
        #expect(Double(text)?.isFinite == true, "\(text)")
    }
}
