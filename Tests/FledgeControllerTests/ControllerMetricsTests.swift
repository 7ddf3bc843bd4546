import FledgeCore
import Testing

@testable import FledgeController

@Suite struct ControllerMetricsTests {
    /// `/metrics` streams the per-rollout series in chunks; however the chunks fall, the text is the same and every
    /// series is there once.
    @Test(arguments: [1, 80, 64 * 1024])
    func chunksMakeUpTheWholeTextWhateverTheirSize(chunkSize: Int) {
        let metrics = ControllerMetrics()
        for index in 0..<25 {
            var status = RolloutStatus(phase: index.isMultiple(of: 2) ? .healthy : .progressing)
            status.canaryWeight = index
            metrics.record(namespace: "shop", rollout: "service-\(index)", status: status)
        }
        let chunks = Array(metrics.textChunks(chunkSize: chunkSize))
        let text = chunks.joined()
        #expect(text == metrics.text())
        for index in 0..<25 {
            #expect(text.components(separatedBy: "fledge_rollout_canary_weight{namespace=\"shop\",rollout=\"service-\(index)\"} \(index)\n").count == 2)
        }
        #expect(text.components(separatedBy: "# TYPE fledge_rollout_phase gauge").count == 2)
        if chunkSize == 1 { #expect(chunks.count > 25) }
    }
}
