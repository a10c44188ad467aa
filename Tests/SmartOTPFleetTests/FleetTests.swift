import Foundation
import OTPCore
import SmartOTPFleet
import Testing
import TokenStore
import Verifier

@Suite("Fleet: configuration, routes and verdicts decided on one record")
struct FleetTests {
    let secret: [UInt8] = Array("12345678901234567890".utf8)

    func record(_ name: String = "alice") throws -> UserRecord {
        var r = UserRecord(user: try UserName(name), created: 1)
        r.tokens.append(Token(id: "code", kind: .code, parameters: try OTPParameters(kind: .totp(period: 30)),
                              secret: SecretBytes(secret), created: 1))
        return r
    }

    func code(at t: Int64) throws -> String {
        OTP.hotp(secret: SecretBytes(secret), counter: UInt64(t / 30), algorithm: .sha1, digits: 6) ?? ""
    }

    let policy = Policy(skew: 1, window: 20, lock: LockPolicy(deny: 3, failInterval: 900, unlockTime: 600, evenDenyRoot: false, rootUnlockTime: nil))

    @Test func aRightCodeIsAcceptedOnceAndTheRecordChanges() throws {
        let t: Int64 = 1_764_000_000
        let user = try UserName("alice")
        let first = try FleetVerifier.decide(.perform(.code(try code(at: t))), user: user, record: try record(), policy: policy, host: "h1", now: t)
        #expect(first.reply.result == "accepted")
        #expect(first.changed)
        let again = try FleetVerifier.decide(.perform(.code(try code(at: t))), user: user, record: first.record, policy: policy, host: "h1", now: t)
        #expect(again.reply.result == "replayed")
    }

    @Test func wrongCodesAreCountedUntilTheLock() throws {
        let t: Int64 = 1_764_000_000
        let user = try UserName("alice")
        var r: UserRecord? = try record()
        var results: [String] = []
        for i in 0..<4 {
            let d = try FleetVerifier.decide(.perform(.code("000000")), user: user, record: r, policy: policy, host: "h1", now: t)
            #expect(d.changed == (i < 3), "attempt \(i + 1): counted until the lock, not after")
            r = d.record
            results.append(d.reply.result)
        }
        #expect(results == ["rejected", "rejected", "rejected", "locked"])
        let right = try FleetVerifier.decide(.perform(.code(try code(at: t))), user: user, record: r, policy: policy, host: "h1", now: t)
        #expect(right.reply.result == "locked")
    }

    @Test func aSummaryCarriesNoSecretAndWritesNothing() throws {
        let d = try FleetVerifier.decide(.summary, user: try UserName("alice"), record: try record(), policy: policy, host: "h1", now: 1)
        #expect(!d.changed)
        #expect(!HelperProtocol.encode(d.reply).contains(Base32.encode(secret)))
        #expect(HelperProtocol.encode(d.reply).hasPrefix(HelperProtocol.version))
    }

