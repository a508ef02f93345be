// swift-tools-version:6.0
import PackageDescription

// Layers, lower never imports higher:
// DiffuseEngine → DiffuseNN → DiffuseDiffusion → DiffuseModels → DiffuseData, DiffuseMetrics, DiffuseReport → DiffuseTraining → diffuse
let package = Package(
    name: "Diffuse",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffuse", targets: ["diffuse"]),
        .library(name: "Diffuse", targets: ["DiffuseEngine", "DiffuseNN", "DiffuseDiffusion", "DiffuseModels", "DiffuseData",
                                            "DiffuseMetrics", "DiffuseReport", "DiffuseTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", providers: [.apt(["libpng-dev"])]),
        .target(name: "DiffuseEngine", dependencies: ["COpenBLAS"]),
        .target(name: "DiffuseNN", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseDiffusion", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseModels", dependencies: ["DiffuseNN", "DiffuseDiffusion"]),
        .target(name: "DiffuseData", dependencies: ["DiffuseEngine", "CZlib", "CPNG"]),
        .target(name: "DiffuseMetrics", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseReport", dependencies: ["DiffuseDiffusion", "DiffuseData"]),
        .target(name: "DiffuseTraining", dependencies: ["DiffuseModels", "DiffuseData", "DiffuseReport"]),
        .executableTarget(name: "diffuse", dependencies: [
            "DiffuseEngine", "DiffuseNN", "DiffuseDiffusion", "DiffuseModels", "DiffuseData", "DiffuseReport",
            "DiffuseTraining", "DiffuseMetrics", "COpenBLAS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "DiffuseEngineTests", dependencies: ["DiffuseEngine"], exclude: ["Fixtures"]),
        .testTarget(name: "DiffuseNNTests", dependencies: ["DiffuseNN"], exclude: ["Fixtures"]),
        .testTarget(name: "DiffuseDiffusionTests", dependencies: ["DiffuseDiffusion"], exclude: ["Fixtures"]),
        .testTarget(name: "DiffuseModelsTests", dependencies: ["DiffuseModels", "DiffuseData"], exclude: ["Fixtures"]),
        .testTarget(name: "DiffuseDataTests", dependencies: ["DiffuseData"], exclude: ["Fixtures"]),
        .testTarget(name: "DiffuseMetricsTests", dependencies: ["DiffuseMetrics"]),
        .testTarget(name: "DiffuseReportTests", dependencies: ["DiffuseReport"]),
        .testTarget(name: "DiffuseTrainingTests", dependencies: ["DiffuseTraining"]),
    ],
    swiftLanguageModes: [.v5]
)
