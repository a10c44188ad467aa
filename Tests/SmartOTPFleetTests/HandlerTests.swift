import OTPCore
import SmartOTPFleet
import Testing
import TokenStore
import Verifier

/// A verdict store in memory: each locked request decided on the user's record with the
/// verifier, then kept, as smartotpd does in one PostgreSQL transaction.
actor MemoryVerdictStore: VerdictStore {
    var records: [String: UserRecord] = [:]
    /// The store's clock (the database's, in smartotpd).
    var now: Int64
    /// What the audit trail would get, one entry a locked request.
    var audit: [AuditFacts] = []

    init(_ records: [UserRecord], now: Int64) {
        for r in records { self.records[r.user.value] = r }
        self.now = now
    }

    func set(now: Int64) { self.now = now }

    func readOnly(_ request: HelperProtocol.Request, user: UserName, by requester: Requester, policy: Policy) async throws -> FleetDecision {
        try FleetVerifier.decide(request, user: user, record: records[user.value], policy: policy, host: requester.name, now: now)
    }

    func locked(_ request: HelperProtocol.Request, user: UserName, by requester: Requester, policy: Policy) async throws -> FleetDecision {
        let d = try FleetVerifier.decide(request, user: user, record: records[user.value], policy: policy, host: requester.name, now: now)
        if d.changed { records[user.value] = d.record }
        audit.append(AuditFacts.of(request, d.reply))
        return d
    }
}

func host(_ name: String) -> Requester { Requester(name: name, serial: "01", role: .host, address: "192.0.2.1") }

/// smartotpd's handlers, in process: no root, no PostgreSQL, no TLS.
@Suite("smartotpd: routes, roles and the verify handler")
struct HandlerTests {
    let secret = Array("12345678901234567890".utf8)
    let t: Int64 = 1_700_000_000

    func store() throws -> MemoryVerdictStore {
        var r = UserRecord(user: try UserName("alice"), created: 1)
        r.tokens.append(Token(id: "card", kind: .card, parameters: try OTPParameters(kind: .totp(period: 30)),
                              secret: SecretBytes(secret), credentialName: "smartotp:alice", created: 1))
        r.tokens[0].accessKey = SecretBytes(Array(repeating: 7, count: 16))
        return MemoryVerdictStore([r], now: t)
    }

    func body(_ lines: String...) -> [UInt8] { Array(lines.map { $0 + "\n" }.joined().utf8) }

