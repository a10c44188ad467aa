import Foundation
import OTPCore
import SmartOTPAdmin
import SmartOTPFleet
import SmartOTPService
import SmartOTPVault
import Testing
import TokenStore
import Verifier

/// smartotpd's routes, middleware and handlers, in process over the memory ledger: no
/// TLS, no PostgreSQL, no root.
@Suite("smartotpd: every route for every role, through the middleware")
struct RouteTests {
    /// Each route with a method, and who may call it.
    static let routes: [(method: String, path: String, body: String, allowed: Set<String>)] = [
        ("GET", "/v1/health", "", ["h1", "admin1", "desk1"]),
        ("POST", "/v1/verify/summary/alice", "", ["h1"]),
        ("POST", "/v1/verify/code/alice", "000000\n", ["h1"]),
        ("POST", "/v1/verify/password/alice", "1234\n", ["h1"]),
        ("POST", "/v1/verify/challenge/alice", "", ["h1"]),
        ("POST", "/v1/verify/offline/alice", "", ["h1"]),
        ("GET", "/v1/admin/users", "", ["admin1", "desk1"]),
        ("GET", "/v1/admin/records/alice", "", ["admin1", "desk1"]),
        ("GET", "/v1/admin/audit?user=alice", "", ["admin1", "desk1"]),
        ("GET", "/v1/admin/revocations", "", ["admin1", "desk1"]),
        ("POST", "/v1/admin/unlock/alice", "", ["admin1", "desk1"]),
        ("POST", "/v1/admin/resync/alice", "first 1\nsecond 2\n", ["admin1", "desk1"]),
        ("POST", "/v1/admin/passwd/alice", "hash $y$x\n", ["admin1"]),
        ("POST", "/v1/admin/recovery/alice", "hash $y$x\n", ["admin1"]),
        ("POST", "/v1/admin/remove/bob", "all\n", ["admin1"]),
        ("POST", "/v1/admin/revoke-host", "nobody-host\n", ["admin1"]),
        ("POST", "/v1/admin/restore-host", "nobody-host\n", ["admin1"]),
    ]

    @Test func everyRouteForEveryRole() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        for route in Self.routes {
            for who in ["h1", "admin1", "desk1"] {
                let r = await fleet.ask(route.method, route.path, route.body, as: who)
                if route.allowed.contains(who) {
                    #expect(r.status != 403 && r.status != 405 && r.status != 404, "\(who) \(route.method) \(route.path): \(r.status) \(r.text)")
                } else {
                    #expect(r.status == 403, "\(who) may not \(route.method) \(route.path): \(r.status)")
                    #expect(!r.close, "a refused route keeps the connection (the certificate is good)")
                }
            }
        }
    }

    @Test func verdictsAreForHostsOnly() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        for who in ["admin1", "desk1"] {
            let r = await fleet.ask("POST", "/v1/verify/code/alice", totp(at: Fleet.t0) + "\n", as: who)
            #expect(r.status == 403)
            #expect(r.text.contains("host certificates only"))
        }
        #expect(try await fleet.record("alice")?.failures == 0, "nothing reached the ledger")
    }

    @Test func methodsAndPaths() async throws {
        let fleet = try Fleet()
        #expect(await fleet.ask("GET", "/v1/verify/code/alice", as: "h1").status == 405)
        #expect(await fleet.ask("POST", "/v1/admin/users", as: "admin1").status == 405)
        #expect(await fleet.ask("DELETE", "/v1/admin/records/alice", as: "admin1").status == 405)
        #expect(await fleet.ask("GET", "/v1/admin/unlock/alice", as: "admin1").status == 405)
        #expect(await fleet.ask("GET", "/v2/health", as: "h1").status == 404)
        #expect(await fleet.ask("POST", "/v1/verify/steal/alice", as: "h1").status == 404)
        #expect(await fleet.ask("POST", "/v1/verify/code/../../etc", as: "h1").status == 404)
        let big = await fleet.service.respond(ServiceRequest(method: "POST", uri: "/v1/verify/code/alice", body: [],
                                                             certificate: sharedCertificates["h1"], address: "x", bodyTooLarge: true))
        #expect(big.status == 413)
    }

    @Test func identity() async throws {
        let fleet = try Fleet()
        let none = await fleet.ask("GET", "/v1/health", as: nil)
        #expect(none.status == 403 && none.close && none.text.contains("no client certificate"))
        let rogue = await fleet.ask("GET", "/v1/health", as: "rogue")
        #expect(rogue.status == 403 && rogue.close, "the same CA name, another key: nobody's certificate")
        let garbage = await fleet.service.respond(ServiceRequest(method: "GET", uri: "/v1/health", certificate: [0x30, 0x03, 1, 2, 3], address: "x"))
        #expect(garbage.status == 403 && garbage.text.contains("unreadable"))
        let identifier = try sharedPKI.identifier()
        #expect(try identifier.identify(sharedCertificates["admin1"], now: 0).role == .admin)
        #expect(try identifier.identify(sharedCertificates["desk1"], now: 0).role == .helpdesk)
        let h1 = try identifier.identify(sharedCertificates["h1"], now: 0)
        #expect(h1.role == .host && h1.name == "h1" && !h1.serial.hasPrefix("0"))
        // Past its end (a resumed TLS session sends no certificate to check it): refused,
        // though known from before.
        let ends = try #require(h1.notAfter)
        #expect(try identifier.identify(sharedCertificates["h1"], now: ends).name == "h1")
        #expect(throws: PeerIdentifier.Refusal.ended) { try identifier.identify(sharedCertificates["h1"], now: ends + 1) }
        // Two roles sharing a CA key: refused, naming both.
        #expect(throws: PeerIdentifier.RoleConfigurationError.self) {
            try PeerIdentifier(hostCAs: [sharedPKI.hosts.certificate], adminCAs: [sharedPKI.hosts.certificate])
        }
    }

    @Test func aCertificateWithASerialOfLeadingZeros() throws {
        let der = try sharedPKI.hosts.issue("h9", serial: [0x00, 0x0A, 0xBC])
        let p = try sharedPKI.identifier().identify(der, now: 0)
        #expect(p.serial == "abc")
        #expect(RevocationList.entries(of: "00:0A:BC").contains("abc"))
    }
}

