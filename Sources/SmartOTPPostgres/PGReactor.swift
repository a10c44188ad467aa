import CLibPQ
import Glibc
import NIOPosix
import Synchronization

// libpq's asynchronous interface under one waiting thread.
//
// A verdict is two statements (its row read, its row and audit row written). Run blocking,
// each put a pool thread to sleep on its socket and woke it again: fleet-bench's profile
// showed smartotpd's sixteen database threads at a quarter of the machine, most of it the
// kernel switching them (5.7 switches a verdict). Here the borrower sends the statement
// itself (PQsendQueryPrepared on a nonblocking connection does not wait), hands the socket
// to one thread that waits on every connection's socket at once (epoll), and that thread
// reads the answer when it comes and resumes the borrower: one wake-up serves every answer
// that arrived together, and no thread sleeps per statement.
//
// Whoever holds the connection touches libpq: the borrower until the socket is handed
// over, the reactor until it resumes the borrower. The hand-over is a system call
// (epoll_ctl) and a continuation; each orders memory. A deadline aborts as before: the
// socket is shut down under libpq, the socket becomes readable, libpq reads the end, and
// the borrower is resumed with the failure.

/// One thread waiting on the sockets of connections whose statement is in flight.
final class PGReactor: Sendable {
    private let poller: Int32
    /// Written to stop the thread (an eventfd).
    private let stopper: Int32
    private let thread = NIOThreadPool(numberOfThreads: 1)
    private let state = Mutex(State())

    struct Waiter {
        let conn: PGConnection
        let done: CheckedContinuation<PGRows, any Error>
        /// libpq has bytes of the statement still to send (the socket's buffer was full).
        var flushing: Bool
        /// The statement's result, once libpq has it (the reactor waits on for the end).
        var outcome: Result<PGRows, PGError>?
    }

    struct State {
        /// By the connection's socket (its `PGConnection.socket`, open while it lives).
        var waiting: [Int32: Waiter] = [:]
        var stopped = false
    }

    init() {
        poller = epoll_create1(Int32(EPOLL_CLOEXEC))
        stopper = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        if poller >= 0, stopper >= 0 {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.fd = stopper
            _ = epoll_ctl(poller, EPOLL_CTL_ADD, stopper, &event)
        }
        thread.start()
        thread.submit { [self] work in
            guard case .active = work else { return }
            loop()
        }
    }

    /// Whether the reactor could be set up (else every statement runs blocking, on a
    /// thread, as `PGConnection.run` runs them).
    var usable: Bool { poller >= 0 && stopper >= 0 }

    /// Stops the thread; statements still in flight fail ("the pool is closed").
    func stop() async {
        if stopper >= 0 {
            var one: UInt64 = 1
            _ = write(stopper, &one, 8)
        }
        try? await thread.shutdownGracefully()
        if poller >= 0 { close(poller) }
        if stopper >= 0 { close(stopper) }
    }

    /// Sends a statement on `conn` (`send`: libpq's PQsend… call, its 1 or 0) and waits for
    /// its result without holding a thread. Cancelled (a deadline), the connection is
    /// aborted, as `PGConnection.run` aborts it.
    func perform(_ conn: PGConnection, _ send: (OpaquePointer) -> Int32) async throws -> PGRows {
        try Task.checkCancellation()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<PGRows, any Error>) in
                guard !conn.aborted else { return k.resume(throwing: PGError(code: "", message: "the connection was aborted")) }
                guard send(conn.raw) == 1 else { return k.resume(throwing: conn.failure()) }
                let flushed = PQflush(conn.raw)
                guard flushed >= 0 else { return k.resume(throwing: conn.failure()) }
                let stopped = state.withLock { s -> Bool in
                    if s.stopped { return true }
                    s.waiting[conn.socket] = Waiter(conn: conn, done: k, flushing: flushed == 1, outcome: nil)
                    return false
                }
                if stopped { return k.resume(throwing: PGError(code: "", message: "the pool is closed")) }
                if !watch(conn, writing: flushed == 1) {
                    // Never watched: taken back, unless the thread stopped and failed it already.
                    let w = state.withLock { $0.waiting.removeValue(forKey: conn.socket) }
                    w?.done.resume(throwing: PGError(code: "", message: "the connection's socket could not be watched"))
                }
            }
        } onCancel: {
            conn.abort()
        }
    }

    /// Asks epoll for one readiness of `conn`'s socket (once: the reactor asks again when
    /// the answer is not whole).
    private func watch(_ conn: PGConnection, writing: Bool) -> Bool {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | (writing ? EPOLLOUT.rawValue : 0)
        event.data.fd = conn.socket
        if conn.watched { return epoll_ctl(poller, EPOLL_CTL_MOD, conn.socket, &event) == 0 }
        guard epoll_ctl(poller, EPOLL_CTL_ADD, conn.socket, &event) == 0 else { return false }
        conn.watched = true
        return true
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let n = events.withUnsafeMutableBufferPointer { epoll_wait(poller, $0.baseAddress, Int32($0.count), -1) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                if fd == stopper { return finish() }
                advance(fd)
            }
        }
        finish()
    }

    /// The thread stops: every statement still waiting fails.
    private func finish() {
        let left = state.withLock { s -> [Waiter] in
            s.stopped = true
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for w in left {
            w.conn.abort()
            w.done.resume(throwing: PGError(code: "", message: "the pool is closed"))
        }
    }

    /// The socket of a waiting statement is ready: libpq reads (and sends what it still
    /// has); the borrower is resumed once the statement's last result is in, else the socket
    /// is watched again.
    private func advance(_ fd: Int32) {
        guard var w = state.withLock({ $0.waiting[fd] }) else { return }
        let raw = w.conn.raw
        var end: Result<PGRows, PGError>?
        if PQconsumeInput(raw) == 0 {
            end = .failure(w.conn.failure())
        } else if w.flushing {
            switch PQflush(raw) {
            case 0: w.flushing = false
            case 1: break
            default: end = .failure(w.conn.failure())
            }
        }
        while end == nil, !w.flushing, PQisBusy(raw) == 0 {
            guard let result = PQgetResult(raw) else {
                end = w.outcome ?? .success(PGRows(rows: []))
                break
            }
            let this = w.conn.outcome(result)
            // The first failure is the statement's; a later result does not hide it.
            if case .failure? = w.outcome {} else { w.outcome = this }
        }
        if let end {
            _ = state.withLock { $0.waiting.removeValue(forKey: fd) }
            w.done.resume(with: end.mapError { $0 as any Error })
            return
        }
        state.withLock { $0.waiting[fd] = w }
        if !watch(w.conn, writing: w.flushing) {
            _ = state.withLock { $0.waiting.removeValue(forKey: fd) }
            w.conn.abort()
            w.done.resume(throwing: PGError(code: "", message: "the connection's socket could not be watched"))
        }
    }
}
