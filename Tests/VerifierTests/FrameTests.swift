import Testing
import OTPCore
import TokenStore
import Verifier

/// The session frame, as the module writes it and smartotp-fleet reads it, and back.
@Suite("Frame: the module ↔ smartotp-fleet session")
struct FrameTests {
    /// Reads one frame from `bytes` as both sides do: the header a byte at a time, then the payload.
    func readFrame(_ bytes: [UInt8], limit: Int) throws -> (payload: [UInt8], rest: [UInt8]) {
        var header = Frame.Header(limit: limit)
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            i += 1
            if let length = try header.feed(byte) {
                guard i + length <= bytes.count else { throw FrameErrorForTest.cut }
                return (Array(bytes[i..<(i + length)]), Array(bytes[(i + length)...]))
            }
        }
        throw FrameErrorForTest.cut
    }

    @Test func aRequestGoesOutAndIsReadBackWhole() throws {
        let user = try UserName("alice")
        let tap = HelperProtocol.Request.perform(.tap(tokenID: "card", challenge: [1, 2, 3], response: [4, 5]))
        let wire = Frame.encode(Frame.requestPayload(tap, for: user)) + Frame.encode(Frame.requestPayload(.summary, for: user))
        let first = try readFrame(wire, limit: WireLimits.requestFrame)
        #expect(String(decoding: first.payload, as: UTF8.self) == "alice tap\ncard\n010203\n0405\n")
        let parsed = try Frame.parseRequest(first.payload)
        #expect(parsed.user == user && parsed.operation == .tap)
        #expect(try HelperProtocol.request(parsed.operation, lines: HelperProtocol.lines(parsed.arguments)) == tap)
        let second = try readFrame(first.rest, limit: WireLimits.requestFrame)
        #expect(try Frame.parseRequest(second.payload).operation == .summary, "frames follow each other on one session")
        #expect(second.rest.isEmpty)
    }

    @Test func anAnswerComesBackWhole() throws {
        let answer = Array(HelperProtocol.encode(.attempt(Attempt(.rejected, lock: .lockedUntil(5)))).utf8)
        let back = try readFrame(Frame.encode(answer), limit: WireLimits.answer)
        #expect(back.payload == answer)
        #expect(Frame.encode([]) == Array("0\n".utf8), "an empty payload is a zero length")
    }

    @Test func malformedHeadersAreRefused() {
        for bad in ["\n", "12a\n", "-1\n", "99999999\n", " 5\n"] {
            #expect(throws: FrameError.self, "\(bad)") { try readFrame(Array(bad.utf8), limit: WireLimits.requestFrame) }
        }
        #expect(throws: FrameError.self, "past the limit") { try readFrame(Array("8321\n".utf8), limit: WireLimits.requestFrame) }
    }

    @Test func malformedRequestLinesAreRefused() {
        for bad in ["", "alice\n", "alice frobnicate\n", "../etc/passwd code\n123456\n", "alice code extra\n"] {
            #expect(throws: FrameError.self, "\(bad)") { try Frame.parseRequest(Array(bad.utf8)) }
        }
    }

    enum FrameErrorForTest: Error { case cut }
}

/// A tap challenge is issued to the host that asked, in the record, and only it may answer.
@Suite("Verifier: host-bound tap challenges")
struct HostBoundChallengeTests {
    let secret = Array("12345678901234567890".utf8)

    func record() throws -> UserRecord {
        var r = UserRecord(user: try UserName("alice"), created: 1)
        r.tokens.append(Token(id: "card", kind: .card, parameters: try OTPParameters(kind: .totp(period: 30)),
                              secret: SecretBytes(secret), credentialName: "smartotp:alice", created: 1))
        return r
    }

    func tap(_ challenge: [UInt8]) -> HelperProtocol.Request {
        .perform(.tap(tokenID: "card", challenge: challenge, response: HMAC.authenticate(.sha1, key: secret, message: challenge)))
    }

