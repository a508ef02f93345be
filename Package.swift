// swift-tools-version:6.0
import Foundation
import PackageDescription

// Layers, lower never imports higher:
// DiffuseEngine → DiffuseNN → DiffuseDiffusion → DiffuseModels → DiffuseData, DiffuseMetrics, DiffuseReport → DiffuseTraining
// → DiffuseServer (Hummingbird) → diffuse
// The engine's kernels are plain Swift loops over SIMD16<Float>: compiled for the machine that builds them (AVX-512
// where it has it), they run 2–4× faster than for baseline x86-64. The price: a binary built here runs only on
// machines with this CPU's instruction set, which is what a build from source wants. DIFFUSE_TARGET_CPU names another
// CPU (`znver3` or `haswell`: AVX2 and FMA, 16 vector registers), for measuring another instruction set's code on this
// machine; give such a build its own --scratch-path, since SwiftPM keeps an evaluated manifest.
let targetCPU = ProcessInfo.processInfo.environment["DIFFUSE_TARGET_CPU"] ?? "native"
let native: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]

let package = Package(
    name: "Diffuse",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffuse", targets: ["diffuse"]),
        .library(name: "Diffuse", targets: ["DiffuseEngine", "DiffuseNN", "DiffuseDiffusion", "DiffuseModels", "DiffuseData",
                                            "DiffuseMetrics", "DiffuseReport", "DiffuseTraining"]),
        .library(name: "DiffuseServer", targets: ["DiffuseServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", providers: [.apt(["libpng-dev"])]),
        .target(name: "DiffuseEngine", dependencies: ["COpenBLAS"], swiftSettings: native),
        .target(name: "DiffuseNN", dependencies: ["DiffuseEngine"], swiftSettings: native),
        .target(name: "DiffuseDiffusion", dependencies: ["DiffuseEngine"], swiftSettings: native),
        .target(name: "DiffuseModels", dependencies: ["DiffuseNN", "DiffuseDiffusion"], swiftSettings: native),
        .target(name: "DiffuseData", dependencies: ["DiffuseEngine", "CZlib", "CPNG"], swiftSettings: native),
        .target(name: "DiffuseMetrics", dependencies: ["DiffuseEngine", "COpenBLAS"], swiftSettings: native),
        .target(name: "DiffuseReport", dependencies: ["DiffuseDiffusion", "DiffuseData"], swiftSettings: native),
        .target(name: "DiffuseTraining", dependencies: ["DiffuseModels", "DiffuseData", "DiffuseReport", "DiffuseMetrics"], swiftSettings: native),
        .target(name: "DiffuseServer", dependencies: [
            "DiffuseTraining", .product(name: "Hummingbird", package: "hummingbird"),
        ], resources: [.copy("Page")], swiftSettings: native),
        .executableTarget(name: "diffuse", dependencies: [
            "DiffuseEngine", "DiffuseNN", "DiffuseDiffusion", "DiffuseModels", "DiffuseData", "DiffuseReport",
            "DiffuseTraining", "DiffuseMetrics", "DiffuseServer", "COpenBLAS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: native),
        .testTarget(name: "DiffuseEngineTests", dependencies: ["DiffuseEngine"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseNNTests", dependencies: ["DiffuseNN"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseDiffusionTests", dependencies: ["DiffuseDiffusion"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseModelsTests", dependencies: ["DiffuseModels", "DiffuseData"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseDataTests", dependencies: ["DiffuseData"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseMetricsTests", dependencies: ["DiffuseMetrics"], exclude: ["Fixtures"], swiftSettings: native),
        .testTarget(name: "DiffuseReportTests", dependencies: ["DiffuseReport"], swiftSettings: native),
        .testTarget(name: "DiffuseTrainingTests", dependencies: ["DiffuseTraining"], swiftSettings: native),
    ],
    swiftLanguageModes: [.v5]
)
