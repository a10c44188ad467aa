import Testing
import Foundation
import Glibc
@testable import TokenStore
import OTPCore

@Suite("Records: format, names, refusals")
struct RecordTests {
    @Test func roundTripKeepsEverything() throws {
        let user = try UserName("alice")
        var card = makeTOTPToken(id: "card")
        card.kind = .card
        card.credentialName = "smartotp:alice@host"
        card.deviceID = "0a1b2c3d4e5f6071"
        card.accessKey = SecretBytes(Array(repeating: 7, count: 16))
        card.label = "Work card, blue"
        card.lastUsed = 56_666_666
        card.lastUsedTime = 1_700_000_010
        var phone = makeTOTPToken(id: "phone")
        phone.parameters = try OTPParameters(kind: .hotp, algorithm: .sha512, digits: 8)
        phone.initialCounter = 42
        let record = UserRecord(user: user, tokens: [card, phone], passwordHash: "$y$j9T$abc$def", failures: 2,
                                lastFailure: 1_700_000_020, recoveryCodes: ["$y$j9T$x$y"], created: 1_700_000_000)
        let text = RecordFormat.serialise(record)
        let back = try RecordFormat.parse(text, path: "mem")
        #expect(RecordFormat.serialise(back) == text)
        #expect(back.tokens.count == 2)
        #expect(back.tokens[0].label == "Work card, blue")
        #expect(back.tokens[0].credentialName == "smartotp:alice@host")
        #expect(back.tokens[0].accessKey?.constantTimeEquals(SecretBytes(Array(repeating: 7, count: 16))) == true)
        #expect(back.tokens[1].initialCounter == 42)
        #expect(back.tokens[1].parameters.algorithm == .sha512)
        #expect(back.failures == 2 && back.lastFailure == 1_700_000_020)
        #expect(!text.contains("12345678901234567890"), "secrets are Base32, never the raw bytes")
    }

    @Test func malformedRecordsNameTheLine() {
        let cases: [(String, Int, String)] = [
            ("garbage\n", 1, "expected"),
            ("smartotp-record 2\nuser a\n", 1, "expected"),
            ("smartotp-record 1\nuser ../etc\n", 2, "invalid user name"),
            ("smartotp-record 1\nuser a\nfailures x 0\n", 3, "failures"),
            ("smartotp-record 1\nuser a\nfailures 9223372036854775807 0\n", 3, "failures"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=totp period=30 algorithm=sha1 digits=6 secret=!!\n", 3, "secret"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=totp period=30 algorithm=md5 digits=6 secret=JBSWY3DP\n", 3, "algorithm"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=totp algorithm=sha1 digits=6 secret=JBSWY3DP\n", 3, "period"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=totp period=30 algorithm=sha1 digits=12 secret=JBSWY3DP\n", 3, "digits"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=card type=totp period=30 algorithm=sha1 digits=6 secret=JBSWY3DP\n", 3, "name="),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=hotp counter=99999999999999999999999 algorithm=sha1 digits=6 secret=JBSWY3DP\n", 3, "number"),
            ("smartotp-record 1\nuser a\nbogus 1\n", 3, "unknown keyword"),
            ("smartotp-record 1\ncreated 5\n", 1, "no 'user'"),
            ("", 1, "empty"),
        ]
        for (text, line, fragment) in cases {
            do {
                _ = try RecordFormat.parse(text, path: "/x")
                Issue.record("accepted: \(text)")
            } catch {
                guard case .malformed(let path, let l, let reason) = error else { Issue.record("\(error)"); continue }
                #expect(path == "/x")
                #expect(l == line, "\(text)")
                #expect(reason.contains(fragment), "\(reason)")
            }
        }
    }

    @Test func hostileUserNamesAreRefused() {
        for bad in ["", "..", ".", "../etc/passwd", "a/b", "-rf", ".hidden", "a\nb", "a\u{0}b", "a b",
                    String(repeating: "x", count: 65), "é", "a$b", "a*"] {
            #expect(throws: StoreError.self, "\(bad.debugDescription)") { try UserName(bad) }
        }
        for good in ["alice", "bob.smith", "user_1", "a-b", "alice@example.com", "HOST$", String(repeating: "x", count: 64)] {
            #expect(throws: Never.self) { try UserName(good) }
        }
    }

