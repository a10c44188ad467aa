import Testing
import OTPCore
import SmartOTPAuth
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
}

@Suite("Import: idempotent and never weaker")
struct RecordImportTests {
    let ga = "JBSWY3DPEHPK3PXP\n\" DISALLOW_REUSE 100\n\" TOTP_AUTH\n12345678\n87654321\n"

    @Test func importingTwiceIsImportingOnce() throws {
        let user = try UserName("alice")
        let item = try Importers.googleAuthenticator(ga, path: "g", user: user, now: 1)
        let (first, r1) = try #require(RecordImport.merge(item, into: nil, now: 1, pinAsPassword: false))
        #expect(r1.newToken && r1.recoveryAdded == 2 && first.tokens.count == 1)
        let (second, r2) = try #require(RecordImport.merge(item, into: first, now: 2, pinAsPassword: false))
        #expect(!r2.newToken && r2.recoveryAdded == 0 && r2.recoverySkipped == 2)
        #expect(second.tokens.count == 1 && second.recoveryCodes.count == 2)
    }

    @Test func aUsedScratchCodeStaysUsed() throws {
        let user = try UserName("alice")
        let item = try Importers.googleAuthenticator(ga, path: "g", user: user, now: 1)
        var (record, _) = try #require(RecordImport.merge(item, into: nil, now: 1, pinAsPassword: false))
        #expect(RecoveryCode.consume("12345678", in: &record))
        let (again, report) = try #require(RecordImport.merge(item, into: record, now: 2, pinAsPassword: false))
        #expect(report.recoverySkipped == 2 && again.recoveryCodes.count == 1)
        var copy = again
        #expect(!RecoveryCode.consume("12345678", in: &copy))
    }

    @Test func reimportKeepsTheLaterReplayState() throws {
        let user = try UserName("alice")
        let item = try Importers.googleAuthenticator(ga, path: "g", user: user, now: 1)
        var (record, _) = try #require(RecordImport.merge(item, into: nil, now: 1, pinAsPassword: false))
        record.tokens[0].lastUsed = 500  // logins since the first import
        let (again, _) = try #require(RecordImport.merge(item, into: record, now: 2, pinAsPassword: false))
        #expect(again.tokens[0].lastUsed == 500)
    }

    @Test func aPinIsNotAFactorUnlessAskedFor() throws {
        let item = try #require(try Importers.pamOath("HOTP bob 4711 3132333435363738393031323334353637383930", path: "f", now: 1).first)
        let (plain, r1) = try #require(RecordImport.merge(item, into: nil, now: 1, pinAsPassword: false))
        #expect(plain.passwordHash == nil && !r1.pinSet)
        let (asked, r2) = try #require(RecordImport.merge(item, into: nil, now: 1, pinAsPassword: true))
        let hash = try #require(asked.passwordHash)
        #expect(r2.pinSet && PasswordHash.verify("4711", hash: hash))
    }
}
