import CLibPQ
import Glibc
import NIOPosix
import OTPCore
import Synchronization

// smartotpd's PostgreSQL client: libpq, PostgreSQL's own, under a small pool. libpq brings
// what a verifier needs from a client — TLS with libpq's sslmode, SCRAM, client
// certificates, several hosts with target_session_attrs, connect and TCP timeouts —
// without Foundation (and its ICU data).
//
// A statement (`PGConnection.query`) is sent by its borrower and its answer awaited on the
// pool's reactor (PGReactor: libpq's asynchronous interface, one thread waiting on every
// connection's socket). What must block — opening a connection, a `run` body of several
// statements (maintenance), a decision that hashes — runs on a thread of the pool's own,
// one a connection: Swift's cooperative threads never wait for PostgreSQL.
//
// What a deadline needs from here: a statement cancelled mid-flight ends at once (the
// connection's socket is shut down under libpq: the statement fails, the server rolls its
// transaction back when it next reads), nothing more is sent on that connection, and the
// pool never lends a connection whose transaction status is not idle. So a verdict
// answered 503 leaves no transaction behind, and the next borrower starts clean.

/// What PostgreSQL (or libpq, for a connection) refused: its SQLSTATE and its message. The
/// message is the server's primary one: never the query or its values (a record holds
/// secrets).
public struct PGError: Error, CustomStringConvertible, Sendable {
    /// The SQLSTATE; empty for libpq's own errors (the connection, no result).
    public let code: String
    public let message: String
    public var description: String { code.isEmpty ? "PostgreSQL connection: \(message)" : "PostgreSQL \(code): \(message)" }
}

/// A statement and its parameters: every interpolated value is a parameter ($1, $2, …, sent
/// apart from the SQL, typed text, bigint or text[]), never text spliced into the statement.
public struct PGQuery: ExpressibleByStringInterpolation, Sendable {
    public var sql: String
    public var values: [String?] = []
    public var types: [Oid] = []

    /// A statement with no parameters, taken as it is (the migrations' DDL).
    public init(unsafeSQL: String) { sql = unsafeSQL }
    public init(stringLiteral value: String) { sql = value }
    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        values = stringInterpolation.values
        types = stringInterpolation.types
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var values: [String?] = []
        var types: [Oid] = []
        static let text: Oid = 25
        static let bigint: Oid = 20
        static let textArray: Oid = 1009
        public init(literalCapacity: Int, interpolationCount: Int) { sql.reserveCapacity(literalCapacity + 4 * interpolationCount) }
        public mutating func appendLiteral(_ literal: String) { sql += literal }
        public mutating func appendInterpolation(_ value: String) { bind(value, Self.text) }
        public mutating func appendInterpolation(_ value: String?) { bind(value, Self.text) }
        public mutating func appendInterpolation(_ value: Int) { bind(String(value), Self.bigint) }
        public mutating func appendInterpolation(_ value: Int64) { bind(String(value), Self.bigint) }
        public mutating func appendInterpolation(_ value: Int64?) { bind(value.map { String($0) }, Self.bigint) }
        public mutating func appendInterpolation(_ value: [String]) { bind(PGArray.literal(value), Self.textArray) }
        public mutating func appendInterpolation(_ value: [String]?) { bind(value.map(PGArray.literal), Self.textArray) }
        /// Another statement spliced in (a part of this one), its parameters renumbered after
        /// those already bound.
        public mutating func appendInterpolation(_ inner: PGQuery) {
            let offset = values.count
            var bytes = Array(inner.sql.utf8)[...]
            var out: [UInt8] = []
            while let b = bytes.first {
                bytes = bytes.dropFirst()
                out.append(b)
                guard b == UInt8(ascii: "$") else { continue }
                var digits = 0, found = false
                while let d = bytes.first, d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") {
                    digits = digits * 10 + Int(d - UInt8(ascii: "0"))
                    bytes = bytes.dropFirst()
                    found = true
                }
                if found { out += Array(String(digits + offset).utf8) }
            }
            sql += String(decoding: out, as: UTF8.self)
            values += inner.values
            types += inner.types
        }
        private mutating func bind(_ value: String?, _ type: Oid) {
            values.append(value)
            types.append(type)
            sql += "$\(values.count)"
        }
    }
}

