import Testing
import OTPCore
import SmartOTPAdmin
import TokenStore
import Verifier

@Suite("Import: idempotent and never weaker")
struct RecordImportTests {
    let ga = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" DISALLOW_REUSE 100\n\" TOTP_AUTH\n12345678\n87654321\n"

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
