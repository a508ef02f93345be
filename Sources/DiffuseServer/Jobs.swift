import DiffuseEngine
import Foundation

/// What a job does: a generation or a training run, as its request asked.
enum JobWork: Sendable {
    case generate(GenerateRequest)
    case train(TrainRequest)

    /// The run a training job trains.
    var trainedRun: String? {
        if case .train(let r) = self { r.name } else { nil }
    }

    var type: String {
        switch self {
        case .generate: "generate"
        case .train: "train"
        }
    }
}

/// Where a job is in its life.
enum JobState: String, Codable, Sendable {
    case queued, running, done, failed, cancelled
}

/// One job of the queue. Its fields change on the worker thread as the work goes and are read by the requests, so
/// every access goes through the queue's lock (`JobQueue.with`).
final class Job: @unchecked Sendable {
    let id: Int
    let work: JobWork
    let stop = StopRequest()
    var state = JobState.queued
    var started: Date?
    var finished: Date?
    /// Steps done and to do (sampler steps over all images, or training steps).
    var step = 0
    var steps = 0
    /// The latest figures ("loss 0.0312") or what the job is doing ("loading runs/mnist").
    var info = ""
    /// The latest preview of x̂₀ (PNG), for a generation.
    var preview: Data?
    /// What a generation wrote under the output folder (file names).
    var images: [String] = []
    /// The parameters chunk of each image (A1111's `infotexts`).
    var infotexts: [String] = []
    var error: String?
    /// Whether the job was asked to stop while running (it ends `cancelled`).
    var cancelling = false

    init(id: Int, work: JobWork) { (self.id, self.work) = (id, work) }

    var isFinished: Bool { [.done, .failed, .cancelled].contains(state) }

    /// The fraction done, in [0, 1].
    var progress: Double { state == .done ? 1 : steps > 0 ? Double(step) / Double(steps) : 0 }

    /// Seconds left at the pace so far (nil before the first step).
    var eta: Double? {
        guard state == .running, let started, step > 0, steps > step else { return nil }
        return Date().timeIntervalSince(started) / Double(step) * Double(steps - step)
    }
}

/// The job queue: one job runs on the engine at a time (it uses all the cores), on a thread of its own; the others
/// wait in the order they came. A queued job that is cancelled leaves the line; a running one is asked to stop
/// (`StopRequest`): a trainer writes its checkpoint first, a sampler ends at its last x̂₀.
final class JobQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var nextID = 1
    /// Finished jobs kept for their status, the newest last.
    private let keepFinished = 200
    private let run: (Job, JobQueue) throws -> Void

    /// `run` does a job's work on the worker thread, updating it through the queue's `with`.
    init(run: @escaping (Job, JobQueue) throws -> Void) {
        self.run = run
        let worker = Thread { [unowned self] in self.work() }
        worker.name = "diffuse jobs"
        worker.start()
    }

    /// `body` with the queue locked: the only way to read or change a job.
    func with<T>(_ body: () throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }

    /// Queues the work; its job.
    func submit(_ work: JobWork) -> Job {
        with {
            let job = Job(id: nextID, work: work)
            nextID += 1
            jobs.append(job)
            let finished = jobs.filter(\.isFinished)
            if finished.count > keepFinished {
                let old = Set(finished.prefix(finished.count - keepFinished).map(\.id))
                jobs.removeAll { old.contains($0.id) }
            }
            condition.broadcast()
            return job
        }
    }

    func job(_ id: Int) -> Job? { with { jobs.first { $0.id == id } } }

    // Read with the queue locked (inside `with`):

    /// All jobs known, oldest first.
    var all: [Job] { jobs }

    /// The running job, if any.
    var running: Job? { jobs.first { $0.state == .running } }

    /// Jobs waiting their turn.
    var waiting: Int { jobs.filter { $0.state == .queued }.count }

    /// 0 for the running job, k for the k-th in line, nil for a finished one.
    func position(_ job: Job) -> Int? {
        switch job.state {
        case .running: return 0
        case .queued: return jobs.filter { $0.state == .queued }.firstIndex { $0 === job }.map { $0 + 1 }
        default: return nil
        }
    }

    /// Cancels a job: a queued one at once, a running one at its next step. False if it had already finished.
    func cancel(_ job: Job) -> Bool {
        with {
            switch job.state {
            case .queued:
                job.state = .cancelled
                job.finished = Date()
                return true
            case .running:
                job.cancelling = true
                job.stop.request()
                return true
            default: return false
            }
        }
    }

    /// The worker: takes the oldest queued job, runs it, forever.
    private func work() {
        while true {
            condition.lock()
            var next = jobs.first { $0.state == .queued }
            while next == nil {
                condition.wait()
                next = jobs.first { $0.state == .queued }
            }
            let job = next!
            job.state = .running
            job.started = Date()
            condition.unlock()
            var failure: String?
            do {
                try StopRequest.$current.withValue(job.stop) { try run(job, self) }
            } catch {
                failure = "\(error)"
            }
            with {
                job.finished = Date()
                job.preview = nil
                if job.cancelling {
                    job.state = .cancelled
                } else if let failure {
                    (job.state, job.error) = (.failed, failure)
                } else {
                    job.state = .done
                }
            }
        }
    }
}
