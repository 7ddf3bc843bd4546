import FledgeCore
import FledgeJSON

/// The fields a Rollout spec may have. Kubernetes drops unknown fields of a structural schema silently, so a
/// typo like `failureLimt` would quietly use the default; lint reports it.
indirect enum FieldSchema: Sendable {
    case leaf
    case any
    case object([String: FieldSchema])
    case list(FieldSchema)
}

let rolloutSchema: FieldSchema = .object([
    "target": .object(["deployment": .leaf]),
    "canary": .object(["image": .leaf, "images": .list(.leaf), "templatePatch": .any, "replicas": .leaf]),
    "traffic": .object(["virtualService": .leaf, "routes": .list(.leaf), "destinationRule": .leaf, "stableSubset": .leaf, "canarySubset": .leaf]),
    "stages": .list(.object(["weight": .leaf, "hold": .leaf, "approval": .leaf])),
    "analysis": .object([
        "interval": .leaf, "failureLimit": .leaf, "minRequests": .leaf, "noData": .leaf, "providerErrorLimit": .leaf,
        "prometheus": .object(["address": .leaf]),
        "judge": .object([
            "enabled": .leaf, "falseRollbackRate": .leaf, "falsePromotionRate": .leaf, "errorRateRatioMargin": .leaf,
            "errorRateAbsoluteMargin": .leaf, "latencyTailRatioMargin": .leaf, "latencyTailAbsoluteMargin": .leaf, "latencyTailShare": .leaf,
            "latencyBoundarySamples": .leaf,
        ]),
        "metrics": .list(.object(["name": .leaf, "query": .leaf, "min": .leaf, "max": .leaf, "maxDecreaseFromStable": .leaf, "maxRatioToStable": .leaf])),
    ]),
    "progressDeadline": .leaf,
    "webhooks": .list(.object(["name": .leaf, "type": .leaf, "url": .leaf, "timeout": .leaf])),
])

func unknownFields(_ value: JSONValue, schema: FieldSchema, path: String) -> [ValidationIssue] {
    switch (schema, value) {
    case (.object(let fields), .object(let object)):
        var out: [ValidationIssue] = []
        for (key, child) in object {
            let childPath = "\(path).\(key)"
            guard let sub = fields[key] else {
                out.append(ValidationIssue(path: childPath, message: "unknown field\(closest(key, Array(fields.keys))); Kubernetes would drop it"))
                continue
            }
            out += unknownFields(child, schema: sub, path: childPath)
        }
        return out
    case (.list(let element), .array(let array)):
        return array.enumerated().flatMap { unknownFields($1, schema: element, path: "\(path)[\($0)]") }
    default:
        return []
    }
}
