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
        phone.windowLimit = 3
        let record = UserRecord(user: user, tokens: [card, phone], passwordHash: "$y$j9T$abc$def",
                                failureTimes: [1_700_000_020, 1_700_000_010], recoveryCodes: ["$y$j9T$x$y"],
                                usedRecoveryCodes: ["$y$j9T$u$v"],
                                challenges: [PendingChallenge(bytes: [1, 2, 3, 4, 5, 6, 7, 8], expires: 1_700_000_060)],
                                created: 1_700_000_000)
        let text = RecordFormat.serialise(record)
        let back = try RecordFormat.parse(text, path: "mem")
        #expect(RecordFormat.serialise(back) == text)
        #expect(back.tokens.count == 2)
        #expect(back.tokens[0].label == "Work card, blue")
        #expect(back.tokens[0].credentialName == "smartotp:alice@host")
        #expect(back.tokens[0].accessKey?.constantTimeEquals(SecretBytes(Array(repeating: 7, count: 16))) == true)
        #expect(back.tokens[1].initialCounter == 42)
        #expect(back.tokens[1].parameters.algorithm == .sha512)
        #expect(back.failureTimes == [1_700_000_010, 1_700_000_020] && back.lastFailure == 1_700_000_020)
        #expect(back.tokens[1].windowLimit == 3)
        #expect(back.usedRecoveryCodes == ["$y$j9T$u$v"])
        #expect(back.challenges == [PendingChallenge(bytes: [1, 2, 3, 4, 5, 6, 7, 8], expires: 1_700_000_060)])
        #expect(!text.contains("12345678901234567890"), "secrets are Base32, never the raw bytes")
    }

    @Test func malformedRecordsNameTheLine() {
        let cases: [(String, Int, String)] = [
            ("garbage\n", 1, "expected"),
            ("smartotp-record 2\nuser a\n", 1, "expected"),
            ("smartotp-record 1\nuser ../etc\n", 2, "invalid user name"),
            ("smartotp-record 1\nuser a\nfailures x 0\n", 3, "failures"),
            ("smartotp-record 1\nuser a\nfailures -1 0\n", 3, "failures"),
            ("smartotp-record 1\nuser a\nfailed-at 1 x\n", 3, "failed-at"),
            ("smartotp-record 1\nuser a\nchallenge zz 5\n", 3, "challenge"),
            ("smartotp-record 1\nuser a\nchallenge 0102\n", 3, "challenge"),
            ("smartotp-record 1\nuser a\nrecovery-used  \n", 3, "recovery-used"),
            ("smartotp-record 1\nuser a\ntoken id=x kind=code type=totp period=30 algorithm=sha1 digits=6 secret=JBSWY3DP window=0\n", 3, "window"),
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

    @Test func earlierRecordsFailureLineIsReadAsATally() throws {
        let r = try RecordFormat.parse("smartotp-record 1\nuser a\nfailures 2 1000\n", path: "m")
        #expect(r.failureTimes == [1000, 1000])
        let huge = try RecordFormat.parse("smartotp-record 1\nuser a\nfailures 9223372036854775807 5\n", path: "m")
        #expect(huge.failures == UserRecord.maxFailureTimes, "a huge count is bounded, never overflows")
    }

    func record(failures times: [Int64]) throws -> UserRecord {
        UserRecord(user: try UserName("a"), failureTimes: times, created: 0)
    }

    @Test func lockIsPamFaillocks() throws {
        let p = LockPolicy(deny: 3, failInterval: 900, unlockTime: 60)
        let r = try record(failures: [1000, 1001, 1002])
        #expect(r.lockState(p, isRoot: false, now: 1003) == .lockedUntil(1062))
        #expect(r.lockState(p, isRoot: false, now: 1061).isLocked)
        #expect(r.lockState(p, isRoot: false, now: 1062) == .open)
        #expect(r.lockState(LockPolicy(deny: 4, failInterval: 900, unlockTime: 60), isRoot: false, now: 1003) == .open)
        #expect(r.lockState(LockPolicy(deny: 0), isRoot: false, now: 1003) == .open)
        #expect(r.lockState(LockPolicy(deny: 3, failInterval: 900, unlockTime: 0), isRoot: false, now: 99_999_999) == .lockedForGood)
    }

    @Test func failuresFurtherApartThanFailIntervalDoNotAddUp() throws {
        let p = LockPolicy(deny: 3, failInterval: 900, unlockTime: 600)
        // Three failures, each 1000 s after the last: never three within 900 s.
        var r = try record(failures: [])
        for t: Int64 in [1000, 2000, 3000] { r.countFailure(at: t, policy: p, isRoot: false) }
        #expect(r.lockState(p, isRoot: false, now: 3001) == .open)
        #expect(r.failures == 1, "failures fail_interval or more before now are dropped when one is counted")
        // Within the interval they do.
        for t: Int64 in [3100, 3200] { r.countFailure(at: t, policy: p, isRoot: false) }
        #expect(r.lockState(p, isRoot: false, now: 3201) == .lockedUntil(3800))
    }

    @Test func anExpiredLockStartsTheCountAfresh() throws {
        let p = LockPolicy(deny: 3, failInterval: 900, unlockTime: 60)
        var r = try record(failures: [1000, 1001, 1002])
        // The lock ran out at 1062; one wrong answer at 1070 must not lock again at once.
        r.countFailure(at: 1070, policy: p, isRoot: false)
        #expect(r.failureTimes == [1070])
        #expect(r.lockState(p, isRoot: false, now: 1071) == .open)
    }

    @Test func rootIsLockedOnlyWithEvenDenyRoot() throws {
        let r = try record(failures: [1000, 1001, 1002])
        #expect(r.lockState(LockPolicy(deny: 3, unlockTime: 60), isRoot: true, now: 1003) == .open)
        #expect(r.lockState(LockPolicy(deny: 3, unlockTime: 60, evenDenyRoot: true), isRoot: true, now: 1003) == .lockedUntil(1062))
        let short = LockPolicy(deny: 3, unlockTime: 0, evenDenyRoot: true, rootUnlockTime: 10)
        #expect(short.unlockTime == 0 && r.lockState(short, isRoot: true, now: 1011) == .lockedUntil(1012))
        #expect(r.lockState(short, isRoot: true, now: 1012) == .open, "root_unlock_time releases root")
        #expect(r.lockState(short, isRoot: false, now: 1012) == .lockedForGood, "others keep unlock_time")
    }

    @Test func lockArithmeticNeverOverflows() throws {
        let p = LockPolicy(deny: 1, failInterval: 900, unlockTime: 60)
        #expect(try record(failures: [Int64.max]).lockState(p, isRoot: false, now: 0) == .lockedForGood)
        #expect(try record(failures: [Int64.min, Int64.max]).countedFailures(p) == 1)
        var r = try record(failures: Array(repeating: 5, count: 2000))
        #expect(r.failures == UserRecord.maxFailureTimes)
        r.countFailure(at: Int64.min, policy: p, isRoot: false)
        r.countFailure(at: Int64.max, policy: p, isRoot: false)
        #expect(r.failures <= UserRecord.maxFailureTimes)
    }

    @Test func challengesAreSingleUseAndExpire() throws {
        var r = try record(failures: [])
        _ = r.addChallenge([1], host: "", expires: 100, now: 0)
        let first = r.takeChallenge([1], host: "", now: 50)
        let again = r.takeChallenge([1], host: "", now: 50)
        #expect(first && !again, "used once")
        _ = r.addChallenge([2], host: "", expires: 100, now: 0)
        let late = r.takeChallenge([2], host: "", now: 100)
        #expect(!late && r.challenges.isEmpty, "expired, and used up too")
        for i in 0..<10 {
            let added = r.addChallenge([UInt8(i)], host: "", expires: 1000, now: 0)
            #expect(added)
        }
        #expect(r.challenges.count == UserRecord.maxChallengesPerHost)
        let oldest = r.takeChallenge([0], host: "", now: 1)
        let newest = r.takeChallenge([9], host: "", now: 1)
        #expect(!oldest && newest, "a host's own oldest were dropped")
    }

    /// One host asking for challenges over and over cannot cancel the tap a user is making
    /// on another: its own oldest go, the other host's stays; with the record full of other
    /// hosts' challenges a new one is refused rather than pushing one out.
    @Test func aHostCannotPushOutAnotherHostsChallenge() throws {
        var r = try record(failures: [])
        var added = r.addChallenge([1], host: "h1", expires: 1000, now: 0)
        for i in 0..<50 { added = r.addChallenge([UInt8(100 + i)], host: "rogue", expires: 1000, now: 0) && added }
        #expect(added, "a host's own oldest make room for its new ones")
        #expect(r.challenges.filter { $0.host == "rogue" }.count == UserRecord.maxChallengesPerHost)
        let h1 = r.takeChallenge([1], host: "h1", now: 1)
        #expect(h1, "h1's tap still goes through")
        _ = r.addChallenge([1], host: "h1", expires: 1000, now: 0)
        for h in 0..<(UserRecord.maxChallenges - r.challenges.count) {
            added = r.addChallenge([UInt8(h)], host: "host\(h)", expires: 1000, now: 0) && added
        }
        #expect(added)
        let late = r.addChallenge([9], host: "late", expires: 1000, now: 0)
        #expect(!late, "full: refused, nothing pushed out")
        #expect(r.challenges.count == UserRecord.maxChallenges && r.challenges.contains { $0.host == "h1" })
        let later = r.addChallenge([9], host: "late", expires: 2000, now: 1000)
        #expect(later, "once they expire there is room again")
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
        // crypt(3) stops at NUL: "\0\0\0\0" would hash as the empty password.
        #expect(PasswordHash.make("\0\0\0\0") == nil)
        #expect(PasswordHash.make("12\u{0}34") == nil)
        let empty = try #require(PasswordHash.make(""))
        #expect(!PasswordHash.verify("\0", hash: empty))
        #expect(!PasswordHash.verify("1234\u{0}junk", hash: hash))
    }
}

@Suite("FileStore: on disk")
struct FileStoreTests {
    @Test func writeReadUpdateRemove() throws {
        let t = try TempStore()
        let user = try UserName("alice")
        #expect(try t.store.read(user) == nil)
        try t.store.update(user) { _ in .write(UserRecord(user: user, tokens: [makeTOTPToken()], created: 5)) }
        let back = try #require(try t.store.read(user))
        #expect(back.tokens.first?.id == "phone")
        var st = stat()
        #expect(stat(t.root + "/users/alice", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(stat(t.root, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(try t.store.list() == [user])
        // No temp files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.root + "/users") == ["alice"])
        try t.store.update(user) { _ in .remove }
        #expect(try t.store.read(user) == nil)
        #expect(FileManager.default.fileExists(atPath: t.root + "/locks/alice"), "lock files are never deleted")
    }

    /// A typo in store= or an unmounted filesystem must not look like "nobody enrolled"
    /// (which nullok would let through), and a login must not create it.
    @Test func aMissingStoreIsAnErrorAndIsNotCreated() throws {
        let t = try TempStore()
        let user = try UserName("alice")
        let typo = FileStore(root: t.root + "/typo", owner: geteuid())
        #expect(throws: StoreError.missing(path: t.root + "/typo")) { try typo.read(user) }
        #expect(throws: StoreError.missing(path: t.root + "/typo")) { try typo.update(user) { _ in .keep } }
        #expect(!FileManager.default.fileExists(atPath: t.root + "/typo"))
        try FileManager.default.createDirectory(atPath: t.root + "/half", withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        #expect(throws: StoreError.missing(path: t.root + "/half/users")) { try FileStore(root: t.root + "/half", owner: geteuid()).read(user) }
    }

    @Test func oneLockHoldsSeveralDurableCommits() throws {
        let t = try TempStore()
        let user = try UserName("carol")
        try t.store.update(user) { _ in .write(UserRecord(user: user, created: 1)) }
        var onDiskWhileLocked: Int?
        try t.store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) in
            guard var r = current else { Issue.record("the record written above is not there"); return }
            r.countFailure(at: 10, policy: LockPolicy(), isRoot: false)
            try commit(r)
            // Already on disk while the lock is still held.
            onDiskWhileLocked = try t.store.read(user)?.failures
            r.clearFailures()
            try commit(r)
        }
        #expect(onDiskWhileLocked == 1)
        #expect(try t.store.read(user)?.failures == 0)
    }

    /// A writer killed between creating its temporary file and the rename leaves that
    /// file; the next write of the same user reuses the name, so nothing accumulates.
    @Test func aStaleTempFileIsReplacedNotAccumulated() throws {
        let t = try TempStore()
        let user = try UserName("dan")
        let stale = t.root + "/users/.dan.tmp"
        #expect(FileManager.default.createFile(atPath: stale, contents: Data("half a record".utf8), attributes: [.posixPermissions: 0o600]))
        try t.store.update(user) { _ in .write(UserRecord(user: user, created: 1)) }
        try t.store.update(user) { r in
            guard var r else { return .keep }
            r.passwordHash = "$y$a$b"
            return .write(r)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.root + "/users").sorted() == ["dan"])
    }

    /// The store reuses its last parse only for the very same bytes: a record another
    /// process rewrote in between is read afresh, even with the same size.
    @Test func aRewrittenRecordIsNeverServedFromTheLastParse() throws {
        let t = try TempStore()
        let user = try UserName("erin")
        var token = makeTOTPToken()
        token.lastUsed = 56_666_666
        try t.store.update(user) { _ in .write(UserRecord(user: user, tokens: [token], created: 1)) }
        #expect(try t.store.read(user)?.tokens.first?.lastUsed == 56_666_666)
        // Another writer (a second FileStore, as another login would be) moves it on by one:
        // same length, different bytes.
        token.lastUsed = 56_666_667
        try FileStore(root: t.root, owner: geteuid()).update(user) { _ in .write(UserRecord(user: user, tokens: [token], created: 1)) }
        #expect(try t.store.read(user)?.tokens.first?.lastUsed == 56_666_667)
        try t.store.withLock(user) { (current: UserRecord?, _: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) in
            #expect(current?.tokens.first?.lastUsed == 56_666_667)
        }
    }

    @Test func unchangedRecordIsNotRewritten() throws {
        let t = try TempStore()
        let user = try UserName("bob")
        try t.store.update(user) { _ in .write(UserRecord(user: user, created: 1)) }
        var before = stat()
        stat(t.root + "/users/bob", &before)
        try t.store.update(user) { _ in .keep }
        var after = stat()
        stat(t.root + "/users/bob", &after)
        #expect(before.st_ino == after.st_ino)
        #expect(try t.store.read(user)?.passwordHash == nil)
    }

    @Test func refusesLoosePermissionsSymlinksAndWrongOwner() throws {
        let t = try TempStore()
        let user = try UserName("carol")
        try t.store.update(user) { _ in .write(UserRecord(user: user, created: 1)) }
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
        #expect(throws: StoreError.self) { try t.store.update(user) { r in r.map { .write($0) } ?? .keep } }
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
