import Testing
import OTPCore
import SmartCard
import SmartOTPAuth
import SmartOTPSystem
import VirtualCard
import Verifier

/// The virtual card's applet in memory, as a card on a reader.
final class AppletCard: CardTransport {
    let applet: OATHApplet
    init(_ applet: OATHApplet) { self.applet = applet }
    func transmit(_ apdu: [UInt8]) throws(CardError) -> [UInt8] { applet.process(apdu) }
}

/// Readers and the cards in them, and a script of what each wait returns. Time passes
/// only when a wait times out (by the whole wait), so the loop's deadline is exact.
final class FakeSlots: CardSlots {
    enum Event { case card(String), timeout, error(CardError) }
    var readerNames: [String]
    var cards: [String: OATHApplet] = [:]
    var script: [Event]
    var clock = 0
    var skipsSeen: [[String]] = []
    var connects: [String] = []

    init(readers: [String], script: [Event]) {
        readerNames = readers
        self.script = script
    }

    func readers(matching filter: String?) throws(CardError) -> [String] {
        readerNames.filter { filter == nil || $0.contains(filter ?? "") }
    }

    func waitForCard(filter: String?, skip: inout [String], timeoutMs: Int, now: () -> Int) throws(CardError) -> String {
        skipsSeen.append(skip)
        guard !script.isEmpty else { clock += timeoutMs; throw .timeout }
        switch script.removeFirst() {
        case .card(let reader):
            guard !skip.contains(reader) else { Issue.record("offered a skipped reader"); throw .timeout }
            return reader
        case .timeout:
            clock += timeoutMs
            throw .timeout
        case .error(let e):
            throw e
        }
    }

    func connect(reader: String) throws(CardError) -> AppletCard {
        connects.append(reader)
        guard let applet = cards[reader] else { throw .cardRemoved }
        return AppletCard(applet)
    }
}

let secret = SecretBytes(Array("12345678901234567890".utf8))

/// A card with the user's credential, its device id, and a token summary for it.
func enrolledCard(salt: [UInt8], name: String = "smartotp:alice") throws -> (OATHApplet, RecordSummary.Card) {
    let applet = OATHApplet(salt: salt)
    let session = OATHSession(transport: AppletCard(applet))
    let info = try session.select()
    try session.put(name: name, parameters: try OTPParameters(kind: .totp(period: 30)), secret: secret, touch: false)
    return (applet, RecordSummary.Card(tokenID: "card", deviceID: info.deviceID, credentialName: name, touch: false, protected: false))
}

struct Harness {
    let slots: FakeSlots
    var issued: [[UInt8]] = []

    func reader() -> TapReader<FakeSlots> {
        let slots = self.slots
        return TapReader(open: { () throws(CardError) in slots }, now: { slots.clock })
    }
}

@Suite("Tap loop: waiting, skipping, the deadline, the verifier's challenge")
struct TapReaderTests {
    final class Authority {
        var challenges: [[UInt8]] = []
        var connectsWhenAsked: [Int] = []
        var refuse = false
        func make(_ slots: FakeSlots) -> TapAuthority {
            TapAuthority(challenge: { _ in
                self.connectsWhenAsked.append(slots.connects.count)
                if self.refuse { return nil }
                let c = [UInt8](repeating: UInt8(self.challenges.count + 1), count: 8)
                self.challenges.append(c)
                return c
            }, access: { _, _, _ in nil })
        }
    }

