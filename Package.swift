// swift-tools-version:6.0
// segd: instance segmentation for Linux. Targets and their one-way dependencies are
// described in docs/design.md; each C library enters through its own system-library module.
import PackageDescription

let package = Package(
    name: "segd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "segd", targets: ["segd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // pipeline.yml: Yams keeps each node's line, so config errors can name it.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The daemon's journal (SQLite, WAL) in the state directory.
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // SHA-256 of inputs and models (BoringSSL's SHA-NI/AVX2 code).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The daemon's HTTP socket (/metrics, /healthz, the status page) and its metrics.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The cluster journal (state_database: postgresql://…), docs/cluster.md.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL",
                       providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CSPNG", path: "Sources/CSPNG",
                       providers: [.apt(["libspng-dev"])]),
        .systemLibrary(name: "CWebP", path: "Sources/CWebP",
                       providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "CTIFF", path: "Sources/CTIFF",
                       providers: [.apt(["libtiff-dev"])]),
        .systemLibrary(name: "CHeif", path: "Sources/CHeif",
                       providers: [.apt(["libheif-dev"])]),
        .systemLibrary(name: "CFreeType", path: "Sources/CFreeType", pkgConfig: "freetype2",
                       providers: [.apt(["libfreetype-dev"])]),
        .systemLibrary(name: "CInotifyTools", path: "Sources/CInotifyTools",
                       providers: [.apt(["libinotifytools0-dev"])]),

        .target(name: "Tensor", dependencies: ["CDNNL"]),
        .target(name: "MaskRCNN", dependencies: ["Tensor"]),
        .target(name: "Imaging", dependencies: ["CTurboJPEG", "CSPNG", "CWebP", "CTIFF", "CHeif", "CFreeType"]),
        .target(name: "Results", dependencies: ["MaskRCNN", "Imaging"]),
        .target(name: "Pipeline", dependencies: [
            "Tensor", "MaskRCNN", "Imaging", "Results", "CInotifyTools",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .target(name: "StatusServer", dependencies: [
            "Pipeline", "Imaging",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "segd", dependencies: [
            "Pipeline", "Tensor", "StatusServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MaskRCNNTests", dependencies: ["MaskRCNN"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ResultsTests", dependencies: ["Results"], resources: [.copy("Fixtures")]),
        // Reads its fixture and samples/ by repository path (the shipped model is tested as shipped).
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Imaging", "Results", "MaskRCNN", "Tensor", "StatusServer"],
                    exclude: ["Fixtures"]),
    ]
)
