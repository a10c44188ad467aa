import CLibPQ
import Glibc
import NIOCore
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
    /// Whether the poller and the stopper were set up (else every statement runs blocking, on
    /// a thread, as `PGConnection.run` runs them).
    let usable: Bool
    private let thread = NIOThreadPool(numberOfThreads: 1)
    private let state = Mutex(State())

    struct Waiter {
        let conn: PGConnection
        let done: CheckedContinuation<PGRows, any Error>
        /// The event loop the borrower sent from (nil: another thread). Resumed there, its
        /// task stays on that loop, its connection's: Swift's jobs run on NIO's loops
        /// (smartotpd), and a job enqueued from this thread would go to any loop in turn,
        /// so every answer would then hop back to the connection's loop.
        let loop: (any EventLoop)?
        /// Handed to epoll: from then on the reactor (or its stop) resumes the borrower.
        /// Before, the borrower is still inside libpq, and only it may resume itself.
        var armed = false
        /// libpq has bytes of the statement still to send (the socket's buffer was full).
        var flushing = false
        /// The statement's result, once libpq has it (the reactor waits on for the end).
        var outcome: Result<PGRows, PGError>?
        /// Results seen: one statement has one (a server that sends more is cut off).
        var results = 0
    }

    struct State {
        /// By the connection's socket (its `PGConnection.socket`, open while it lives).
        var waiting: [Int32: Waiter] = [:]
        var stopped = false
    }

    init() {
        poller = epoll_create1(Int32(EPOLL_CLOEXEC))
        stopper = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = stopper
        usable = poller >= 0 && stopper >= 0 && epoll_ctl(poller, EPOLL_CTL_ADD, stopper, &event) == 0
        guard usable else { return }
        thread.start()
        thread.submit { [self] work in
            guard case .active = work else { return }
            loop()
        }
    }

    deinit {
        if poller >= 0 { close(poller) }
        if stopper >= 0 { close(stopper) }
    }

    /// Stops the thread; statements still in flight fail ("the pool is closed"). The
    /// descriptors stay open until the reactor is gone: a borrower between its send and
    /// epoll never reaches a number reused meanwhile.
    func stop() async {
        guard usable else { return }
        var one: UInt64 = 1
        _ = write(stopper, &one, 8)
        try? await thread.shutdownGracefully()
    }

    /// Sends a statement on `conn` (`send`: libpq's PQsend… call, its 1 or 0) and waits for
    /// its result without holding a thread. Cancelled (a deadline), the connection is
    /// aborted, as `PGConnection.run` aborts it. Whatever fails once the statement may have
    /// gone out aborts the connection too: its fate is unknown, so nothing more is sent on it
    /// and the pool closes it (the server rolls back what it had not committed).
    func perform(_ conn: PGConnection, _ send: (OpaquePointer) -> Int32) async throws -> PGRows {
        try Task.checkCancellation()
        let fd = conn.socket
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<PGRows, any Error>) in
                guard !conn.aborted else { return k.resume(throwing: PGError(code: "", message: "the connection was aborted")) }
                // Counted before anything is sent: a pool closing meanwhile refuses it unsent.
                let admitted = state.withLock { s -> Bool in
                    if s.stopped { return false }
                    s.waiting[fd] = Waiter(conn: conn, done: k, loop: MultiThreadedEventLoopGroup.currentEventLoop)
                    return true
                }
                guard admitted else { return k.resume(throwing: PGError(code: "", message: "the pool is closed")) }
                func fail(_ error: PGError) {
                    conn.abort()
                    _ = state.withLock { $0.waiting.removeValue(forKey: fd) }
                    k.resume(throwing: error)
                }
                guard send(conn.raw) == 1 else { return fail(conn.failure()) }
                let flushed = PQflush(conn.raw)
                guard flushed >= 0 else { return fail(conn.failure()) }
                // Armed under the lock: a stop either came before (refused here) or will
                // find it armed (and fail it). Until armed, the waiter is the borrower's.
                let armed = state.withLock { s -> PGError? in
                    guard !s.stopped else { return PGError(code: "", message: "the pool is closed") }
                    guard watch(conn, writing: flushed == 1) else { return PGError(code: "", message: "the connection's socket could not be watched") }
                    s.waiting[fd]?.armed = true
                    s.waiting[fd]?.flushing = flushed == 1
                    return nil
                }
                if let armed { fail(armed) }
            }
        } onCancel: {
            conn.abort()
        }
    }

    /// Asks epoll for one readiness of `conn`'s socket (once: the reactor asks again when
    /// the answer is not whole). `watched` is set before the socket is added: once added, the
    /// reactor may answer, and the next statement must find it set.
    private func watch(_ conn: PGConnection, writing: Bool) -> Bool {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | (writing ? EPOLLOUT.rawValue : 0)
        event.data.fd = conn.socket
        if conn.watched { return epoll_ctl(poller, EPOLL_CTL_MOD, conn.socket, &event) == 0 }
        conn.watched = true
        guard epoll_ctl(poller, EPOLL_CTL_ADD, conn.socket, &event) == 0 else {
            conn.watched = false
            return false
        }
        return true
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        // Sockets whose answer OpenSSL still holds in part (`advance`): served again after
        // each look at epoll, which does not wait while there are any.
        var again: [Int32] = []
        while true {
            let n = events.withUnsafeMutableBufferPointer { epoll_wait(poller, $0.baseAddress, Int32($0.count), again.isEmpty ? -1 : 0) }
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                if fd == stopper { return finish() }
                if advance(fd) { again.append(fd) }
            }
            let turn = again
            again = turn.filter(advance)
        }
        finish()
    }

    /// The thread stops: every statement handed to it fails (one not yet armed is failed by
    /// its borrower, which finds the reactor stopped).
    private func finish() {
        let left = state.withLock { s -> [Waiter] in
            s.stopped = true
            let armed = s.waiting.values.filter(\.armed)
            for w in armed { s.waiting.removeValue(forKey: w.conn.socket) }
            return armed
        }
        for w in left {
            w.conn.abort()
            w.done.resume(throwing: PGError(code: "", message: "the pool is closed"))
        }
    }

    /// The socket of a waiting statement is ready: libpq reads (and sends what it still
    /// has); the borrower is resumed once the statement's last result is in, else the socket
    /// is watched again.
    ///
    /// True when OpenSSL still holds bytes of the answer after `readsATurn` reads: the
    /// socket is not watched again (epoll would not report those bytes), and the loop comes
    /// back to it after the other sockets' turn, so a server that streams without pause
    /// does not keep every other connection's answer waiting.
    private func advance(_ fd: Int32) -> Bool {
        guard var w = state.withLock({ s in s.waiting[fd].flatMap { $0.armed ? $0 : nil } }) else { return false }
        let raw = w.conn.raw
        var end = step(&w)
        var (guesses, reads) = (2, 1)
        while end == nil, !w.flushing, PQisBusy(raw) == 1, Self.buffered(raw, guesses: &guesses) {
            if reads == Self.readsATurn {
                state.withLock { $0.waiting[fd] = w }
                return true
            }
            end = step(&w)
            reads += 1
        }
        if let end {
            _ = state.withLock { $0.waiting.removeValue(forKey: fd) }
            let (done, answer) = (w.done, end.mapError { $0 as any Error })
            if let loop = w.loop { loop.execute { done.resume(with: answer) } } else { done.resume(with: answer) }
            return false
        }
        state.withLock { $0.waiting[fd] = w }
        if !watch(w.conn, writing: w.flushing) {
            _ = state.withLock { $0.waiting.removeValue(forKey: fd) }
            w.conn.abort()
            w.done.resume(throwing: PGError(code: "", message: "the connection's socket could not be watched"))
        }
        return false
    }

    /// Reads of one connection before the others get their turn (each takes at most a
    /// TLS record, 16 KiB, or what the socket holds).
    static let readsATurn = 16

    /// Whether OpenSSL holds bytes of `raw`'s answer that libpq has not read yet. Over TLS,
    /// libpq reads a record into a buffer that may be too small for all of it; the rest
    /// waits inside OpenSSL, where epoll cannot see it, and libpq's own waits look there
    /// first (`SSL_pending`). Without OpenSSL's function at hand, two more reads are a
    /// guess (a record is at most 16 KiB, and libpq reads into at least 8 KiB free).
    private static func buffered(_ raw: OpaquePointer, guesses: inout Int) -> Bool {
        guard PQsslInUse(raw) == 1 else { return false }
        if let pending = sslPending, let ssl = PQsslStruct(raw, "OpenSSL") { return pending(ssl) > 0 }
        guesses -= 1
        return guesses >= 0
    }

    /// OpenSSL's `SSL_pending`, from the libssl libpq loaded (smartotpd's own TLS is
    /// BoringSSL under prefixed names, so the plain name is OpenSSL's); nil where libpq was
    /// built without it.
    static let sslPending: (@convention(c) (UnsafeMutableRawPointer) -> Int32)? = {
        guard let symbol = dlsym(nil, "SSL_pending") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutableRawPointer) -> Int32).self)
    }()

    /// One read (and send) on `w`'s connection and the results it completed; the
    /// statement's end, or nil while more is to come.
    private func step(_ w: inout Waiter) -> Result<PGRows, PGError>? {
        let raw = w.conn.raw
        guard PQconsumeInput(raw) == 1 else { return .failure(w.conn.failure()) }
        if w.flushing {
            switch PQflush(raw) {
            case 0: w.flushing = false
            case 1: return nil
            default: return .failure(w.conn.failure())
            }
        }
        while PQisBusy(raw) == 0 {
            guard let result = PQgetResult(raw) else { return w.outcome ?? .success(PGRows(rows: [])) }
            w.results += 1
            let status = PQresultStatus(result)
            let answer = [PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_FATAL_ERROR].contains(status)
            guard answer, w.results <= 4 else {
                // Not an answer to a statement of ours (COPY, which libpq would hand out for
                // ever, or a server that does not stop): the connection is cut off.
                PQclear(result)
                w.conn.abort()
                return .failure(PGError(code: "", message: "the database answered what no statement asked for"))
            }
            let this = w.conn.outcome(result)
            // The first failure is the statement's; a later result does not hide it.
            if case .failure? = w.outcome {} else { w.outcome = this }
        }
        return nil
    }
}
