import Foundation

/// A small seeded generator (SplitMix64): the same seed gives the same traffic,
/// so tests are deterministic. Not for anything secret.
struct MeshRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller).
    mutating func nextGaussian() -> Double {
        let u1 = max(nextUnit(), .leastNonzeroMagnitude)
        let u2 = nextUnit()
        return sqrt(-2 * log(u1)) * cos(2 * .pi * u2)
    }

    /// A Poisson count with mean `lambda`: Knuth's product method for small means,
    /// the normal approximation above 30 (where it is accurate to well under 1 %).
    mutating func nextPoisson(_ lambda: Double) -> Int {
        guard lambda > 0 else { return 0 }
        if lambda < 30 {
            let limit = exp(-lambda)
            var product = nextUnit()
            var count = 0
            while product > limit {
                count += 1
                product *= nextUnit()
            }
            return count
        }
        return max(0, Int((lambda + sqrt(lambda) * nextGaussian()).rounded()))
    }
}
