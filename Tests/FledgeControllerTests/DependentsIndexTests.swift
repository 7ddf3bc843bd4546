import FledgeCore
import Testing

@testable import FledgeController

@Suite struct DependentsIndexTests {
    static func references(_ target: String, virtualService: String? = nil, destinationRule: String? = nil) -> RolloutReferences {
        RolloutReferences(
            namespace: "shop", stableDeployment: target, canaryDeployment: target + "-canary",
            virtualService: virtualService ?? target, destinationRule: destinationRule ?? target)
    }

    @Test func eachNamedObjectFindsItsRollout_theCanaryThroughItsStableName() {
        var index = DependentsIndex()
        index.update(rollout: "product-service", from: nil, to: Self.references("product-service"))
        #expect(index.count == 1)  // Deployment, VirtualService and DestinationRule share a name
        #expect(index.rollouts(naming: .deployment, namespace: "shop", name: "product-service") == ["shop/product-service"])
        #expect(index.rollouts(naming: .deployment, namespace: "shop", name: "product-service-canary") == ["shop/product-service"])
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "product-service") == ["shop/product-service"])
        #expect(index.rollouts(naming: .destinationRule, namespace: "shop", name: "product-service") == ["shop/product-service"])
        #expect(index.rollouts(naming: .deployment, namespace: "other", name: "product-service").isEmpty)
        #expect(index.rollouts(naming: .deployment, namespace: "shop", name: "unrelated-canary").isEmpty)
    }

    @Test func kindsAreKeptApart_andSharedObjectsListEveryRollout() {
        var index = DependentsIndex()
        index.update(rollout: "cart", from: nil, to: Self.references("cart", virtualService: "edge", destinationRule: "cart-dr"))
        index.update(rollout: "checkout", from: nil, to: Self.references("checkout", virtualService: "edge"))
        // A DestinationRule named like cart's Deployment is not cart's.
        #expect(index.rollouts(naming: .destinationRule, namespace: "shop", name: "cart").isEmpty)
        #expect(index.rollouts(naming: .destinationRule, namespace: "shop", name: "cart-dr") == ["shop/cart"])
        #expect(Set(index.rollouts(naming: .virtualService, namespace: "shop", name: "edge")) == ["shop/cart", "shop/checkout"])

        // Re-pointed, then deleted: nothing stale is left.
        index.update(
            rollout: "checkout", from: Self.references("checkout", virtualService: "edge"), to: Self.references("checkout", virtualService: "checkout"))
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "edge") == ["shop/cart"])
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "checkout") == ["shop/checkout"])
        index.update(rollout: "cart", from: Self.references("cart", virtualService: "edge", destinationRule: "cart-dr"), to: nil)
        index.update(rollout: "checkout", from: Self.references("checkout", virtualService: "checkout"), to: nil)
        #expect(index.count == 0)
    }

    /// The VirtualService a Rollout named before `spec.traffic` changed wakes it while weight may remain there.
    @Test func aFormerVirtualServiceFindsItsRolloutUntilItIsForgotten() {
        var index = DependentsIndex()
        var renamed = Self.references("cart", virtualService: "cart-v2")
        renamed.formerVirtualService = "cart"
        index.update(rollout: "cart", from: nil, to: renamed)
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "cart") == ["shop/cart"])
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "cart-v2") == ["shop/cart"])
        index.update(rollout: "cart", from: renamed, to: Self.references("cart", virtualService: "cart-v2"))
        #expect(index.rollouts(naming: .virtualService, namespace: "shop", name: "cart").isEmpty)
        #expect(index.rollouts(naming: .deployment, namespace: "shop", name: "cart") == ["shop/cart"])
    }
}
