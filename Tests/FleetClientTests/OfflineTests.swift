import Foundation
import FleetClient
import OTPCore
import POSIX
import SmartOTPFleet
import Testing
import TokenStore
import Verifier

/// A verifier in memory, as smartotpd answers the fleet client: a user with a card, taps
/// on challenges it issued, the offline stock of an accepted tap (OfflineWire), the offline
/// reports and the epoch. `down` makes it unreachable; `refusing` makes it answer 403.
final class FakeVerifiers: Verifiers, @unchecked Sendable {
    let secret = SecretBytes(Array("offline-card-secret!".utf8))
    var card = Token(id: "card", kind: .card, parameters: (try? OTPParameters(kind: .totp(period: 30))) ?? .default,
                     secret: SecretBytes(Array("offline-card-secret!".utf8)), credentialName: "smartotp:alice", created: 1)
    var down = false
    var refusing = false
    var epoch: Int64 = 77
    var issued: [[UInt8]] = []
    var reported: [String] = []
    var asked: [(HelperProtocol.Operation, Int)] = []
    let now: Int64

    init(now: Int64) { self.now = now }

    func ask(_ operation: HelperProtocol.Operation, _ user: UserName, body: [UInt8], timeout: Int) -> Asked {
        asked.append((operation, timeout))
        if down { return .unreachable("test: connect timed out") }
        if refusing { return .refused("the verifier answered 403: revoked") }
        let lines = HelperProtocol.lines(body)
        switch operation {
        case .summary:
            return .answer(HelperProtocol.encode(.summary(RecordSummary(
                cards: [.init(tokenID: "card", deviceID: nil, credentialName: "smartotp:alice", touch: false, protected: false)],
                codeDigits: [6], recoveryCodes: 0, hasPassword: false, failures: 0, lock: .open))))
        case .offline:
            reported += lines.filter { !$0.isEmpty }
            return .answer(HelperProtocol.encode(.offline(epoch: epoch)))
        case .challenge:
            let c: [UInt8] = [9, 9, 9, 9, 9, 9, 9, UInt8(issued.count)]
            issued.append(c)
            return .answer(HelperProtocol.encode(challenge: c))
        case .tap:
            guard let c = try? Hex.decode(lines[1]), let r = try? Hex.decode(lines[2]) else { return .refused("400") }
            let ok = issued.contains(c) && ChallengeResponse.verify(response: r, secret: secret, challenge: c, algorithm: .sha1)
            let attempt = HelperProtocol.encode(Attempt(ok ? .accepted(.token("card")) : .rejected, lock: .open))
            return .answer(attempt + (ok ? OfflineWire.answerLines(card: card, spares: OfflineWire.spares(lines), epoch: epoch, now: now) : ""))
        default:
            return .answer(HelperProtocol.encode(Attempt(.rejected, lock: .open)))
        }
    }
}

extension OTPParameters {
    static var `default`: OTPParameters { (try? OTPParameters(kind: .totp(period: 30))) ?? (try! OTPParameters(kind: .hotp)) }
}

/// offline=tap in the fleet client: the stock an accepted tap brings, a tap decided from it
/// while no verifier answers (counted first, by the one verdict procedure), its age, the
/// reports and the epoch at the next online contact.
@Suite("FleetClient: offline taps from the verifiers' stock")
struct OfflineTests {
    let now: Int64 = 1_764_000_000
    let alice = (try? UserName("alice"))!

    func mac(_ challenge: [UInt8], _ v: FakeVerifiers) -> [UInt8] { ChallengeResponse.full(secret: v.secret, challenge: challenge, algorithm: .sha1) }

