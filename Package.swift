// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Quiver",
    // Linux only (the code uses Glibc, eventfd, signalfd, POSIX shared memory).
    products: [
        .executable(name: "quiver", targets: ["quiver"]),
        // The fault matrix against a real server (scripts/chaos, docs/operations.md).
        .executable(name: "quiver-chaos", targets: ["quiver-chaos"]),
        .library(name: "QuiverEngine", targets: ["QuiverEngine"]),
        // The value types engine and control share: interactions, parameters, engine commands and replies.
        .library(name: "QuiverModel", targets: ["QuiverModel"]),
        .library(name: "QuiverSharedMemory", targets: ["QuiverSharedMemory"]),
        .library(name: "QuiverWire", targets: ["QuiverWire"]),
        .library(name: "QuiverZMQ", targets: ["QuiverZMQ"]),
        .library(name: "QuiverControl", targets: ["QuiverControl"]),
        .library(name: "QuiverClient", targets: ["QuiverClient"]),
        // The embedding API: a `Session` serving your own dynamics (workers run the quiver executable).
        .library(name: "QuiverServer", targets: ["QuiverServer"]),
        // The C header of force-field plugins (quiver_plugin.h), for packages that build plugins.
        .library(name: "QuiverPluginABI", targets: ["CQuiverPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Vectorised C core: LJ kernels (scalar + AVX2/FMA), neighbour lists, integrators, thread pool.
        .target(
            name: "CQuiverCore",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // Shared-memory layout and the seqlock protocol (frame ring, engine snapshots, worker status).
        .target(
            name: "CQuiverShm",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // The C ABI of force-field plugins (shared libraries loaded with dlopen): one header,
        // docs/plugins.md.
        .target(name: "CQuiverPlugin"),
        // Process plumbing: posix_spawn without inherited descriptors, parent-death signal, signalfd.
        .target(name: "CQuiverOS", cSettings: [.define("_GNU_SOURCE")]),
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
        // The value types the engine and the control side share, with no dependencies: interactions
        // and their validation, parameters and ranges, EngineError, the typed engine command and reply.
        .target(name: "QuiverModel"),
        // The Swift engine API: systems, force fields, integrators, simulations (re-exports QuiverModel).
        .target(
            name: "QuiverEngine",
            dependencies: ["CQuiverCore", "CQuiverPlugin", "QuiverModel"]
        ),
        // POSIX shared-memory segments of a run, in Swift.
        .target(
            name: "QuiverSharedMemory",
            dependencies: ["CQuiverShm", "QuiverModel"]
        ),
        // Logging through swift-log: the project's handler (readable lines or JSON lines, stderr or a file).
        .target(
            name: "QuiverLog",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        // The thin supervisor: run directory and lock, connection file, workers, restarts, control socket.
        .target(
            name: "QuiverSupervisor",
            dependencies: ["CQuiverOS", "QuiverLog", "QuiverModel", "QuiverSharedMemory", "QuiverWire"]
        ),
        // The worker processes, one type per role (`Worker`, `WorkerRoles`): the engine, the
        // broadcaster, the heartbeat, the control worker.
        .target(
            name: "QuiverWorkers",
            dependencies: ["CQuiverOS", "QuiverConfig", "QuiverEngine", "QuiverLog", "QuiverModel", "QuiverSharedMemory", "QuiverWire", "QuiverZMQ", "QuiverControl"]
        ),
        // The run configuration: defaults, a TOML file, flags; validated in one place.
        .target(
            name: "QuiverConfig",
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // C helpers of the wire format: header layouts (_Static_assert-ed), CRC-32C, byte shuffle,
        // the quantized codec's bit coder.
        .target(
            name: "CQuiverWire",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // The wire format: frame and topology messages, codecs, bounded decoding (docs/protocol.md).
        .target(
            name: "QuiverWire",
            dependencies: ["CQuiverWire", "CLZ4"]
        ),
        // A thin Swift wrapper over the libzmq C API: contexts, sockets, typed options, messages, poll.
        .target(
            name: "QuiverZMQ",
            dependencies: ["CZeroMQ"]
        ),
        // The client library: frames and topology from a run's connection file, pings and health.
        .target(
            name: "QuiverClient",
            dependencies: ["QuiverModel", "QuiverWire", "QuiverZMQ"]
        ),
        // libsodium: HMAC-SHA256 for signed commands (and constant-time verification).
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // The control channel's logic: signed requests and replies, replay and rate limits, the
        // command catalogue, shared state with locks, and a command client (docs/control.md).
        // It does not link the engine: the types both use are in QuiverModel (re-exported).
        .target(
            name: "QuiverControl",
            dependencies: ["CSodium", "QuiverModel", "QuiverZMQ"]
        ),
        // The server's resources (run directory, segment, sockets) and the embedding `Session`.
        .target(
            name: "QuiverServer",
            dependencies: ["CQuiverOS", "QuiverConfig", "QuiverEngine", "QuiverLog", "QuiverSharedMemory", "QuiverSupervisor", "QuiverWire", "QuiverWorkers", "QuiverZMQ"]
        ),
        // The one executable, with subcommands.
        .executableTarget(
            name: "quiver",
            dependencies: [
                "QuiverEngine", "QuiverLog", "QuiverModel", "QuiverSharedMemory", "QuiverSupervisor", "QuiverWorkers", "QuiverServer", "QuiverConfig", "QuiverClient", "QuiverWire", "QuiverControl", "QuiverZMQ", "CQuiverCore", "CQuiverOS", "CZeroMQ", "CLZ4", "COpenBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The fault matrix: kills, a stopped engine, the absurd pull, bursts, floods, garbage,
        // against a real `quiver run`, one table out (scripts/chaos).
        .executableTarget(
            name: "quiver-chaos",
            dependencies: [
                "QuiverClient", "QuiverControl", "QuiverModel", "QuiverSupervisor", "QuiverWire", "QuiverZMQ",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "QuiverEngineTests",
            dependencies: ["QuiverEngine", "CQuiverCore"]
        ),
        .testTarget(
            name: "QuiverConfigTests",
            dependencies: ["QuiverConfig"]
        ),
        .testTarget(
            name: "QuiverSupervisorTests",
            dependencies: ["QuiverSupervisor", "QuiverLog"]
        ),
        .testTarget(
            name: "QuiverSharedMemoryTests",
            dependencies: ["QuiverSharedMemory"]
        ),
        .testTarget(
            name: "QuiverWireTests",
            dependencies: ["QuiverWire", "QuiverEngine", "CQuiverWire"]
        ),
        .testTarget(
            name: "QuiverZMQTests",
            dependencies: ["QuiverZMQ"]
        ),
        .testTarget(
            name: "QuiverControlTests",
            dependencies: ["QuiverControl", "QuiverModel", "QuiverZMQ"]
        ),
        // The engine's command handling (EngineControl) driven directly, without processes.
        .testTarget(
            name: "QuiverWorkersTests",
            dependencies: ["QuiverWorkers", "QuiverEngine", "QuiverLog", "QuiverModel", "QuiverSharedMemory", "QuiverControl"]
        ),
        .testTarget(
            name: "QuiverCLITests",
            dependencies: ["QuiverEngine", "QuiverSharedMemory", "QuiverSupervisor", "QuiverClient", "QuiverWire", "QuiverControl", "QuiverServer", "QuiverWorkers", "QuiverZMQ"]
        ),
    ]
)
