// swift-tools-version: 6.1
// Micro-benchmarks for the Quiver engine (QuiverBenchmarks), its wire codecs (WireBenchmarks) and its
// ZeroMQ transport (ZMQBenchmarks), using ordo-one's package-benchmark. A package of its own so the
// benchmark dependencies stay out of the main package. Run with `scripts/bench-micro` from the
// repository root (or `swift package benchmark` in this directory); `--target NAME` runs one executable.
import PackageDescription

let package = Package(
    name: "QuiverBenchmarks",
    dependencies: [
        .package(name: "Quiver", path: ".."),
        // ordo-one/benchmark (formerly package-benchmark). The MallocInterposer trait gives malloc
        // statistics on Swift 6.3+ without a system library (no libjemalloc-dev); listing traits
        // explicitly leaves out the default RuntimeInterposer one (ARC metrics on Linux 6.3), which
        // these benchmarks do not use.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "QuiverBenchmarks",
            dependencies: [
                .product(name: "QuiverEngine", package: "Quiver"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/QuiverBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
        // Frame codecs: encode and decode a 100,000-atom liquid frame with each codec.
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: [
                .product(name: "QuiverEngine", package: "Quiver"),
                .product(name: "QuiverWire", package: "Quiver"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/WireBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
        // ZeroMQ transport through the QuiverZMQ wrapper: REQ/REP latency, PUSH/PULL throughput.
        .executableTarget(
            name: "ZMQBenchmarks",
            dependencies: [
                .product(name: "QuiverZMQ", package: "Quiver"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/ZMQBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
