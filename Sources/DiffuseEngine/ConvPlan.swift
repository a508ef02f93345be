import Foundation

// How a convolution runs: the algorithm of each of its three passes, decided once per layer geometry and batch
// (ConvolutionPlan), the cost model the planner weighs them by (Tiling), and the cache sizes that every block size of
// the convolution kernels derives from (Caches). conv2d runs what its plan says, forward and backward.

/// An algorithm for a convolution's forward pass or for its input gradient (a transposed convolution).
public enum ConvolutionAlgorithm: String, CaseIterable, Sendable {
    /// Winograd's F(2×2, 3×3) (Winograd.swift): 3×3 kernels at stride 1 and padding 1 only.
    case winograd
    /// Register tiles of 6 outputs × 64 output channels, each input broadcast (ChannelTiles.swift): output channels in
    /// whole blocks of 64 only.
    case channelTiles = "channel-tiles"
    /// Register tiles of 8 output channels × 48 positions read in place over the wide layout, the junk positions
    /// between images computed and dropped (RowTiles.swift).
    case flatTiles = "flat-tiles"
    /// The same tiles over the valid outputs only, each tile's inputs first gathered into a panel (RowTiles.swift).
    case packedTiles = "packed-tiles"
    /// For 1×1 kernels at stride 1 without padding: each image's output channels × positions as a matrix product,
    /// the weights times the input's channels × positions (MatMul.swift's register tiles over packed panels of 48
    /// positions).
    case product
    /// Plain loops (ReferenceConvolution.swift), for tests; never planned.
    case reference

    /// Whether it can run a correlation with `outputs` output channels and `geo`'s kernel, stride and padding.
    func runs(_ geo: ConvGeometry, outputs: Int) -> Bool {
        switch self {
        case .winograd: geo.fitsWinograd
        case .channelTiles: outputs % Kernels.channelTileOutputs == 0
        case .product: geo.isPointwise
        case .flatTiles, .packedTiles, .reference: true
        }
    }
}

/// An algorithm for a convolution's weight gradient.
public enum WeightGradientAlgorithm: String, CaseIterable, Sendable {
    /// On Winograd's transformed tiles (Winograd.weightGradient): 3×3, stride 1, padding 1, 32·k output channels.
    case winograd
    /// Channel tiles with the output channels in vectors (blocks of 64, or 32) and the (channel, tap) pairs broadcast
    /// (ChannelTiles.swift): 32·k output channels.
    case channelTiles = "channel-tiles"
    /// The output positions in the vector lanes, 4 output channels × 6 pairs a tile, summed across lanes at the end
    /// of each block of positions (PositionLanes.swift).
    case positionLanes = "position-lanes"
    /// Plain loops (ReferenceConvolution.swift), for tests; never planned.
    case reference

    func runs(_ geo: ConvGeometry) -> Bool {
        switch self {
        case .winograd: geo.fitsWinograd && Kernels.weightGradientBlock(outputs: geo.o) != nil
        case .channelTiles: Kernels.weightGradientBlock(outputs: geo.o) != nil
        case .positionLanes, .reference: true
        }
    }
}

/// The algorithms of a convolution's forward pass, input gradient and weight gradient: chosen once, when the
/// forward runs, by `init(_:frozen:)`; the backward runs what it says.
public struct ConvolutionPlan: Hashable, Sendable, CustomStringConvertible {
    public let forward, inputGradient: ConvolutionAlgorithm
    public let weightGradient: WeightGradientAlgorithm
    /// Whether channel tiles pack the forward's (the input gradient's) weights a chunk at a time as they use them,
    /// rather than all of them first: where the valid outputs make a single group of channel tiles, packing would
    /// write out and read back every weight for one use. Never for frozen weights, whose packing is kept.
    let streamsForward, streamsInputGradient: Bool

    public var description: String {
        "forward \(forward.rawValue), input gradient \(inputGradient.rawValue), weight gradient \(weightGradient.rawValue)"
    }

    /// The fewest tiles (2 × 2 outputs of an image) of a batch that the forward pass and the input gradient run on
    /// Winograd, by instruction set: at 32 tiles (cifar's 256 → 256 at 4², batch 8) Winograd was 1.2× slower than
    /// channel tiles on AVX-512's, and 1.05–1.3× faster on AVX2's, where channel tiles run as four passes.
    static var winogradTiles: Int { Engine.instructionSet == .avx512 ? 64 : 32 }

    /// The fewest tiles of a batch that the weight gradient runs on Winograd: its sums ∂U (16 floats per pair of
    /// channels, one copy per slice) cost more to clear, add up and transform back than fewer tiles save (cifar's
    /// 256 → 256 at 16², batch 1 or 2: channel tiles 1.2–1.9× faster on either instruction set).
    static let winogradGradientTiles = 256