@Suite("smartotpd: verdicts on the ledger")
struct VerdictTests {
    @Test func aCodeIsAcceptedOnceFleetWideAndTheAnswerIsTheWire() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        let code = totp(at: Fleet.t0)
        let first = await fleet.verdict(.code, "alice", code, from: "h1")
        #expect(first.verdict == "accepted")
        #expect(try HelperProtocol.decode(first.text, for: .code) == .attempt(Attempt(.accepted(.token("code")), lock: .open)))
        #expect(await fleet.verdict(.code, "alice", code, from: "h2").verdict == "replayed", "a code used on h1 is refused on h2")
        #expect(await fleet.verdict(.code, "alice", "000000", from: "h2").verdict == "rejected")
        // The audit trail has each, chained and intact.
        let rows = fleet.ledger.withContents { $0.audit }.filter { $0.event.user == "alice" }
        #expect(rows.map(\.event.result) == ["done", "accepted", "replayed", "rejected"])
        #expect(rows.map(\.event.actor) == ["admin1", "h1", "h2", "h2"])
        let head = try #require(fleet.ledger.withContents { $0.rows["alice"] }).head
        #expect(fleet.codec.audit.verify(chain: rows[0].chain, rows: rows, ends: .init(head: (head.seq, head.mac), anchor: nil)) == nil)
    }

    @Test func wrongCodesLockTheUserEverywhere() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        for h in ["h1", "h2", "h3"] { #expect(await fleet.verdict(.code, "alice", "000000", from: h).verdict == "rejected") }
        #expect(await fleet.verdict(.code, "alice", totp(at: Fleet.t0), from: "h1").verdict == "locked")
        #expect(await fleet.ask("POST", "/v1/admin/unlock/alice", as: "desk1").text == "done 1\n")
        #expect(await fleet.verdict(.code, "alice", totp(at: Fleet.t0), from: "h1").verdict == "accepted")
    }

    @Test func theSummaryCarriesNoSecretAndWritesNothing() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", card: true)
        let before = fleet.ledger.withContents { $0.rows["alice"] }
        let r = await fleet.verdict(.summary, "alice")
        #expect(r.status == 200 && r.text.contains("card card"))
        #expect(!r.text.contains(testB32))
        #expect(fleet.ledger.withContents { $0.rows["alice"] } == before)
        #expect(await fleet.verdict(.summary, "nobody").text == HelperProtocol.encode(.summary(nil)))
    }

    @Test func aTapChallengeIsTheAskingHostsOnly() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", card: true)
        let challenge = try HelperProtocol.decodeChallenge(await fleet.verdict(.challenge, "alice", from: "h1").text)
        let mac = Hex.encode(HMAC.authenticate(.sha1, key: testSecret, message: challenge))
        #expect(await fleet.verdict(.tap, "alice", "card", Hex.encode(challenge), mac, from: "h2").verdict == "rejected")
        #expect(await fleet.verdict(.tap, "alice", "card", Hex.encode(challenge), mac, from: "h1").verdict == "accepted")
        #expect(await fleet.verdict(.tap, "alice", "card", Hex.encode(challenge), mac, from: "h1").verdict == "rejected", "single use")
        #expect(await fleet.verdict(.challenge, "nobody", from: "h1").status == 422, "no record, no challenge")
    }

    @Test func accessAnswersOnlyAChallengeIssuedToTheAskingHost() async throws {
        let fleet = try Fleet()
        let key = Array(repeating: UInt8(7), count: 16)
        try await fleet.enroll("alice", card: true, accessKey: key)
        func access(_ ours: [UInt8], from h: String) async throws -> AccessAnswers? {
            try HelperProtocol.decodeAccess(await fleet.verdict(.access, "alice", "card", "0102030405060708", Hex.encode(ours), from: h).text)
        }
        #expect(try await access(Array(repeating: 0xAA, count: 8), from: "h1") == nil, "chosen bytes: no answer")
        #expect(try await fleet.record("alice")?.failures == 1, "and counted")
        let ours = try HelperProtocol.decodeChallenge(await fleet.verdict(.challenge, "alice", from: "h1").text)
        #expect(try await access(ours, from: "h2") == nil, "another host's challenge: no answer")
        let answers = try await access(ours, from: "h1")
        #expect(answers?.expected == HMAC.authenticate(.sha1, key: key, message: ours))
        #expect(answers?.response == HMAC.authenticate(.sha1, key: key, message: [1, 2, 3, 4, 5, 6, 7, 8]))
        #expect(try await access(ours, from: "h1") == nil, "single use")
    }

    @Test func aMalformedBodyIsA400AndReachesNoLedger() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", card: true)
        let before = fleet.ledger.withContents { $0.audit.count }
        #expect(await fleet.verdict(.tap, "alice", "card", "zz").status == 400)
        #expect(await fleet.verdict(.access, "alice", "card").status == 400)
        #expect(await fleet.verdict(.offline, "alice", "not a report").status == 400)
        #expect(fleet.ledger.withContents { $0.audit.count } == before)
    }

    @Test func aNameWithoutARecordIsDecidedInChainZero() async throws {
        let fleet = try Fleet()
        #expect(await fleet.verdict(.code, "ghost", "123456").verdict == "rejected")
        let zero = fleet.ledger.withContents { c in c.audit.filter { $0.chain == 0 } }
        #expect(zero.count == 1 && zero[0].event.user == "ghost" && zero[0].event.result == "rejected")
        #expect(fleet.ledger.withContents { $0.rows["ghost"] } == nil, "and it stays without one")
    }

    @Test func passwordsAndRecoveryCodes() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        guard let hash = PasswordHash.make("2468"), let recovery = PasswordHash.make("abcdabcdabcd") else {
            Issue.record("libxcrypt cannot hash here")
            return
        }
        #expect(try await fleet.change(.passwd(hash: hash), "alice").text == "done 1\n")
        #expect(try await fleet.change(.recovery(hashes: [recovery]), "alice").text == "done 1\n")
        #expect(await fleet.verdict(.password, "alice", "1111").verdict == "rejected")
        #expect(await fleet.verdict(.password, "alice", "2468").verdict == "accepted")
        #expect(await fleet.verdict(.code, "alice", "abcd-abcd-abcd").verdict == "accepted")
        #expect(await fleet.verdict(.code, "alice", "abcd-abcd-abcd").verdict == "rejected", "a recovery code is used once")
    }

    @Test func rootInTheFleet() async throws {
        let fleet = try Fleet()
        #expect(fleet.service.config.policy.lock.evenDenyRoot, "root is locked like anyone by default in the fleet")
        try await fleet.enroll("root")
        guard let hash = PasswordHash.make("2468") else { Issue.record("libxcrypt cannot hash here"); return }
        _ = try await fleet.change(.passwd(hash: hash), "root")
        #expect(await fleet.verdict(.password, "root", "2468").verdict == "rejected", "no simple password for root unless root_password")
        #expect(try await fleet.record("root")?.passwordHash == hash, "the hash is kept for a policy that allows it")
        for _ in 0..<3 { _ = await fleet.verdict(.code, "root", "000000") }
        #expect(await fleet.verdict(.code, "root", totp(at: Fleet.t0)).verdict == "locked")
        let open = try Fleet(config: Fleet.config("").with { $0.rootPassword = true })
        try await open.enroll("root")
        _ = try await open.change(.passwd(hash: hash), "root")
        #expect(await open.verdict(.password, "root", "2468").verdict == "accepted")
    }
}