    @Test func theRightCardAnswersTheVerifiersChallenge() throws {
        let (applet, card) = try enrolledCard(salt: [1, 2, 3, 4, 5, 6, 7, 8])
        let slots = FakeSlots(readers: ["R1"], script: [.card("R1")])
        slots.cards["R1"] = applet
        let authority = Authority()
        let result = Harness(slots: slots).reader().tap(cards: [card], filter: nil, timeoutSeconds: 30,
                                                        authority: authority.make(slots)) { _ in }
        let challenge = try #require(authority.challenges.first)
        #expect(result == .response(tokenID: "card", challenge: challenge,
                                    mac: ChallengeResponse.full(secret: secret, challenge: challenge, algorithm: .sha1)))
        #expect(authority.connectsWhenAsked == [1], "the challenge is asked for once, with the card already connected")
    }

    @Test func aWrongCardIsSkippedAndTheUserTold() throws {
        let (right, card) = try enrolledCard(salt: [1, 1, 1, 1, 1, 1, 1, 1])
        let (other, _) = try enrolledCard(salt: [9, 9, 9, 9, 9, 9, 9, 9])
        let slots = FakeSlots(readers: ["R1", "R2"], script: [.card("R1"), .card("R2")])
        slots.cards = ["R1": other, "R2": right]
        let authority = Authority()
        var notices: [TapNotice] = []
        let result = Harness(slots: slots).reader().tap(cards: [card], filter: nil, timeoutSeconds: 30,
                                                        authority: authority.make(slots)) { notices.append($0) }
        guard case .response(let id, _, _) = result else { Issue.record("\(result)"); return }
        #expect(id == "card")
        #expect(notices == [.wrongCard])
        #expect(slots.skipsSeen.last == ["R1"], "the wrong card's reader is skipped until its card leaves")
        #expect(authority.challenges.count == 1, "no challenge is issued for a card that is not the user's")
    }

    @Test func nobodyTapsUntilTheDeadlineWithReminders() {
        let slots = FakeSlots(readers: ["R1"], script: [])
        var notices: [TapNotice] = []
        let authority = Authority()
        let result = Harness(slots: slots).reader().tap(cards: [], filter: nil, timeoutSeconds: 25,
                                                        authority: authority.make(slots)) { notices.append($0) }
        #expect(result == .timeout)
        #expect(notices == [.secondsLeft(15), .secondsLeft(5)])
        #expect(slots.clock == 25_000, "the whole wait is the timeout, in chunks of the reminder interval")
        #expect(authority.challenges.isEmpty)
    }

    @Test func aWrongCardUntilTheDeadlineIsAFailureNotATimeout() throws {
        let (other, _) = try enrolledCard(salt: [9, 9, 9, 9, 9, 9, 9, 9])
        let (_, card) = try enrolledCard(salt: [1, 1, 1, 1, 1, 1, 1, 1])
        let slots = FakeSlots(readers: ["R1"], script: [.card("R1")])
        slots.cards["R1"] = other
        let result = Harness(slots: slots).reader().tap(cards: [card], filter: nil, timeoutSeconds: 5,
                                                        authority: Authority().make(slots)) { _ in }
        #expect(result == .failed(.wrongCard))
    }

    @Test func noPcscdMeansTheCardCannotBeUsed() {
        let slots = FakeSlots(readers: [], script: [.error(.noService)])
        let result = Harness(slots: slots).reader().tap(cards: [], filter: nil, timeoutSeconds: 5,
                                                        authority: Authority().make(slots)) { _ in }
        #expect(result == .unavailable(.noService))
        let unopenable = TapReader<FakeSlots>(open: { () throws(CardError) in throw .noService }, now: { 0 })
        #expect(!unopenable.readerAvailable(filter: nil))
    }

    @Test func aVerifierThatIssuesNoChallengeEndsTheTapAtOnce() throws {
        let (applet, card) = try enrolledCard(salt: [1, 2, 3, 4, 5, 6, 7, 8])
        let slots = FakeSlots(readers: ["R1"], script: [.card("R1")])
        slots.cards["R1"] = applet
        let authority = Authority()
        authority.refuse = true
        let result = Harness(slots: slots).reader().tap(cards: [card], filter: nil, timeoutSeconds: 30,
                                                        authority: authority.make(slots)) { _ in }
        #expect(result == .failed(.verifierUnavailable))
        #expect(slots.clock == 0, "no waiting for another card")
    }

    /// The context opened to see whether a reader is there is the one the tap uses: one
    /// PC/SC context a login. A tap with no such look first opens its own.
    @Test func theLookForAReaderAndTheTapShareOneContext() throws {
        let (applet, card) = try enrolledCard(salt: [1, 2, 3, 4, 5, 6, 7, 8])
        let slots = FakeSlots(readers: ["R1"], script: [.card("R1"), .card("R1")])
        slots.cards["R1"] = applet
        var opened = 0
        let reader = TapReader<FakeSlots>(open: { () throws(CardError) in opened += 1; return slots }, now: { slots.clock })
        #expect(reader.readerAvailable(filter: nil))
        let authority = Authority()
        _ = reader.tap(cards: [card], filter: nil, timeoutSeconds: 30, authority: authority.make(slots)) { _ in }
        #expect(opened == 1, "the context of the look is the tap's")
        _ = reader.tap(cards: [card], filter: nil, timeoutSeconds: 30, authority: authority.make(slots)) { _ in }
        #expect(opened == 2, "a second tap opens its own")
    }

    @Test func theReaderFilterApplies() {
        let slots = FakeSlots(readers: ["Virtual PCD 00 00", "ACS ACR122U"], script: [])
        let reader = Harness(slots: slots).reader()
        #expect(reader.readerAvailable(filter: "ACS"))
        #expect(!reader.readerAvailable(filter: "Nope"))
    }
}