    /// The plan conv2d would make now for `geometry` (outside withFrozenWeights), for benchmarks and tests.
    public init(_ geometry: ConvGeometry) { self.init(geometry, frozen: false) }

    /// Each pass takes the algorithm `Engine.convolutionForcing` names where that can run it; else the planner's:
    /// - forward: Winograd for 3×3 kernels at stride 1 and padding 1 from ≥ 16 input channels over a batch of
    ///   `winogradTiles` tiles or more (with fewer, the transformed weights, 16 per pair of channels, cost more to
    ///   write and read than fewer tiles save; from a first layer's 3 channels, the input transform costs more than
    ///   it saves: 2.8× slower); else channel tiles where the output channels come in blocks of 64 from ≥ 16 input
    ///   channels (fewer leave too few steps per tile to pay for scattering the outputs across 64 channel planes),
    ///   except for 1 × 1 kernels (at stride 1, unpadded) over images of 8 × 8 to 16 × 16, a product per image
    ///   (Stable Diffusion's 1280 → 1280 at 8² and 16², batch 2: 1.6× and 1.3× faster than channel and row tiles;
    ///   cifar's 128 → 256 at 16², batch 8: 1.2×), and over larger images, whose row tiles read each input row in
    ///   place, 48 positions a step (cifar's 256 → 128 at 32², batch 8: row tiles 1.2–1.4× faster on either
    ///   instruction set; the product, which packs its panels of positions, ran SD's 320 → 320 at 64² and 640 →
    ///   640 at 32² at 0.84× their speed); else the cheaper of flat and packed row tiles (Tiling's cost).
    /// - input gradient: the same, with the roles of the input and output channels swapped.
    /// - weight gradient: Winograd where the forward's rule for it holds both ways, over images larger than 8 × 8
    ///   (at 16 tiles per image channel tiles were faster: cifar's 256 → 256 at 8², batch 8, 2.8 against 4.1 ms)
    ///   and `winogradGradientTiles` tiles or more; else channel tiles for 32·k output channels, unless they come in
    ///   blocks of 64 from fewer than 16 input channels; else position lanes.
    init(_ geo: ConvGeometry, frozen: Bool, forcing: Engine.ConvolutionForcing = Engine.convolutionForcing) {
        let (c, o) = (geo.c, geo.o)
        let tiles = Winograd.Plan(images: geo.n, channels: c, outputs: o, height: geo.h, width: geo.w)
        let winograd = geo.fitsWinograd && tiles.tiles >= Self.winogradTiles
        let positions = geo.h * geo.w
        func planned(outputs: Int, inputs: Int, _ correlations: [Correlation]) -> ConvolutionAlgorithm {
            if winograd && inputs >= 16 { return .winograd }
            if geo.isPointwise && positions >= 8 * 8 && positions <= 16 * 16 { return .product }
            let rowsInPlace = geo.isPointwise && positions > 16 * 16
            if outputs % Kernels.channelTileOutputs == 0 && inputs >= 16 && !rowsInPlace { return .channelTiles }
            func cost(_ kind: Tiling.Kind) -> Double {
                correlations.reduce(0) { $0 + Tiling($1, outputs: outputs, kind: kind).cost(outputs: outputs) }
            }
            return cost(.packed) < cost(.flat) ? .packedTiles : .flatTiles
        }
        let forwardCorrelation = geo.forward(images: geo.n)
        forward = forcing.forward.flatMap { $0.runs(geo, outputs: o) ? $0 : nil }
            ?? planned(outputs: o, inputs: c, [forwardCorrelation])
        inputGradient = forcing.inputGradient.flatMap { $0.runs(geo, outputs: c) ? $0 : nil }
            ?? planned(outputs: c, inputs: o, geo.inputGradient(images: geo.n).1.filter { !$0.taps.isEmpty }.map(\.plan))
        weightGradient = forcing.weightGradient.flatMap { $0.runs(geo) ? $0 : nil } ?? {
            if winograd && c >= 16 && o >= 16 && tiles.tileRows * tiles.tileColumns > 16
                && tiles.tiles >= Self.winogradGradientTiles
                && WeightGradientAlgorithm.winograd.runs(geo) { return .winograd }
            if let block = Kernels.weightGradientBlock(outputs: o), block == 32 || c >= 16 { return .channelTiles }
            return .positionLanes
        }()
        let group = Kernels.channelTileGroup * Kernels.channelTilePositions
        streamsForward = forward == .channelTiles && !frozen && geo.n * geo.oh * geo.ow <= group
        streamsInputGradient = inputGradient == .channelTiles && geo.n * geo.h * geo.w <= group
    }
}