extension ServerConfig {
    func with(_ change: (inout ServerConfig) -> Void) -> ServerConfig {
        var c = self
        change(&c)
        return c
    }
}

@Suite("smartotpd: budgets, slots and deadlines")
struct BudgetTests {
    @Test func aHostsFailureBudgetLocksAtMostBudgetOverDenyUsers() async throws {
        let fleet = try Fleet(config: Fleet.config().with { $0.hostFailureBudget = Budget(count: 6, window: 900) })
        for i in 1...4 { try await fleet.enroll("u\(i)") }
        var statuses: [Int] = []
        for i in 1...4 { for _ in 0..<3 { statuses.append(await fleet.verdict(.code, "u\(i)", "000000", from: "h3").status) } }
        #expect(statuses.filter { $0 == 429 }.count == 6)
        var locked = 0
        for i in 1...4 where try await fleet.record("u\(i)")?.lockState(fleet.service.config.policy.lock, isRoot: false, now: Fleet.t0).isLocked == true { locked += 1 }
        #expect(locked == 2, "6 ÷ 3")
        #expect(await fleet.verdict(.code, "u4", totp(at: Fleet.t0), from: "h1").verdict == "accepted", "another host goes on")
        #expect(await fleet.verdict(.code, "u4", "000000", from: "h3").status == 429, "h3 is refused until the window moves")
        fleet.clock.advance(901)
        #expect(await fleet.verdict(.code, "u4", "000000", from: "h3").status == 200)
    }

