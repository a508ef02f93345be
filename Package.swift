// swift-tools-version:6.0
import PackageDescription

// Layers, lower never imports higher:
// DiffuseEngine → DiffuseNN → (DiffuseDiffusion) → DiffuseModels → DiffuseData/(Metrics/Report) → diffuse
let package = Package(
    name: "Diffuse",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "diffuse", targets: ["diffuse"]),
        .library(name: "Diffuse", targets: ["DiffuseEngine", "DiffuseNN", "DiffuseModels", "DiffuseData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        .target(name: "DiffuseEngine", dependencies: ["COpenBLAS"]),
        .target(name: "DiffuseNN", dependencies: ["DiffuseEngine"]),
        .target(name: "DiffuseModels", dependencies: ["DiffuseNN"]),
        .target(name: "DiffuseData", dependencies: ["DiffuseEngine"]),
        .executableTarget(name: "diffuse", dependencies: [
            "DiffuseEngine", "DiffuseNN", "DiffuseModels", "DiffuseData",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "DiffuseEngineTests", dependencies: ["DiffuseEngine"]),
        .testTarget(name: "DiffuseNNTests", dependencies: ["DiffuseNN"]),
        .testTarget(name: "DiffuseModelsTests", dependencies: ["DiffuseModels", "DiffuseData"]),
    ],
    swiftLanguageModes: [.v5]
)