/// A `text[]` in PostgreSQL's text form.
public enum PGArray {
    /// `{"a","b"}`: every element quoted, `"` and `\` escaped.
    public static func literal(_ items: [String]) -> String {
        "{" + items.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }

    /// The elements of a `text[]` as PostgreSQL writes it (NULL elements are refused).
    public static func parse(_ text: String) throws(PGError) -> [String] {
        let bad = PGError(code: "", message: "a malformed text[] value")
        var bytes = Array(text.utf8)[...]
        guard bytes.first == UInt8(ascii: "{"), bytes.last == UInt8(ascii: "}") else { throw bad }
        bytes = bytes.dropFirst().dropLast()
        var out: [String] = []
        while !bytes.isEmpty {
            var item: [UInt8] = []
            if bytes.first == UInt8(ascii: "\"") {
                bytes = bytes.dropFirst()
                var closed = false
                while let b = bytes.first {
                    bytes = bytes.dropFirst()
                    if b == UInt8(ascii: "\\") {
                        guard let next = bytes.first else { throw bad }
                        item.append(next)
                        bytes = bytes.dropFirst()
                    } else if b == UInt8(ascii: "\"") {
                        closed = true
                        break
                    } else {
                        item.append(b)
                    }
                }
                guard closed else { throw bad }
            } else {
                while let b = bytes.first, b != UInt8(ascii: ",") {
                    item.append(b)
                    bytes = bytes.dropFirst()
                }
                guard item != Array("NULL".utf8) else { throw bad }
            }
            out.append(String(decoding: item, as: UTF8.self))
            if let b = bytes.first {
                guard b == UInt8(ascii: ",") else { throw bad }
                bytes = bytes.dropFirst()
                guard !bytes.isEmpty else { throw bad }
            }
        }
        return out
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        var i = startIndex
        while i != endIndex {
            if self[i...].hasPrefix(target) { return i..<index(i, offsetBy: target.count) }
            i = index(after: i)
        }
        return nil
    }
}

/// A value in a result column (text format): what `PGRows.decode` makes of one.
public protocol PGDecodable: Sendable {
    static func decode(_ text: String?) throws(PGError) -> Self
}

extension PGDecodable {
    static func unexpected(_ text: String?) -> PGError {
        PGError(code: "", message: "a column held \(text.map { "'\($0.prefix(24))'" } ?? "NULL"), not a \(Self.self)")
    }
}

extension String: PGDecodable {
    public static func decode(_ text: String?) throws(PGError) -> String {
        guard let text else { throw unexpected(text) }
        return text
    }
}

extension PGDecodable where Self: FixedWidthInteger {
    public static func decode(_ text: String?) throws(PGError) -> Self {
        guard let text, let v = Self(text) else { throw unexpected(text) }
        return v
    }
}

extension Int64: PGDecodable {}
extension Int: PGDecodable {}

extension Bool: PGDecodable {
    public static func decode(_ text: String?) throws(PGError) -> Bool {
        switch text {
        case "t": return true
        case "f": return false
        default: throw unexpected(text)
        }
    }
}

extension Array: PGDecodable where Element == String {
    public static func decode(_ text: String?) throws(PGError) -> [String] {
        guard let text else { throw unexpected(text) }
        return try PGArray.parse(text)
    }
}

extension Optional: PGDecodable where Wrapped: PGDecodable {
    public static func decode(_ text: String?) throws(PGError) -> Wrapped? {
        guard let text else { return nil }
        return try Wrapped.decode(text)
    }
}

/// A statement's result rows, each column as PostgreSQL wrote it (text; nil for NULL).
public struct PGRows: Sendable {
    public let rows: [[String?]]

