import Foundation
import Logging
import OTPCore
@testable import SmartOTPPostgres
import SmartOTPService
@testable import SmartOTPVault
import Testing
import TokenStore
import Verifier

/// What only the PostgreSQL adapter can get wrong: a statement cancelled mid-flight, a
/// connection lost, a connection given back inside a transaction, a stall of the whole
/// database under a commit. On a cluster of the tests' own (TestCluster).
@Suite("PostgreSQL: the pool and the ledger", .serialized, .enabled(if: TestCluster.available, Comment(rawValue: TestCluster.missing)))
struct PostgresTests {
    func pool(_ connections: Int = 2) throws -> PGPool {
        try PostgresLedger.pool(try requireCluster().conninfo, connections: connections)
    }

    func backend(_ conn: PGConnection) async throws -> Int64 {
        try await conn.query("SELECT pg_backend_pid()::bigint").decode(Int64.self).first ?? -1
    }

    /// A connection given back with a transaction open is never lent again: the next
    /// borrower gets another session, idle, and the abandoned one is gone.
    @Test func aConnectionInATransactionIsNotLentAgain() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let first = try await pool.withConnection { conn in
            try await conn.query("BEGIN")
            #expect(conn.transactionStatus == .inTransaction && !conn.reusable)
            return try await backend(conn)
        }
        let second = try await pool.withConnection { conn in
            #expect(conn.transactionStatus == .idle)
            return try await backend(conn)
        }
        #expect(first != second, "a new session")
        try await Task.sleep(for: .milliseconds(200))
        let left = try requireCluster().psql("SELECT count(*) FROM pg_stat_activity WHERE pid = \(first)")
        #expect(left == "0", "the abandoned session ended (and rolled back)")
        let reused = try await pool.withConnection { try await backend($0) }
        #expect(reused == second, "an idle one is kept and lent again")
    }

    /// A statement cancelled mid-flight (a deadline) ends at once; the connection is closed,
    /// not lent again; the pool opens another for the next borrower.
    @Test func aCancelledStatementEndsAtOnceAndItsConnectionIsClosed() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let started = ContinuousClock.now
        let pid = Box<Int64>(-1)
        let task = Task {
            try await pool.withConnection { conn in
                pid.value = try await backend(conn)
                try await conn.query("SELECT pg_sleep(10)")
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        #expect(throws: (any Error).self) { try result.get() }
        #expect(ContinuousClock.now - started < .seconds(3), "not the statement's 10 s")
        let after = try await pool.withConnection { try await backend($0) }
        #expect(after != pid.value && after > 0)
        #expect(pool.counts.open == 1)
    }

    /// A borrower cancelled while every connection is lent stops waiting at once.
    @Test func aWaitingBorrowerIsCancelledAtOnce() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let holder = Task { try await pool.withConnection { try await $0.query("SELECT pg_sleep(1.2)") } }
        try await Task.sleep(for: .milliseconds(200))
        let started = ContinuousClock.now
        let waiter = Task { try await pool.withConnection { try await backend($0) } }
        try await Task.sleep(for: .milliseconds(100))
        waiter.cancel()
        let r = await waiter.result
        #expect(throws: CancellationError.self) { try r.get() }
        #expect(ContinuousClock.now - started < .seconds(1))
        _ = try await holder.value
        #expect(try await pool.withConnection { try await backend($0) } > 0)
    }

    /// A connection the server ended (a restart, an administrator's pg_terminate_backend):
    /// found before use, or failing the statement it was given; either way replaced.
    @Test func aLostConnectionIsReplaced() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let pid = try await pool.withConnection { try await backend($0) }
        try requireCluster().psql("SELECT pg_terminate_backend(\(pid))")
        try await Task.sleep(for: .milliseconds(200))
        let next = try await pool.withConnection { try await backend($0) }
        #expect(next != pid && next > 0)
    }

    @Test func errorsAndValues() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        do {
            try await pool.query("SELECT * FROM no_such_table")
            Issue.record("no error")
        } catch let e as PGError {
            #expect(e.code == "42P01" && e.description.contains("no_such_table"))
        }
        let name = "o'neil \"quoted\" \\ back"
        let rows = try await pool.query("SELECT \(name)::text, \(Int64(42)), \(["a b", "c\"d", "e\\f", ""])::text[], NULL::text")
        let (text, n, array, null) = try #require(try rows.decode((String, Int64, [String], String?).self).first)
        #expect(text == name && n == 42 && array == ["a b", "c\"d", "e\\f", ""] && null == nil)
        #expect(throws: PGError.self) { try rows.decode((Int64, Int64).self) }
        #expect(throws: PGError.self) { try PGRows(rows: [[nil]]).decode(String.self) }
        #expect(throws: PGError.self) { try PGRows(rows: [["x"]]).decode(Bool.self) }
        for bad in ["", "{", "{\"a}", "{a,}", "{NULL}", "{\"a\"x}"] { #expect(throws: PGError.self, "\(bad)") { try PGArray.parse(bad) } }
        #expect(try PGArray.parse("{}") == [] && PGArray.literal([]) == "{}")
    }

    /// Statements await their answers on the pool's one reactor thread, not a thread each:
    /// many in flight at once each get their own answer, and they overlap (eight 0.3 s
    /// sleeps on eight connections end together, not one after another).
    @Test func manyStatementsInFlightEachGetTheirOwnAnswer() async throws {
        let pool = try pool(8)
        defer { Task { await pool.close() } }
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    let n = try await pool.withConnection { conn in
                        try await conn.query("SELECT \(Int64(i))::bigint FROM pg_sleep(0.3)").decode(Int64.self).first
                    }
                    #expect(n == Int64(i))
                }
            }
            try await group.waitForAll()
        }
        #expect(ContinuousClock.now - started < .milliseconds(2000), "the sleeps overlapped")
        let answers = try await withThrowingTaskGroup(of: (Int64, Int64?).self) { group in
            for i in 0..<400 {
                group.addTask { (Int64(i), try await pool.query("SELECT \(Int64(i)) * 2").decode(Int64.self).first) }
            }
            var out: [(Int64, Int64?)] = []
            for try await a in group { out.append(a) }
            return out
        }
        #expect(answers.count == 400 && answers.allSatisfy { $0.1 == $0.0 * 2 })
    }

    /// A statement larger than the socket's buffer (libpq sends it as the socket drains, on
    /// the reactor) and an answer that comes in many reads arrive whole.
    @Test func aLargeStatementAndALargeAnswerArriveWhole() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let big = String(repeating: "0123456789abcdef", count: 1 << 18)  // 4 MiB
        let length = try await pool.query("SELECT length(\(big))::bigint").decode(Int64.self).first
        #expect(length == Int64(big.utf8.count))
        let rows = try await pool.query("SELECT repeat('x', 1000) FROM generate_series(1, 20000)").decode(String.self)
        #expect(rows.count == 20000 && rows.allSatisfy { $0.utf8.count == 1000 })
        // The connection is idle again, and lent again.
        #expect(try await pool.withConnection { try await backend($0) } > 0 && pool.counts.open == 1)
    }

    /// Over TLS the reactor's reads go through OpenSSL: large answers (rows from 100 bytes to
    /// 40 KB, several records each) and 200 answers at once arrive whole. A record libpq
    /// reads in part (the rest left inside OpenSSL, where epoll cannot see it, and read
    /// because `SSL_pending` says so) needs a server that sends records larger than libpq's
    /// free buffer; PostgreSQL 15 sends at most 8 KiB at a time, which libpq always reads
    /// whole, so this cluster cannot make that case.
    @Test(.enabled(if: TestCluster.shared?.tls == true, "the test cluster has no TLS listener (openssl missing?)"))
    func answersOverTLSArriveWhole() async throws {
        let cluster = try requireCluster()
        let pool = try PostgresLedger.pool(cluster.tlsConninfo, connections: 2)
        defer { Task { await pool.close() } }
        let ssl = try await pool.query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").decode(String.self)
        #expect(ssl == ["true"], "the session is over TLS")
        #expect(PGReactor.sslPending != nil, "OpenSSL's SSL_pending, from the libssl libpq loaded")
        let big = String(repeating: "0123456789abcdef", count: 1 << 16)  // 1 MiB
        #expect(try await pool.query("SELECT length(\(big))::bigint").decode(Int64.self).first == Int64(big.utf8.count))
        for width in [100, 8_000, 16_400, 40_000] {
            let rows = try await pool.query("SELECT repeat('x', \(width)::int) FROM generate_series(1, 300)").decode(String.self)
            #expect(rows.count == 300 && rows.allSatisfy { $0.utf8.count == width }, "rows of \(width) bytes")
        }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<200 { group.addTask { try await pool.query("SELECT repeat('y', \(i * 97)::int)").decode(String.self).first?.utf8.count ?? -1 } }
            var seen = 0
            for try await n in group { #expect(n >= 0 && n % 97 == 0); seen += 1 }
            #expect(seen == 200)
        }
    }

    /// An answer no statement of ours asks for (COPY: libpq would hand out its result for
    /// ever) fails that statement at once; the connection is closed, the pool goes on.
    @Test func aCopyAnswerFailsTheStatementAndNothingHangs() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        var sessions: [Int64] = []
        for copy in ["COPY (SELECT 1) TO STDOUT", "COPY t FROM STDIN"] {
            sessions.append(try await pool.withConnection { conn in
                try await conn.query("CREATE TEMP TABLE t (x int)")
                let pid = try await backend(conn)
                let started = ContinuousClock.now
                await #expect(throws: PGError.self, "\(copy)") { try await conn.query(PGQuery(unsafeSQL: copy)) }
                #expect(ContinuousClock.now - started < .seconds(3) && conn.broken)
                return pid
            })
        }
        let after = try await pool.withConnection { try await backend($0) }
        #expect(after > 0 && !sessions.contains(after) && Set(sessions).count == 2, "each connection that saw COPY was closed")
    }

    /// A pool closed with a statement in flight: the statement fails at once, nothing hangs.
    @Test func aPoolClosedUnderAStatementFailsIt() async throws {
        let pool = try pool(1)
        let task = Task { try await pool.query("SELECT pg_sleep(10)") }
        try await Task.sleep(for: .milliseconds(300))
        let started = ContinuousClock.now
        await pool.close()
        let result = await task.result
        #expect(throws: PGError.self) { try result.get() }
        #expect(ContinuousClock.now - started < .seconds(3), "not the statement's 10 s")
    }

    /// A statement with parameters is prepared once a connection, under a name of its own
    /// (a random prefix); a session that lost it (a pooler's DISCARD ALL) fails that one
    /// statement and is closed, and the next borrower prepares anew. `database_prepare = off`
    /// prepares nothing.
    @Test func statementsArePreparedOnceAConnection() async throws {
        let pool = try pool(1)
        defer { Task { await pool.close() } }
        let names = try await pool.withConnection { conn -> [String] in
            for i in 0..<3 {
                let sum = try await conn.query("SELECT \(Int64(i)) + 1").decode(Int64.self).first
                #expect(sum == Int64(i) + 1)
            }
            return try await conn.query("SELECT name FROM pg_prepared_statements").decode(String.self)
        }
        #expect(names.count == 1 && names[0].hasPrefix("smartotp_") && names[0].count > 20, "\(names)")
        let first = try await pool.withConnection { conn in
            try await conn.query("DEALLOCATE ALL")
            do {
                _ = try await conn.query("SELECT \(Int64(5)) + 1")
                Issue.record("a statement the session lost ran")
            } catch let e as PGError {
                #expect(e.code == "26000")
            }
            return try await backend(conn)
        }
        let again = try await pool.withConnection { conn in
            let sum = try await conn.query("SELECT \(Int64(5)) + 1").decode(Int64.self).first
            #expect(sum == 6)
            return try await backend(conn)
        }
        #expect(first != again, "the session that lost its statements was closed")
        let unprepared = try PostgresLedger.pool(try requireCluster().conninfo, connections: 1, prepare: false)
        defer { Task { await unprepared.close() } }
        let none = try await unprepared.withConnection { conn in
            _ = try await conn.query("SELECT \(Int64(1)) + 1")
            return try await conn.query("SELECT count(*)::bigint FROM pg_prepared_statements").decode(Int64.self).first
        }
        #expect(none == 0)
    }

    @Test func theConnectionStringAsWrittenWithDefaultsBeforeIt() throws {
        let none: (String) -> String? = { _ in nil }
        let s = try ConnectionString.settings("postgresql://u@a,b/db?target_session_attrs=any&connect_timeout=7", environment: none)
        #expect(s.last?.0 == "dbname" && s.last?.1 == "postgresql://u@a,b/db?target_session_attrs=any&connect_timeout=7")
        let keys = s.map(\.0)
        #expect(!keys.contains("target_session_attrs") && !keys.contains("connect_timeout"), "the string's own win")
        #expect(keys.contains("tcp_user_timeout") && keys.contains("application_name"))
        #expect(!keys.contains("sslrootcert"))
        let verified = try ConnectionString.settings("host=db sslmode=verify-full", environment: none)
        #expect(verified.contains { $0 == ("sslrootcert", "/etc/ssl/certs/ca-certificates.crt") }, "the system's roots")
        let withRoot = try ConnectionString.settings("host=db sslmode=verify-full sslrootcert=/etc/db-ca.pem", environment: none)
        #expect(!withRoot.contains { $0.0 == "sslrootcert" })
        let fromEnv = try ConnectionString.settings("host=db", environment: { ["PGSSLMODE": "verify-ca", "PGCONNECT_TIMEOUT": "9"][$0] })
        #expect(fromEnv.contains { $0.0 == "sslrootcert" } && !fromEnv.contains { $0.0 == "connect_timeout" }, "PG* variables count as written")
        #expect(throws: PGError.self) { try ConnectionString.settings("not a connection string", environment: none) }
        #expect(try ConnectionString.parse("postgresql://u:p@h:6543/d?sslcert=/c.pem")["sslcert"] == "/c.pem", "every libpq keyword")
    }

    @Test func tcpBelowVerifyFullIsRefusedUnlessSaidInWords() throws {
        let none: (String) -> String? = { _ in nil }
        let check = { (s: String, env: [String: String], insecure: Bool) throws in
            try ConnectionString.checkTransport(s, insecureAllowed: insecure, environment: { env[$0] })
        }
        #expect(throws: PGError.self) { try check("host=db.example.org dbname=smartotp", [:], false) }
        #expect(throws: PGError.self) { try check("host=db sslmode=require", [:], false) }
        #expect(throws: PGError.self) { try check("dbname=smartotp", ["PGHOST": "db"], false) }
        try check("host=db sslmode=verify-full", [:], false)
        try check("host=/run/postgresql dbname=smartotp", [:], false)
        try check("host=db sslmode=disable", [:], true)
        // A service file's host and sslmode are not seen: the string must say.
        #expect(throws: PGError.self) { try check("service=smartotp", [:], false) }
        #expect(throws: PGError.self) { try check("dbname=smartotp", ["PGSERVICE": "smartotp"], false) }
        try check("service=smartotp host=db sslmode=verify-full", [:], false)
        _ = none
    }

    // MARK: the ledger

    func enroll(_ ledger: PostgresLedger, _ user: String, by who: String = "admin1") async throws {
        let name = try UserName(user)
        let token = Token(id: "code", kind: .code, parameters: try OTPParameters(kind: .totp(period: 30)),
                          secret: SecretBytes(Array("12345678901234567890".utf8)), created: 1)
        let r = Requester(name: who, serial: "1", role: .admin, address: "x")
        try await ledger.commit(.user(name)) { state in
            var record = state.record ?? UserRecord(user: name, created: state.now)
            record.tokens.append(token)
            state.record = record
            state.renewOfflineEpoch()
            state.audit(AuditFacts(operation: "enroll", credential: "", result: "done", reason: ""), by: r)
        }
    }

    static let host = Requester(name: "h1", serial: "2", role: .host, address: "x")

    func countFailure(_ ledger: PostgresLedger, _ user: String) async throws {
        try await ledger.commit(.user(try UserName(user))) { state in
            let now = state.now
            state.record?.countFailure(at: now, policy: LockPolicy(deny: 0), isRoot: false)
            state.audit(AuditFacts(operation: "code", credential: "code", result: "rejected", reason: "wrong"), by: Self.host)
        }
    }

    @Test func theLedgerKeepsWhatACommitChangedAndItsChain() async throws {
        let ledger = try await testLedger("ledger_basic")
        defer { Task { await ledger.pool.close() } }
        #expect(try await ledger.schemaVersion() == PostgresLedger.latest)
        #expect(try await ledger.migrate() == [], "a second migrate has nothing to do")
        try await enroll(ledger, "alice")
        let state = try await ledger.read(.user(try UserName("alice")))
        #expect(state.record?.tokens.first?.secret.constantTimeEquals(SecretBytes(Array("12345678901234567890".utf8))) == true)
        #expect(state.offlineEpoch > 0)
        let text = try requireCluster().psql("SELECT record FROM smartotp_records WHERE username = 'alice'", db: "ledger_basic")
        #expect(!text.isEmpty && !text.contains("GEZDGNBVGY3TQOJQ"), "no secret in the row's text")
        for _ in 0..<3 { try await countFailure(ledger, "alice") }
        #expect(try await ledger.read(.user(try UserName("alice"))).record?.failures == 3)
        // A verdict for a name without a record: chain 0.
        try await ledger.commit(.user(try UserName("ghost"))) { state in
            state.audit(AuditFacts(operation: "code", credential: "code", result: "rejected", reason: "wrong"), by: Self.host)
        }
        // Remembered verdicts, typed.
        let remembered = RememberedVerdict(requestID: "0123456789abcdef", binding: "b", attempt: Attempt(.rejected, lock: .open))
        try await ledger.commit(.user(try UserName("alice"))) { $0.recent = [remembered] }
        #expect(try await ledger.read(.user(try UserName("alice"))).recent == [remembered])
        // The fleet's own state.
        try await ledger.commit(.fleet) { state in
            state.revocations.append(Revocation(entry: "h9", at: state.now, by: "admin1"))
            state.audit(AuditFacts(operation: "revoke-host", credential: "", result: "changed", reason: "h9"), by: Self.host)
        }
        #expect(try await ledger.read(.fleet).revocations.map(\.entry) == ["h9"])
        try await ledger.commit(.fleet) { $0.revocations = [] }
        #expect(try await ledger.read(.fleet).revocations.isEmpty)
        #expect(try await ledger.users() == [UserListing(user: "alice", tokens: 1, hasPassword: false, failures: 3)])
        let rows = try await ledger.auditRows(AuditQuery(user: "alice"))
        #expect(rows.map(\.event.operation) == ["code", "code", "code", "enroll"], "newest first")
        #expect(try await ledger.auditRows(AuditQuery(host: "h1", limit: 2)).count == 2)
        var (broken, checked) = try await ledger.verifyAudit()
        #expect(broken == nil && checked == 6)
        // Removed: the chain is closed and still verifies; a row deleted by hand is found.
        try await ledger.commit(.user(try UserName("alice"))) { state in
            state.record = nil
            state.audit(AuditFacts(operation: "remove", credential: "", result: "done", reason: ""), by: Self.host)
        }
        #expect(try await ledger.read(.user(try UserName("alice"))).record == nil)
        (broken, _) = try await ledger.verifyAudit()
        #expect(broken == nil)
        try requireCluster().psql("DELETE FROM smartotp_audit WHERE username = 'alice' AND operation = 'enroll'", db: "ledger_basic")
        (broken, _) = try await ledger.verifyAudit()
        #expect(broken?.contains("missing") == true)
    }

    /// Concurrent commits on one row: each decided on what the others committed (the
    /// optimistic statement loses and decides again, or the locked transaction waits).
    @Test func racingCommitsAllCount() async throws {
        let ledger = try await testLedger("ledger_race")
        defer { Task { await ledger.pool.close() } }
        try await enroll(ledger, "alice")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<40 { group.addTask { try await countFailure(ledger, "alice") } }
            try await group.waitForAll()
        }
        #expect(try await ledger.read(.user(try UserName("alice"))).record?.failures == 40)
        let (broken, checked) = try await ledger.verifyAudit()
        #expect(broken == nil && checked == 41)
    }

    /// A body that throws writes nothing.
    @Test func aFailedBodyWritesNothing() async throws {
        let ledger = try await testLedger("ledger_throw")
        defer { Task { await ledger.pool.close() } }
        try await enroll(ledger, "alice")
        struct No: Error {}
        await #expect(throws: No.self) {
            try await ledger.commit(.user(try UserName("alice"))) { state in
                let now = state.now
            state.record?.countFailure(at: now, policy: LockPolicy(deny: 0), isRoot: false)
                throw No()
            }
        }
        #expect(try await ledger.read(.user(try UserName("alice"))).record?.failures == 0)
    }

    /// The whole cluster stopped under commits in flight, past their deadline: each is
    /// answered "no verdict" at the deadline, none commits afterwards, no session is left in
    /// a transaction, and the next commits work.
    @Test func aStallUnderACommitLeavesNothingHalfDone() async throws {
        let ledger = try await testLedger("ledger_stall")
        defer { Task { await ledger.pool.close() } }
        let cluster = try requireCluster()
        try await enroll(ledger, "alice")
        try await enroll(ledger, "bob")
        // Held locks make some commits take the locked path: BEGIN, then a statement that
        // the stall freezes.
        let freeze = Task { try await cluster.freeze(for: .milliseconds(2500)) }
        try await Task.sleep(for: .milliseconds(100))
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                group.addTask {
                    do {
                        try await withDeadline(.seconds(1)) { try await countFailure(ledger, i % 2 == 0 ? "alice" : "ghost") }
                        return true
                    } catch { return false }
                }
            }
            var out: [Bool] = []
            for await o in group { out.append(o) }
            return out
        }
        try await freeze.value
        #expect(outcomes.allSatisfy { !$0 }, "nothing answered during the stall")
        try await Task.sleep(for: .milliseconds(500))
        let idle = try cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'ledger_stall' AND state LIKE 'idle in transaction%'")
        #expect(idle == "0")
        try await Task.sleep(for: .seconds(1))
        #expect(try await ledger.read(.user(try UserName("alice"))).record?.failures == 0, "no commit after its deadline")
        try await countFailure(ledger, "alice")
        #expect(try await ledger.read(.user(try UserName("alice"))).record?.failures == 1, "and the next works")
        let (broken, _) = try await ledger.verifyAudit()
        #expect(broken == nil)
    }

    @Test func pruneAndRekey() async throws {
        let ledger = try await testLedger("ledger_keys")
        defer { Task { await ledger.pool.close() } }
        try await enroll(ledger, "alice")
        #expect(try await ledger.pruneAudit(olderThanDays: 1) == 0)
        try requireCluster().psql("UPDATE smartotp_audit SET at_us = at_us - 86400000000 * 10", db: "ledger_keys")
        // Rows whose time moved are no longer what their macs say: re-chain is not the point
        // here, the anchor is. Prune cuts them and leaves an anchor.
        #expect(try await ledger.pruneAudit(olderThanDays: 1) == 1)
        let next = KeyFile(bytes: Array(repeating: 3, count: 32))
        let target = Sealer(current: next, others: [KeyFile(bytes: Array(repeating: 1, count: 32))])
        let (moved, left) = try await ledger.rekey(to: target)
        #expect(moved == 1 && left.isEmpty)
        let rekeyed = PostgresLedger(pool: ledger.pool, codec: LedgerCodec(sealer: Sealer(current: next), audit: ledger.codec.audit),
                                     logger: Logger(label: "t"))
        #expect(try await rekeyed.read(.user(try UserName("alice"))).refusal == nil, "opens under the new key alone")
    }
}

