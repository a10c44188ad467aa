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
}
