import Logging
import NIOCore
import NIOPosix
import NIOSSL
import OTPCore
import PostgresNIO
import SmartOTPFleet
import TokenStore
import Verifier

/// The records in PostgreSQL: one row a user, the record in the file store's own text
/// format, and a version that every change increments (the admin interface's ETag).
struct Database: VerdictStore {
    let client: PostgresClient
    let logger: Logger

    /// Versioned schema changes, applied in order by `smartotpd migrate`, each in the one
    /// transaction that records it. Never edit one that has shipped: add the next.
    static let migrations: [(version: Int, name: String, sql: [String])] = [
        (1, "records and tap challenges", [
            """
            CREATE TABLE smartotp_records (
                username   text PRIMARY KEY,
                record     text NOT NULL,
                version    bigint NOT NULL DEFAULT 1,
                updated_at timestamptz NOT NULL DEFAULT now(),
                updated_by text NOT NULL DEFAULT ''
            )
            """,
            // A tap challenge is bound to the host it was issued to: single use, short-lived.
            """
            CREATE TABLE smartotp_challenges (
                username  text NOT NULL,
                challenge text NOT NULL,
                host      text NOT NULL,
                expires   bigint NOT NULL,
                PRIMARY KEY (username, challenge)
            )
            """,
        ]),
        // A tap challenge has one owner: the record, which names the host it was issued to
        // (UserRecord.challenges). Challenges pending at the upgrade (60 s at most) are
        // dropped with the table: their taps are refused and asked again.
        (2, "tap challenges live in the record", [
            "DROP TABLE smartotp_challenges",
        ]),
    ]
    static var latest: Int { migrations.map(\.version).max() ?? 0 }

    static func configuration(_ url: DatabaseURL, connections: Int) throws -> PostgresClient.Configuration {
        var c: PostgresClient.Configuration
        switch url.endpoint {
        case .tcp(let host, let port):
            c = .init(host: host, port: port, username: url.user, password: url.password, database: url.database,
                      tls: try tls(url))
        case .socket(let path):
            c = .init(unixSocketPath: path, username: url.user, password: url.password, database: url.database)
        }
        c.options.maximumConnections = connections
        c.options.minimumConnections = 1
        c.options.connectTimeout = .seconds(3)
        return c
    }