/// What a database writer can do to the ledger, tried in PostgreSQL itself (psql as the
/// superuser): every change a verdict would trust is refused, revocations are neither
/// planted nor lifted, budgets are the fleet's, and the journal's checkpoints find a cut.
@Suite("PostgreSQL: insiders in the database", .serialized, .enabled(if: TestCluster.available, Comment(rawValue: TestCluster.missing)))
struct PostgresInsiderTests {
    let fresh = PostgresTests()

    @Test func aRowChangedBySQLIsRefusedAndAuditVerifyNamesIt() async throws {
        let db = "insider_rows"
        let ledger = try await testLedger(db)
        defer { Task { await ledger.pool.close() } }
        try await fresh.enroll(ledger, "alice")
        try await fresh.enroll(ledger, "bob")
        #expect(try await ledger.verifyAudit().broken == nil)
        let cluster = try requireCluster()
        try cluster.psql("UPDATE smartotp_records SET record = record || E'recovery $y$j9T$planted$planted\\n' WHERE username = 'alice'", db: db)
        let state = try await ledger.read(.user(try UserName("alice")))
        #expect(state.refusal == .tampered(user: "alice"))
        #expect(try await ledger.verifyAudit().broken?.contains("the row of alice was changed outside smartotpd") == true)
        // A sealed secret of one enrolment put under another user: the row's mac covers it.
        try cluster.psql("UPDATE smartotp_secrets SET sealed = (SELECT sealed FROM smartotp_secrets WHERE username = 'alice') WHERE username = 'bob'", db: db)
        #expect(try await ledger.read(.user(try UserName("bob"))).refusal == .tampered(user: "bob"))
        // A verdict on a refused row writes nothing to it: its audit rows go to chain 0.
        let before = try cluster.psql("SELECT version, row_mac FROM smartotp_records WHERE username = 'bob'", db: db)
        try await ledger.commit(.user(try UserName("bob"))) { state in
            #expect(state.refusal != nil)
            state.audit(AuditFacts(operation: "code", credential: "", result: "refused", reason: "tampered"), by: PostgresTests.host)
        }
        #expect(try cluster.psql("SELECT version, row_mac FROM smartotp_records WHERE username = 'bob'", db: db) == before)
        #expect(try cluster.psql("SELECT count(*) FROM smartotp_audit WHERE chain = 0 AND username = 'bob' AND result = 'refused'", db: db)
                    .trimmingCharacters(in: .whitespacesAndNewlines) == "1", "audited in chain 0")
        // Changing a refused row is refused too (only its removal is not).
        await #expect(throws: SealError.tampered(user: "bob")) { try await fresh.countFailure(ledger, "bob") }
    }

    @Test func revocationsCannotBePlantedOrLiftedBySQL() async throws {
        let db = "insider_revocations"
        let ledger = try await testLedger(db)
        defer { Task { await ledger.pool.close() } }
        try await ledger.commit(.fleet) { $0.revocations.append(Revocation(entry: "h9", at: $0.now, by: "admin1")) }
        #expect(try await ledger.read(.fleet).revocations.map(\.entry) == ["h9"])
        let cluster = try requireCluster()
        try cluster.psql("DELETE FROM smartotp_revocations", db: db)
        try cluster.psql("INSERT INTO smartotp_revocations (entry, revoked_by) VALUES ('h1', 'writer')", db: db)
        let state = try await ledger.read(.fleet)
        #expect(state.revocations.map(\.entry) == ["h9", "h1"], "h9 stays revoked here; h1, without a mac, fails closed")
        #expect(state.warnings.contains { $0.contains("h9") && $0.contains("vanished") })
        #expect(try await ledger.verifyAudit().broken?.contains("revocation row of h1") == true)
    }

    @Test func budgetsAreTheFleetsNotAReplicas() async throws {
        let ledger = try await testLedger("insider_budgets")
        defer { Task { await ledger.pool.close() } }
        let clock = Box<Int64>(1000)
        let limit = Budget(count: 20, window: 60)
        let a = HostBudget("failures", limit, store: ledger, clock: { clock.value })
        let b = HostBudget("failures", limit, store: ledger, clock: { clock.value })
        var granted = 0
        for _ in 0..<30 {
            if try await a.reserve("s1") != nil { granted += 1 }
            if try await b.reserve("s1") != nil { granted += 1 }
        }
        #expect(granted == 20, "two replicas together spend the budget once")
        clock.value += 60
        #expect(try await b.reserve("s1") != nil, "the next window")
        let first = try await ledger.lease("other", bucket: 0, want: 5, limit: 3)
        let second = try await ledger.lease("other", bucket: 0, want: 5, limit: 3)
        #expect(first == 3 && second == 0)
        // Rows are named by their window's start: those of windows long gone are pruned, the
        // current one stays (and keeps what it has spent).
        #expect(try await ledger.pruneBudgets(startedBefore: 1000) == 1, "the row of bucket 0")
        #expect(try await ledger.pruneBudgets(startedBefore: 1000) == 0)
        #expect(try await b.reserve("s1") != nil, "the current window's row is kept")
    }

    @Test func checkpointsFindACutTailOrAWipedChain() async throws {
        let db = "insider_checkpoints"
        let ledger = try await testLedger(db)
        defer { Task { await ledger.pool.close() } }
        _ = ledger.codec.checkpoints.drain()
        try await fresh.enroll(ledger, "alice")
        for _ in 0..<3 { try await fresh.countFailure(ledger, "alice") }
        let marks = Dictionary(uniqueKeysWithValues: ledger.codec.checkpoints.drain().map { ($0.chain, $0.head) })
        #expect(marks.values.map(\.seq) == [4], "the chain's head after four rows, once")
        #expect(try await ledger.verifyCheckpoints(marks) == nil)
        // The journal's line, under the audit key; a forged one is told apart.
        let (chain, head) = try #require(marks.first)
        let line = ledger.codec.audit.checkpointLine(chain: chain, head: head)
        let parsed = try #require(AuditChain.Checkpoint.parse(Substring("Dec 07 smartotpd[7]: " + line)))
        #expect(ledger.codec.audit.authentic(parsed) && !ledger.codec.audit.authentic(.init(chain: chain, head: .init(seq: 9, mac: head.mac), tag: parsed.tag)))
        // The last two rows cut and the head rewound in the same database.
        let cluster = try requireCluster()
        try cluster.psql("DELETE FROM smartotp_audit WHERE chain = \(chain) AND seq > 2", db: db)
        try cluster.psql("UPDATE smartotp_records SET audit_seq = 2, audit_mac = (SELECT mac FROM smartotp_audit WHERE chain = \(chain) AND seq = 2) WHERE audit_chain = \(chain)", db: db)
        #expect(try await ledger.verifyCheckpoints(marks)?.contains("were cut") == true)
        try cluster.psql("DELETE FROM smartotp_audit WHERE chain = \(chain)", db: db)
        try cluster.psql("UPDATE smartotp_records SET audit_seq = 0, audit_mac = '' WHERE audit_chain = \(chain)", db: db)
        #expect(try await ledger.verifyCheckpoints(marks)?.contains("wiped") == true)
    }

    @Test func migrationSixSealsAgainAndSignsTheRowsThere() async throws {
        let db = "insider_migration"
        let cluster = try requireCluster()
        let ledger = try await testLedger(db, migrated: false)
        let codec = ledger.codec
        defer { Task { await ledger.pool.close() } }
        #expect(try await ledger.migrate(upTo: 5) == [1, 2, 3, 4, 5])
        // A row as schema 5 kept it: the secret sealed to the user and token id alone.
        let user = try UserName("old")
        let secret = SecretBytes(Array("12345678901234567890".utf8))
        let sealed = try codec.sealer.seal(secret: secret, accessKey: nil, user: user, token: "code", version: 1)
        let text = "smartotp-record 1\nuser old\ncreated 1\ntoken id=code kind=code type=totp period=30 algorithm=sha1 digits=6 secret=AA last=- created=7 used=- label=-\n"
        try cluster.psql("INSERT INTO smartotp_records (username, record) VALUES ('old', E'\(text.replacingOccurrences(of: "\n", with: "\\n"))')", db: db)
        try cluster.psql("INSERT INTO smartotp_revocations (entry, revoked_by) VALUES ('h7', 'admin1')", db: db)
        try cluster.psql("INSERT INTO smartotp_secrets (username, token_id, key_id, sealed) VALUES ('old', 'code', '\(sealed.keyID)', '\(sealed.box)')", db: db)
        #expect(try await ledger.migrate() == [6])
        let state = try await ledger.read(.user(user))
        #expect(state.refusal == nil && state.record?.tokens.first?.secret.constantTimeEquals(secret) == true)
        #expect(try await ledger.read(.fleet).revocations.map(\.entry) == ["h7"])
        #expect(try await ledger.verifyAudit().broken == nil)
    }
}
