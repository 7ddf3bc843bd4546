// swift-tools-version: 6.2
// Fledge: a progressive canary rollout controller for Istio.
//
// The targets follow the architecture in docs/architecture.md:
//   CCurl ─ FledgeHTTP ─┬─ FledgePrometheus
//                       └─ FledgeKubernetes
//   FledgeJSON ─ FledgeCore (pure decisions) ─ FledgeLint
//   FledgeYAML (user YAML checked for aliases before it is composed): FledgeLint, FledgeKubernetes, FledgeSandbox, FledgeCLI
//   FledgeSandbox (in-process Kubernetes API server), LocalPrometheus (runs a real Prometheus)
//   FledgeMesh (a simulated Istio mesh: follows VirtualService weights, serves Istio's metrics)
//   FledgeCLI ─ fledge (the executable), FledgeBench ─ fledge-bench
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    // A warning in our own code is a bug until shown otherwise (an infinite recursion once got in as one).
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "fledge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fledge", targets: ["fledge"]),
        .executable(name: "fledge-bench", targets: ["FledgeBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.20.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
    ],
    targets: [
        // libcurl, with a small shim for its variadic setopt/getinfo.
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // zlib: the watch caches keep objects deflated against a preset dictionary (compress-nio has no dictionaries).
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // The one HTTP client of the project (Prometheus, Kubernetes API, webhooks).
        .target(
            name: "FledgeHTTP",
            dependencies: [
                "CCurl",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "FledgePrometheus",
            dependencies: [
                "FledgeHTTP", "FledgeJSON",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // An order-preserving JSON value: Kubernetes objects round-trip unknown fields exactly.
        .target(
            name: "FledgeJSON",
            dependencies: [.product(name: "Collections", package: "swift-collections")],
            swiftSettings: strict
        ),
        // The statistical judge: anytime-valid tests on canary vs stable counts. Pure, no dependencies.
        .target(
            name: "FledgeJudge",
            swiftSettings: strict
        ),
        // The pure decision core: no IO, no clock reads.
        .target(
            name: "FledgeCore",
            dependencies: [
                "FledgeJSON", "FledgeJudge",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // User YAML refused when it has aliases, before Yams expands them (every YAML reader below checks first).
        .target(
            name: "FledgeYAML",
            dependencies: ["Yams"],
            swiftSettings: strict
        ),
        .target(
            name: "FledgeLint",
            dependencies: ["FledgeCore", "FledgeJSON", "FledgeYAML", "Yams"],
            swiftSettings: strict
        ),
        .target(
            name: "FledgeKubernetes",
            dependencies: [
                "FledgeHTTP", "FledgeJSON", "FledgeYAML", "Yams", "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // An in-process Kubernetes API server for tests and the local demo.
        .target(
            name: "FledgeSandbox",
            dependencies: [
                "FledgeJSON", "FledgeYAML", "Yams",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Starts a real Prometheus (Debian's package) with backfilled or scraped data.
        .target(
            name: "LocalPrometheus",
            dependencies: [
                "FledgeHTTP",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The controller: watch caches, work queue, action executor, batched analysis, leader election, /metrics.
        .target(
            name: "FledgeController",
            dependencies: [
                "FledgeCore", "FledgeKubernetes", "FledgePrometheus", "FledgeHTTP", "FledgeJSON", "FledgeJudge",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // A simulated Istio mesh: follows a VirtualService's weights and serves Istio's metrics.
        .target(
            name: "FledgeMesh",
            dependencies: [
                "FledgeKubernetes", "FledgeJSON", "LocalPrometheus",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // `fledge report`: a rollout's timeline as one self-contained HTML page. The renderer is pure; the
        // gatherer reads the Rollout, its Events and Prometheus.
        .target(
            name: "FledgeReport",
            dependencies: ["FledgeCore", "FledgeJSON", "FledgeKubernetes", "FledgePrometheus"],
            swiftSettings: strict
        ),
        // Every `fledge` subcommand, one per file.
        .target(
            name: "FledgeCLI",
            dependencies: [
                "FledgeHTTP", "FledgePrometheus", "FledgeCore", "FledgeLint",
                "FledgeKubernetes", "FledgeSandbox", "LocalPrometheus", "FledgeJSON", "FledgeController", "FledgeMesh", "FledgeJudge", "FledgeReport", "FledgeYAML", "Yams",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "fledge",
            dependencies: [
                "FledgeCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict,
            // Resident memory at 10,000 Rollouts is a budget (64 MiB): lld packs the ~124k relative relocations
            // (2.9 MiB of records the loader reads at start) and the executable need not export its Swift symbols.
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"])]
        ),
        // Benchmarks: a separate command, never timed assertions in tests.
        .executableTarget(
            name: "FledgeBench",
            dependencies: [
                "FledgeHTTP", "FledgePrometheus", "LocalPrometheus", "FledgeCore",
                "FledgeKubernetes", "FledgeSandbox", "FledgeJSON", "FledgeJudge", "FledgeController",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Shared test helpers: free ports, temporary folders, certificates, processes.
        .target(
            name: "TestSupport",
            dependencies: ["FledgeHTTP", "LocalPrometheus"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeHTTPTests",
            dependencies: [
                "FledgeHTTP", "TestSupport", "LocalPrometheus",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgePrometheusTests",
            dependencies: ["FledgePrometheus", "LocalPrometheus", "TestSupport", "FledgeCLI"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeJSONTests",
            dependencies: ["FledgeJSON"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeCoreTests",
            dependencies: [
                "FledgeCore", "FledgeJSON", "FledgeJudge",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeJudgeTests",
            dependencies: ["FledgeJudge"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeLintTests",
            dependencies: ["FledgeLint", "FledgeCore", "FledgeJSON", "FledgeJudge", "Yams", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeKubernetesTests",
            dependencies: [
                "FledgeKubernetes", "FledgeSandbox", "FledgeJSON", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeSandboxTests",
            dependencies: ["FledgeSandbox", "FledgeJSON", "FledgeHTTP", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeControllerTests",
            dependencies: [
                "FledgeController", "FledgeCore", "FledgeKubernetes", "FledgeSandbox", "FledgePrometheus", "FledgeJSON",
                "LocalPrometheus", "TestSupport", "FledgeHTTP", "FledgeMesh", "FledgeReport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeMeshTests",
            dependencies: [
                "FledgeMesh", "FledgeKubernetes", "FledgeSandbox", "FledgePrometheus", "LocalPrometheus", "FledgeJSON",
                "FledgeHTTP", "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeReportTests",
            dependencies: ["FledgeReport", "FledgeCore", "FledgeJSON", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeBenchTests",
            dependencies: ["FledgeBench", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FledgeCLITests",
            dependencies: [
                "FledgeCLI", "TestSupport", "FledgeCore", "FledgeJSON", "FledgeKubernetes", "FledgeSandbox", "LocalPrometheus",
                "FledgeController", "FledgeHTTP", "FledgeJudge",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
    ]
)
