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

    @Test func revocationRoutes() {
        #expect(FleetAPI.route("/v1/admin/revoke-host") == .revoke(true))
        #expect(FleetAPI.route("/v1/admin/restore-host") == .revoke(false))
        #expect(FleetAPI.route("/v1/admin/revocations") == .revocations)
        #expect(FleetAPI.isRevocationEntry("web7") && FleetAPI.isRevocationEntry("4F:A1:00"))
        #expect(!FleetAPI.isRevocationEntry("") && !FleetAPI.isRevocationEntry("a b") && !FleetAPI.isRevocationEntry("a#b"))
    }
}
