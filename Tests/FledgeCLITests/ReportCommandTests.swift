import ArgumentParser
import FledgeCore
import Foundation
import LocalPrometheus
import Testing

@testable import FledgeCLI

/// `fledge report`: its flags, and the built binary against the in-process API server with the contract controller
/// (FledgeCore's `decide`) moving the rollout.
@Suite("fledge report", .serialized)
struct ReportCommandTests {
    @Test func flags() throws {
        let plain = try #require(try Fledge.parseAsRoot(["report", "product-service", "-n", "shop"]) as? ReportCommand)
        #expect(plain.output == "report.html" && plain.prometheusURL == nil && plain.kubernetes.namespace == "shop")
        let full = try #require(
            try Fledge.parseAsRoot(["report", "r", "-o", "/tmp/r.html", "--prometheus", "http://127.0.0.1:9090", "--prometheus-timeout", "3"]) as? ReportCommand)
        #expect(full.output == "/tmp/r.html" && full.prometheusURL == "http://127.0.0.1:9090" && full.prometheusTimeout == 3)
        #expect(full.makePrometheusClient()?.baseURL == "http://127.0.0.1:9090")
        #expect(plain.makePrometheusClient() == nil)
    }

    @Test(arguments: [
        (["report", "r", "--prometheus", "127.0.0.1:9090"], "--prometheus: \"127.0.0.1:9090\" is not an http:// or https:// URL"),
        (["report", "r", "--prometheus-token", "t"], "--prometheus-token and --prometheus-ca need --prometheus"),
        (["report", "r", "-o", ""], "--output: must not be empty"),
        (["report", "r", "--prometheus", "http://p", "--prometheus-timeout", "0"], "--prometheus-timeout: must be above 0"),
        (["report", "Product_Service"], "not a valid Rollout name"),
        (["report", "r", "-n", "Shop"], "--namespace"),
    ])
    func badFlags(arguments: [String], expected: String) {
        let message: String?
        do {
            _ = try Fledge.parseAsRoot(arguments)
            message = nil
        } catch {
            message = Fledge.message(for: error)
        }
        #expect(message?.contains(expected) == true, "\(message ?? "parsed")")
    }

    @Test func writesTheTimelineOfARolloutInFlight() async throws {
        try await CLISandbox.with { sandbox in
            #expect(try await sandbox.run(["trigger", "product-service", "--image", "registry.example/product-service:2.0.0"]).status == 0)
            var controller = ContractController(sandbox)
            try await controller.run { $0.status?.phase == .progressing && $0.status?.canaryWeight == 10 }
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("fledge-report-cli-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }

            let file = folder.appendingPathComponent("report.html").path
            let result = try await sandbox.run(["report", "product-service", "-o", file])
            #expect(result.status == 0, "\(result)")
            #expect(result.out.contains("wrote \(file): rollout shop/product-service (Progressing)"), "\(result)")
            #expect(result.err.contains("warning: metric series not available: no --prometheus was given"), "\(result)")
            let html = try String(contentsOfFile: file, encoding: .utf8)
            #expect(html.contains("data-series=\"weight\""))
            #expect(html.contains(">10%</text>"), "the weight of stage 1")
            #expect(html.contains("data-kind=\"started\"") && html.contains("data-kind=\"stageAdvanced\""))
            #expect(html.contains("data-threshold=\"min 99\"") && html.contains("data-threshold=\"max 500\""))
            #expect(html.contains("no --prometheus was given"))

            // A Prometheus that does not answer: the page still comes, and says which server failed.
            let closed = "http://127.0.0.1:\(try LoopbackPort.free())"
            let down = try await sandbox.run(["report", "product-service", "-o", file, "--prometheus", closed, "--prometheus-timeout", "2"])
            #expect(down.status == 0, "\(down)")
            #expect(try String(contentsOfFile: file, encoding: .utf8).contains("Prometheus at \(closed)"))

            let missing = try await sandbox.run(["report", "nope", "-o", file])
            #expect(missing.status != 0)
            #expect(missing.err.contains("rollout \"nope\" not found in namespace \"shop\""), "\(missing)")
            let unwritable = try await sandbox.run(["report", "product-service", "-o", folder.appendingPathComponent("no/such/dir.html").path])
            #expect(unwritable.status != 0)
            #expect(unwritable.err.contains("cannot write"), "\(unwritable)")
        }
    }
}