    @Test func successesSpendNoBudget() async throws {
        let fleet = try Fleet(config: Fleet.config().with { $0.hostFailureBudget = Budget(count: 2, window: 900) })
        try await fleet.enroll("alice", hotpToken: true)
        for c in 0..<10 { #expect(await fleet.verdict(.code, "alice", hotp(UInt64(c))).verdict == "accepted") }
        for _ in 0..<5 { #expect(await fleet.verdict(.summary, "alice").status == 200) }
        #expect(await fleet.verdict(.code, "alice", "000000").verdict == "rejected")
        #expect(await fleet.verdict(.code, "alice", "000000").verdict == "rejected")
        #expect(await fleet.verdict(.code, "alice", "000000").status == 429)
    }

    /// A burst of concurrent wrong codes from one host: each reserves its unit before the
    /// verdict, so no more than the budget reach the ledger.
    @Test func aBurstCannotOutrunTheBudget() async throws {
        let slow = try Fleet(config: Fleet.config("policy = deny=0").with { $0.hostFailureBudget = Budget(count: 5, window: 900) },
                             wrap: { SlowLedger($0, delay: .milliseconds(20)) })
        try await slow.enroll("alice")
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<30 { group.addTask { await slow.verdict(.code, "alice", "000000", from: "h3").status } }
            var out: [Int] = []
            for await s in group { out.append(s) }
            return out
        }
        #expect(statuses.filter { $0 == 200 }.count == 5)
        #expect(statuses.filter { $0 == 429 }.count == 25)
        #expect(try await slow.record("alice")?.failures == 5)
    }

    @Test func challengeBudget() async throws {
        let fleet = try Fleet(config: Fleet.config().with { $0.hostChallengeBudget = Budget(count: 3, window: 900) })
        try await fleet.enroll("alice", card: true)
        let codes = await [fleet.verdict(.challenge, "alice", from: "h3").status, fleet.verdict(.challenge, "alice", from: "h3").status,
                           fleet.verdict(.challenge, "alice", from: "h3").status, fleet.verdict(.challenge, "alice", from: "h3").status]
        #expect(codes == [200, 200, 200, 429])
        #expect(await fleet.verdict(.challenge, "alice", from: "h1").status == 200, "another host's budget is its own")
    }

    @Test func hashingVerdictsBeyondTheSlotsAreTurnedAway() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        #expect(fleet.service.hashing.take() && fleet.service.hashing.take())
        #expect(await fleet.verdict(.password, "alice", "1234").status == 503)
        #expect(await fleet.verdict(.code, "alice", "abcd-abcd-abcd").status == 503, "a code shaped like a recovery code hashes")
        #expect(await fleet.verdict(.code, "alice", "000000").status == 200, "a plain code does not")
        fleet.service.hashing.give()
        #expect(await fleet.verdict(.password, "alice", "1234").status == 200)
    }

    /// A ledger slower than the deadline: the host is told 503 in time, and nothing is
    /// written after (the commit was cancelled before it ran).
    @Test func aLedgerPastTheDeadlineAnswers503AndWritesNothing() async throws {
        var fleet = try Fleet(wrap: { SlowLedger($0, delay: .milliseconds(300)) })
        try await fleet.enroll("alice")
        fleet.service.deadline = .milliseconds(50)
        let before = fleet.ledger.withContents { $0.audit.count }
        let started = ContinuousClock.now
        let r = await fleet.verdict(.code, "alice", totp(at: Fleet.t0))
        #expect(r.status == 503)
        #expect(ContinuousClock.now - started < .milliseconds(290), "answered at the deadline, not after the ledger")
        try await Task.sleep(for: .milliseconds(400))
        #expect(fleet.ledger.withContents { $0.audit.count } == before, "no commit after the 503")
        #expect(await fleet.ask("GET", "/v1/health", as: "h1").status == 503)
    }

