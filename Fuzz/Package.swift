// swift-tools-version:6.0
// The fuzz targets of Diffuse's parsers of outside input, built by scripts/fuzz.sh with libFuzzer and AddressSanitizer
// (`-sanitize=fuzzer,address -enable-testing`), apart from the main package so that its builds stay untouched.
import PackageDescription

let package = Package(
    name: "DiffuseFuzz",
    dependencies: [.package(name: "Diffuse", path: "..")],
    targets: [
        .executableTarget(name: "DiffuseFuzz", dependencies: [
            .product(name: "Diffuse", package: "Diffuse"), .product(name: "DiffuseServer", package: "Diffuse"),
        ], swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ],
    swiftLanguageModes: [.v5]
)