    @Test func lockoutArithmetic() throws {
        var r = UserRecord(user: try UserName("a"), created: 0)
        r.failures = 3
        r.lastFailure = 1000
        #expect(r.isLocked(deny: 3, unlockTime: 60, now: 1059))
        #expect(!r.isLocked(deny: 3, unlockTime: 60, now: 1060))
        #expect(!r.isLocked(deny: 4, unlockTime: 60, now: 1001))
        #expect(r.isLocked(deny: 3, unlockTime: 0, now: 99_999_999))
        #expect(!r.isLocked(deny: 0, unlockTime: 60, now: 1001))
        #expect(r.secondsUntilUnlock(unlockTime: 60, now: 1030) == 30)
        r.lastFailure = Int64.max
        #expect(r.isLocked(deny: 3, unlockTime: 60, now: 0))
        r.lastFailure = Int64.min
        #expect(r.secondsUntilUnlock(unlockTime: 60, now: Int64.max) == 0)
        r.failures = UserRecord.maxFailures
        r.countFailure(at: 5)
        #expect(r.failures == UserRecord.maxFailures && r.lastFailure == 5)
    }

    @Test func passwordHashIsYescryptAndVerifies() throws {
        let hash = try #require(PasswordHash.make("1234"))
        #expect(hash.hasPrefix("$y$"))
        #expect(PasswordHash.verify("1234", hash: hash))
        #expect(!PasswordHash.verify("1235", hash: hash))
        #expect(!PasswordHash.verify("1234", hash: "*"))
        #expect(!PasswordHash.verify("1234", hash: "$y$garbage"))
        #expect(!PasswordHash.verify("", hash: ""))
        #expect(PasswordHash.make("1234") != hash, "fresh salt each time")
    }
}

@Suite("FileStore: on disk")
struct FileStoreTests {
    @Test func writeReadUpdateRemove() throws {
        let t = try TempStore()
        let user = try UserName("alice")
        #expect(try t.store.read(user) == nil)
        try t.store.update(user) { record, changed in
            record = UserRecord(user: user, tokens: [makeTOTPToken()], created: 5)
            changed = true
        }
        let back = try #require(try t.store.read(user))
        #expect(back.tokens.first?.id == "phone")
        var st = stat()
        #expect(stat(t.root + "/users/alice", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(stat(t.root, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(try t.store.list() == [user])
        // No temp files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.root + "/users") == ["alice"])
        try t.store.update(user) { record, changed in record = nil; changed = true }
        #expect(try t.store.read(user) == nil)
        #expect(FileManager.default.fileExists(atPath: t.root + "/locks/alice"), "lock files are never deleted")
    }

    @Test func unchangedRecordIsNotRewritten() throws {
        let t = try TempStore()
        let user = try UserName("bob")
        try t.store.update(user) { r, c in r = UserRecord(user: user, created: 1); c = true }
        var before = stat()
        stat(t.root + "/users/bob", &before)
        try t.store.update(user) { r, c in r?.failures = 9 }  // changed stays false
        var after = stat()
        stat(t.root + "/users/bob", &after)
        #expect(before.st_ino == after.st_ino)
        #expect(try t.store.read(user)?.failures == 0)
    }

    @Test func refusesLoosePermissionsSymlinksAndWrongOwner() throws {
        let t = try TempStore()
        let user = try UserName("carol")
        try t.store.update(user) { r, c in r = UserRecord(user: user, created: 1); c = true }
        let record = t.root + "/users/carol"

        chmod(record, 0o644)
        #expect(throws: StoreError.self) { try t.store.read(user) }
        do { _ = try t.store.read(user) } catch {
            #expect(error.description.contains(record) && error.description.contains("chmod 600"))
        }
        chmod(record, 0o600)

        chmod(t.root, 0o755)
        #expect(throws: StoreError.self) { try t.store.read(user) }
        chmod(t.root, 0o700)

        // A record that is a symlink is refused, not followed.
        let target = t.root + "/../elsewhere"
        try RecordFormat.serialise(UserRecord(user: try UserName("dave"), created: 1)).write(toFile: target, atomically: false, encoding: .utf8)
        chmod(target, 0o600)
        symlink(target, t.root + "/users/dave")
        do { _ = try t.store.read(try UserName("dave")); Issue.record("symlink followed") } catch {
            guard case .insecure(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("symbolic link"))
        }

        // A store owned by someone else: pretend we require another owner.
        let other = FileStore(root: t.root, owner: geteuid() &+ 1)
        #expect(throws: StoreError.self) { try other.read(user) }

        // A root that is a symlink.
        let link = t.root + "-link"
        symlink(t.root, link)
        #expect(throws: StoreError.self) { try FileStore(root: link, owner: geteuid()).read(user) }
    }

