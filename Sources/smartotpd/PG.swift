import CLibPQ
import Glibc
import NIOConcurrencyHelpers
import NIOPosix
import OTPCore
import SmartOTPFleet

// smartotpd's PostgreSQL client: libpq, PostgreSQL's own, under a small pool. libpq brings
// what a verifier needs from a client — TLS with libpq's sslmode, SCRAM, connect and TCP
// timeouts — without Foundation (and its ICU data), which a Swift client linked here
// carried: smartotpd's package went from 78 MB to the size of its own code and TLS.
//
// libpq's calls block, so each runs on a thread of the pool's own (one per connection and
// one for the failover probe): Swift's cooperative threads (two on two cores) never wait
// for PostgreSQL.

/// What PostgreSQL (or libpq, for a connection) refused: its SQLSTATE and its message. The
/// message is the server's primary one: never the query or its values (a record holds
/// secrets).
struct PGError: Error, CustomStringConvertible, Sendable {
    /// The SQLSTATE; empty for libpq's own errors (the connection, no result).
    let code: String
    let message: String
    var description: String { code.isEmpty ? "PostgreSQL connection: \(message)" : "PostgreSQL \(code): \(message)" }
}

/// A statement and its parameters: every interpolated value is a parameter ($1, $2, …, sent
/// apart from the SQL, typed text or bigint), never text spliced into the statement.
struct PGQuery: ExpressibleByStringInterpolation, Sendable {
    var sql: String
    var values: [String?] = []
    var types: [Oid] = []

    /// A statement with no parameters, taken as it is (the migrations' DDL).
    init(unsafeSQL: String) { sql = unsafeSQL }
    init(stringLiteral value: String) { sql = value }
    init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        values = stringInterpolation.values
        types = stringInterpolation.types
    }

    struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var values: [String?] = []
        var types: [Oid] = []
        static let text: Oid = 25
        static let bigint: Oid = 20
        init(literalCapacity: Int, interpolationCount: Int) { sql.reserveCapacity(literalCapacity + 4 * interpolationCount) }
        mutating func appendLiteral(_ literal: String) { sql += literal }
        mutating func appendInterpolation(_ value: String) { bind(value, Self.text) }
        mutating func appendInterpolation(_ value: String?) { bind(value, Self.text) }
        mutating func appendInterpolation(_ value: Int) { bind(String(value), Self.bigint) }
        mutating func appendInterpolation(_ value: Int64) { bind(String(value), Self.bigint) }
        private mutating func bind(_ value: String?, _ type: Oid) {
            values.append(value)
            types.append(type)
            sql += "$\(values.count)"
        }
    }
}

/// A value in a result column (text format): what `PGRows.decode` makes of one.
protocol PGDecodable: Sendable {
    static func decode(_ text: String?) throws(PGError) -> Self
}

extension PGDecodable {
    static func unexpected(_ text: String?) -> PGError {
        PGError(code: "", message: "a column held \(text == nil ? "NULL" : "'\(text!.prefix(24))'"), not a \(Self.self)")
    }
}

extension String: PGDecodable {
    static func decode(_ text: String?) throws(PGError) -> String {
        guard let text else { throw unexpected(text) }
        return text
    }
}

extension PGDecodable where Self: FixedWidthInteger {
    static func decode(_ text: String?) throws(PGError) -> Self {
        guard let text, let v = Self(text) else { throw unexpected(text) }
        return v
    }
}

extension Int64: PGDecodable {}
extension Int: PGDecodable {}

extension Bool: PGDecodable {
    static func decode(_ text: String?) throws(PGError) -> Bool {
        switch text {
        case "t": return true
        case "f": return false
        default: throw unexpected(text)
        }
    }
}

extension Optional: PGDecodable where Wrapped: PGDecodable {
    static func decode(_ text: String?) throws(PGError) -> Wrapped? {
        guard let text else { return nil }
        return try Wrapped.decode(text)
    }
}

/// A statement's result rows, each column as PostgreSQL wrote it (text; nil for NULL).
struct PGRows: Sendable {
    let rows: [[String?]]