    public init(rows: [[String?]]) { self.rows = rows }

    /// Every row as a tuple of the given column types, in column order.
    public func decode<each Column: PGDecodable>(_: (repeat each Column).Type) throws(PGError) -> [(repeat each Column)] {
        var out: [(repeat each Column)] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            var i = 0
            func next<C: PGDecodable>(_: C.Type) throws(PGError) -> C {
                defer { i += 1 }
                guard i < row.count else { throw PGError(code: "", message: "a row has \(row.count) columns, fewer than asked for") }
                return try C.decode(row[i])
            }
            out.append((repeat try next((each Column).self)))
        }
        return out
    }
}

/// libpq's view of a connection's transaction (PQtransactionStatus).
public enum PGTransactionStatus: Sendable, Equatable {
    /// Idle: no transaction open, nothing in flight. The only state a pooled connection lends in.
    case idle
    /// A statement in flight.
    case active
    /// In a transaction (BEGIN sent, no COMMIT or ROLLBACK yet).
    case inTransaction
    /// In a transaction that failed: only ROLLBACK is accepted.
    case failed
    /// The connection is gone.
    case unknown
}

/// One libpq connection. Used by one task at a time (the pool's borrower); `abort` may come
/// from another (a deadline).
public final class PGConnection: @unchecked Sendable {
    let raw: OpaquePointer
    private let threads: NIOThreadPool
    /// Where `query` waits for its answer without holding a thread (nil: on a pool thread).
    private let reactor: PGReactor?
    /// A second descriptor of the connection's socket, kept until deinit: `abort` shuts the
    /// socket down through it, never through a number libpq may have closed and the
    /// system reused meanwhile; the reactor watches it (closed, epoll forgets it).
    let socket: Int32
    /// The reactor's epoll has the socket (touched by whoever holds the connection).
    var watched = false
    private let state = Mutex(Flags())

    struct Flags {
        /// libpq said the connection is gone, or it was aborted: the pool closes it.
        var broken = false
        /// Aborted: nothing more is sent.
        var aborted = false
    }

    /// Statements prepared on this session, by their SQL: a verdict's statements are parsed
    /// and planned once a connection, not at every verdict (fleet-bench's profile: parsing,
    /// analysis and planning were 40 % of PostgreSQL's CPU a verdict). Touched only by the
    /// borrower, one statement at a time. At most `preparedLimit`; later ones run unnamed.
    private var prepared: [String: String] = [:]
    static let preparedLimit = 64
    /// Whether to prepare at all (`database_prepare`), and the names' prefix: random for each
    /// connection, so that a statement never runs under a name another connection gave a
    /// statement of its own (behind a pooler that shares a server session between them,
    /// which `database_prepare = off` is for).
    private let preparing: Bool
    private let prefix: String

    public var broken: Bool { state.withLock { $0.broken } }
    var aborted: Bool { state.withLock { $0.aborted } }
    /// The server libpq chose (of several, the first that took the session as the
    /// connection string asks: target_session_attrs): `HOST:PORT`, or the socket's folder.
    public let server: String

