// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Quiver",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "quiver", targets: ["quiver"]),
        .library(name: "QuiverEngine", targets: ["QuiverEngine"]),
        .library(name: "QuiverZMQ", targets: ["QuiverZMQ"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Vectorised C core: LJ kernels (scalar + AVX2/FMA), neighbour lists, integrators, thread pool.
        .target(
            name: "CQuiverCore",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // System libraries, settled now; later work (frames, compression, linear algebra) uses them.
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // The Swift engine API: systems, force fields, integrators, simulations.
        .target(
            name: "QuiverEngine",
            dependencies: ["CQuiverCore"]
        ),
        // A thin Swift wrapper over the libzmq C API: contexts, sockets, typed options, messages, poll.
        .target(
            name: "QuiverZMQ",
            dependencies: ["CZeroMQ"]
        ),
        // The one executable, with subcommands.
        .executableTarget(
            name: "quiver",
            dependencies: [
                "QuiverEngine", "CQuiverCore", "CZeroMQ", "CLZ4", "COpenBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "QuiverEngineTests",
            dependencies: ["QuiverEngine", "CQuiverCore"]
        ),
        .testTarget(
            name: "QuiverZMQTests",
            dependencies: ["QuiverZMQ"]
        ),
        .testTarget(
            name: "QuiverCLITests",
            dependencies: ["QuiverEngine"]
        ),
    ]
)
