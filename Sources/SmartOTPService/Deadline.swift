import Glibc

/// `body`, or `DeadlineExceeded` once `limit` has passed: `body` is then cancelled, and
/// this returns only once it has ended (nothing it does happens after the answer). A body
/// that ends well despite a deadline just passed is answered with its value.
public func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    // A caller cancelled already (a shutdown) starts nothing: the body would begin
    // uncancelled and might borrow a connection before the cancellation reached it.
    try Task.checkCancellation()
    guard DeadlineTimer.shared.usable else { return try await withSleepingDeadline(limit, body) }
    let task = Task { try await body() }
    let timer = DeadlineTimer.shared.set(after: limit) { task.cancel() }
    let result = await withTaskCancellationHandler { await task.result } onCancel: { task.cancel() }
    let fired = !DeadlineTimer.shared.clear(timer)
    switch result {
    case .success(let value): return value
    case .failure(let error):
        // What a body cancelled at its deadline throws (its connection aborted, or the
        // cancellation itself) is the deadline's.
        if fired { throw DeadlineExceeded() }
        throw error
    }
}

/// The same with a `Task.sleep` racing the body, for a process that could not start the
/// timer's thread (no thread left): slower, but every deadline still holds.
func withSleepingDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded() }
        return value
    }
}

/// The ledger did not answer within a request's deadline.
public struct DeadlineExceeded: Error, CustomStringConvertible, Sendable {
    public init() {}
    public var description: String { "the database did not answer in time" }
}

/// The clock behind `withDeadline`: one thread that cancels what outlived its deadline.
///
/// Why not `Task.sleep` in a second child task, as before: Swift hands a sleep to Dispatch's
/// timers (NIO takes over only the jobs that run now), a sleep cancelled early stays in
/// Dispatch's timer heap until it would have ended, and Dispatch's two threads woke for
/// them. fleet-bench's profile had Dispatch at 2.4 % of the machine, beside a task group of
/// two children a verdict.
///
/// Deadlines of one length end in the order they were set (a request's deadline is one
/// setting), so each length keeps a queue in that order. The thread sleeps until the
/// earliest live one; a new deadline wakes it only when it would end sooner than that.
/// Cleared ones stay queued, unarmed, until the thread passes them: under load it wakes
/// about once a deadline's length, not once a request.
final class DeadlineTimer: @unchecked Sendable {
    static let shared = DeadlineTimer()

    typealias ID = UInt64

    /// The thread's mutex and condition (CLOCK_MONOTONIC): at fixed addresses.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    // Everything below is guarded by `mutex`.
    /// By length (ns): deadlines as set, from `head` on (what is before it has passed).
    private var queues: [Int64: (entries: [(due: UInt64, id: ID)], head: Int)] = [:]
    /// What to run for the deadlines still armed.
    private var armed: [ID: @Sendable () -> Void] = [:]
    private var nextID: ID = 1
    /// When the thread wakes next on its own (nil: it waits to be woken; not running yet).
    private var sleepsUntil: UInt64?
    /// Whether the thread runs (else `withDeadline` races a sleep, as it used to).
    private(set) var usable = false

    private init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(wake, &attributes)
        pthread_condattr_destroy(&attributes)
        usable = start()
    }

    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Runs `fire` once `limit` has passed, unless `clear` comes first. `fire` runs on the
    /// timer's thread: it must be brief (a task cancelled).
    func set(after limit: Duration, _ fire: @escaping @Sendable () -> Void) -> ID {
        // In nanoseconds, at least 0; one too long for 64 bits (292 years) is the longest.
        let (seconds, attoseconds) = limit.components
        let (whole, over) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, past) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        let length = over || past ? (seconds < 0 ? 0 : Int64.max) : max(0, sum)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        // Read under the lock: deadlines of one length join their queue in the order they end.
        let due = Self.now() + UInt64(length)  // the clock's uptime + at most Int64.max: no overflow
        let id = nextID
        nextID += 1
        armed[id] = fire
        queues[length, default: ([], 0)].entries.append((due, id))
        if sleepsUntil.map({ due < $0 }) ?? true { pthread_cond_signal(wake) }
        return id
    }

    /// Disarms a deadline; false when it had fired already (its `fire` taken by the thread).
    @discardableResult
    func clear(_ id: ID) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return armed.removeValue(forKey: id) != nil
    }

    /// Starts the thread; false if there is none to be had.
    private func start() -> Bool {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        var thread = pthread_t()
        let box = Unmanaged.passUnretained(self).toOpaque()  // `shared` lives as long as the process
        let rc = pthread_create(&thread, &attributes, { raw in
            if let raw { Unmanaged<DeadlineTimer>.fromOpaque(raw).takeUnretainedValue().run() }
            return nil
        }, box)
        return rc == 0
    }

    private func run() {
        pthread_mutex_lock(mutex)
        while true {
            let now = Self.now()
            var due: [@Sendable () -> Void] = []
            var earliest: UInt64?
            for length in queues.keys {
                guard var q = queues[length] else { continue }
                // What has passed fires; cleared ones at the front are dropped on the way.
                while q.head < q.entries.count {
                    let e = q.entries[q.head]
                    guard let fire = armed[e.id] else { q.head += 1; continue }
                    guard e.due <= now else { break }
                    due.append(fire)
                    armed[e.id] = nil
                    q.head += 1
                }
                if q.head < q.entries.count { earliest = min(earliest ?? .max, q.entries[q.head].due) }
                if q.head == q.entries.count {
                    queues[length] = nil  // a length no longer in use is not kept
                    continue
                } else if q.head > 1024 && q.head * 2 > q.entries.count {
                    q.entries.removeFirst(q.head)
                    q.head = 0
                }
                queues[length] = q
            }
            sleepsUntil = earliest
            if !due.isEmpty {
                pthread_mutex_unlock(mutex)
                for fire in due { fire() }
                pthread_mutex_lock(mutex)
                continue
            }
            if let earliest {
                var until = timespec(tv_sec: Int(earliest / 1_000_000_000), tv_nsec: Int(earliest % 1_000_000_000))
                pthread_cond_timedwait(wake, mutex, &until)
            } else {
                pthread_cond_wait(wake, mutex)
            }
        }
    }
}
