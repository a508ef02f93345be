// swift-tools-version:6.0
import PackageDescription

// Layers, lower never imports higher:
// DiffuseEngine → DiffuseNN → (DiffuseDiffusion) → DiffuseModels → DiffuseData/(Metrics/Report) → diffuse
let package = Package(
    name: "Diffuse",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffuse", targets: ["diffuse"]),
        .library(name: "Diffuse", targets: ["DiffuseEngine", "DiffuseNN", "DiffuseDiffusion", "DiffuseModels", "DiffuseData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "DiffuseEngine", dependencies: ["COpenBLAS"]),
        .target(name: "DiffuseNN", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseDiffusion", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseModels", dependencies: ["DiffuseNN", "DiffuseDiffusion"]),
        .target(name: "DiffuseData", dependencies: ["DiffuseEngine", "CZlib"]),
        .executableTarget(name: "diffuse", dependencies: [
            "DiffuseEngine", "DiffuseNN", "DiffuseModels", "DiffuseData", "COpenBLAS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "DiffuseEngineTests", dependencies: ["DiffuseEngine"]),
        .testTarget(name: "DiffuseNNTests", dependencies: ["DiffuseNN"]),
        .testTarget(name: "DiffuseModelsTests", dependencies: ["DiffuseModels", "DiffuseData"]),
    ],
    swiftLanguageModes: [.v5]
)