    /// Every row as a tuple of the given column types, in column order.
    func decode<each Column: PGDecodable>(_: (repeat each Column).Type) throws(PGError) -> [(repeat each Column)] {
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

/// One libpq connection. Used by one task at a time (the pool's borrower).
final class PGConnection: @unchecked Sendable {
    private let raw: OpaquePointer
    private let threads: NIOThreadPool
    /// Set once libpq says the connection is gone: the pool closes it instead of keeping it.
    private(set) var broken = false

    private init(_ raw: OpaquePointer, threads: NIOThreadPool) {
        self.raw = raw
        self.threads = threads
    }

    deinit { PQfinish(raw) }

    /// Connects (blocking: on the pool's thread).
    static func open(_ settings: [(String, String)], threads: NIOThreadPool) throws(PGError) -> PGConnection {
        let keys = settings.map { strdup($0.0) }
        let values = settings.map { strdup($0.1) }
        defer { keys.forEach { free($0) }; values.forEach { free($0) } }
        var k: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        var v: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        guard let raw = PQconnectdbParams(&k, &v, 0) else { throw PGError(code: "", message: "out of memory") }
        guard PQstatus(raw) == CONNECTION_OK else {
            let why = Self.text(PQerrorMessage(raw))
            PQfinish(raw)
            throw PGError(code: "", message: why)
        }
        return PGConnection(raw, threads: threads)
    }

    /// Runs `query` on the pool's thread; its rows.
    @discardableResult
    func query(_ query: PGQuery) async throws -> PGRows {
        try await threads.runIfActive { [self] () throws(PGError) -> PGRows in try execute(query) }
    }

    /// Runs `query` here, blocking.
    func execute(_ query: PGQuery) throws(PGError) -> PGRows {
        let values = query.values.map { $0.map { strdup($0) } ?? nil }
        defer { values.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } }
        let result = query.types.withUnsafeBufferPointer { types in
            pointers.withUnsafeMutableBufferPointer { params in
                PQexecParams(raw, query.sql, Int32(params.count), types.baseAddress, params.baseAddress, nil, nil, 0)
            }
        }
        guard let result else { throw failure() }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            return PGRows(rows: [])
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
            return PGRows(rows: rows)
        default:
            let code = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
            throw failure(code: code, message: PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) })
        }
    }

    /// Whether an idle connection is still usable, without waiting. A server that shut down
    /// or ended the session (a restart, a failover, idle_session_timeout) has written its
    /// last words (a FATAL message, TLS's close) or closed: the socket is readable. An idle
    /// session is otherwise silent (smartotpd listens for nothing), so a readable one is
    /// not used again: at worst one connection is opened anew.
    func alive() -> Bool {
        let socket = PQsocket(raw)
        guard socket >= 0, PQstatus(raw) == CONNECTION_OK else { return false }
        var p = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    /// The error to throw (the server's, else libpq's own words); notes a connection gone.
    private func failure(code: String = "", message: String? = nil) -> PGError {
        if PQstatus(raw) != CONNECTION_OK { broken = true }
        return PGError(code: code, message: message ?? Self.text(PQerrorMessage(raw)))
    }

    /// libpq's message, on one line.
    static func text(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "no message" }
        return String(cString: message).split(separator: "\n").map { $0.trimmingSpaces() }.joined(separator: " ")
    }
}

/// Connections to one PostgreSQL server: at most `maximum` open, kept open between uses,
/// each borrowed by one task at a time; a broken one is closed and the next borrower opens
/// a new one.
final class PGPool: Sendable {
    let settings: [(String, String)]
    let maximum: Int
    private let threads: NIOThreadPool
    private let state = NIOLockedValueBox(State())

    private struct State {
        var idle: [PGConnection] = []
        var open = 0
        /// Borrowers waiting for a connection: each is handed one, or nil (open your own).
        var waiting: [CheckedContinuation<PGConnection?, Never>] = []
        var closed = false
    }

    /// `settings`: libpq's connection keywords and values.
    init(settings: [(String, String)], maximum: Int) {
        self.settings = settings
        self.maximum = max(1, maximum)
        // One thread a connection: every blocking call (a connect, a statement) holds one
        // of the `maximum` slots, the failover probe's too.
        threads = NIOThreadPool(numberOfThreads: self.maximum)
        threads.start()
    }