    @Test func aFailingLedgerIs503() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        struct Down: Error {}
        for _ in 0..<6 { fleet.ledger.withContents { $0.failures.append(Down()) } }
        #expect(await fleet.verdict(.code, "alice", "000000").status == 503)
        #expect(await fleet.verdict(.summary, "alice").status == 503)
        #expect(await fleet.ask("GET", "/v1/admin/users", as: "admin1").status == 503)
        #expect(await fleet.ask("GET", "/v1/admin/audit", as: "admin1").status == 503)
        #expect(await fleet.ask("GET", "/v1/admin/revocations", as: "admin1").status == 503)
        #expect(await fleet.ask("GET", "/v1/health", as: "h1").status == 503)
        #expect(await fleet.ask("GET", "/v1/health", as: "h1").status == 200)
    }

    /// A budget is the fleet's, not a replica's: two replicas (two HostBudgets over one
    /// store) share its units; a unit given back stays with the replica that reserved it.
    @Test func hostBudgetAndSlotsThemselves() async throws {
        let clock = TestClock()
        let store = MemoryLedger(codec: try Fleet().codec, now: Fleet.t0)
        let a = HostBudget("failures", Budget(count: 2, window: 10), store: store, clock: { clock.now() })
        let b = HostBudget("failures", Budget(count: 2, window: 10), store: store, clock: { clock.now() })
        let r1 = try await a.reserve("h"), r2 = try await a.reserve("h")
        #expect(r1 != nil && r2 != nil)
        #expect(try await a.reserve("h") == nil)
        #expect(try await b.reserve("h") == nil, "the next replica has nothing left to spend either")
        a.refund(try #require(r1))
        #expect(try await a.reserve("h") != nil)
        #expect(try await b.reserve("other") != nil, "another host's budget is its own")
        clock.advance(10)
        #expect(try await b.reserve("h") != nil, "a new window")
        let none = HostBudget("failures", nil, store: store, clock: { 0 })
        for _ in 0..<100 { #expect(try await none.reserve("h") != nil) }
        let slots = Slots(1)
        #expect(slots.take() && !slots.take())
        slots.give(); slots.give()
        #expect(slots.take() && !slots.take(), "giving back more than was taken frees no more")
    }
}

@Suite("smartotpd: retried requests, offline reports, revocations")
struct RetryOfflineRevocationTests {
    let id = "0123456789abcdef0123456789abcdef"

    @Test func aRetriedRequestGetsTheSameVerdictCountedOnce() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        #expect(await fleet.verdict(.code, "alice", "000000", from: "h1", id: id).verdict == "rejected")
        #expect(await fleet.verdict(.code, "alice", "000000", from: "h1", id: id).verdict == "rejected")
        #expect(try await fleet.record("alice")?.failures == 1, "counted once")
        let code = totp(at: Fleet.t0), other = "fedcba9876543210fedcba9876543210"
        #expect(await fleet.verdict(.code, "alice", code, from: "h1", id: other).verdict == "accepted")
        #expect(await fleet.verdict(.code, "alice", code, from: "h1", id: other).verdict == "accepted", "retried: accepted again, not replayed")
        #expect(await fleet.verdict(.code, "alice", code, from: "h1").verdict == "replayed", "a new request with it")
    }

    /// An id is bound to the host, the operation and the body: anything else with it is a
    /// new request, decided and counted.
    @Test func anIdIsBoundToWhatItAsked() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        let code = totp(at: Fleet.t0)
        #expect(await fleet.verdict(.code, "alice", code, from: "h1", id: id).verdict == "accepted")
        #expect(await fleet.verdict(.code, "alice", "000000", from: "h1", id: id).verdict == "rejected", "another body")
        #expect(await fleet.verdict(.code, "alice", code, from: "h2", id: id).verdict == "replayed", "another host")
        #expect(await fleet.verdict(.password, "alice", code, from: "h1", id: id).verdict == "rejected", "another operation")
        #expect(try await fleet.record("alice")?.failures == 3)
    }

    @Test func rememberedVerdictsAreTypedAndFew() throws {
        let verdicts: [Attempt] = [Attempt(.accepted(.token("t1")), lock: .open), Attempt(.accepted(.password), lock: .open),
                                   Attempt(.accepted(.recoveryCode), lock: .open), Attempt(.replayed(tokenID: "t1"), lock: .lockedForGood),
                                   Attempt(.rejected, lock: .lockedUntil(1_764_000_600)), Attempt(.locked, lock: .lockedForGood)]
        for a in verdicts {
            let v = RememberedVerdict(requestID: id, binding: "b1", attempt: a)
            #expect(RememberedVerdict(stored: v.stored) == v)
        }
        for bad in ["", "x b accepted-token t1 open", "\(id) b accepted-token T! open", "\(id) b rejected x open", "\(id) b locked - until:x",
                    "\(id)  rejected - open", "\(id) b rejected - open extra"] {
            #expect(RememberedVerdict(stored: bad) == nil, "\(bad)")
        }
        var recent: [RememberedVerdict] = []
        for i in 0..<(RecentRequests.kept + 2) {
            recent = RecentRequests.adding(recent, RememberedVerdict(requestID: String(repeating: "\(i)", count: 16), binding: "b", attempt: verdicts[0]))
        }
        #expect(recent.count == RecentRequests.kept)
        #expect(RecentRequests.find(recent, id: String(repeating: "0", count: 16), binding: "b") == nil, "the oldest are forgotten")
        #expect(RecentRequests.find(recent, id: String(repeating: "5", count: 16), binding: "b") == verdicts[0])
        #expect(RecentRequests.find(recent, id: String(repeating: "5", count: 16), binding: "c") == nil)
        for bad in ["short", "0123456789abcdef\t0123456789abcdef", String(repeating: "a", count: 65), "0123456789abcdef 123"] {
            #expect(!RecentRequests.isValid(bad))
        }
        #expect(Requester(name: "h", serial: "1", role: .host, address: "x", requestID: "bad id").requestID == "", "a malformed id is no id")
    }

    @Test func offlineReportsAreAuditedAndTheEpochMoves() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", card: true)
        let first = try HelperProtocol.decode(await fleet.verdict(.offline, "alice").text, for: .offline)
        guard case .offline(let e1) = first else { Issue.record("no epoch"); return }
        #expect(e1 > 0)
        let report = ["1764000100 success sudo -", "1764000200 failure sshd 198.51.100.7"]
        let again = await fleet.ask("POST", "/v1/verify/offline/alice", report.map { $0 + "\n" }.joined(), as: "h2")
        #expect(try HelperProtocol.decode(again.text, for: .offline) == .offline(epoch: e1))
        let rows = fleet.ledger.withContents { $0.audit }.filter { $0.event.operation == "offline-tap" }
        #expect(rows.map(\.event.result) == ["success", "failure"])
        #expect(rows[1].event.remoteHost == "198.51.100.7" && rows[1].event.service == "sshd" && rows[1].event.reason.contains("offline on h2"))
        #expect(rows.allSatisfy { $0.event.actor == "h2" })
        // A card enrolled again: the epoch moves, every host's pair is void.
        try await fleet.enroll("alice", card: true)
        guard case .offline(let e2) = try HelperProtocol.decode(await fleet.verdict(.offline, "alice").text, for: .offline) else { Issue.record("no epoch"); return }
        #expect(e2 > e1)
        // An unlock moves nothing.
        _ = await fleet.ask("POST", "/v1/admin/unlock/alice", as: "admin1")
        #expect(try HelperProtocol.decode(await fleet.verdict(.offline, "alice").text, for: .offline) == .offline(epoch: e2))
        #expect(try HelperProtocol.decode(await fleet.verdict(.offline, "ghost", report[0]).text, for: .offline) == .offline(epoch: 0))
    }

    @Test func revocationsReachEveryRequest() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        #expect(await fleet.ask("POST", "/v1/admin/revoke-host", "h2\n", as: "admin1").text == "revoked h2\n")
        #expect(await fleet.ask("POST", "/v1/admin/revoke-host", "h2\n", as: "admin1").text == "h2 was already revoked\n")
        let refused = await fleet.verdict(.summary, "alice", from: "h2")
        #expect(refused.status == 403 && refused.close && refused.text.contains("revoked certificate: h2"))
        #expect(await fleet.verdict(.summary, "alice", from: "h1").status == 200)
        let list = await fleet.ask("GET", "/v1/admin/revocations", as: "desk1")
        #expect(list.text.hasPrefix("h2 ") && list.text.hasSuffix(" admin1\n"))
        let audited = fleet.ledger.withContents { $0.audit }.filter { $0.event.operation == "revoke-host" }
        #expect(audited.count == 1 && audited[0].chain == 0 && audited[0].event.reason == "h2")
        #expect(await fleet.ask("POST", "/v1/admin/restore-host", "h2\n", as: "admin1").text == "restored h2\n")
        #expect(await fleet.ask("POST", "/v1/admin/restore-host", "h2\n", as: "admin1").text == "h2 was not revoked\n")
        #expect(await fleet.verdict(.summary, "alice", from: "h2").status == 200)
        #expect(await fleet.ask("POST", "/v1/admin/revoke-host", "a b\n", as: "admin1").status == 400)
        // By serial, as the revocation poller of another replica would read it.
        let serial = try sharedPKI.identifier().identify(sharedCertificates["h3"], now: 0).serial
        fleet.service.revoked.setStored([serial.uppercased()])
        #expect(await fleet.verdict(.summary, "alice", from: "h3").status == 403)
    }

    @Test func aRevocationFileAndOneThatCannotBeRead() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("revoked-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("revoked").path
        try "# revoked hosts\nh2   # stolen laptop\n\n".write(toFile: file, atomically: true, encoding: .utf8)
        let fleet = try Fleet(revokedFile: file)
        #expect(await fleet.ask("GET", "/v1/health", as: "h2").status == 403)
        #expect(await fleet.ask("GET", "/v1/health", as: "h1").status == 200)
        try FileManager.default.removeItem(atPath: file)
        let gone = await fleet.ask("GET", "/v1/health", as: "h1")
        #expect(gone.status == 403 && gone.text.contains("cannot be read"), "an unreadable list refuses everyone")
        try "h1\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(await fleet.ask("GET", "/v1/health", as: "h2").status == 200, "read again when it changes")
        #expect(await fleet.ask("GET", "/v1/health", as: "h1").status == 403)
    }
}

