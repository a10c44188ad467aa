import SmartOTPService
import Synchronization
import Testing

/// `withDeadline` and the one thread behind it (DeadlineTimer): a body past its deadline is
/// cancelled and has ended before the answer; one in time keeps its value or its own error.
@Suite("smartotpd: request deadlines") struct DeadlineTests {
    /// A body that waits until it is cancelled, and says when it has ended.
    final class Sleeper: Sendable {
        private let began = Atomic<Bool>(false)
        private let ended = Atomic<Bool>(false)
        private let sawCancellation = Atomic<Bool>(false)
        var hasStarted: Bool { began.load(ordering: .sequentiallyConsistent) }
        var hasEnded: Bool { ended.load(ordering: .sequentiallyConsistent) }
        var wasCancelled: Bool { sawCancellation.load(ordering: .sequentiallyConsistent) }

        /// Returns once the body has started.
        func started() async {
            while !hasStarted { await Task.yield() }
        }

        func sleep() async throws -> Int {
            began.store(true, ordering: .sequentiallyConsistent)
            defer { ended.store(true, ordering: .sequentiallyConsistent) }
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                sawCancellation.store(Task.isCancelled, ordering: .sequentiallyConsistent)
                throw error
            }
            return 0
        }
    }

    struct Own: Error {}

    @Test func aBodyInTimeKeepsItsValueOrItsOwnError() async throws {
        #expect(try await withDeadline(.seconds(30)) { 42 } == 42)
        await #expect(throws: Own.self) { try await withDeadline(.seconds(30)) { () async throws -> Int in throw Own() } }
    }

    @Test func aBodyPastItsDeadlineIsCancelledAndHasEndedBeforeTheAnswer() async throws {
        let body = Sleeper()
        await #expect(throws: DeadlineExceeded.self) { try await withDeadline(.milliseconds(20)) { try await body.sleep() } }
        #expect(body.hasEnded, "nothing the body does happens after the answer")
        #expect(body.wasCancelled)
    }

    /// The thread sleeps until the earliest deadline: one set later that ends sooner wakes it.
    @Test func aShorterDeadlineSetLaterEndsFirst() async throws {
        let long = Sleeper(), short = Sleeper()
        let waiting = Task { try await withDeadline(.seconds(20)) { try await long.sleep() } }
        await long.started()  // the longer deadline is set first: the thread sleeps until it
        await #expect(throws: DeadlineExceeded.self) { try await withDeadline(.milliseconds(20)) { try await short.sleep() } }
        #expect(!long.hasEnded, "the longer deadline has not passed")
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        #expect(long.hasEnded)
    }

    /// The caller's own cancellation reaches the body, and is not taken for a deadline.
    @Test func cancellingTheCallerCancelsTheBody() async throws {
        let body = Sleeper()
        let caller = Task { try await withDeadline(.seconds(20)) { try await body.sleep() } }
        await body.started()
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(body.hasEnded && body.wasCancelled)
    }

    /// A caller cancelled before it asks starts no body at all (it could otherwise borrow a
    /// database connection before the cancellation reached it).
    @Test func aCallerCancelledAlreadyStartsNothing() async throws {
        let body = Sleeper()
        let caller = Task {
            while !Task.isCancelled { await Task.yield() }
            return try await withDeadline(.seconds(20)) { try await body.sleep() }
        }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(!body.hasStarted)
    }

    /// A limit too long for 64 bits of nanoseconds is the longest there is, not one that
    /// wraps round to now.
    @Test func aLimitBeyondSixtyFourBitsNeverFires() async throws {
        let body = Sleeper()
        let caller = Task { try await withDeadline(.seconds(Int64.max)) { try await body.sleep() } }
        await body.started()
        for _ in 0..<100 { await Task.yield() }
        #expect(!body.hasEnded, "the deadline did not fire")
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
    }

    /// Thousands of deadlines of one length cleared in time (each stays queued, unarmed,
    /// until the thread passes it) neither fire nor keep a later one of that length from
    /// firing. The length is long enough that a body scheduled late under a loaded test run
    /// still starts before its deadline.
    @Test func deadlinesClearedInTimeNeverFireAndOneAfterThemStillDoes() async throws {
        final class Count: Sendable {
            let value = Atomic<Int>(0)
            var now: Int { value.load(ordering: .relaxed) }
        }
        let cancelled = Count()
        for _ in 0..<2_000 {
            _ = try await withDeadline(.seconds(3)) {
                if Task.isCancelled { cancelled.value.add(1, ordering: .relaxed) }
                return 0
            }
        }
        let body = Sleeper()
        await #expect(throws: DeadlineExceeded.self) { try await withDeadline(.seconds(3)) { try await body.sleep() } }
        #expect(body.hasEnded)
        #expect(cancelled.now == 0)
    }
}
