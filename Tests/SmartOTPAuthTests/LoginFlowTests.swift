import Testing
import OTPCore
import SmartCard
import SmartOTPAuth
import TokenStore
import Verifier
import SmartOTPAdmin

let secretBytes = Array("12345678901234567890".utf8)
let t0: Int64 = 1_700_000_000

func code(at time: Int64, offset: Int64 = 0) -> String {
    OTP.hotp(secret: SecretBytes(secretBytes), counter: UInt64(time / 30 + offset), algorithm: .sha1, digits: 6) ?? ""
}

struct Harness {
    let store = MemoryStore()
    let reader = FakeReader()
    let audit = CollectingAudit()
    var config = ModuleConfig()
    var time = t0

    init(card: Bool = true, code: Bool = true, password: String? = "1234") throws {
        let user = try UserName("alice")
        var record = UserRecord(user: user, created: 1)
        if card {
            var t = Token(id: "card", kind: .card, parameters: try OTPParameters(kind: .totp(period: 30)),
                          secret: SecretBytes(secretBytes), credentialName: "smartotp:alice", deviceID: "aabb", created: 1)
            t.touch = false
            record.tokens.append(t)
        }
        if code {
            // A second device with a secret of its own.
            record.tokens.append(Token(id: "phone", kind: .code, parameters: try OTPParameters(kind: .totp(period: 30)),
                                       secret: SecretBytes(Array("a phone's own secret".utf8)), created: 1))
        }
        if let password { record.passwordHash = PasswordHash.make(password) }
        store.records[user] = record
    }

    func run(_ answers: [String?], user: String = "alice", previous: String? = nil, window: Bool = false) -> (Outcome, ScriptedPrompter) {
        let prompter = ScriptedPrompter(answers)
        let records = LocalRecords(store: store, policy: config.policy, isRoot: { $0.value == "root" })
        var flow = LoginFlow(config: config, records: records, prompter: prompter, reader: reader,
                             clock: FixedClock(time: time), audit: audit, previousToken: previous)
        flow.window = window
        return (flow.authenticate(user: user, service: "test"), prompter)
    }

    var record: UserRecord? { try? store.read(try UserName("alice")) }
}

@Suite("LoginFlow: every branch")
struct LoginFlowTests {
    @Test func tapSucceedsWithoutPrompting() throws {
        let h = try Harness()
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        let (outcome, p) = h.run([])
        #expect(outcome == .success(.card))
        #expect(p.prompts.isEmpty)
        #expect(p.transcript.first?.hasPrefix("instruct: Tap your card") == true, "the tap cue survives PAM_SILENT")
        #expect(h.audit.events.last?.result == .success)
        #expect(h.record?.tokens.first?.lastUsedTime == t0)
    }

    // A window (xscreensaver, a greeter) holds every lone message up until it is clicked
    // away: the tap is asked for in one dialog with the code, and read at Enter.
    @Test func windowAsksForTapAndCodeInOneDialog() throws {
        let h = try Harness()
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        let (outcome, p) = h.run([""], window: true)
        #expect(outcome == .success(.card))
        #expect(p.transcript == ["note: Hold your card on the reader and press Enter,\nor type your one-time code.", "prompt: Code:"])
        #expect(h.reader.lastTimeout == 5, "at Enter the card is already held there: a short wait")
    }

    @Test func windowCodeTypedAtTheTapPromptIsTheCode() throws {
        let h = try Harness()
        let (outcome, p) = h.run([code(at: t0)], window: true)
        #expect(outcome == .success(.code))
        #expect(h.reader.taps == 0)
        #expect(p.prompts == ["prompt: Code:"], "not asked twice")
        let (wrong, _) = h.run(["000000"], window: true)
        #expect(wrong == .failure("wrong code"))
        #expect(h.record?.failures == 1, "a wrong code typed there is counted like any other")
    }