@Suite("smartotpd: administrators' routes")
struct AdminTests {
    @Test func enrolShowListAndTheSecretNeverComesBack() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", card: true, accessKey: Array(repeating: 9, count: 16))
        try await fleet.enroll("bob")
        let row = try #require(fleet.ledger.withContents { $0.rows["alice"] })
        #expect(!row.text.contains(testB32), "the record's text holds no secret")
        #expect(row.secrets["card"] != nil)
        let shown = await fleet.ask("GET", "/v1/admin/records/alice", as: "desk1")
        #expect(shown.status == 200 && !shown.text.contains(testB32) && shown.text.contains("access-key="))
        #expect(await fleet.ask("GET", "/v1/admin/records/nobody", as: "admin1").status == 404)
        #expect(await fleet.ask("GET", "/v1/admin/users", as: "admin1").text == "alice 1 0 0\nbob 1 0 0\n")
        // A second token: the first keeps its sealed value, byte for byte.
        try await fleet.enroll("alice")
        #expect(fleet.ledger.withContents { $0.rows["alice"] }?.secrets["card"] == row.secrets["card"])
        #expect(try await fleet.record("alice")?.tokens.map(\.id) == ["card", "code"])
    }

    @Test func everyChangeThroughTheLedger() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice", hotpToken: true)
        #expect(try await fleet.change(.resync(token: nil, first: hotp(5), second: hotp(6)), "alice").text == "counter 6\n")
        #expect(await fleet.verdict(.code, "alice", hotp(6)).verdict == "replayed")
        #expect(await fleet.verdict(.code, "alice", hotp(7)).verdict == "accepted")
        #expect(try await fleet.change(.resync(token: nil, first: "000000", second: "000001"), "alice").text == "counter -\n")
        #expect(try await fleet.change(.removeToken("nope"), "alice").text == "done 0\n")
        #expect(try await fleet.change(.removeToken("code"), "alice").text == "done 1\n")
        #expect(try await fleet.record("alice")?.tokens.isEmpty == true)
        #expect(fleet.ledger.withContents { $0.rows["alice"] }?.secrets.isEmpty == true, "its sealed secret is gone too")
        let chain = try #require(fleet.ledger.withContents { $0.rows["alice"] }).chain
        #expect(try await fleet.change(.removeUser, "alice").text == "done 1\n")
        #expect(try await fleet.change(.removeUser, "alice").text == "done 0\n")
        #expect(fleet.ledger.withContents { $0.closed[chain] } != nil, "the removed user's chain is closed, its head kept")
        #expect(try await fleet.change(.unlock, "nobody").text == "done 0\n")
        #expect(try await fleet.change(.recovery(hashes: ["$y$x"]), "nobody").text == "done 0\n")
        var placed = UserRecord(user: try UserName("carol"), created: 1)
        placed.tokens.append(Token(id: "code", kind: .code, parameters: try OTPParameters(kind: .totp(period: 30)), secret: SecretBytes(testSecret), created: 1))
        #expect(try await fleet.change(.place(placed), "carol").text == "done 1\n")
        #expect(try await fleet.change(.place(placed), "carol").text == "done 0\n", "never over a record")
        #expect(await fleet.verdict(.code, "carol", totp(at: Fleet.t0)).verdict == "accepted")
        let imported = Importers.Imported(user: try UserName("dave"), token: placed.tokens[0], pin: nil, scratchCodes: [], notes: [])
        #expect(try await fleet.change(.merge(imported, pinAsPassword: false), "dave").text.hasPrefix("imported "))
        #expect(await fleet.ask("POST", "/v1/admin/enroll/erin", "nonsense\n", as: "admin1").status == 400)
        let audit = fleet.ledger.withContents { $0.audit }.map(\.event.operation)
        for op in ["enroll", "resync", "remove", "unlock", "recovery", "place", "import"] { #expect(audit.contains(op), "\(op) audited") }
    }

    @Test func theHelpdeskNeverSetsOrRemovesASecret() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        for (verb, body) in [("enroll", ""), ("remove", "all\n"), ("passwd", "hash x\n"), ("recovery", "hash x\n"), ("import", ""), ("place", "")] {
            let r = await fleet.ask("POST", "/v1/admin/\(verb)/alice", body, as: "desk1")
            #expect(r.status == 403 && r.text.contains("the helpdesk may not \(verb)"))
        }
        #expect(await fleet.ask("POST", "/v1/admin/revoke-host", "h1\n", as: "desk1").status == 403)
        #expect(try await fleet.record("alice")?.tokens.count == 1)
    }

    @Test func auditReads() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        _ = await fleet.verdict(.code, "alice", "000000", from: "h2")
        fleet.ledger.set(now: Fleet.t0 + 100)
        _ = await fleet.verdict(.code, "alice", totp(at: Fleet.t0 + 100), from: "h1")
        let all = await fleet.ask("GET", "/v1/admin/audit?user=alice", as: "desk1")
        let lines = all.text.split(separator: "\n")
        #expect(lines.first == "row\ttime\tactor\tserial\trole\tpeer\trhost\tservice\tuser\toperation\tcredential\tresult\treason")
        #expect(lines.count == 4 && lines[1].contains("\th1\t") && lines[1].contains("\taccepted\t"), "newest first")
        #expect(await fleet.ask("GET", "/v1/admin/audit?host=h2", as: "admin1").text.split(separator: "\n").count == 2)
        #expect(await fleet.ask("GET", "/v1/admin/audit?since=\(Fleet.t0 + 50)", as: "admin1").text.split(separator: "\n").count == 2)
        #expect(await fleet.ask("GET", "/v1/admin/audit?limit=1", as: "admin1").text.split(separator: "\n").count == 2)
        for bad in ["since=x", "limit=0", "limit=100001", "user"] {
            #expect(await fleet.ask("GET", "/v1/admin/audit?\(bad)", as: "admin1").status == 400, "\(bad)")
        }
    }

    /// A database writer changes a row: a sealed secret moved from another user, a seed
    /// written in the clear, a recovery hash of their own planted, the failure count reset,
    /// an older copy of the row put back. Each is refused (422) and audited in chain 0,
    /// never repaired or signed again; removal still works.
    @Test func aRowChangedInTheDatabaseIsRefusedNotRepaired() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        try await fleet.enroll("bob")
        fleet.ledger.withContents { c in
            let moved = c.rows["alice"]?.secrets["code"]
            c.rows["bob"]?.secrets["code"] = moved
        }
        let r = await fleet.verdict(.code, "bob", totp(at: Fleet.t0))
        #expect(r.status == 422 && r.text.contains("changed outside smartotpd"), "\(r.text)")
        #expect(await fleet.verdict(.summary, "bob").status == 422)
        #expect(try await fleet.change(.unlock, "bob").status == 422)
        let refused = fleet.ledger.withContents { $0.audit }.filter { $0.event.user == "bob" && $0.event.result == "refused" }
        #expect(refused.count == 2 && refused.allSatisfy { $0.chain == 0 }, "audited in chain 0, the row's own chain untouched")
        #expect(fleet.ledger.withContents { $0.rows["bob"]?.secrets["code"] } == fleet.ledger.withContents { $0.rows["alice"]?.secrets["code"] },
                "nothing rewritten")
        #expect(await fleet.ask("GET", "/v1/admin/records/bob", as: "admin1").status == 422, "not shown as if it were the record")
        #expect(try await fleet.change(.removeUser, "bob").text == "done 1\n")
        // A seed written in the clear into the text.
        try await fleet.enroll("carol")
        fleet.ledger.withContents { c in
            let text = c.rows["carol"]?.text.replacingOccurrences(of: "secret=AA", with: "secret=\(testB32)") ?? ""
            c.rows["carol"]?.text = text
        }
        let clear = await fleet.verdict(.code, "carol", totp(at: Fleet.t0))
        #expect(clear.status == 422 && clear.text.contains("changed outside smartotpd"), "\(clear.text)")
        // A recovery hash of the writer's own code, and the failure count reset.
        try await fleet.enroll("dave")
        let planted = try #require(PasswordHash.make("abcdabcdabcd"))
        fleet.ledger.withContents { c in c.rows["dave"]?.text += "recovery \(planted)\n" }
        let recovery = await fleet.verdict(.code, "dave", "abcd-abcd-abcd")
        #expect(recovery.status == 422, "a planted recovery code logs nobody in: \(recovery.text)")
        try await fleet.enroll("erin")
        _ = await fleet.verdict(.code, "erin", "000000")
        fleet.ledger.withContents { c in
            let text = c.rows["erin"]?.text.split(separator: "\n").filter { !$0.hasPrefix("failed-at") && !$0.hasPrefix("failures") }
                .joined(separator: "\n") ?? ""
            c.rows["erin"]?.text = text + "\n"
        }
        #expect(await fleet.verdict(.code, "erin", "000000").status == 422, "a failure count reset is refused")
    }

    /// An older copy of a row (its own good mac) put back after the row moved on: refused
    /// by every replica that saw the newer version — the used code stays used.
    @Test func anOlderCopyOfARowIsRefused() async throws {
        let fleet = try Fleet()
        try await fleet.enroll("alice")
        let before = try #require(fleet.ledger.withContents { $0.rows["alice"] })
        let code = totp(at: Fleet.t0)
        #expect(await fleet.verdict(.code, "alice", code).text.contains("accepted"))
        #expect(await fleet.verdict(.summary, "alice").status == 200, "the newer version read (and remembered)")
        fleet.ledger.withContents { $0.rows["alice"] = before }
        let again = await fleet.verdict(.code, "alice", code)
        #expect(again.status == 422 && again.text.contains("older than version"), "\(again.text)")
    }

    /// The versions remembered are bounded (two generations of `remembered` rows): an older
    /// copy is refused while its user is among the rows served lately, and the memory stays
    /// flat however many users are served after.
    @Test func theVersionsRememberedAreBounded() async throws {
        let fleet = try Fleet(remembered: 2)
        for name in ["alice", "bob", "carol", "dave", "erin"] { try await fleet.enroll(name) }
        let before = try #require(fleet.ledger.withContents { $0.rows["alice"] })
        let code = totp(at: Fleet.t0)
        #expect(await fleet.verdict(.code, "alice", code).text.contains("accepted"))
        #expect(await fleet.verdict(.summary, "alice").status == 200, "the newer version read (and remembered)")
        #expect(await fleet.verdict(.summary, "bob").status == 200, "a generation full: alice's version moves to the older")
        fleet.ledger.withContents { $0.rows["alice"] = before }
        #expect(await fleet.verdict(.code, "alice", code).status == 422, "alice is in the older generation: still refused")
        for name in ["carol", "dave", "erin", "bob", "carol"] { #expect(await fleet.verdict(.summary, name).status == 200) }
        #expect(fleet.codec.rememberedVersions <= 4, "two generations of two")
    }

    /// Revocation rows are the fleet's, under the audit key: one whose mac fails keeps its
    /// entry revoked until restored; one deleted in the database stays revoked here.
    @Test func revocationRowsCannotBePlantedOrDeleted() async throws {
        let fleet = try Fleet()
        #expect(await fleet.ask("POST", "/v1/admin/revoke-host", "h2\n", as: "admin1").status == 200)
        #expect(try await fleet.ledger.read(.fleet).revocations.map(\.entry) == ["h2"])
        fleet.ledger.withContents { c in
            c.revocations.removeAll()
            c.revocations.append(RevocationRow(entry: "h1", at: Fleet.t0, by: "writer"))
        }
        let state = try await fleet.ledger.read(.fleet)
        #expect(state.revocations.map(\.entry) == ["h2", "h1"], "h2 stays revoked; h1's row (no mac) fails closed")
        #expect(state.warnings.count == 2, "\(state.warnings)")
        // A restore through the fleet keeps the row, restored; one of a row without a mac
        // writes a row of its own.
        #expect(await fleet.ask("POST", "/v1/admin/restore-host", "h2\n", as: "admin1").status == 200)
        #expect(try await fleet.ledger.read(.fleet).revocations.map(\.entry) == ["h1"])
        // A revoked row edited to say "restored" (its mac fails) stays revoked.
        fleet.ledger.withContents { c in c.revocations.append(RevocationRow(entry: "h3", at: Fleet.t0, by: "writer", restoredAt: Fleet.t0 + 1, restoredBy: "writer")) }
        #expect(try await fleet.ledger.read(.fleet).revocations.map(\.entry).sorted() == ["h1", "h3"])
        #expect(await fleet.ask("POST", "/v1/admin/restore-host", "h1\n", as: "admin1").status == 200)
        #expect(await fleet.ask("POST", "/v1/admin/restore-host", "h3\n", as: "admin1").status == 200)
        #expect(try await fleet.ledger.read(.fleet).revocations.isEmpty)
    }
}
