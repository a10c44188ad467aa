import OTPCore
import SmartOTPFleet
import Testing
import TokenStore
import Verifier

/// A verdict store in memory: each locked request decided on the user's record with the
/// verifier, then kept, as smartotpd does in one PostgreSQL transaction.
actor MemoryVerdictStore: VerdictStore {
    var records: [String: UserRecord] = [:]

    init(_ records: [UserRecord]) {
        for r in records { self.records[r.user.value] = r }
    }

    func readOnly(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision {
        try FleetVerifier.decide(request, user: user, record: records[user.value], policy: policy, host: host, now: now)
    }

    func locked(_ request: HelperProtocol.Request, user: UserName, host: String, policy: Policy, now: Int64) async throws -> FleetDecision {
        let d = try FleetVerifier.decide(request, user: user, record: records[user.value], policy: policy, host: host, now: now)
        if d.changed { records[user.value] = d.record }
        return d
    }
}

/// smartotpd's handlers, in process: no root, no PostgreSQL, no TLS.
@Suite("smartotpd: routes, roles and the verify handler")
struct HandlerTests {
    let secret = Array("12345678901234567890".utf8)
    let t: Int64 = 1_700_000_000

    func store() throws -> MemoryVerdictStore {
        var r = UserRecord(user: try UserName("alice"), created: 1)
        r.tokens.append(Token(id: "card", kind: .card, parameters: try OTPParameters(kind: .totp(period: 30)),
                              secret: SecretBytes(secret), credentialName: "smartotp:alice", created: 1))
        return MemoryVerdictStore([r])
    }

    func body(_ lines: String...) -> [UInt8] { Array(lines.map { $0 + "\n" }.joined().utf8) }

    @Test func rolesDecideWhatEachCertificateMayCall() throws {
        let alice = try UserName("alice")
        #expect(FleetHandlers.authorize(.verify(.code, alice), method: "POST", role: .host) == nil)
        #expect(FleetHandlers.authorize(.health, method: "GET", role: .host) == nil)
        for route in [FleetAPI.Route.users, .record(alice)] {
            #expect(FleetHandlers.authorize(route, method: "GET", role: .host)?.status == 403, "a host never reads records")
            #expect(FleetHandlers.authorize(route, method: "GET", role: .admin) == nil)
        }
        #expect(FleetHandlers.authorize(.record(alice), method: "PUT", role: .host)?.status == 403)
        #expect(FleetHandlers.authorize(.verify(.code, alice), method: "GET", role: .host)?.status == 405)
        #expect(FleetHandlers.authorize(.users, method: "DELETE", role: .admin)?.status == 405)
    }

    @Test func aCodeIsAcceptedOnceAndTheAnswerIsTheWire() async throws {
        let s = try store()
        let alice = try UserName("alice")
        let code = OTP.hotp(secret: SecretBytes(secret), counter: UInt64(t / 30), algorithm: .sha1, digits: 6) ?? ""
        let (first, decision) = try await FleetHandlers.verify(.code, alice, body: body(code), host: "h1", policy: Policy(), now: t, store: s)
        #expect(first.status == 200)
        #expect(decision?.reply.result == "accepted")
        #expect(try HelperProtocol.decode(first.text, for: .code) == decision?.reply, "the text is the typed reply, encoded once")
        let (again, _) = try await FleetHandlers.verify(.code, alice, body: body(code), host: "h2", policy: Policy(), now: t, store: s)
        #expect(try HelperProtocol.decodeAttempt(again.text).verdict == .replayed(tokenID: "card"), "a code used on h1 is refused on h2")
    }

    @Test func aTapChallengeIsTheAskingHostsOnly() async throws {
        let s = try store()
        let alice = try UserName("alice")
        let (issued, _) = try await FleetHandlers.verify(.challenge, alice, body: [], host: "h1", policy: Policy(), now: t, store: s)
        let challenge = try HelperProtocol.decodeChallenge(issued.text)
        let mac = Hex.encode(HMAC.authenticate(.sha1, key: secret, message: challenge))
        let tap = body("card", Hex.encode(challenge), mac)
        let (fromH2, _) = try await FleetHandlers.verify(.tap, alice, body: tap, host: "h2", policy: Policy(), now: t + 1, store: s)
        #expect(try HelperProtocol.decodeAttempt(fromH2.text).verdict == .rejected)
        let (fromH1, _) = try await FleetHandlers.verify(.tap, alice, body: tap, host: "h1", policy: Policy(), now: t + 2, store: s)
        #expect(try HelperProtocol.decodeAttempt(fromH1.text).verdict == .accepted(.token("card")))
        let (summary, decision) = try await FleetHandlers.verify(.summary, alice, body: [], host: "h1", policy: Policy(), now: t + 3, store: s)
        #expect(decision?.changed == false, "a summary writes nothing")
        #expect(!summary.text.contains(Base32.encode(secret)), "and carries no secret")
    }

    @Test func aMalformedBodyIsA400AndReachesNoStore() async throws {
        let (r, decision) = try await FleetHandlers.verify(.tap, try UserName("alice"), body: body("card", "zz"), host: "h1",
                                                           policy: Policy(), now: t, store: try store())
        #expect(r.status == 400)
        #expect(decision == nil)
    }
}
