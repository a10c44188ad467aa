import Testing
import OTPCore
import SmartCard
import SmartOTPAuth
import TokenStore
import Verifier

/// A record service that keeps offline pairs, as FleetRecords with offline=tap: it hands
/// out a spare challenge and records what the flow keeps.
final class KeepingRecords: RecordService {
    let inner: LocalRecords<MemoryStore>
    let spare: [UInt8] = [0xA1, 0xB2, 0xC3, 0xD4, 1, 2, 3, 4]
    var kept: [(card: RecordSummary.Card, challenge: [UInt8], response: [UInt8])] = []

    init(_ inner: LocalRecords<MemoryStore>) { self.inner = inner }

    func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? { try inner.summary(user, now: now) }
    func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] { try inner.issueChallenge(for: user, now: now) }
    func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers? {
        try inner.accessAnswers(for: user, tokenID: tokenID, cardChallenge: cardChallenge, ourChallenge: ourChallenge, now: now)
    }
    func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt { try inner.perform(operation, for: user, now: now) }
    func offlineChallenge(for user: UserName) -> [UInt8]? { spare }
    func keepOffline(for user: UserName, card: RecordSummary.Card, challenge: [UInt8], response: [UInt8], now: Int64) {
        kept.append((card, challenge, response))
    }
}

@Suite("LoginFlow: the offline pair made in an accepted tap")
struct OfflineFlowTests {
    func run(_ h: Harness, _ records: KeepingRecords) -> Outcome {
        LoginFlow(config: h.config, records: records, prompter: ScriptedPrompter([]), reader: h.reader,
                  clock: FixedClock(time: h.time), audit: h.audit).authenticate(user: "alice", service: "test")
    }

    @Test func anAcceptedTapKeepsTheCardsAnswerToTheSpareChallenge() throws {
        var h = try Harness(code: false, password: nil)
        h.config.methods = [.card]
        let records = KeepingRecords(LocalRecords(store: h.store, policy: h.config.policy, isRoot: { _ in false }))
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        #expect(run(h, records) == .success(.card))
        let kept = try #require(records.kept.first)
        #expect(records.kept.count == 1 && kept.card.tokenID == "card" && kept.challenge == records.spare)
        #expect(kept.response == ChallengeResponse.full(secret: SecretBytes(secretBytes), challenge: records.spare, algorithm: .sha1))
    }

    @Test func aRefusedTapKeepsNothing() throws {
        var h = try Harness(code: false, password: nil)
        h.config.methods = [.card]
        let records = KeepingRecords(LocalRecords(store: h.store, policy: h.config.policy, isRoot: { _ in false }))
        h.reader.result = FakeReader.card(SecretBytes(Array("another card's secret".utf8)))
        #expect(run(h, records) != .success(.card))
        #expect(records.kept.isEmpty)
    }
}