extension Engine {
    /// Convolution algorithms forced, pass by pass, on every convolution that can run them (nil: the planner's
    /// choice), for tests and benchmarks. Read at start from DIFFUSE_CONVOLUTION: a comma-separated list of
    /// `forward=NAME`, `input=NAME` and `weight=NAME`, a bare NAME standing for every pass that has that algorithm
    /// (`winograd`, `reference`, `flat-tiles,weight=position-lanes`).
    public struct ConvolutionForcing: Sendable, Equatable {
        public var forward, inputGradient: ConvolutionAlgorithm?
        public var weightGradient: WeightGradientAlgorithm?

        public init(forward: ConvolutionAlgorithm? = nil, inputGradient: ConvolutionAlgorithm? = nil,
                    weightGradient: WeightGradientAlgorithm? = nil) {
            self.forward = forward
            self.inputGradient = inputGradient
            self.weightGradient = weightGradient
        }

        /// Parses DIFFUSE_CONVOLUTION's form; an unknown pass or algorithm is an error that lists the known ones.
        public init(parsing text: String) throws {
            self.init()
            for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                let (pass, name) = parts.count == 2 ? (parts[0], parts[1]) : ("", parts[0])
                let algorithm = ConvolutionAlgorithm(rawValue: name), weight = WeightGradientAlgorithm(rawValue: name)
                let names = Set(ConvolutionAlgorithm.allCases.map(\.rawValue) + WeightGradientAlgorithm.allCases.map(\.rawValue))
                switch pass {
                case "" where algorithm != nil || weight != nil:
                    forward = algorithm ?? forward
                    inputGradient = algorithm ?? inputGradient
                    weightGradient = weight ?? weightGradient
                case "forward" where algorithm != nil: forward = algorithm
                case "input" where algorithm != nil: inputGradient = algorithm
                case "weight" where weight != nil: weightGradient = weight
                default:
                    throw DiffuseError.config("'\(item)' names no convolution pass and algorithm: passes forward, "
                        + "input, weight; algorithms \(names.sorted().joined(separator: ", "))")
                }
            }
        }

        static func fromEnvironment() -> ConvolutionForcing {
            guard let text = ProcessInfo.processInfo.environment["DIFFUSE_CONVOLUTION"] else { return .init() }
            do { return try .init(parsing: text) } catch {
                FileHandle.standardError.write(Data("DIFFUSE_CONVOLUTION: \(error); planning every convolution\n".utf8))
                return .init()
            }
        }
    }

    /// The convolution algorithms forced in this task: `withConvolutionForcing`'s, else
    /// `ConvolutionForcing.fromEnvironment()`.
    public static var convolutionForcing: ConvolutionForcing { scopedForcing ?? environmentForcing }
    @TaskLocal private static var scopedForcing: ConvolutionForcing?
    private static let environmentForcing = ConvolutionForcing.fromEnvironment()

    /// Runs `body` with `forcing` on every convolution that can run it, in this task alone.
    public static func withConvolutionForcing<R>(_ forcing: ConvolutionForcing, _ body: () throws -> R) rethrows -> R {
        try $scopedForcing.withValue(forcing) { try body() }
    }

    /// The cache sizes that the kernels' block sizes derive from (`Caches.reported` at start; tests set smaller ones
    /// to cut small problems into many blocks).
    nonisolated(unsafe) public static var caches = Caches.reported
}

/// The data caches of one core as the machine reports them (sysconf), else those of the machine the kernels were
/// tuned on (48 KiB of L1 data, 2 MiB of L2): each block size of the convolutions and products is a share of one of
/// them. `Engine.caches` holds the sizes the kernels use.
public struct Caches: Sendable, Equatable {
    public let l1, l2: Int

    public init(l1: Int, l2: Int) {
        self.l1 = l1
        self.l2 = l2
    }

    static let reported = Caches(l1: reported(Int32(_SC_LEVEL1_DCACHE_SIZE)) ?? 48 << 10,
                                 l2: reported(Int32(_SC_LEVEL2_CACHE_SIZE)) ?? 2 << 20)

    private static func reported(_ name: Int32) -> Int? {
        let bytes = sysconf(name)
        return bytes >= 16 << 10 ? bytes : nil
    }

