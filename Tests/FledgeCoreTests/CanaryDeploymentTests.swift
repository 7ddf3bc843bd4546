import FledgeCore
import FledgeJSON
import Testing

@Suite("decide: the canary Deployment takes over stable's rollout settings and metadata")
struct CanaryDeploymentTests {
    /// A stable Deployment as a user writes it, with kubectl's, Helm's and Argo CD's keys next to the user's own.
    static func userStable() -> ObservedDeployment {
        var stable = stableDeployment()
        stable.settings = DeploymentSettings(
            strategy: ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": 0, "maxUnavailable": 1]], minReadySeconds: 30,
            progressDeadlineSeconds: 120, revisionHistoryLimit: 3)
        stable.labels = [
            "app": "product-service", "version": "v1", "team": "shop", "app.kubernetes.io/managed-by": "Helm",
            "kustomize.toolkit.fluxcd.io/name": "shop",
        ]
        stable.annotations = [
            "owner": "shop-team", "reloader.stakater.com/auto": "true",
            "kubectl.kubernetes.io/last-applied-configuration": "{}", "deployment.kubernetes.io/revision": "4",
            "meta.helm.sh/release-name": "shop", "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/product-service",
        ]
        return stable
    }

    static func ensured(_ d: Decision) -> CanaryDeploymentSpec? {
        d.actions.lazy.compactMap { if case .ensureCanaryDeployment(let spec) = $0 { spec } else { nil } }.first
    }

    @Test func theCanaryGetsStablesStrategyMinReadySecondsAndTheUsersLabels() throws {
        var sim = Sim()
        sim.observed.stable = Self.userStable()
        sim.run(maxSteps: 50) { $0.decisions.last.flatMap(Self.ensured) != nil }
        let spec = try #require(sim.decisions.last.flatMap(Self.ensured))
        #expect(spec.settings == Self.userStable().settings)
        #expect(spec.settings.minReadySeconds == 30)
        // The stable subset's label takes the canary subset's value, as in the pod template; tools' keys stay behind.
        #expect(spec.labels == ["app": "product-service", "version": "v2", "team": "shop"])
        #expect(spec.annotations == ["owner": "shop-team", "reloader.stakater.com/auto": "true"])
        sim.run(untilPhase: .succeeded)
        #expect(sim.phase == .succeeded)
    }

    @Test func aCanaryMadeWithoutThemGetsThemWithTheNextRevisionAndIsThenLeftAlone() throws {
        var sim = Sim()
        sim.run(untilPhase: .succeeded)
        // The canary an older Fledge made: API defaults, Fledge's labels only. Then stable's settings change.
        #expect(sim.observed.canary?.settings == DeploymentSettings())
        sim.observed.stable!.settings = Self.userStable().settings
        sim.observed.stable!.labels = ["team": "shop"]
        sim.rollout.spec.canary = CanaryChange(image: "registry.example/product-service:3.0.0")
        sim.rollout.metadata.generation = 2
        let before = sim.decisions.count
        sim.run(maxSteps: 50) { $0.decisions.last.flatMap(Self.ensured) != nil }
        let spec = try #require(sim.decisions.last.flatMap(Self.ensured))
        #expect(spec.settings.minReadySeconds == 30)
        #expect(spec.labels == ["team": "shop"])
        // Written once: labels someone else added to the canary, and defaults spelled out or left to the server, are
        // no reason to write again.
        sim.observed.canary!.labels["added-by-policy"] = "yes"
        sim.run(untilPhase: .succeeded)
        #expect(sim.decisions.dropFirst(before).compactMap(Self.ensured).count == 1)
    }

    @Test func aCanaryAtTheRightRevisionWithOtherSettingsIsUpdated() {
        var sim = Sim()
        sim.run { $0.observed.canary != nil }
        // As an older controller left it mid-Initializing: the right revision, no settings.
        sim.observed.stable!.settings = Self.userStable().settings
        let d = sim.reconcile()
        #expect(Self.ensured(d)?.settings.minReadySeconds == 30)
        #expect(d.status.condition(ConditionType.trafficReady)?.message.contains("is being updated for revision") == true)
    }

    @Test func settingsCompareAsTheAPIServerDefaultsThem() {
        let defaulted: JSONValue = [
            "strategy": ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": "25%", "maxUnavailable": "25%"]], "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        ]
        #expect(DeploymentSettings(spec: defaulted) == DeploymentSettings(spec: [:]))
        #expect(DeploymentSettings(spec: ["strategy": ["type": "RollingUpdate"]]) == DeploymentSettings(spec: defaulted))
        #expect(DeploymentSettings(spec: ["minReadySeconds": 0]) == DeploymentSettings(spec: [:]))
        #expect(DeploymentSettings(spec: ["strategy": ["rollingUpdate": ["maxSurge": 1]]]).strategy
            == ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": 1, "maxUnavailable": "25%"]])
        #expect(DeploymentSettings(spec: ["strategy": ["type": "Recreate"]]).strategy == ["type": "Recreate"])
        #expect(DeploymentSettings(spec: ["minReadySeconds": 30]) != DeploymentSettings(spec: [:]))
    }
}