    private init(_ raw: OpaquePointer, threads: NIOThreadPool, reactor: PGReactor?, prepare: Bool) {
        self.raw = raw
        self.threads = threads
        self.reactor = reactor
        // No randomness, no preparing: a prefix two connections could share would let one
        // run the other's statement behind a pooler.
        let random = SecureRandom.bytes(8)
        preparing = prepare && random != nil
        prefix = "smartotp_" + Hex.encode(random ?? []) + "_"
        socket = dup(PQsocket(raw))
        let host = PQhost(raw).map { String(cString: $0) } ?? "?"
        let port = PQport(raw).map { String(cString: $0) } ?? "?"
        server = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    deinit {
        PQfinish(raw)
        if socket >= 0 { close(socket) }
    }

    /// Connects (blocking: on a pool thread) with libpq's own keywords and values, as
    /// `PQconnectdbParams` takes them (`expand` lets a `dbname` value be a whole connection
    /// string or URI), then runs `setup` (the session's timeouts) before anyone borrows it.
    static func open(_ settings: [(String, String)], setup: String?, threads: NIOThreadPool, reactor: PGReactor?, prepare: Bool = true) throws(PGError) -> PGConnection {
        let keys = settings.map { strdup($0.0) }
        let values = settings.map { strdup($0.1) }
        defer { keys.forEach { free($0) }; values.forEach { free($0) } }
        var k: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var v: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        guard let raw = PQconnectdbParams(&k, &v, 1) else { throw PGError(code: "", message: "out of memory") }
        guard PQstatus(raw) == CONNECTION_OK else {
            let why = Self.text(PQerrorMessage(raw))
            PQfinish(raw)
            throw PGError(code: "", message: why)
        }
        // Nonblocking: the reactor's sends never wait. libpq's blocking calls (PQexec…, on
        // `run`'s thread) still wait for their answer in this mode.
        let usesReactor = reactor?.usable == true && PQsetnonblocking(raw, 1) == 0
        let connection = PGConnection(raw, threads: threads, reactor: usesReactor ? reactor : nil, prepare: prepare)
        // No second descriptor (the process at its limit): no abort, no reactor. Closed.
        guard connection.socket >= 0 else { throw PGError(code: "", message: "no descriptor left for the connection's socket") }
        if let setup {
            // A simple query (several statements, no parameters): one round trip.
            guard let result = PQexec(raw, setup) else { throw connection.failure() }
            defer { PQclear(result) }
            guard PQresultStatus(result) == PGRES_COMMAND_OK || PQresultStatus(result) == PGRES_TUPLES_OK else {
                throw connection.failure(code: Self.field(result, "C") ?? "", message: Self.field(result, "M"))
            }
        }
        return connection
    }

    /// Runs `query`; its rows. The statement is sent from here and its answer awaited on the
    /// pool's reactor, no thread held (on the pool's thread when the reactor is not there).
    /// A statement with parameters is prepared on first use, as `execute` does. Cancelled (a
    /// deadline), the statement in flight is aborted and the connection is done for:
    /// nothing else is sent on it.
    @discardableResult
    public func query(_ query: PGQuery) async throws -> PGRows {
        guard let reactor else { return try await run { try $0.execute(query) } }
        let statement = naming(query)
        if let statement, statement.new {
            _ = try await reactor.perform(self) { raw in
                query.types.withUnsafeBufferPointer { PQsendPrepare(raw, statement.name, query.sql, Int32($0.count), $0.baseAddress) }
            }
            prepared[query.sql] = statement.name
        }
        let name = statement?.name
        return try await reactor.perform(self) { raw in
            Self.withValues(query) { types, params in
                if let name { return PQsendQueryPrepared(raw, name, Int32(params.count), params.baseAddress, nil, nil, 0) }
                return PQsendQueryParams(raw, query.sql, Int32(params.count), types.baseAddress, params.baseAddress, nil, nil, 0)
            }
        }
    }

    /// `body` with `query`'s parameter types and values as libpq takes them (C strings,
    /// freed after).
    static func withValues<R>(_ query: PGQuery, _ body: (UnsafeBufferPointer<Oid>, UnsafeMutableBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
        let values = query.values.map { $0.map { strdup($0) } ?? nil }
        defer { values.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } }
        return query.types.withUnsafeBufferPointer { types in
            pointers.withUnsafeMutableBufferPointer { body(types, $0) }
        }
    }

    /// Ends whatever the connection is doing, at once: the socket is shut down under libpq
    /// (a blocked read returns, the statement fails), and the connection is marked so that
    /// nothing more is sent on it and the pool closes it. The server, which may be stopped
    /// or busy, rolls back the open transaction when it finds the connection gone.
    public func abort() {
        state.withLock { s in
            s.aborted = true
            s.broken = true
        }
        if socket >= 0 { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    /// `body` on the pool's thread, its statements (`execute`) run there one after another:
    /// one hop to and from the thread for all of them, not one a statement. Cancelled (a
    /// deadline), the statement in flight is aborted as `query`'s is.
    public func run<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        try Task.checkCancellation()
        guard !aborted else { throw PGError(code: "", message: "the connection was aborted") }
        return try await withTaskCancellationHandler {
            try await threads.runIfActive { [self] in try body(self) }
        } onCancel: {
            abort()
        }
    }

    /// Runs `query` here, blocking (on the pool's thread: inside `run`). A statement with
    /// parameters is prepared on first use and executed by name after.
    public func execute(_ query: PGQuery) throws(PGError) -> PGRows {
        guard !aborted else { throw PGError(code: "", message: "the connection was aborted") }
        let statement = naming(query)
        if let statement, statement.new {
            let prepared = query.types.withUnsafeBufferPointer { types in
                PQprepare(raw, statement.name, query.sql, Int32(types.count), types.baseAddress)
            }
            guard let prepared else { throw failure() }
            _ = try outcome(prepared).get()
            self.prepared[query.sql] = statement.name
        }
        let name = statement?.name
        let result = Self.withValues(query) { types, params in
            if let name { return PQexecPrepared(raw, name, Int32(params.count), params.baseAddress, nil, nil, 0) }
            return PQexecParams(raw, query.sql, Int32(params.count), types.baseAddress, params.baseAddress, nil, nil, 0)
        }
        guard let result else { throw failure() }
        return try outcome(result).get()
    }

    /// A statement's result as rows or its failure; the result is freed.
    func outcome(_ result: OpaquePointer) -> Result<PGRows, PGError> {
        defer { PQclear(result) }
        if PQresultStatus(result) == PGRES_FATAL_ERROR, Self.field(result, "C") == "26000" {
            // The server session lost a statement prepared on it: a pooler between us and the
            // server gave this connection another session (DISCARD ALL, or transaction
            // pooling). Closed: the next one prepares anew (`database_prepare = off` for
            // such a pooler).
            state.withLock { $0.broken = true }
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return .success(PGRows(rows: []))
        case PGRES_TUPLES_OK:
            let n = PQntuples(result), columns = PQnfields(result)
            var rows: [[String?]] = []
            rows.reserveCapacity(Int(n))
            for r in 0..<n {
                var row: [String?] = []
                row.reserveCapacity(Int(columns))
                for c in 0..<columns {
                    row.append(PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c)))
                }
                rows.append(row)
            }
            return .success(PGRows(rows: rows))
        default:
            return .failure(failure(code: Self.field(result, "C") ?? "", message: Self.field(result, "M")))
        }
    }

