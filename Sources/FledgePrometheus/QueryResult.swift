/// One value at one time. Prometheus sends values as strings so that `NaN`,
/// `+Inf` and `-Inf` survive; they arrive here as the matching `Double`.
public struct SamplePoint: Sendable, Equatable {
    public var timestamp: Double
    public var value: Double

    public init(timestamp: Double, value: Double) {
        self.timestamp = timestamp
        self.value = value
    }
}

public struct InstantSample: Sendable, Equatable {
    public var labels: [String: String]
    public var point: SamplePoint

    public init(labels: [String: String], point: SamplePoint) {
        self.labels = labels
        self.point = point
    }
}

public struct RangeSeries: Sendable, Equatable {
    public var labels: [String: String]
    public var points: [SamplePoint]

    public init(labels: [String: String], points: [SamplePoint]) {
        self.labels = labels
        self.points = points
    }
}

/// The `data` of a successful `/api/v1/query` answer.
public enum QueryResult: Sendable, Equatable {
    case vector([InstantSample])
    case scalar(SamplePoint)
    case matrix([RangeSeries])
    case string(timestamp: Double, value: String)

    /// The one number the query produced, or nil for "no data": an empty
    /// vector, a NaN, or a vector of several series (an aggregation was
    /// expected to produce one).
    /// Why this answer is not one number though Prometheus gave data (several series, a range vector, a string), for a
    /// message that names the fix; nil for one number or for no data. A query meant to give one number that gives
    /// several is a mistake in the query (a missing `sum`), not a canary without data.
    public var notOneNumber: String? {
        switch self {
        case .vector(let samples) where samples.count > 1:
            // The labels that tell the series apart (Istio's carry a dozen more that they share), sorted so the
            // message does not change with the order Prometheus answers in.
            let keys = Set(samples.flatMap(\.labels.keys)).filter { key in Set(samples.map { $0.labels[key] ?? "" }).count > 1 }.sorted()
            let shown = keys.prefix(4).joined(separator: ", ") + (keys.count > 4 ? ", …" : "")
            return "returned \(samples.count) series (differing in \(shown)) where one number is needed: aggregate them, e.g. sum(…)"
        case .matrix: return "returned a range vector where one number is needed: apply a function over the range, e.g. sum(rate(…[{{interval}}]))"
        case .string: return "returned a string where one number is needed"
        default: return nil
        }
    }

    public var singleValue: Double? {
        let value: Double
        switch self {
        case .scalar(let point): value = point.value
        case .vector(let samples) where samples.count == 1: value = samples[0].point.value
        default: return nil
        }
        return value.isNaN ? nil : value
    }

    /// For grouped queries: each series' value keyed by the chosen labels; NaN series are left out.
    public func values(groupedBy labels: [String]) -> [[String]: Double] {
        guard case .vector(let samples) = self else { return [:] }
        var out: [[String]: Double] = [:]
        for sample in samples where !sample.point.value.isNaN {
            out[labels.map { sample.labels[$0] ?? "" }] = sample.point.value
        }
        return out
    }
}