    /// Bytes of a band of images in a wide layout, which stays in L2 while the tiles run over it: a quarter of L2.
    var band: Int { l2 / 4 }
    /// The largest wide layout of a whole batch that may run as one band whose tiles the threads share: 4 × L2.
    var sharedBatch: Int { 4 * l2 }
    /// Steps (of 64 weights) that channel tiles pack at a time, whose weights serve a group of tiles from L1: two
    /// thirds of L1, in whole steps of 16.
    var channelTileChunk: Int { Swift.max(16, l1 * 2 / 3 / (Kernels.channelTileOutputs * 4) / 16 * 16) }
    /// Steps (of 16 positions) per block of position lanes' weight gradient, whose rows of the `rows` channels that
    /// a group of its tiles reads stay in L2: a band's bytes.
    func positionSteps(rows: Int) -> Int { Swift.min(512, Swift.max(16, band / (rows * 64))) }
    /// Outputs per chunk of channel tiles' weight gradient, whose transposed rows of ∂L/∂y (a block of output
    /// channels each) serve every (channel, tap) pair from L2: 64 floats per output in 1/32 of L2, in whole 16s.
    var gradientChunk: Int { Swift.max(16, l2 / 32 / (Kernels.channelTileOutputs * 4) / 16 * 16) }
    /// Steps of the inner dimension per depth block of a product on channel tiles (MatMul's rowsTimesBlocks), whose
    /// rows of B (`columns` floats each) stay in half of L2 while every tile sweeps them: whole 64s, at least 64.
    func productDepth(columns: Int) -> Int { Swift.max(64, l2 / 2 / (columns * 4) / 64 * 64) }
    /// Row groups (8 rows of A, packed a depth block deep) per block of rows of a product on the register tile
    /// (MatMul's PackedProduct), whose packed A stays in half of L2 while every panel of B sweeps it.
    var productGroups: Int { Swift.max(1, l2 / 2 / (Kernels.tileRows * Kernels.depthBlock * 4)) }
    /// Tiles × channels of Winograd's transformed inputs per band of its forward pass (16 floats each): 3/8 of L2.
    var winogradBand: Int { l2 * 3 / 8 / 64 }
    /// Tiles × (input + output) channels of transformed inputs and gradients per band of Winograd's weight gradient
    /// (16 floats each): 3/4 of L2.
    var winogradGradientBand: Int { l2 * 3 / 4 / 64 }
}

/// How a correlation's outputs are cut into register tiles: 6 valid outputs × 64 output channels (`channels`,
/// `channelTile`: no junk position, no panel), or 8 output channels × up to 48 positions (`tile`), read in place
/// over the flat positions (`flat`: the junk ones between images computed and dropped) or over the valid outputs,
/// each tile's inputs first copied into a panel (`packed`); such tiles are `width` columns (48, or 32 where that
/// wastes less), and a last tile of no more than 32 columns runs the narrow kernel.
struct Tiling {
    enum Kind {
        case flat, packed, channels

        /// The tiles that a tile algorithm runs on.
        init(_ algorithm: ConvolutionAlgorithm) {
            switch algorithm {
            case .channelTiles: self = .channels
            case .flatTiles: self = .flat
            case .packedTiles: self = .packed
            case .winograd, .product, .reference: preconditionFailure("\(algorithm) runs on no tiling")
            }
        }
    }
    let kind: Kind
    let width, columns: Int
    var count: Int { (columns + width - 1) / width }
    var packed: Bool { kind == .packed }

    /// The columns of tile t.
    func span(_ t: Int) -> Range<Int> { (t * width)..<Swift.min(columns, t * width + width) }

    /// `kind`'s tiling of `plan` for `outputs` output channels, row tiles of the cheaper width.
    init(_ plan: Correlation, outputs: Int, kind: Kind) {
        if kind == .channels {
            self.init(kind: .channels, width: Kernels.channelTilePositions, columns: plan.valid, outputColumns: 0)
            return
        }
        let columns = kind == .packed ? plan.valid : plan.positions
        let (wide, narrow) = (Tiling(kind: kind, width: 48, columns: columns, outputColumns: plan.outputColumns),
                              Tiling(kind: kind, width: 32, columns: columns, outputColumns: plan.outputColumns))
        self = narrow.cost(outputs: outputs) < wide.cost(outputs: outputs) ? narrow : wide
    }

    private init(kind: Kind, width: Int, columns: Int, outputColumns: Int) {
        self.kind = kind
        self.width = width
        self.columns = columns
        self.outputColumns = outputColumns
    }

    private let outputColumns: Int

    /// Cycles per (channel, tap) step for `outputs` output channels: a 48-wide tile costs 12 per group of 8 output
    /// channels (24 multiply-adds on 2 units), a 32-wide one 8.8 (16, at the measured ~91% of the wide kernel's
    /// rate), a panel ~2 per piece of 16 floats it copies, a channel tile's 24 multiply-adds 12.
    func cost(outputs: Int) -> Double {
        if kind == .channels { return Double(count * outputs / Kernels.channelTileOutputs) * 12 }
        let groups = Double((outputs + Kernels.tileRows - 1) / Kernels.tileRows)
        let pieces = Double(width / Swift.min(outputColumns, width) + 2)
        return (0..<count).reduce(0) { total, t in
            total + groups * (span(t).count <= 32 ? 8.8 : 12) + (packed ? 2 * pieces : 0)
        }
    }
}