    @Test func anotherHostsAnswerIsRefusedAndCounted() throws {
        let user = try UserName("alice")
        let issued = try FleetVerifier.decide(.challenge, user: user, record: try record(), policy: Policy(), host: "h1", now: 100)
        guard case .challenge(let challenge) = issued.reply else { Issue.record("no challenge"); return }
        #expect(issued.record?.challenges.first?.host == "h1", "the record names the host it was issued to")
        let fromH2 = try FleetVerifier.decide(tap(challenge), user: user, record: issued.record, policy: Policy(), host: "h2", now: 101)
        #expect(fromH2.reply.result == "rejected")
        #expect(fromH2.record?.failures == 1, "counted like any wrong answer")
        let fromH1 = try FleetVerifier.decide(tap(challenge), user: user, record: fromH2.record, policy: Policy(), host: "h1", now: 102)
        #expect(fromH1.reply.result == "accepted")
        #expect(fromH1.record?.failures == 0 && fromH1.record?.challenges.isEmpty == true)
        let again = try FleetVerifier.decide(tap(challenge), user: user, record: fromH1.record, policy: Policy(), host: "h1", now: 103)
        #expect(again.reply.result == "rejected", "single use")
    }

    @Test func theLocalStoreIssuesToThisMachine() throws {
        let user = try UserName("alice")
        let issued = try FleetVerifier.decide(.challenge, user: user, record: try record(), policy: Policy(), host: "", now: 100)
        guard case .challenge(let challenge) = issued.reply else { Issue.record("no challenge"); return }
        let late = try FleetVerifier.decide(tap(challenge), user: user, record: issued.record, policy: Policy(), host: "", now: 100 + TapChallenge.lifetime)
        #expect(late.reply.result == "rejected", "expired")
    }
}

/// smartotpd's `policy =` line: the verifier's own settings table, nothing else.
@Suite("Policy: one table of settings")
struct PolicyTests {
    @Test func theServersPolicyLine() throws {
        let p = try Policy.parse(Setting.words(of: "deny=3 unlock_time=60  even_deny_root\tskew=2"))
        #expect(p.lock.deny == 3 && p.lock.unlockTime == 60 && p.lock.evenDenyRoot && p.skew == 2 && p.window == 20)
        #expect(try Policy.parse([]) == Policy())
    }

    /// The lock's times are durations, written as every other duration of smartotp.
    @Test func lockTimesAreDurations() throws {
        let p = try Policy.parse(["fail_interval=15m", "unlock_time=2h", "root_unlock_time=1d", "even_deny_root"])
        #expect(p.lock.failInterval == 900 && p.lock.unlockTime == 7200 && p.lock.rootUnlockTime == 86_400)
        #expect(try Policy.parse(["unlock_time=600"]).lock.unlockTime == 600 && Policy.parse(["unlock_time=0"]).lock.unlockTime == 0)
        for bad in ["fail_interval=0", "unlock_time=366d", "unlock_time=5x", "unlock_time=-1"] {
            #expect(throws: ConfigError.self, "\(bad)") { try Policy.parse([bad]) }
        }
    }

    @Test func onlyPolicySettingsAreTaken() {
        #expect(throws: ConfigError.badValue(name: "store", value: "/x", expected: "a policy setting (skew, window, deny, fail_interval, unlock_time, even_deny_root, root_unlock_time)")) {
            try Policy.parse(["store=/x"])
        }
        #expect(throws: ConfigError.missingValue("deny")) { try Policy.parse(["deny"]) }
        #expect(throws: ConfigError.unexpectedValue("even_deny_root")) { try Policy.parse(["even_deny_root=1"]) }
    }
}

/// The words of a policy file: comments, blanks and line ends, in one pass.
@Suite("Setting.words: a policy file's words")
struct SettingWordsTests {
    @Test func commentsBlanksAndLineEnds() {
        let text = "# smartotp.conf — ü\n\nstore=/srv/otp  deny=3\t# the fleet's\r\n  \tskew=2\rwindow=9#x\neven_deny_root"
        #expect(Setting.words(of: text) == ["store=/srv/otp", "deny=3", "skew=2", "window=9", "even_deny_root"])
        #expect(Setting.words(of: "") == [])
        #expect(Setting.words(of: "#only a comment") == [])
        #expect(Setting.words(of: "a=ü#b\nc") == ["a=ü", "c"], "UTF-8 inside a word stays whole")
    }
}
