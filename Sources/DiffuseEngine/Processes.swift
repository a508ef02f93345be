import Foundation

/// The processes that one job runs on (data-parallel training, sampling shared by seed): this one's rank among
/// `size`, and the collective operations between them. Every process calls each operation in the same order.
public protocol ProcessGroup: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `values` on every process by their elementwise sum over the processes (the same on all of them).
    func sum(_ values: UnsafeMutableBufferPointer<Float>)
    func sum(_ values: UnsafeMutableBufferPointer<Double>)
    /// Copies rank `root`'s `bytes` into every other process' `bytes` (of the same count).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int)
    /// Ends every process of the group at once with `code` (after an error on one of them, which the others,
    /// waiting in a collective operation, would otherwise wait for forever).
    func abort(code: Int32) -> Never
}

extension ProcessGroup {
    public var isFirst: Bool { rank == 0 }

    /// The sums over the processes of `values`.
    public func sum(_ values: [Double]) -> [Double] {
        var out = values
        out.withUnsafeMutableBufferPointer { sum($0) }
        return out
    }

    /// Rank `root`'s bytes, on every process: `data` is read on `root` only (and is the answer of a group of one).
    public func broadcast(_ data: Data?, from root: Int = 0) -> Data {
        if size == 1 { return data! }
        var count = [Double(data?.count ?? 0)]
        count.withUnsafeMutableBytes { broadcast($0, from: root) }
        var bytes = rank == root ? [UInt8](data!) : [UInt8](repeating: 0, count: Int(count[0]))
        bytes.withUnsafeMutableBytes { broadcast($0, from: root) }
        return Data(bytes)
    }

    /// The results of `batch(k, items)` for the batches of `total` items, `batchSize` at a time, concatenated along
    /// the first dimension on every process: each process computes its own batches (batch k on rank k mod size)
    /// and the others' reach it in the sum of everyone's results placed in zeros (x + 0 = x: exactly the values).
    /// Every batch's result has the same shape but for its first dimension, its item count.
    public func shareBatches(total: Int, batchSize: Int, _ batch: (Int, Range<Int>) -> Tensor) -> Tensor {
        precondition(total > 0 && batchSize > 0, "\(total) items in batches of \(batchSize)")
        let mine = batchesHere(total: total, batchSize: batchSize)
        let results = mine.map { batch($0.index, $0.items) }
        guard size > 1 else { return concat(results, axis: 0) }
        // The shape of an item: rank 0's first batch's (it has batch 0).
        let first = isFirst ? results[0].shape.dropFirst().map { Int64($0) } : []
        let shape = broadcast(isFirst ? first.withUnsafeBytes { Data($0) } : nil).withUnsafeBytes {
            Array($0.bindMemory(to: Int64.self)).map(Int.init)
        }
        let out = Tensor(zeros: [total] + shape)
        let item = shape.reduce(1, *)
        for (batch, result) in zip(mine, results) {
            (out.storage.pointer + batch.items.lowerBound * item).update(from: result.storage.pointer, count: result.count)
        }
        sum(UnsafeMutableBufferPointer(start: out.storage.pointer, count: out.count))
        return out
    }

    /// How many of `total` items, in batches of `batchSize`, `shareBatches` computes on this process.
    public func itemsComputedHere(total: Int, batchSize: Int) -> Int {
        batchesHere(total: total, batchSize: batchSize).reduce(0) { $0 + $1.items.count }
    }

    /// The batches of `total` items, `batchSize` at a time, that this process computes: batch k on rank k mod size.
    private func batchesHere(total: Int, batchSize: Int) -> [(index: Int, items: Range<Int>)] {
        stride(from: 0, to: total, by: batchSize).enumerated().filter { $0.offset % size == rank }
            .map { ($0.offset, $0.element..<Swift.min(total, $0.element + batchSize)) }
    }

    /// The tensors' values of rank `root`, copied into the same tensors of every process.
    public func broadcast(_ tensors: [Tensor], from root: Int = 0) {
        for t in tensors { broadcast(UnsafeMutableRawBufferPointer(start: t.storage.pointer, count: 4 * t.count), from: root) }
    }
}

/// One process alone: every collective operation leaves the values as they are.
public final class SingleProcess: ProcessGroup {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {}
    public func abort(code: Int32) -> Never { exit(code) }
}