    @Test func rolesDecideWhatEachCertificateMayCall() throws {
        let alice = try UserName("alice")
        #expect(FleetHandlers.authorize(.verify(.code, alice), method: "POST", role: .host) == nil)
        #expect(FleetHandlers.authorize(.health, method: "GET", role: .host) == nil)
        for route in [FleetAPI.Route.users, .show(alice), .audit] {
            #expect(FleetHandlers.authorize(route, method: "GET", role: .host)?.status == 403, "a host never reads records")
            #expect(FleetHandlers.authorize(route, method: "GET", role: .admin) == nil)
            #expect(FleetHandlers.authorize(route, method: "GET", role: .helpdesk) == nil)
        }
        for verb in FleetAPI.verbs {
            #expect(FleetHandlers.authorize(.change(verb, alice), method: "POST", role: .admin) == nil)
            #expect(FleetHandlers.authorize(.change(verb, alice), method: "POST", role: .host)?.status == 403)
            let helpdesk = FleetHandlers.authorize(.change(verb, alice), method: "POST", role: .helpdesk)
            if ["unlock", "resync"].contains(verb) { #expect(helpdesk == nil) } else { #expect(helpdesk?.status == 403, "the helpdesk may not \(verb)") }
        }
        #expect(FleetHandlers.authorize(.change("unlock", alice), method: "GET", role: .admin)?.status == 405)
        #expect(FleetHandlers.authorize(.verify(.code, alice), method: "GET", role: .host)?.status == 405)
        #expect(FleetHandlers.authorize(.users, method: "DELETE", role: .admin)?.status == 405)
    }

    @Test func aCodeIsAcceptedOnceAndTheAnswerIsTheWire() async throws {
        let s = try store()
        let alice = try UserName("alice")
        let code = OTP.hotp(secret: SecretBytes(secret), counter: UInt64(t / 30), algorithm: .sha1, digits: 6) ?? ""
        let (first, decision) = try await FleetHandlers.verify(.code, alice, body: body(code), by: host("h1"), policy: Policy(), store: s)
        #expect(first.status == 200)
        #expect(decision?.reply.result == "accepted")
        #expect(try HelperProtocol.decode(first.text, for: .code) == decision?.reply, "the text is the typed reply, encoded once")
        let (again, _) = try await FleetHandlers.verify(.code, alice, body: body(code), by: host("h2"), policy: Policy(), store: s)
        #expect(try HelperProtocol.decodeAttempt(again.text).verdict == .replayed(tokenID: "card"), "a code used on h1 is refused on h2")
    }

    @Test func aTapChallengeIsTheAskingHostsOnly() async throws {
        let s = try store()
        let alice = try UserName("alice")
        let (issued, _) = try await FleetHandlers.verify(.challenge, alice, body: [], by: host("h1"), policy: Policy(), store: s)
        let challenge = try HelperProtocol.decodeChallenge(issued.text)
        let mac = Hex.encode(HMAC.authenticate(.sha1, key: secret, message: challenge))
        let tap = body("card", Hex.encode(challenge), mac)
        await s.set(now: t + 1)
        let (fromH2, _) = try await FleetHandlers.verify(.tap, alice, body: tap, by: host("h2"), policy: Policy(), store: s)
        #expect(try HelperProtocol.decodeAttempt(fromH2.text).verdict == .rejected)
        await s.set(now: t + 2)
        let (fromH1, _) = try await FleetHandlers.verify(.tap, alice, body: tap, by: host("h1"), policy: Policy(), store: s)
        #expect(try HelperProtocol.decodeAttempt(fromH1.text).verdict == .accepted(.token("card")))
        let (summary, decision) = try await FleetHandlers.verify(.summary, alice, body: [], by: host("h1"), policy: Policy(), store: s)
        #expect(decision?.changed == false, "a summary writes nothing")
        #expect(!summary.text.contains(Base32.encode(secret)), "and carries no secret")
    }

    @Test func aMalformedBodyIsA400AndReachesNoStore() async throws {
        let (r, decision) = try await FleetHandlers.verify(.tap, try UserName("alice"), body: body("card", "zz"), by: host("h1"),
                                                           policy: Policy(), store: try store())
        #expect(r.status == 400)
        #expect(decision == nil)
    }

    /// `access` is no key oracle: bytes the verifier did not issue to this host get no
    /// answer and count as a failure; an issued challenge gets one answer, once.
    @Test func accessAnswersOnlyAChallengeIssuedToTheAskingHost() async throws {
        let s = try store()
        let alice = try UserName("alice")
        let key = Array(repeating: UInt8(7), count: 16)
        func access(_ ours: [UInt8], from h: String) async throws -> AccessAnswers? {
            let (r, _) = try await FleetHandlers.verify(.access, alice, body: body("card", "0102030405060708", Hex.encode(ours)), by: host(h), policy: Policy(), store: s)
            return try HelperProtocol.decodeAccess(r.text)
        }
        #expect(try await access(Array(repeating: 0xAA, count: 8), from: "h1") == nil, "chosen bytes: no answer")
        #expect(await s.records["alice"]?.failures == 1, "and counted")
        let (issued, _) = try await FleetHandlers.verify(.challenge, alice, body: [], by: host("h1"), policy: Policy(), store: s)
        let ours = try HelperProtocol.decodeChallenge(issued.text)
        #expect(try await access(ours, from: "h2") == nil, "another host's challenge: no answer")
        let answers = try await access(ours, from: "h1")
        #expect(answers?.expected == HMAC.authenticate(.sha1, key: key, message: ours))
        #expect(answers?.response == HMAC.authenticate(.sha1, key: key, message: [1, 2, 3, 4, 5, 6, 7, 8]))
        #expect(try await access(ours, from: "h1") == nil, "single use")
        let audit = await s.audit
        #expect(audit.filter { $0.operation == "access" }.map(\.reason) == [
            "no issued challenge, or no access key", "no issued challenge, or no access key",
            "answered an issued challenge", "no issued challenge, or no access key"])
        #expect(audit.allSatisfy { $0.credential == "tap" })
    }

    /// In the fleet root is locked like anyone and has no simple password unless the
    /// policy says so; the record keeps the hash either way.
    @Test func rootInTheFleet() throws {
        let config = try ServerConfig.parse("""
            listen = 127.0.0.1:8443
            database = postgres://u@db/smartotp
            tls_cert = /c
            tls_key = /k
            client_ca = /h
            admin_ca = /a
            seal_key = /s
            audit_key = credential:audit.key
            """, path: "t")
        #expect(config.policy.lock.evenDenyRoot, "root is locked by default in the fleet")
        #expect(!config.rootPassword)
        let open = try ServerConfig.parse("listen = 127.0.0.1:1\ndatabase = postgres://u@db/d\ntls_cert = /c\ntls_key = /k\nclient_ca = /h\nadmin_ca = /a\nseal_key = /s\naudit_key = /t\npolicy = root_never_locked root_password deny=3", path: "t")
        #expect(!open.policy.lock.evenDenyRoot && open.rootPassword && open.policy.lock.deny == 3)
        #expect(throws: ServerConfig.Error.self) { try ServerConfig.parse("listen = 127.0.0.1:1\ndatabase = postgres://u@db/d\ntls_cert = /c\ntls_key = /k\nclient_ca = /h\nadmin_ca = /a\nseal_key = relative\naudit_key = /t", path: "t") }

        let root = try UserName("root")
        var r = UserRecord(user: root, created: 1)
        r.passwordHash = PasswordHash.make("root-pin")
        let refused = try FleetVerifier.decide(.perform(.password("root-pin")), user: root, record: r, policy: config.policy, host: "h1", now: t, rootPassword: false)
        #expect(refused.reply.result == "rejected")
        #expect(refused.record?.passwordHash == r.passwordHash, "the hash is kept for a policy that allows it")
        let summary = try FleetVerifier.decide(.summary, user: root, record: r, policy: config.policy, host: "h1", now: t, rootPassword: false)
        guard case .summary(let s?) = summary.reply else { Issue.record("no summary"); return }
        #expect(!s.hasPassword, "not offered either")
        let allowed = try FleetVerifier.decide(.perform(.password("root-pin")), user: root, record: r, policy: config.policy, host: "h1", now: t, rootPassword: true)
        #expect(allowed.reply.accepted)
    }
}