    /// Serves until cancelled, then closes every connection.
    func run() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(3600)) } catch { break }
        }
        // The idle connections close as they are let go (PGConnection's deinit).
        state.withLockedValue { s in
            s.closed = true
            s.idle = []
        }
        try? await threads.shutdownGracefully()
    }

    func withConnection<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        let conn = try await borrow()
        defer { give(back: conn) }
        return try await body(conn)
    }

    /// BEGIN, `body`, COMMIT on one connection; ROLLBACK when `body` throws.
    func withTransaction<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        try await withConnection { conn in
            _ = try await conn.query("BEGIN")
            do {
                let value = try await body(conn)
                _ = try await conn.query("COMMIT")
                return value
            } catch {
                if !conn.broken { _ = try? await conn.query("ROLLBACK") }
                throw error
            }
        }
    }

    /// One statement on a connection of the pool.
    @discardableResult
    func query(_ query: PGQuery) async throws -> PGRows {
        try await withConnection { try await $0.query(query) }
    }

    private func borrow() async throws -> PGConnection {
        // An idle connection, or nil: a free slot to open one in; no answer: all are busy.
        func take(_ s: inout State) -> PGConnection?? {
            if let c = s.idle.popLast() { return .some(c) }
            if s.open < maximum { s.open += 1; return .some(nil) }
            return .none
        }
        var next = state.withLockedValue { take(&$0) }
        if next == nil {
            next = await withCheckedContinuation { k in
                // Given back meanwhile: taken at once, else handed over by `release`.
                let now = state.withLockedValue { s -> PGConnection?? in
                    let got = take(&s)
                    if got == nil { s.waiting.append(k) }
                    return got
                }
                if let now { k.resume(returning: now) }
            }
        }
        guard let handed = next ?? nil else { return try await connect() }
        if handed.alive() { return handed }
        release(slot: nil)  // gone while idle: its slot is opened anew
        return try await borrow()
    }

    /// Opens a connection in a slot already counted; gives the slot up when that fails.
    private func connect() async throws -> PGConnection {
        do {
            return try await threads.runIfActive { [settings, threads] () throws(PGError) -> PGConnection in
                try PGConnection.open(settings, threads: threads)
            }
        } catch {
            release(slot: nil)
            throw error
        }
    }

    private func give(back conn: PGConnection) {
        release(slot: conn.broken ? nil : conn)
    }

    /// Hands `conn` (or, nil, the slot of a connection that is gone) to the next waiting
    /// borrower, or keeps it.
    private func release(slot conn: PGConnection?) {
        let waiter: CheckedContinuation<PGConnection?, Never>? = state.withLockedValue { s in
            if !s.waiting.isEmpty { return s.waiting.removeFirst() }
            if let conn, !s.closed { s.idle.append(conn) } else { s.open -= 1 }
            return nil
        }
        waiter?.resume(returning: conn)
    }
}

extension PGPool {
    /// A pool for one server of `url`: libpq's settings from the URL (TLS as its sslmode
    /// says), the timeouts of a verdict's budget.
    convenience init(_ url: DatabaseURL, _ endpoint: DatabaseURL.Endpoint, connections: Int) {
        var s: [(String, String)] = []
        switch endpoint {
        case .tcp(let host, let port):
            s += [("host", host), ("port", String(port))]
        case .socket(let path):
            // libpq names a socket by its directory and the port in its file name.
            let slash = path.lastIndex(of: "/") ?? path.startIndex
            let file = path[path.index(after: slash)...]
            s += [("host", String(path[..<slash])), ("port", String(file.split(separator: ".").last ?? "5432"))]
        }
        s += [("user", url.user), ("dbname", url.database), ("application_name", "smartotpd")]
        if let password = url.password { s.append(("password", password)) }
        if case .tcp = endpoint {
            s.append(("sslmode", url.sslMode.rawValue))
            if let root = url.sslRootCert {
                s.append(("sslrootcert", root))
            } else if url.sslMode == .verifyCA || url.sslMode == .verifyFull {
                // Without a CA of its own, the chain is checked against the system's roots
                // (libpq would look in ~/.postgresql/root.crt, which a service has not).
                s.append(("sslrootcert", "/etc/ssl/certs/ca-certificates.crt"))
            }
            // A server that stops answering (a cable, a partition) fails the statement within
            // about two seconds instead of TCP's minutes: the host has asked another replica.
            s += [("tcp_user_timeout", "2000"), ("keepalives_idle", "5"), ("keepalives_interval", "1"), ("keepalives_count", "3")]
        }
        // Within a verdict's 2 s budget, set once a connection rather than per transaction
        // (no round trip): a statement, or a wait for a row's lock, that runs past these
        // fails and rolls its transaction back, so no verdict commits after the host was
        // told 503. libpq's connect_timeout counts whole seconds (2 at least).
        s += [("connect_timeout", "3"),
              ("options", "-c statement_timeout=1500 -c lock_timeout=1000 -c idle_in_transaction_session_timeout=5000")]
        self.init(settings: s, maximum: connections)
    }
}
