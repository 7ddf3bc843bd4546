/// Two documents: the `shop` Namespace, then a Rollout the CRD's schema refuses (`spec.stages[0].hold: "-5s"` does
/// not match its duration pattern), for what loading a manifest says about the file and the document.
public let namespaceAndInvalidRolloutManifest = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: shop}
    ---
    apiVersion: fledge.dev/v1alpha1
    kind: Rollout
    metadata: {name: bad, namespace: shop}
    spec: {target: {deployment: x}, stages: [{weight: 10, hold: "-5s"}]}
    """
