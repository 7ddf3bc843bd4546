import FledgeCore
import FledgeJSON
import FledgeJudge
import Foundation
import Testing
import Yams

/// The CRD in deploy/crds agrees with the Swift types.
@Suite("Rollout CRD")
struct CRDTests {
    static func crd() throws -> [String: Any] {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let text = try String(contentsOf: url.appendingPathComponent("deploy/crds/rollouts.fledge.dev.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    @Test func phasesPrinterColumnsAndSubresource() throws {
        let crd = try Self.crd()
        let spec = try #require(crd["spec"] as? [String: Any])
        #expect(spec["scope"] as? String == "Namespaced")
        let version = try #require((spec["versions"] as? [[String: Any]])?.first)
        #expect(version["name"] as? String == "v1alpha1")
        #expect((version["subresources"] as? [String: Any])?["status"] != nil)
        let columns = (version["additionalPrinterColumns"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        #expect(columns == ["Phase", "Stage", "Weight", "Revision", "Message", "Age"])
        // The message only with -o wide.
        let message = (version["additionalPrinterColumns"] as? [[String: Any]])?.first { $0["name"] as? String == "Message" }
        #expect(message?["priority"] as? Int == 1)
        #expect(message?["jsonPath"] as? String == ".status.message")
        // Stage as people read it (`2/4`, as `fledge list` shows it), not the 0-based status.stage.
        let stage = (version["additionalPrinterColumns"] as? [[String: Any]])?.first { $0["name"] as? String == "Stage" }
        #expect(stage?["jsonPath"] as? String == ".status.stageProgress")
        #expect(stage?["type"] as? String == "string")
        let schema = try #require((version["schema"] as? [String: Any])?["openAPIV3Schema"] as? [String: Any])
        let status = try #require((schema["properties"] as? [String: Any])?["status"] as? [String: Any])
        let phase = try #require((status["properties"] as? [String: Any])?["phase"] as? [String: Any])
        #expect(Set(phase["enum"] as? [String] ?? []) == Set(Phase.allCases.map(\.rawValue)))
        let requests = (((status["properties"] as? [String: Any])?["requests"] as? [String: Any])?["items"] as? [String: Any])?["properties"] as? [String: Any]
        #expect(Set((requests?["kind"] as? [String: Any])?["enum"] as? [String] ?? []) == Set(ManualRequest.allCases.map(\.rawValue)))
    }

    /// The API server refuses what validation refuses: the same longest target.
    @Test func targetDeploymentLengthMatchesValidation() throws {
        let crd = try Self.crd()
        let version = try #require(((crd["spec"] as? [String: Any])?["versions"] as? [[String: Any]])?.first)
        let schema = try #require((version["schema"] as? [String: Any])?["openAPIV3Schema"] as? [String: Any])
        let spec = try #require((schema["properties"] as? [String: Any])?["spec"] as? [String: Any])
        let target = try #require((spec["properties"] as? [String: Any])?["target"] as? [String: Any])
        let deployment = try #require((target["properties"] as? [String: Any])?["deployment"] as? [String: Any])
        #expect(deployment["maxLength"] as? Int == RolloutReferences.maxTargetLength)
        #expect(RolloutReferences.maxTargetLength == 235)
    }

    @Test func statusFieldsAreInTheSchema() throws {
        let crd = try Self.crd()
        let version = try #require(((crd["spec"] as? [String: Any])?["versions"] as? [[String: Any]])?.first)
        let schema = try #require((version["schema"] as? [String: Any])?["openAPIV3Schema"] as? [String: Any])
        let status = try #require((schema["properties"] as? [String: Any])?["status"] as? [String: Any])
        let known = Set((status["properties"] as? [String: Any] ?? [:]).keys)
        // A status full of everything decide writes.
        var sim = RolloutStatus(phase: .rollingBack)
        sim.observedGeneration = 1
        sim.revision = "a"
        sim.stableRevision = "b"
        sim.stage = 0
        sim.stageProgress = "1/4"
        sim.message = "m"
        sim.startedAt = Timestamp(seconds: 0)
        sim.stageStartedAt = Timestamp(seconds: 0)
        sim.lastProgressAt = Timestamp(seconds: 0)
        sim.lastAnalysisAt = Timestamp(seconds: 0)
        sim.lastAnalysis = []
        sim.rollbackTo = .failed
        sim.approvedStage = 0
        sim.judge = try CanaryJudge().initialState()
        sim.judgeAcceptedStage = 0
        sim.canaryDeployment = "c"
        sim.routedTraffic = RoutedTraffic(
            TrafficPlan(virtualService: "v", routes: ["r"], destinationRule: "d", stableSubset: "s", canarySubset: "c"), host: "h")
        let json = try JSONValue(encoding: sim)
        for key in json.objectValue!.keys { #expect(known.contains(key), "status.\(key) is missing from the CRD schema") }
        // Nested objects the schema spells out (not preserve-unknown-fields) would lose unknown keys to pruning.
        let routed = ((status["properties"] as? [String: Any])?["routedTraffic"] as? [String: Any])?["properties"] as? [String: Any] ?? [:]
        for key in Array(json["routedTraffic"]?.objectValue?.keys ?? []) {
            #expect(routed[key] != nil, "status.routedTraffic.\(key) is missing from the CRD schema")
        }
        // Spec fields likewise.
        let specProps = Set((((schema["properties"] as? [String: Any])?["spec"] as? [String: Any])?["properties"] as? [String: Any] ?? [:]).keys)
        #expect(specProps == ["target", "canary", "traffic", "stages", "analysis", "progressDeadline", "webhooks"])
    }
}