    /// The name `query`'s statement is prepared under on this session, and whether it is new
    /// (the caller prepares it: blocking in `execute`, through the reactor in `query`); nil
    /// for a statement without parameters, with preparing off, or past `preparedLimit` (it
    /// runs unnamed).
    private func naming(_ query: PGQuery) -> (name: String, new: Bool)? {
        guard !query.values.isEmpty, preparing else { return nil }
        if let name = prepared[query.sql] { return (name, false) }
        guard prepared.count < Self.preparedLimit else { return nil }
        return (prefix + String(prepared.count + 1), true)
    }

    /// libpq's view of the connection's transaction.
    public var transactionStatus: PGTransactionStatus {
        switch PQtransactionStatus(raw) {
        case PQTRANS_IDLE: return .idle
        case PQTRANS_ACTIVE: return .active
        case PQTRANS_INTRANS: return .inTransaction
        case PQTRANS_INERROR: return .failed
        default: return .unknown
        }
    }

    /// Whether the pool may lend this connection again: not broken, not aborted, and idle
    /// (no transaction open: a borrower's single statement would otherwise run inside
    /// someone else's, and be answered before it is committed).
    public var reusable: Bool { !broken && transactionStatus == .idle }

    /// Whether an idle connection is still usable, without waiting. A server that shut down
    /// or ended the session (a restart, a failover, idle_session_timeout) has written its
    /// last words (a FATAL message, TLS's close) or closed: the socket is readable. An idle
    /// session is otherwise silent (smartotpd listens for nothing), so a readable one is
    /// not used again: at worst one connection is opened anew. libpq cannot tell this
    /// without reading, which would consume those last words.
    func alive() -> Bool {
        let fd = PQsocket(raw)
        guard fd >= 0, PQstatus(raw) == CONNECTION_OK, reusable else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    /// The error to throw (the server's, else libpq's own words); notes a connection gone.
    func failure(code: String = "", message: String? = nil) -> PGError {
        if PQstatus(raw) != CONNECTION_OK { state.withLock { $0.broken = true } }
        return PGError(code: code, message: message ?? Self.text(PQerrorMessage(raw)))
    }

    static func field(_ result: OpaquePointer, _ name: Character) -> String? {
        PQresultErrorField(result, Int32(name.asciiValue ?? 0)).map { String(cString: $0) }
    }

    /// libpq's message, on one line.
    static func text(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "no message" }
        return String(cString: message).split(separator: "\n").map { $0.trimmingSpaces() }.joined(separator: " ")
    }
}

