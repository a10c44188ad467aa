import Testing
import OTPCore
import TokenStore
import Verifier

@Suite("Helper protocol: module ↔ smartotp-chkotp")
struct HelperProtocolTests {
    let summary = RecordSummary(
        cards: [.init(tokenID: "card", deviceID: "0a1b", credentialName: "smartotp:alice@host", touch: true, protected: true),
                .init(tokenID: "card2", deviceID: nil, credentialName: "Bank: alice", touch: false, protected: false)],
        codeDigits: [6, 8], recoveryCodes: 3, hasPassword: true, failures: 2, lock: .lockedUntil(1_700_000_600))

    @Test func summaryRoundTrips() throws {
        let text = HelperProtocol.encode(summary)
        #expect(try HelperProtocol.decodeSummary(text) == summary)
        #expect(try HelperProtocol.decodeSummary(HelperProtocol.encode(nil as RecordSummary?)) == nil)
        var open = summary
        open.lock = .lockedForGood
        #expect(try HelperProtocol.decodeSummary(HelperProtocol.encode(open))?.lock == .lockedForGood)
    }

    @Test func summaryCarriesNoSecret() throws {
        // Whatever the record holds, the summary has only these keys.
        let keys = HelperProtocol.encode(summary).split(separator: "\n").dropFirst().map { $0.split(separator: " ")[0] }
        #expect(Set(keys) == ["card", "digits", "recovery", "password", "failures", "lock"])
    }

    @Test func verdictsRoundTrip() throws {
        for attempt in [Attempt(.accepted(.token("card")), lock: .open), Attempt(.accepted(.password), lock: .open),
                        Attempt(.accepted(.recoveryCode), lock: .open), Attempt(.replayed(tokenID: "phone"), lock: .open),
                        Attempt(.rejected, lock: .lockedUntil(5)), Attempt(.locked, lock: .lockedForGood)] {
            #expect(try HelperProtocol.decodeAttempt(HelperProtocol.encode(attempt)) == attempt)
        }
        #expect(try HelperProtocol.decodeChallenge(HelperProtocol.encode(challenge: [1, 2, 3])) == [1, 2, 3])
        let a = AccessAnswers(response: [1, 2], expected: [3, 4])
        #expect(try HelperProtocol.decodeAccess(HelperProtocol.encode(access: a)) == a)
        #expect(try HelperProtocol.decodeAccess(HelperProtocol.encode(access: nil)) == nil)
    }

    @Test func malformedAnswersAreErrorsNotGuesses() {
        let bad = ["", "accepted card\n", "smartotp-helper 2\nverdict rejected\nlock open\n",
                   "smartotp-helper 1\nverdict maybe\nlock open\n", "smartotp-helper 1\nverdict rejected\n",
                   "smartotp-helper 1\nverdict rejected\nlock until x\n"]
        for text in bad {
            #expect(throws: HelperProtocol.ParseError.self, "\(text)") { try HelperProtocol.decodeAttempt(text) }
        }
        for text in ["smartotp-helper 1\ncard ../x - n 0 0\nlock open\n", "smartotp-helper 1\ndigits 9\nlock open\n",
                     "smartotp-helper 1\nrecovery 1\n", "smartotp-helper 1\nsecret JBSW\nlock open\n"] {
            #expect(throws: HelperProtocol.ParseError.self, "\(text)") { try HelperProtocol.decodeSummary(text) }
        }
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.decodeChallenge("smartotp-helper 1\nchallenge zz\n") }
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.decodeAccess("smartotp-helper 1\naccess 01\n") }
    }

    /// A fleet host's offline report travels as lines, the epoch comes back typed, and the
    /// client's last frame tells "no verifier answered" from "one refused".
    @Test func offlineReportsEpochsAndNotices() throws {
        let lines = [OfflineReport.line(at: 1_764_000_000, result: "success", service: "sudo", remoteHost: ""),
                     OfflineReport.line(at: 1_764_000_100, result: "failure", service: "ss hd\n", remoteHost: "203.0.113.9")]
        #expect(lines[1] == "1764000100 failure ss?hd? 203.0.113.9", "one word each, printable")
        let request = HelperProtocol.Request.offline(report: lines)
        #expect(request.operation == .offline)
        #expect(try HelperProtocol.request(.offline, lines: HelperProtocol.lines(Array(request.input.utf8))) == request)
        #expect(try HelperProtocol.request(.offline, lines: [""]) == .offline(report: []), "nothing to report: the epoch only")
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.request(.offline, lines: ["1 success sudo"]) }
        #expect(throws: HelperProtocol.ParseError.self) {
            try HelperProtocol.request(.offline, lines: Array(repeating: lines[0], count: OfflineReport.maxLines + 1))
        }
        let reply = HelperProtocol.Reply.offline(epoch: 1_764_000_000_123_456)
        #expect(try HelperProtocol.decode(HelperProtocol.encode(reply), for: .offline) == reply)
        #expect(throws: HelperProtocol.ParseError.self) { try HelperProtocol.decode("smartotp-helper 1\nepoch -1\n", for: .offline) }
        #expect(FleetNotice.read(FleetNotice.text("connect timed out")) == "connect timed out")
        #expect(FleetNotice.read("smartotp-fleet no-verdict\n") == "no reason given")
        #expect(FleetNotice.read("smartotp-helper 1\nverdict rejected\nlock open\n") == nil)
    }

    @Test func aTypedReplyIsEncodedOnceAndReadBackByItsOperation() throws {
        let replies: [(HelperProtocol.Operation, HelperProtocol.Reply, String)] = [
            (.summary, .summary(summary), "summary"), (.summary, .summary(nil), "summary"),
            (.challenge, .challenge([9, 8, 7, 6, 5, 4, 3, 2]), "challenge"),
            (.access, .access(AccessAnswers(response: [1], expected: [2])), "access"), (.access, .access(nil), "access"),
            (.code, .attempt(Attempt(.accepted(.token("phone")), lock: .open)), "accepted"),
            (.password, .attempt(Attempt(.rejected, lock: .lockedUntil(9))), "rejected"),
            (.tap, .attempt(Attempt(.replayed(tokenID: "card"), lock: .open)), "replayed"),
            (.code, .attempt(Attempt(.locked, lock: .lockedForGood)), "locked"),
        ]
        for (operation, reply, result) in replies {
            #expect(try HelperProtocol.decode(HelperProtocol.encode(reply), for: operation) == reply)
            #expect(reply.result == result, "metrics count the enum, not the text")
        }
        #expect(HelperProtocol.Reply.attempt(Attempt(.accepted(.password), lock: .open)).accepted)
        #expect(!HelperProtocol.Reply.attempt(Attempt(.rejected, lock: .open)).accepted)
        #expect(throws: HelperProtocol.ParseError.self, "a verdict is not a summary") {
            try HelperProtocol.decode(HelperProtocol.encode(.attempt(Attempt(.rejected, lock: .open))), for: .summary)
        }
    }
}
