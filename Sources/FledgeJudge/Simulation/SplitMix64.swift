// Deterministic randomness and exact samplers for the decision benchmark and the judge's
// guarantee tests. Same seed, same numbers, on every platform.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// SplitMix64 (Steele, Lea & Flood 2014; Vigna's reference constants): a tiny, fast,
/// deterministic generator. Not for secrets.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform number strictly inside (0, 1), from the top 53 bits.
    public mutating func uniform() -> Double {
        (Double(next() >> 11) + 0.5) * 0x1p-53
    }

    /// An independent generator for sub-stream `index` (e.g. one per simulated run), so
    /// that runs do not depend on the order they are simulated in.
    public func split(_ index: UInt64) -> SplitMix64 {
        var mixer = SplitMix64(seed: state ^ (index &* 0xD1B5_4A32_D192_ED03))
        return SplitMix64(seed: mixer.next())
    }
}

/// Exact samplers driven by a `SplitMix64`.
public enum JudgeSampling {
    /// Poisson(mean): multiplication method below 10, Hörmann's PTRS transformed rejection above.
    public static func poisson(mean: Double, using rng: inout SplitMix64) -> Int {
        guard mean > 0 else { return 0 }
        if mean < 10 {
            let limit = exp(-mean)
            var product = rng.uniform()
            var count = 0
            while product > limit {
                product *= rng.uniform()
                count += 1
            }
            return count
        }
        let slam = mean.squareRoot(), loglam = log(mean)
        let b = 0.931 + 2.53 * slam
        let a = -0.059 + 0.02483 * b
        let invAlpha = 1.1239 + 1.1328 / (b - 3.4)
        let vr = 0.9277 - 3.6224 / (b - 2)
        while true {
            let u = rng.uniform() - 0.5
            let v = rng.uniform()
            let us = 0.5 - abs(u)
            let k = floor((2 * a / us + b) * u + mean + 0.43)
            if us >= 0.07 && v <= vr { return Int(k) }
            if k < 0 || (us < 0.013 && v > us) { continue }
            if log(v) + log(invAlpha) - log(a / (us * us) + b) <= -mean + k * loglam - lgamma(k + 1) {
                return Int(k)
            }
        }
    }

    /// Binomial(n, p): inversion when n·min(p, 1−p) < 10, Hörmann's BTRS transformed rejection otherwise.
    public static func binomial(trials n: Int, probability p: Double, using rng: inout SplitMix64) -> Int {
        guard n > 0, p > 0 else { return 0 }
        if p >= 1 { return n }
        if p > 0.5 { return n - binomial(trials: n, probability: 1 - p, using: &rng) }
        let q = 1 - p
        let nd = Double(n)
        if nd * p < 10 {
            // Inversion: walk the probability mass function from 0.
            let s = p / q, a = Double(n + 1) * s
            var r = exp(nd * log(q))
            var u = rng.uniform()
            var x = 0
            while u > r {
                u -= r
                x += 1
                if x > n { return n }
                r *= a / Double(x) - s
                if r <= 0 { return x }
            }
            return x
        }
        let spq = (nd * p * q).squareRoot()
        let b = 1.15 + 2.53 * spq
        let a = -0.0873 + 0.0248 * b + 0.01 * p
        let c = nd * p + 0.5
        let vr = 0.92 - 4.2 / b
        let alpha = (2.83 + 5.1 / b) * spq
        let lpq = log(p / q)
        let m = floor(Double(n + 1) * p)
        let h = lgamma(m + 1) + lgamma(nd - m + 1)
        while true {
            let u = rng.uniform() - 0.5
            var v = rng.uniform()
            let us = 0.5 - abs(u)
            let k = floor((2 * a / us + b) * u + c)
            if k < 0 || k > nd { continue }
            if us >= 0.07 && v <= vr { return Int(k) }
            v = log(v * alpha / (a / (us * us) + b))
            if v <= h - lgamma(k + 1) - lgamma(nd - k + 1) + (k - m) * lpq { return Int(k) }
        }
    }

    /// Multinomial(n, probabilities) by conditional binomials; `probabilities` should sum to 1.
    public static func multinomial(trials n: Int, probabilities: [Double], using rng: inout SplitMix64) -> [Int] {
        var counts = Array(repeating: 0, count: probabilities.count)
        var remaining = n
        var mass = 1.0
        for (i, p) in probabilities.enumerated() {
            if remaining == 0 { break }
            if i == probabilities.count - 1 || mass <= p {
                counts[i] = remaining
                break
            }
            let k = binomial(trials: remaining, probability: min(1, max(0, p / mass)), using: &rng)
            counts[i] = k
            remaining -= k
            mass -= p
        }
        return counts
    }
}