    /// TLS to PostgreSQL as libpq's `sslmode` means it. PostgresNIO has no "plain TCP first"
    /// order: `allow` tries TLS first and plain TCP after, so the same servers are reached.
    static func tls(_ url: DatabaseURL) throws -> PostgresClient.Configuration.TLS {
        var t = TLSConfiguration.makeClientConfiguration()
        if let root = url.sslRootCert { t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(root)) }
        switch url.sslMode {
        case .disable: return .disable
        case .allow, .prefer:
            t.certificateVerification = .none
            return .prefer(t)
        case .require:
            t.certificateVerification = url.sslRootCert == nil ? .none : .noHostnameVerification
            return .require(t)
        case .verifyCA:
            t.certificateVerification = .noHostnameVerification
            return .require(t)
        case .verifyFull:
            t.certificateVerification = .fullVerification
            return .require(t)
        }
    }

    /// Applies the migrations not yet applied; returns their versions.
    func migrate() async throws -> [Int] {
        try await client.withTransaction(logger: logger) { conn in
            // One migrator at a time, however many replicas start together.
            try await conn.query("SELECT pg_advisory_xact_lock(7311001)", logger: logger)
            try await conn.query("CREATE TABLE IF NOT EXISTS smartotp_schema (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())", logger: logger)
            var applied: Set<Int> = []
            for try await v in try await conn.query("SELECT version FROM smartotp_schema", logger: logger).decode(Int.self) { applied.insert(v) }
            var done: [Int] = []
            for m in Self.migrations where !applied.contains(m.version) {
                for statement in m.sql { try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                try await conn.query("INSERT INTO smartotp_schema (version, name) VALUES (\(m.version), \(m.name))", logger: logger)
                done.append(m.version)
            }
            return done
        }
    }

    /// The schema version in the database (0: none).
    func schemaVersion() async throws -> Int {
        let exists = try await client.query("SELECT to_regclass('smartotp_schema') IS NOT NULL", logger: logger)
        var present = false
        for try await p in exists.decode(Bool.self) { present = p }
        guard present else { return 0 }
        var v = 0
        for try await n in try await client.query("SELECT coalesce(max(version), 0) FROM smartotp_schema", logger: logger).decode(Int.self) { v = n }
        return v
    }

    func check() async throws {
        try await client.query("SELECT 1", logger: logger)
    }

    /// A read-only request (summary, access answers): no lock, no write.
    func readOnly(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision {
        var record: UserRecord?
        for try await text in try await client.query("SELECT record FROM smartotp_records WHERE username = \(user.value)", logger: logger).decode(String.self) {
            record = try RecordFormat.parse(text, path: "database:" + user.value)
        }
        return try FleetVerifier.decide(request, user: user, record: record, policy: policy, host: host, now: now)
    }

    /// A request that changes the record (challenge, code, password, tap): one
    /// transaction on the user's row. The verdict exists only if COMMIT succeeds.
    func locked(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision {
        try await client.withTransaction(logger: logger) { conn in
            var record: UserRecord?
            for try await text in try await conn.query("SELECT record FROM smartotp_records WHERE username = \(user.value) FOR UPDATE", logger: logger).decode(String.self) {
                record = try RecordFormat.parse(text, path: "database:" + user.value)
            }
            // The record holds the pending challenges with the host each was issued to: the
            // verifier issues and takes them for `host` in this same transaction.
            let decision = try FleetVerifier.decide(request, user: user, record: record, policy: policy, host: host, now: now)
            if decision.changed {
                if let next = decision.record {
                    try await conn.query("""
                        UPDATE smartotp_records SET record = \(RecordFormat.text(next)), version = version + 1, updated_at = now(), updated_by = \(host)
                        WHERE username = \(user.value)
                        """, logger: logger)
                } else {
                    try await conn.query("DELETE FROM smartotp_records WHERE username = \(user.value)", logger: logger)
                }
            }
            return decision
        }
    }

    // MARK: administration

    func users() async throws -> [String] {
        var out: [String] = []
        for try await name in try await client.query("SELECT username FROM smartotp_records ORDER BY username", logger: logger).decode(String.self) {
            out.append(name)
        }
        return out
    }

    func record(_ user: UserName) async throws -> (text: String, version: Int64)? {
        for try await (text, version) in try await client.query(
            "SELECT record, version FROM smartotp_records WHERE username = \(user.value)", logger: logger).decode((String, Int64).self) {
            return (text, version)
        }
        return nil
    }

    enum Condition { case version(Int64), absent }

    /// Writes a record if the condition holds; the new version, or nil (412).
    func put(_ user: UserName, text: String, when condition: Condition, by admin: String) async throws -> Int64? {
        switch condition {
        case .absent:
            for try await v in try await client.query("""
                INSERT INTO smartotp_records (username, record, updated_by) VALUES (\(user.value), \(text), \(admin))
                ON CONFLICT (username) DO NOTHING RETURNING version
                """, logger: logger).decode(Int64.self) { return v }
        case .version(let expected):
            for try await v in try await client.query("""
                UPDATE smartotp_records SET record = \(text), version = version + 1, updated_at = now(), updated_by = \(admin)
                WHERE username = \(user.value) AND version = \(expected) RETURNING version
                """, logger: logger).decode(Int64.self) { return v }
        }
        return nil
    }

    func delete(_ user: UserName, version: Int64) async throws -> Bool {
        for try await _ in try await client.query(
            "DELETE FROM smartotp_records WHERE username = \(user.value) AND version = \(version) RETURNING 1", logger: logger).decode(Int.self) {
            return true
        }
        return false
    }
}

/// An error as the log may show it. PostgreSQL errors by their code and the server's
/// message only: their debug text carries the query and its bound values, and a record
/// holds secrets.
func loggable(_ error: any Error) -> String {
    if let e = error as? PSQLError {
        return "PostgreSQL \(e.code): \(e.serverInfo?[.message] ?? "no message from the server")"
    }
    return "\(error)"
}