    @Test func malformedRecordIsReportedNeverRewritten() throws {
        let t = try TempStore()
        let user = try UserName("erin")
        try t.store.prepare()
        let path = t.root + "/users/erin"
        let junk = "smartotp-record 1\nuser erin\ntoken nonsense\n"
        try junk.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        #expect(throws: StoreError.malformed(path: path, line: 3, reason: "token field 'nonsense' is not key=value")) {
            try t.store.read(user)
        }
        #expect(throws: StoreError.self) { try t.store.update(user) { r, c in c = true } }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == junk)
        // Binary garbage and an oversized file.
        try Data([0xFF, 0xFE, 0x00]).write(to: URL(fileURLWithPath: path))
        #expect(throws: StoreError.malformed(path: path, line: 1, reason: "not UTF-8 text")) { try t.store.read(user) }
        try Data(repeating: 0x41, count: RecordFormat.maxSize + 1).write(to: URL(fileURLWithPath: path))
        #expect(throws: StoreError.tooLarge(path: path)) { try t.store.read(user) }
        // A record whose user line names someone else.
        try RecordFormat.serialise(UserRecord(user: try UserName("mallory"), created: 1)).write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: StoreError.self) { try t.store.read(user) }
    }
}

@Suite("Import from pam_oath and google-authenticator")
struct ImportTests {
    @Test func pamOathUsersFile() throws {
        let text = """
        # comment
        HOTP alice - 3132333435363738393031323334353637383930
        HOTP/E/8 bob 1234 3132333435363738393031323334353637383930 7
        HOTP/T30 carol - 3132333435363738393031323334353637383930 56666666 2024-01-01T00:00:00L
        HOTP/T60/7 dave - 31323334
        """
        let users = try Importers.pamOath(text, path: "/etc/users.oath", now: 1)
        #expect(users.map(\.user.value) == ["alice", "bob", "carol", "dave"])
        #expect(users[0].token.parameters.kind == .hotp && users[0].password == nil)
        #expect(users[1].token.parameters.digits == 8 && users[1].token.initialCounter == 7 && users[1].password == "1234")
        #expect(users[2].token.parameters.kind == .totp(period: 30) && users[2].token.lastUsed == 56_666_666)
        #expect(users[3].token.parameters.kind == .totp(period: 60) && users[3].token.parameters.digits == 7)
        #expect(OTP.code(secret: users[0].token.secret, parameters: users[0].token.parameters, counter: 0) == "755224")
        #expect(throws: StoreError.malformed(path: "f", line: 1, reason: "unsupported token type MOTP")) {
            try Importers.pamOath("MOTP x - 3132", path: "f", now: 1)
        }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP ../x - 3132", path: "f", now: 1) }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP x - zz", path: "f", now: 1) }
        #expect(throws: StoreError.self) { try Importers.pamOath("HOTP x", path: "f", now: 1) }
    }

    @Test func googleAuthenticatorFile() throws {
        let totp = "JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n12345678\n87654321\n"
        let a = try Importers.googleAuthenticator(totp, path: "g", user: try UserName("alice"), now: 1)
        #expect(a.token.parameters.kind == .totp(period: 30))
        #expect(a.scratchCodes == ["12345678", "87654321"])
        let hotp = "JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 5\n"
        let b = try Importers.googleAuthenticator(hotp, path: "g", user: try UserName("bob"), now: 1)
        #expect(b.token.parameters.kind == .hotp && b.token.initialCounter == 5)
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("", path: "g", user: try UserName("c"), now: 1) }
        #expect(throws: StoreError.self) { try Importers.googleAuthenticator("JBSW\n123\n", path: "g", user: try UserName("c"), now: 1) }
    }
}