    @Test func requestsRoundTripThroughTheirInputLines() throws {
        let requests: [HelperProtocol.Request] = [
            .summary, .challenge, .perform(.code("123456")), .perform(.password("pin")),
            .perform(.tap(tokenID: "card", challenge: [1, 2, 3], response: [4, 5])),
            .access(tokenID: "card", cardChallenge: [9], ourChallenge: [8, 7]),
        ]
        for r in requests {
            let back = try HelperProtocol.request(r.operation, lines: HelperProtocol.lines(Array(r.input.utf8)))
            #expect(back == r)
        }
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.request(.tap, lines: ["card", "zz"]) }
    }

    @Test func routes() throws {
        #expect(FleetAPI.route("/v1/verify/code/alice") == .verify(.code, try UserName("alice")))
        #expect(FleetAPI.route("/v1/admin/records/bob") == .show(try UserName("bob")))
        #expect(FleetAPI.route("/v1/admin/unlock/bob") == .change("unlock", try UserName("bob")))
        #expect(FleetAPI.route("/v1/admin/steal/bob") == nil, "only the known verbs")
        #expect(FleetAPI.route("/v1/admin/audit?user=bob") == .audit)
        #expect(FleetAPI.query("/v1/admin/audit?user=bob&since=5") == ["user": "bob", "since": "5"])
        #expect(FleetAPI.query("/v1/admin/audit?user") == nil)
        #expect(FleetAPI.route("/v1/admin/users") == .users)
        #expect(FleetAPI.route("/v1/health") == .health)
        #expect(FleetAPI.route("/v1/verify/code/../../etc") == nil)
        #expect(FleetAPI.route("/v1/verify/steal/alice") == nil)
        #expect(FleetAPI.route("/v1/admin/records/a%2Fb") == nil)
        #expect(FleetAPI.route("/v2/health") == nil)
    }

    @Test func serverURLsAndAddresses() {
        #expect(ServerURL("https://verifier.example:8443")?.address == HostPort(host: "verifier.example", port: 8443))
        #expect(ServerURL("https://10.0.0.1")?.address.port == 443)
        #expect(ServerURL("http://x:1") == nil)
        #expect(ServerURL("https://u@x:1") == nil)
        #expect(ServerURL.list("https://a:1,https://b:2")?.count == 2)
        #expect(ServerURL.list("https://a:1,ftp://b") == nil)
        #expect(HostPort("[::1]:8443") == HostPort(host: "::1", port: 8443))
        #expect(HostPort("host:0") == nil)
    }

    @Test func databaseURLs() {
        let tcp = DatabaseURL("postgres://smartotpd:p%40ss@db.example:6543/otp?sslmode=require")
        #expect(tcp?.endpoint == .tcp(host: "db.example", port: 6543))
        #expect(tcp?.password == "p@ss")
        #expect(tcp?.requireTLS == true)
        #expect(DatabaseURL("postgres://smartotpd@/otp?host=/run/postgresql")?.endpoint == .socket(path: "/run/postgresql/.s.PGSQL.5432"))
        // libpq's several-host form: the first server that accepts writes is used.
        let two = DatabaseURL("postgres://u@10.0.0.1:5432,db2.example/otp?target_session_attrs=read-write")
        #expect(two?.endpoints == [.tcp(host: "10.0.0.1", port: 5432), .tcp(host: "db2.example", port: 5432)])
        #expect(two?.targetSessionAttrs == .readWrite)
        #expect(DatabaseURL("postgres://u@a,b/otp")?.targetSessionAttrs == .readWrite, "several hosts: read-write unless told")
        #expect(DatabaseURL("postgres://u@a,b/otp?target_session_attrs=any")?.targetSessionAttrs == .any)
        #expect(DatabaseURL("postgres://u@a/otp")?.targetSessionAttrs == .any)
        for bad in ["postgres://u@a,,b/otp", "postgres://u@a,/otp", "postgres://u@a/otp?target_session_attrs=standby",
                    "postgres://u@" + (1...9).map { "h\($0)" }.joined(separator: ",") + "/otp"] {
            #expect(DatabaseURL(bad) == nil, "\(bad)")
        }
        #expect(DatabaseURL("postgres://db.example/otp") == nil)
        #expect(DatabaseURL("postgres://u@h/otp?sslmode=maybe") == nil)
        // libpq's modes and default; a private CA named by sslrootcert.
        #expect(DatabaseURL("postgres://u@h/otp")?.sslMode == .prefer, "libpq's default")
        for (mode, required) in [("disable", false), ("allow", false), ("prefer", false), ("require", true), ("verify-ca", true), ("verify-full", true)] {
            let url = DatabaseURL("postgres://u@h/otp?sslmode=\(mode)")
            #expect(url?.sslMode.rawValue == mode)
            #expect(url?.requireTLS == required, "\(mode)")
        }
        let verified = DatabaseURL("postgres://u@h/otp?sslmode=verify-full&sslrootcert=/etc/smartotpd/db-ca.pem")
        #expect(verified?.sslMode == .verifyFull && verified?.sslRootCert == "/etc/smartotpd/db-ca.pem")
        #expect(DatabaseURL("postgres://u@h/otp?sslmode=verify-ca&sslrootcert=db-ca.pem") == nil, "a relative CA path")
    }

    @Test func serverConfiguration() throws {
        let text = """
        # smartotpd
        listen = 0.0.0.0:8443
        database = postgres://smartotpd@127.0.0.1/smartotp
        tls_cert = /etc/smartotpd/server.pem
        tls_key = /etc/smartotpd/server.key
        client_ca = /etc/smartotpd/hosts-ca.pem
        admin_ca = /etc/smartotpd/admin-ca.pem
        seal_key = /etc/smartotpd/seal.key
        audit_key = /etc/smartotpd/audit.key
        policy = deny=3 unlock_time=60
        """
        let c = try ServerConfig.parse(text, path: "t")
        #expect(c.auditKeep == 365 && c.helpdeskCA == nil && c.unsealKeys.isEmpty)
        #expect(c.hostFailureBudget?.count == 30 && c.hostFailureBudget?.window == 900, "30/15m by default")
        #expect(try ServerConfig.parse(text + "\nhost_failure_budget = 6/2h", path: "t").hostFailureBudget?.window == 7200)
        #expect(try ServerConfig.parse(text + "\nhost_failure_budget = off", path: "t").hostFailureBudget == nil)
        for bad in ["30", "x/15m", "30/15d", "30/2h/1", "0/15m", "30/48h"] {
            #expect(throws: ServerConfig.Error.self, "\(bad)") { try ServerConfig.parse(text + "\nhost_failure_budget = \(bad)", path: "t") }
        }
        #expect(c.hostChallengeBudget?.count == 300 && c.hostChallengeBudget?.window == 900, "300/15m by default")
        #expect(c.maxConnections == 4096 && c.maxConnectionsPerSource == 64 && c.handshakeTimeout == 5 && c.connectionLifetime == 300)
        let limits = try ServerConfig.parse(text + "\nmax_connections = 500\nmax_connections_per_source = 10\nhandshake_timeout = 3s\nconnection_lifetime = 2m", path: "t")
        #expect(limits.maxConnections == 500 && limits.maxConnectionsPerSource == 10 && limits.handshakeTimeout == 3 && limits.connectionLifetime == 120)
        for bad in ["max_connections = 0", "max_connections = many", "handshake_timeout = 0", "handshake_timeout = 2m",
                    "connection_lifetime = 5", "host_challenge_budget = 10", "max_connections_per_source = -1"] {
            #expect(throws: ServerConfig.Error.self, "\(bad)") { try ServerConfig.parse(text + "\n" + bad, path: "t") }
        }
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse(text.replacingOccurrences(of: "seal_key = /etc/smartotpd/seal.key", with: ""), path: "t") }
        #expect(try ServerConfig.parse(text + "\nunseal_keys = /a.key, credential:old\naudit_keep = 30", path: "t").unsealKeys == ["/a.key", "credential:old"])
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse(text + "\nunseal_keys = credential:../x", path: "t") }
        // The example administrators start from parses, keys from the unit's credentials.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = try String(contentsOf: root.appendingPathComponent("docs/smartotpd.conf.example"), encoding: .utf8)
        let parsed = try ServerConfig.parse(example, path: "smartotpd.conf.example")
        #expect(parsed.sealKey == "credential:seal.key" && parsed.auditKey == "credential:audit.key")
        #expect(parsed.policy.lock.evenDenyRoot && !parsed.rootPassword)
        #expect(c.listen.port == 8443)
        #expect(c.policy.lock.deny == 3)
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse(text + "\nlisten = 1.2.3.4:1", path: "t") }
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse(text + "\ntls_kye = /x", path: "t") }
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse(text + "\npolicy = nullok", path: "t") }
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse("listen = x", path: "t") }
    }

    /// A retried request finds the verdict its id was given; an unknown or malformed id
    /// finds nothing; only the last few are kept.
    @Test func recentRequestsRememberVerdictsById() throws {
        let accepted = Attempt(.accepted(.token("t1")), lock: .open)
        let rejected = Attempt(.rejected, lock: .lockedUntil(1_764_000_600))
        var stored = RecentRequests.adding("", id: "0123456789abcdef0123456789abcdef", accepted)
        stored = RecentRequests.adding(stored, id: "fedcba9876543210fedcba9876543210", rejected)
        #expect(RecentRequests.attempt(stored, id: "0123456789abcdef0123456789abcdef") == accepted)
        #expect(RecentRequests.attempt(stored, id: "fedcba9876543210fedcba9876543210") == rejected)
        #expect(RecentRequests.attempt(stored, id: "00000000000000000000000000000000") == nil)
        for bad in ["short", "0123456789abcdef\t0123456789abcdef", String(repeating: "a", count: 65), "0123456789abcdef 123"] {
            #expect(!RecentRequests.isValid(bad))
            #expect(RecentRequests.adding(stored, id: bad, accepted) == stored, "a malformed id is not remembered")
        }
        for i in 0..<RecentRequests.kept { stored = RecentRequests.adding(stored, id: String(repeating: "\(i)", count: 16), accepted) }
        #expect(RecentRequests.attempt(stored, id: "0123456789abcdef0123456789abcdef") == nil, "the oldest are forgotten")
        #expect(stored.split(separator: "\n").count == RecentRequests.kept)
        #expect(RecentRequests.attempt("garbage\tx\ty\n\t\t", id: "0123456789abcdef0123456789abcdef") == nil)
    }

    @Test func revocationRoutesAreTheAdministratorsOnly() {
        #expect(FleetAPI.route("/v1/admin/revoke-host") == .revoke(true))
        #expect(FleetAPI.route("/v1/admin/restore-host") == .revoke(false))
        #expect(FleetAPI.route("/v1/admin/revocations") == .revocations)
        #expect(FleetHandlers.authorize(.revoke(true), method: "POST", role: .admin) == nil)
        #expect(FleetHandlers.authorize(.revoke(true), method: "POST", role: .helpdesk)?.status == 403)
        #expect(FleetHandlers.authorize(.revoke(false), method: "POST", role: .host)?.status == 403)
        #expect(FleetHandlers.authorize(.revocations, method: "GET", role: .helpdesk) == nil)
        #expect(FleetHandlers.authorize(.revocations, method: "GET", role: .host)?.status == 403)
        #expect(FleetAPI.isRevocationEntry("web7") && FleetAPI.isRevocationEntry("4F:A1:00"))
        #expect(!FleetAPI.isRevocationEntry("") && !FleetAPI.isRevocationEntry("a b") && !FleetAPI.isRevocationEntry("a#b"))
    }
}