    /// A store folder (0700), removed after.
    func withStore<R>(_ body: (String) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-offline-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: dir) }
        return try body(dir.path)
    }

    func client(_ v: FakeVerifiers, store: String?, at time: Int64? = nil, deny: Int = 3) -> FleetClient {
        var counter: UInt8 = 0
        return FleetClient(verifiers: v, settings: ClientSettings(timeout: 10, offlineStore: store, offlineMaxAge: 3600,
                                                                 policy: LockPolicy(deny: deny)),
                           service: "sudo", isRoot: { _ in false }, clock: { time ?? self.now },
                           random: { counter &+= 1; return [counter, 1, 2, 3, 4, 5, 6, 7] })
    }

    /// An online login: summary, challenge, tap; its stock kept.
    func onlineTap(_ c: FleetClient, _ v: FakeVerifiers) throws {
        #expect(try HelperProtocol.decodeSummary(c.answer(.summary, for: alice))?.offline == false)
        let challenge = try HelperProtocol.decodeChallenge(c.answer(.challenge, for: alice))
        let answer = c.answer(.perform(.tap(tokenID: "card", challenge: challenge, response: mac(challenge, v))), for: alice)
        #expect(try HelperProtocol.decodeAttempt(answer).verdict == .accepted(.token("card")), "the module gets the attempt alone")
    }

    /// An offline login: summary (offline), challenge (the stock's), tap.
    func offlineTap(_ c: FleetClient, _ v: FakeVerifiers, answer: (([UInt8]) -> [UInt8])? = nil) throws -> Attempt? {
        let text = c.answer(.summary, for: alice)
        guard FleetNotice.read(text) == nil, let summary = try HelperProtocol.decodeSummary(text) else { return nil }
        #expect(summary.offline && summary.codeDigits.isEmpty && !summary.hasPassword && summary.cards.map(\.tokenID) == ["card"])
        if summary.lock.isLocked { return Attempt(.locked, lock: summary.lock) }
        let challenge = try HelperProtocol.decodeChallenge(c.answer(.challenge, for: alice))
        let verdict = c.answer(.perform(.tap(tokenID: "card", challenge: challenge, response: (answer ?? { mac($0, v) })(challenge))), for: alice)
        return try HelperProtocol.decodeAttempt(verdict)
    }

    @Test func anAcceptedTapBringsAStockAndEachPairLogsInOnce() throws {
        try withStore { store in
            let v = FakeVerifiers(now: now)
            let c = client(v, store: store)
            try onlineTap(c, v)
            let stock = try #require(OfflineStocks(store: store).read(alice))
            #expect(stock.pairs.count == OfflineWire.maxSpares && stock.epoch == 77 && stock.created == now)
            let text = try String(contentsOfFile: store + "/offline/alice", encoding: .utf8)
            #expect(!text.contains(Hex.encode(mac(stock.pairs[0].challenge, v))), "the stock holds no answer of the card")
            let mode = try FileManager.default.attributesOfItem(atPath: store + "/offline/alice")[.posixPermissions] as? Int
            #expect(mode == 0o600)
            v.down = true
            #expect(try offlineTap(c, v)?.verdict == .accepted(.token("card")))
            #expect(try offlineTap(c, v)?.verdict == .accepted(.token("card")), "the next pair")
            #expect(OfflineStocks(store: store).read(alice)?.pairs.count == OfflineWire.maxSpares - 2, "each used up")
            // A typed code and the simple password are never checked offline.
            #expect(FleetNotice.read(c.answer(.perform(.code("123456")), for: alice)) != nil)
            #expect(FleetNotice.read(c.answer(.perform(.password("1234")), for: alice)) != nil)
            // Online again: the offline logins reported, the stock kept (the same epoch).
            v.down = false
            _ = client(v, store: store).answer(.summary, for: alice)  // the next login: a session of its own
            #expect(v.reported.count == 2 && v.reported.allSatisfy { $0.hasPrefix("\(now) success sudo") })
            #expect(OfflineStocks(store: store).read(alice)?.reports.isEmpty == true)
        }
    }

    @Test func aWrongCardIsCountedFirstAndLocksWithTheHostsPolicy() throws {
        try withStore { store in
            let v = FakeVerifiers(now: now)
            let c = client(v, store: store)
            try onlineTap(c, v)
            v.down = true
            for _ in 0..<3 {
                #expect(try offlineTap(c, v, answer: { _ in Array(repeating: 0xEE, count: 20) })?.verdict == .rejected)
            }
            #expect(try offlineTap(c, v)?.verdict == .locked, "three failures lock, offline too")
            #expect(OfflineStocks(store: store).read(alice)?.failures.count == 3)
            v.down = false
            _ = client(v, store: store).answer(.summary, for: alice)
            #expect(v.reported.filter { $0.contains(" failure ") || $0.contains(" locked ") }.count == 3)
            #expect(OfflineStocks(store: store).read(alice)?.failures.isEmpty == true, "online, the fleet's count rules again")
        }
    }

    /// A pair nobody made: a challenge of the host's choosing, or a stock written by hand
    /// without the verifier's verifier, logs nobody in.
    @Test func onlyTheVerifiersPairsCount() throws {
        try withStore { store in
            let v = FakeVerifiers(now: now)
            let c = client(v, store: store, deny: 0)
            try onlineTap(c, v)
            v.down = true
            let forged: [UInt8] = [1, 1, 1, 1, 1, 1, 1, 1]
            let refused = c.answer(.perform(.tap(tokenID: "card", challenge: forged, response: mac(forged, v))), for: alice)
            #expect(FleetNotice.read(refused) != nil, "a challenge not in the stock goes to the verifiers, and none answers")
            try OfflineStocks(store: store).update(alice) { (s: inout OfflineStock?) in
                let forged = s?.pairs.map { OfflineStock.Pair(challenge: $0.challenge, verifier: String(repeating: "0", count: 64)) } ?? []
                s?.pairs = forged
            }
            #expect(try offlineTap(c, v)?.verdict == .rejected)
        }
    }

    @Test func anOldStockAVoidEpochOrARefusalGivesNoOfflineLogin() throws {
        try withStore { store in
            let v = FakeVerifiers(now: now)
            try onlineTap(client(v, store: store), v)
            v.down = true
            #expect(try offlineTap(client(v, store: store, at: now + 3600), v) == nil, "offline_max_age from the online tap")
            #expect(FleetNotice.read(client(v, store: store, at: now + 3600).answer(.summary, for: alice))?.contains("older than offline_max_age") == true)
            v.down = false
            v.refusing = true
            #expect(FleetNotice.read(client(v, store: store).answer(.summary, for: alice)) != nil, "a refusal is no reason to go offline")
            v.refusing = false
            v.epoch = 78
            _ = client(v, store: store).answer(.summary, for: alice)
            #expect(OfflineStocks(store: store).read(alice) == nil, "another epoch: the card was changed, the stock is void")
        }
    }

    @Test func afterAnUnansweredRequestTheNextAsksBriefly() throws {
        try withStore { store in
            let v = FakeVerifiers(now: now)
            v.down = true
            let c = client(v, store: store)
            _ = c.answer(.summary, for: alice)
            _ = c.answer(.challenge, for: alice)
            #expect(v.asked.count == 1, "within one login, no verifier is asked again after none answered")
            _ = client(v, store: store).answer(.summary, for: alice)
            #expect(v.asked.map(\.1) == [10, FleetClient.briefTimeout], "the next login asks briefly")
            v.down = false
            _ = client(v, store: store).answer(.perform(.code("123456")), for: alice)
            _ = client(v, store: store).answer(.perform(.code("123456")), for: alice)
            #expect(v.asked.last?.1 == 10, "answered: the whole timeout again")
        }
    }

    @Test func withoutOfflineTapNothingIsKeptOrDecided() throws {
        let v = FakeVerifiers(now: now)
        let c = client(v, store: nil)
        try onlineTap(c, v)
        v.down = true
        #expect(FleetNotice.read(c.answer(.summary, for: alice)) != nil)
        #expect(FleetNotice.read(c.answer(.offline(report: []), for: alice)) != nil, "reports are the client's own")
        v.down = false
        v.refusing = true
        _ = c.answer(.summary, for: alice)
        #expect(c.refused)
    }

    @Test func theStockReadsBackAndRefusesWhatIsMalformed() throws {
        let card = RecordSummary.Card(tokenID: "card", deviceID: "0a1b", credentialName: "smartotp:alice", touch: true, protected: false)
        var s = OfflineStock(user: alice, card: card, epoch: 5, created: 6,
                             pairs: [.init(challenge: [1, 2, 3, 4, 5, 6, 7, 8], verifier: String(repeating: "a", count: 64))])
        s.failures = [10, 11]
        for i in 0..<(OfflineReport.maxLines + 5) { s.report(OfflineReport.line(at: Int64(100 + i), result: "success", service: "sudo", remoteHost: "")) }
        #expect(s.reports.count == OfflineReport.maxLines && s.reports.first?.hasPrefix("105 success sudo -") == true)
        #expect(OfflineStock.parse(s.text, user: alice) == s)
        for bad in ["", "smartotp-offline 1\ncard card - 61 0\nstock 1 1\n", s.text + "pair 00 aa\n", s.text + "what 1\n",
                    s.text + "stock 1 1\n", "smartotp-offline 2\ncard bad/id - 61 0\nstock 1 1\n", s.text + "report 1 maybe a b\n"] {
            #expect(OfflineStock.parse(bad, user: alice) == nil, "\(bad)")
        }
    }
}