/// The processes of an MPI job (`mpirun -np N`, Slurm's `srun`), through Open MPI's libmpi loaded at run time:
/// Diffuse neither links nor needs MPI unless a launcher started it. Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT,
/// MPI_SUM) are the addresses of its predefined objects, found by name; MPICH's are integers, which this does not
/// read.
public final class MPIProcessGroup: ProcessGroup, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private typealias Handle = UnsafeMutableRawPointer
    private let world, float, double, byte, sumOperation: Handle
    private let allreduce: @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32
    private let bcast: @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32
    private let abortFunction: @convention(c) (Handle, Int32) -> Int32
    private let finalize: @convention(c) () -> Int32
    /// Open MPI's MPI_IN_PLACE.
    private static let inPlace = UnsafeRawPointer(bitPattern: 1)
    /// The most elements one call moves: MPI counts are Int32.
    private static let chunk = 1 << 28

    /// Whether a launcher started this process as one of an MPI job (Open MPI's mpirun, or PMIx/PMI as Slurm sets).
    public static var launched: Bool {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// Loads libmpi and initialises MPI; an error that says what to install when it cannot.
    public init() throws {
        let names: [String] = ["libmpi.so.40", "libmpi.so"]
        guard let library = names.lazy.compactMap({ name in dlopen(name, RTLD_NOW | RTLD_GLOBAL) }).first else {
            throw DiffuseError.processes("started by an MPI launcher, but Open MPI's library (libmpi.so.40) cannot be loaded: "
                                    + "install it (Debian: apt-get install openmpi-bin libopenmpi3)")
        }
        func object(_ name: String) throws -> Handle {
            guard let address = dlsym(library, name) else {
                throw DiffuseError.processes("the MPI library loaded lacks \(name): Diffuse runs on Open MPI (4 or 5), not MPICH")
            }
            return address
        }
        func symbol<T>(_ name: String, as type: T.Type) throws -> T { unsafeBitCast(try object(name), to: type) }
        (world, float, double, byte, sumOperation) = (try object("ompi_mpi_comm_world"), try object("ompi_mpi_float"),
                                                     try object("ompi_mpi_double"), try object("ompi_mpi_byte"),
                                                     try object("ompi_mpi_op_sum"))
        allreduce = try symbol("MPI_Allreduce", as: type(of: allreduce))
        bcast = try symbol("MPI_Bcast", as: type(of: bcast))
        abortFunction = try symbol("MPI_Abort", as: type(of: abortFunction))
        finalize = try symbol("MPI_Finalize", as: type(of: finalize))
        let initialize = try symbol("MPI_Init", as: (@convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32).self)
        let commRank = try symbol("MPI_Comm_rank", as: (@convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32).self)
        let commSize = try symbol("MPI_Comm_size", as: (@convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32).self)
        guard initialize(nil, nil) == 0 else { throw DiffuseError.processes("MPI_Init failed") }
        var value: Int32 = 0
        _ = commRank(world, &value)
        rank = Int(value)
        _ = commSize(world, &value)
        size = Int(value)
    }

    /// Ends MPI in this process (each process of the job once, before it exits).
    public func finish() { _ = finalize() }

    public func sum(_ values: UnsafeMutableBufferPointer<Float>) { reduce(values, type: float) }
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) { reduce(values, type: double) }

    private func reduce<T>(_ values: UnsafeMutableBufferPointer<T>, type: Handle) {
        for start in stride(from: 0, to: values.count, by: Self.chunk) {
            let count = Swift.min(Self.chunk, values.count - start)
            check(allreduce(Self.inPlace, values.baseAddress! + start, Int32(count), type, sumOperation, world), "MPI_Allreduce")
        }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {
        for start in stride(from: 0, to: bytes.count, by: Self.chunk) {
            let count = Swift.min(Self.chunk, bytes.count - start)
            check(bcast(bytes.baseAddress! + start, Int32(count), byte, Int32(root), world), "MPI_Bcast")
        }
    }

    public func abort(code: Int32) -> Never {
        _ = abortFunction(world, code)
        exit(code)
    }

    /// Open MPI's default error handler ends the job on any error, so a call that returns has succeeded; this
    /// guards against a handler that returns instead.
    private func check(_ result: Int32, _ name: String) {
        if result != 0 {
            FileHandle.standardError.write(Data("error: \(name) failed on rank \(rank) (code \(result))\n".utf8))
            abort(code: 1)
        }
    }
}

/// This process' rows of a data-parallel step's global batch, and the group that holds the others: the batch of
/// `total` examples is cut into `group.size` contiguous shares, the first `total % size` one example larger. Random
/// draws per example take the share's rows of what one process would draw for the whole batch (Dropout,
/// `RandomGenerator.normal(_:share:)`), and BatchNorm sums its statistics over the group, so that the group's step
/// equals one process' up to the order of float sums.
public struct BatchShare: Sendable {
    public let rows: Range<Int>
    public let total: Int
    public let group: ProcessGroup

    /// Rank `group.rank`'s share of a batch of `total`.
    public init(total: Int, group: ProcessGroup) {
        let (base, extra, r) = (total / group.size, total % group.size, group.rank)
        let start = r * base + Swift.min(r, extra)
        rows = start..<(start + base + (r < extra ? 1 : 0))
        self.total = total
        self.group = group
    }

    /// This share's fraction of the batch: the weight of its mean loss in the batch's.
    public var fraction: Float { Float(rows.count) / Float(total) }

    /// The share of the step running now, set by `withValue` around a data-parallel step; nil outside one.
    @TaskLocal public static var current: BatchShare?
}

extension Engine {
    /// The cores this process may run on (its affinity mask, Cpus_allowed in /proc/self/status: `mpirun` binds
    /// each rank to its cores, `taskset` and containers narrow it), the engine's default thread count.
    public static var coresAvailable: Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let mask = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed:") }?.dropFirst("Cpus_allowed:".count)
        let count = mask.map { $0.reduce(0) { $0 + (UInt8(String($1), radix: 16)?.nonzeroBitCount ?? 0) } } ?? 0
        return count > 0 ? Swift.min(count, ProcessInfo.processInfo.activeProcessorCount) : ProcessInfo.processInfo.activeProcessorCount
    }
}