/// Connections to PostgreSQL: at most `maximum` open, kept open between uses, each lent to
/// one task at a time, and only while idle (`PGConnection.reusable`); any other is closed
/// when given back, and its slot opened anew for the next borrower. Connections open in
/// the background: a borrower that is cancelled while it waits stops waiting at once, and
/// the connection it would have got goes to the next one.
public final class PGPool: Sendable {
    let settings: [(String, String)]
    let setup: String?
    let prepare: Bool
    public let maximum: Int
    private let threads: NIOThreadPool
    /// Where statements wait for their answers (`PGConnection.query`).
    private let reactor = PGReactor()
    private let state = Mutex(State())

    struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<PGConnection, any Error>
    }

    struct State {
        var idle: [PGConnection] = []
        /// Connections open or opening (each holds a slot).
        var open = 0
        var waiting: [Waiter] = []
        var nextWaiter: UInt64 = 0
        var closed = false
    }

    /// Told when a new connection reaches another server than the last one did (libpq's
    /// failover: the primary gone, a standby promoted): the one before, the one now.
    let moved: (@Sendable (String, String) -> Void)?
    private let lastServer = Mutex<String?>(nil)

    /// `settings`: libpq's keywords and values (a `dbname` may be a whole connection
    /// string); `setup`: a statement run on every new connection (its timeouts).
    /// `prepare`: prepare statements once a connection (`database_prepare`).
    public init(settings: [(String, String)], setup: String?, maximum: Int, prepare: Bool = true, moved: (@Sendable (String, String) -> Void)? = nil) {
        self.settings = settings
        self.setup = setup
        self.prepare = prepare
        self.moved = moved
        self.maximum = max(1, maximum)
        threads = NIOThreadPool(numberOfThreads: self.maximum)
        threads.start()
    }

    /// Closes every connection (idle ones at once; lent ones when given back) and stops the
    /// threads once they are done.
    public func close() async {
        let waiters = state.withLock { s -> [Waiter] in
            s.closed = true
            s.idle = []
            defer { s.waiting = [] }
            return s.waiting
        }
        for w in waiters { w.continuation.resume(throwing: PGError(code: "", message: "the pool is closed")) }
        await reactor.stop()
        try? await threads.shutdownGracefully()
    }

    /// `body` with a connection of the pool; the connection goes back (or is closed) after.
    public func withConnection<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        let conn = try await borrow()
        defer { giveBack(conn) }
        return try await body(conn)
    }

    /// BEGIN, `body`, COMMIT on one connection; ROLLBACK when `body` throws. `body`'s value
    /// is returned only once COMMIT has returned. Cancelled, the connection is aborted
    /// (no COMMIT or ROLLBACK is sent after that) and closed; the server rolls back.
    public func withTransaction<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        try await withConnection { conn in
            try await conn.query("BEGIN")
            do {
                let value = try await body(conn)
                try await conn.query("COMMIT")
                return value
            } catch {
                if !conn.broken && !Task.isCancelled { _ = try? await conn.query("ROLLBACK") }
                throw error
            }
        }
    }

    /// One statement on a connection of the pool.
    @discardableResult
    public func query(_ query: PGQuery) async throws -> PGRows {
        try await withConnection { try await $0.query(query) }
    }

    /// An idle, live connection; else one opened for this borrower (in a free slot) or
    /// given back meanwhile, whichever comes first. Cancelled, it stops waiting at once.
    func borrow() async throws -> PGConnection {
        try Task.checkCancellation()
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<PGConnection, any Error>) in
                var dead: [PGConnection] = []
                var opens = false
                let ready = state.withLock { s -> PGConnection? in
                    while let c = s.idle.popLast() {
                        if c.alive() { return c }
                        // Gone while idle (the server restarted, a failover): its slot is free.
                        dead.append(c)
                        s.open -= 1
                    }
                    if s.closed { return nil }
                    s.waiting.append(Waiter(id: id, continuation: k))
                    if s.open < maximum {
                        s.open += 1
                        opens = true
                    }
                    return nil
                }
                dead = []
                if let ready { k.resume(returning: ready) } else if state.withLock({ $0.closed }) {
                    k.resume(throwing: PGError(code: "", message: "the pool is closed"))
                }
                if opens { openInBackground() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                guard let i = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiting.remove(at: i)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Opens a connection in a slot already counted, on a pool thread: it goes to the first
    /// waiter, or becomes idle. When it cannot be opened the slot is given up and everyone
    /// waiting is told why (the database cannot be reached now: each answers 503).
    private func openInBackground() {
        threads.submit { [self] work in
            guard case .active = work else { return releaseSlot(failure: PGError(code: "", message: "the pool is closed")) }
            do throws(PGError) {
                let conn = try PGConnection.open(settings, setup: setup, threads: threads, reactor: reactor, prepare: prepare)
                let before = lastServer.withLock { last -> String? in
                    defer { last = conn.server }
                    return last
                }
                if let before, before != conn.server { moved?(before, conn.server) }
                hand(conn)
            } catch {
                releaseSlot(failure: error)
            }
        }
    }

    /// A connection back from its borrower: lent again, kept, or (when it is not idle, or
    /// broken) closed and its slot freed.
    func giveBack(_ conn: PGConnection) {
        if conn.reusable { hand(conn) } else { releaseSlot() }
    }

    /// Gives `conn` to the first waiter, or keeps it idle.
    private func hand(_ conn: PGConnection) {
        let waiter = state.withLock { s -> Waiter? in
            if s.closed { s.open -= 1; return nil }
            if !s.waiting.isEmpty { return s.waiting.removeFirst() }
            s.idle.append(conn)
            return nil
        }
        waiter?.continuation.resume(returning: conn)
    }

    /// A slot freed (its connection closed, or never opened): a waiter gets a new one opened
    /// in it; after a failure to open, every waiter is told why.
    private func releaseSlot(failure: PGError? = nil) {
        let (reopen, failed) = state.withLock { s -> (Bool, [Waiter]) in
            s.open -= 1
            guard !s.waiting.isEmpty, !s.closed else { return (false, []) }
            if failure != nil {
                defer { s.waiting = [] }
                return (false, s.waiting)
            }
            s.open += 1
            return (true, [])
        }
        if let failure { for w in failed { w.continuation.resume(throwing: failure) } }
        if reopen { openInBackground() }
    }

    /// How many connections are open or opening, and idle (tests, metrics).
    public var counts: (open: Int, idle: Int) { state.withLock { ($0.open, $0.idle.count) } }
}
