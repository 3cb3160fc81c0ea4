// swift-tools-version: 6.1
// Examples of embedding Quiver, built and run by the tests (Tests/QuiverCLITests/ExamplesTests.swift):
//   Restraints      a custom force field in Swift (harmonic position restraints), through the
//                   engine's ForceField protocol
//   embedded-server a program that serves its own simulation with a Session, watches it with the
//                   client library, steers it, and closes
//   LJPlugin        a force field in C as a shared library (libLJPlugin.so), loaded with dlopen by
//                   `quiver run --plugin` or PluginForceField (docs/plugins.md)
// Build: swift build --package-path Examples; run: Examples/.build/debug/embedded-server --help.
import PackageDescription

let package = Package(
    name: "QuiverExamples",
    products: [
        .library(name: "Restraints", targets: ["Restraints"]),
        .executable(name: "embedded-server", targets: ["EmbeddedServer"]),
        .library(name: "LJPlugin", type: .dynamic, targets: ["LJPlugin"]),
    ],
    dependencies: [
        .package(name: "Quiver", path: ".."),
    ],
    targets: [
        .target(
            name: "Restraints",
            dependencies: [.product(name: "QuiverEngine", package: "Quiver")]
        ),
        .executableTarget(
            name: "EmbeddedServer",
            dependencies: [
                "Restraints",
                .product(name: "QuiverEngine", package: "Quiver"),
                .product(name: "QuiverServer", package: "Quiver"),
                .product(name: "QuiverClient", package: "Quiver"),
                .product(name: "QuiverControl", package: "Quiver"),
                .product(name: "QuiverWire", package: "Quiver"),
            ]
        ),
        .target(
            name: "LJPlugin",
            dependencies: [.product(name: "QuiverPluginABI", package: "Quiver")],
            path: "Plugins",
            sources: ["lj_plugin.c"],
            publicHeadersPath: "."
        ),
    ]
)