    @Test func windowNoCardGoesWithTheNextPromptAndNoReminders() throws {
        let h = try Harness()
        let (outcome, p) = h.run(["", "", "1234"], window: true)
        #expect(outcome == .success(.password))
        #expect(p.transcript == ["note: Hold your card on the reader and press Enter,\nor type your one-time code.", "prompt: Code:",
                                 "note: No card was on the reader.\nNo code? Press Enter for your simple password.", "prompt: One-time code:",
                                 "prompt: Simple password: "])
        #expect(!p.transcript.contains { $0.hasPrefix("info:") })
    }

    @Test func windowSaysHowManyFailedBeforeInItsFirstDialog() throws {
        let h = try Harness()
        #expect(h.run(["000000"], window: true).0 == .failure("wrong code"))
        let (_, p) = h.run(["000001"], window: true)
        #expect(p.transcript.first == "note: 1 failed attempt since your last login.\nHold your card on the reader and press Enter,\nor type your one-time code.")
        h.reader.available = false
        let (_, q) = h.run([""], window: true)
        #expect(q.transcript.first == "note: 2 failed attempts since your last login.\nNo code? Press Enter for your simple password.")
        let (_, text) = h.run([""])
        #expect(!text.transcript.contains { $0.contains("failed attempt") }, "a terminal shows each error as it comes")
    }

    @Test func windowCardOnlyAsksForTheCardAlone() throws {
        var h = try Harness(code: false, password: nil)
        h.config.methods = [.card]
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        let (outcome, p) = h.run([""], window: true)
        #expect(outcome == .success(.card))
        #expect(p.transcript == ["note: Hold your card on the reader and press Enter.", "prompt: Card:"])
        let (typed, _) = h.run(["123456"], window: true)
        #expect(typed == .success(.card), "no code is offered there: what was typed is only Enter")
    }

    @Test func wrongCardAnswerCountsAFailure() throws {
        let h = try Harness()
        h.reader.result = FakeReader.card(SecretBytes(Array("another secret......".utf8)))
        let (outcome, _) = h.run([])
        #expect(outcome == .failure("wrong response from card card"))
        #expect(h.record?.failures == 1)
    }

    @Test func tapTimeoutFallsToCodeThenPassword() throws {
        let h = try Harness()
        let (outcome, p) = h.run(["", "1234"])
        #expect(outcome == .success(.password))
        #expect(p.prompts == ["prompt: One-time code (Enter for your simple password): ", "prompt: Simple password: "])
        #expect(h.reader.taps == 1)
    }

    @Test func noReaderSkipsTheTap() throws {
        let h = try Harness()
        h.reader.available = false
        let (outcome, _) = h.run([code(at: t0)])
        #expect(outcome == .success(.code))
        #expect(h.reader.taps == 0)
    }

    @Test func pcscUnavailableDuringTapFallsThrough() throws {
        let h = try Harness()
        h.reader.result = { (_, _) -> TapResult in .unavailable(.noService) }
        #expect(h.run([code(at: t0)]).0 == .success(.code))
        h.reader.result = { (_, _) -> TapResult in .failed(.cardRemoved) }
        let (o, p) = h.run([code(at: t0, offset: 1)])
        #expect(o == .success(.code))
        #expect(p.transcript.contains("error: The card could not be used: the card was removed during the exchange."))
    }

    @Test func codeIsAcceptedOnceAndStored() throws {
        let h = try Harness()
        h.reader.available = false
        #expect(h.run([code(at: t0)]).0 == .success(.code))
        #expect(h.record?.tokens.contains { $0.lastUsed == UInt64(t0 / 30) } == true)
        let (again, p) = h.run([code(at: t0)])
        #expect(again == .failure("replayed code"))
        #expect(p.transcript.contains("error: That code was already used. Wait for the next one."))
        #expect(h.record?.failures == 1)
    }

    @Test func wrongCodeFailsWithoutOfferingThePassword() throws {
        let h = try Harness()
        h.reader.available = false
        let (outcome, p) = h.run(["000000", "1234"])
        #expect(outcome == .failure("wrong code"))
        #expect(p.prompts.count == 1)
    }

    @Test func lockoutAfterDenyAndReleaseAfterUnlockTime() throws {
        var h = try Harness()
        h.reader.available = false
        h.config.policy.lock.deny = 3
        h.config.policy.lock.unlockTime = 60
        for _ in 0..<3 { #expect(h.run(["000000"]).0 == .failure("wrong code")) }
        let (locked, p) = h.run([code(at: t0)])
        #expect(locked == .locked)
        #expect(p.prompts.isEmpty, "a locked user is not even asked")
        h.time = t0 + 61
        #expect(h.run([code(at: h.time)]).0 == .success(.code))
        #expect(h.record?.failures == 0)
    }

    @Test func wrongPasswordCountsAndRightOneResets() throws {
        let h = try Harness(card: false, code: false)
        #expect(h.run(["nope"]).0 == .failure("wrong simple password"))
        #expect(h.record?.failures == 1)
        #expect(h.run(["1234"]).0 == .success(.password))
        #expect(h.record?.failures == 0)
    }

    @Test func methodsOrderAndSubset() throws {
        var h = try Harness()
        h.config.methods = [.code]
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        let (o, p) = h.run([code(at: t0)])
        #expect(o == .success(.code))
        #expect(h.reader.taps == 0)
        #expect(p.prompts == ["prompt: One-time code: "])
        h.config.methods = [.password]
        #expect(h.run(["1234"]).0 == .success(.password))
        h.config.methods = [.card]
        h.reader.available = false
        #expect(h.run([]).0 == .failure("no usable method"))
    }

    @Test func userWithoutRecordAndNullok() throws {
        var h = try Harness()
        #expect(h.run([], user: "bob").0 == .userUnknown("no smartotp record"))
        h.config.nullok = true
        #expect(h.run([], user: "bob").0 == .ignore)
    }

    @Test func hostileUserNames() throws {
        let h = try Harness()
        for bad in ["../etc/passwd", String(repeating: "x", count: 10_000), "a\u{0}b", "", "-x"] {
            guard case .userUnknown = h.run([], user: bad).0 else { Issue.record("accepted \(bad.prefix(20))"); continue }
        }
    }

    @Test func unreadableStoreIsAuthinfoUnavailable() throws {
        let h = try Harness()
        h.store.failReads = .insecure(path: "/var/lib/smartotp", reason: "mode 755")
        guard case .unavailable(let why) = h.run([]).0 else { Issue.record("not unavailable"); return }
        #expect(why.contains("mode 755"))
    }

    @Test func conversationFailureIsConvError() throws {
        let h = try Harness()
        h.reader.available = false
        #expect(h.run([nil]).0 == .conversationError)
        #expect(h.record?.failures == 0, "a broken conversation is not the user's failure")
    }

    @Test func hostileAnswersAreRefusedNotCrashed() throws {
        let h = try Harness()
        h.reader.available = false
        for answer in [String(repeating: "9", count: 1 << 20), "12\u{0}3456", "\u{FFFD}\u{FFFD}", "１２３４５６"] {
            #expect(h.run([answer]).0 == .failure(answer.utf8.count > 1024 ? "answer too long" : "wrong code"))
        }
    }

    @Test func firstPassTokensAreTriedAsCodesOnly() throws {
        var h = try Harness()
        h.reader.available = false
        h.config.useFirstPass = true
        #expect(h.run([], previous: code(at: t0)).0 == .success(.code))
        // The simple password typed for an earlier module is never the simple password here.
        let (o1, p1) = h.run([], previous: "1234")
        #expect(o1 == .failure("no usable method") && p1.prompts.isEmpty)
        #expect(h.run([], previous: nil).0 == .failure("no usable method"))
        #expect(h.record?.failures == 0)
        h.config.useFirstPass = false
        h.config.tryFirstPass = true
        // try_first_pass with the simple password in PAM_AUTHTOK: the user is asked as usual,
        // and that token opens nothing by itself.
        let (o2, p2) = h.run(["", "9999"], previous: "1234")
        #expect(o2 == .failure("wrong simple password"))
        #expect(p2.prompts == ["prompt: One-time code (Enter for your simple password): ", "prompt: Simple password: "])
        #expect(h.run(["", "1234"], previous: "1234").0 == .success(.password))
        // An earlier token shaped like a code is tried as one, and a wrong one is counted.
        #expect(h.run([], previous: "000000").0 == .failure("wrong code"))
        #expect(h.record?.failures == 1)
    }

    /// Count first: the attempt is written before its verdict exists, and cleared after a
    /// success; when the count cannot be written there is no verdict at all.
    @Test func everyAttemptIsCountedBeforeItsVerdict() throws {
        let h = try Harness()
        h.reader.available = false
        _ = h.run([code(at: t0)])
        #expect(h.store.history.count == 2)
        #expect(h.store.history.first??.failures == 1, "the first write is the count")
        #expect(h.store.history.last??.failures == 0, "the second clears it, with the code used")
        h.store.history = []
        _ = h.run(["000000"])
        #expect(h.store.history.count == 1 && h.record?.failures == 1)
        // A right code, but the count cannot be written: no success.
        h.store.failWrites = .io(path: "/var/lib/smartotp/users/alice", operation: "write", errno: 27)
        guard case .unavailable = h.run([code(at: t0, offset: 1)]).0 else { Issue.record("a verdict without a count"); return }
        #expect(h.record?.tokens.contains { $0.lastUsed == UInt64(t0 / 30 + 1) } == false)
    }

    @Test func aCapturedTapIsWorthNothing() throws {
        let h = try Harness()
        h.reader.result = FakeReader.card(SecretBytes(secretBytes))
        #expect(h.run([]).0 == .success(.card))
        let captured = try #require(h.reader.lastExchange)
        #expect(h.record?.challenges.isEmpty == true, "the challenge was used up")
        h.reader.result = FakeReader.replay(tokenID: "card", captured)
        #expect(h.run([]).0 == .failure("wrong response from card card"))
        #expect(h.record?.failures == 1, "the replay is counted")
        // A challenge the verifier never issued is refused too.
        h.reader.result = FakeReader.replay(tokenID: "card", ([9, 9, 9, 9, 9, 9, 9, 9],
            ChallengeResponse.full(secret: SecretBytes(secretBytes), challenge: [9, 9, 9, 9, 9, 9, 9, 9], algorithm: .sha1)))
        #expect(h.run([]).0 == .failure("wrong response from card card"))
    }

    @Test func anExpiredLockDoesNotRelockOnTheNextMistake() throws {
        var h = try Harness()
        h.reader.available = false
        h.config.policy.lock.deny = 3
        h.config.policy.lock.unlockTime = 60
        for _ in 0..<3 { _ = h.run(["000000"]) }
        #expect(h.run([code(at: t0)]).0 == .locked)
        h.time = t0 + 61
        let (o, p) = h.run(["000000"])
        #expect(o == .failure("wrong code"))
        #expect(!p.transcript.contains("error: Too many failed attempts: this account is now locked."))
        #expect(h.run([code(at: h.time)]).0 == .success(.code))
    }

    @Test func failuresAgeOutAfterFailInterval() throws {
        var h = try Harness()
        h.reader.available = false
        h.config.policy.lock.deny = 2
        h.config.policy.lock.failInterval = 100
        _ = h.run(["000000"])
        h.time = t0 + 150
        _ = h.run(["000000"])
        #expect(h.run([code(at: h.time)]).0 == .success(.code), "two failures 150 s apart do not add up")
    }

    @Test func rootIsNotLockedUnlessEvenDenyRoot() throws {
        let store = MemoryStore()
        let root = try UserName("root")
        store.records[root] = UserRecord(user: root, passwordHash: "$y$j9T$x$y", failureTimes: [t0 - 2, t0 - 1, t0], created: 1)
        func lock(_ c: ModuleConfig) throws -> LockState? {
            try LocalRecords(store: store, policy: c.policy, isRoot: { $0.value == "root" }).summary(root, now: t0 + 1)?.lock
        }
        var c = ModuleConfig()
        c.policy.lock.deny = 3
        #expect(try lock(c) == .open)
        c.policy.lock.evenDenyRoot = true
        #expect(try lock(c) == .lockedUntil(t0 + 600))
        c.policy.lock.rootUnlockTime = 30
        #expect(try lock(c) == .lockedUntil(t0 + 30))
    }

    @Test func recoveryCodeWorksOnce() throws {
        let h = try Harness()
        h.reader.available = false
        let rc = try #require(RecoveryCode.generate())
        let user = try UserName("alice")
        let normal = try #require(RecoveryCode.normalise(rc))
        let hash = try #require(PasswordHash.make(normal))
        h.store.records[user]?.recoveryCodes = [hash]
        #expect(h.run([rc.uppercased()]).0 == .success(.code))
        #expect(h.record?.recoveryCodes.isEmpty == true)
        #expect(h.record?.usedRecoveryCodes == [hash], "kept as used, so an import cannot bring it back")
        #expect(h.run([rc]).0 == .failure("wrong code"))
    }

    @Test func auditNeverCarriesSecrets() throws {
        let h = try Harness()
        h.reader.available = false
        let c = code(at: t0)
        _ = h.run([c])
        _ = h.run(["", "1234"])
        _ = h.run(["", "wrongpw"])
        for e in h.audit.events {
            #expect(!e.description.contains(c) && !e.description.contains("1234") && !e.description.contains("wrongpw"))
        }
    }
}

