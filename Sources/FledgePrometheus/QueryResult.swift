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