@Suite("Module arguments")
struct ConfigTests {
    @Test func defaultsAndEveryArgument() throws {
        #expect(try ModuleConfig.parse([]).config == ModuleConfig())
        let p = try ModuleConfig.parse(["store=/tmp/s", "methods=code,password", "timeout=5", "reader=Virtual", "skew=2",
                                        "window=50", "deny=3", "unlock_time=0", "nullok", "try_first_pass", "use_first_pass", "debug",
                                        "fail_interval=60", "even_deny_root", "root_unlock_time=15", "bogus", "x=y"])
        #expect(p.unknown == ["bogus", "x=y"])
        let c = p.config
        #expect(c.store == "/tmp/s" && c.methods == [.code, .password] && c.timeout == 5 && c.reader == "Virtual")
        #expect(c.policy.skew == 2 && c.policy.window == 50 && c.policy.lock.deny == 3 && c.policy.lock.unlockTime == 0)
        #expect(c.nullok && c.tryFirstPass && c.useFirstPass && c.debug)
        #expect(c.policy.lock.failInterval == 60 && c.policy.lock.evenDenyRoot && c.policy.lock.rootUnlockTime == 15)
        #expect(ModuleConfig().policy.lock.failInterval == 900 && !ModuleConfig().policy.lock.evenDenyRoot && ModuleConfig().policy.lock.rootUnlockTime == nil)
    }

    @Test func malformedValuesFailSafe() {
        let bad: [[String]] = [["timeout=abc"], ["timeout=0"], ["timeout=601"], ["store=relative"], ["methods="], ["methods=card,card"],
                               ["methods=sms"], ["skew=-1"], ["deny"], ["nullok=1"], ["window=1e3"], ["unlock_time=99999999999"], ["reader="],
                               ["fail_interval=0"], ["even_deny_root=1"], ["root_unlock_time=-1"], ["root_unlock_time"]]
        for args in bad {
            #expect(throws: ConfigError.self, "\(args)") { try ModuleConfig.parse(args) }
        }
        #expect(throws: ConfigError.badValue(name: "timeout", value: "x\u{1}", expected: "a number from 1 to 600")) {
            try ModuleConfig.parse(["timeout=x\u{1}"])
        }
        #expect(ConfigError.badValue(name: "timeout", value: "x\u{1}", expected: "n").description.contains("x\\x01"))
    }
}
