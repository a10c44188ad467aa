import Foundation
import Testing
import OTPCore
import POSIX
import SmartOTPAuth
import SmartOTPSystem
import TokenStore
import Verifier

/// offline=tap on a fleet host: the pair kept after a tap, checked when no verifier
/// answers, rolled, aged out, reported. A shell script stands in for smartotp-fleet and
/// says that no verifier answered (or that one refused).
@Suite("Offline taps: a fleet host's pair when no verifier answers")
struct OfflineTests {
    let secret = SecretBytes(Array("offline-card-secret!".utf8))
    let card = RecordSummary.Card(tokenID: "card", deviceID: nil, credentialName: "smartotp:alice", touch: false, protected: false)
    let now: Int64 = 1_764_000_000

    func mac(_ challenge: [UInt8]) -> [UInt8] { ChallengeResponse.full(secret: secret, challenge: challenge, algorithm: .sha1) }

    /// A store folder and a client that reads each request and answers `notice`'s frame.
    func withHost<R>(notice reached: Bool, _ body: (ModuleConfig) throws -> R) throws -> R {
        let answer = FleetNotice.text(reached: reached, "test: no verifier")
        return try withHost(script: "#!/bin/sh\nwhile IFS= read -r n; do dd bs=1 count=\"$n\" >/dev/null 2>&1; ans='\(answer)'; printf '%s\\n%s' \"${#ans}\" \"$ans\"; exit 0; done\n", body)
    }

    /// A store folder (0700) and `script` as the fleet client, removed after; offline=tap.
    func withHost<R>(script: String, _ body: (ModuleConfig) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smartotp-offline-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("client").path
        let fd = try FileDescriptor.open(path, [.writeOnly, .create, .exclusive], mode: 0o755)
        try fd.writeAll(Array(script.utf8), path)
        fd.close()
        var config = ModuleConfig()
        config.servers = ["https://verifier.test:8443"]
        config.client = path
        config.store = dir.path
        config.offlineTap = true
        config.policy.lock.deny = 3
        return try body(config)
    }

    func keep(_ config: ModuleConfig, challenge: [UInt8], created: Int64) {
        FleetRecords(config).keepOffline(for: try! UserName("alice"), card: card, challenge: challenge, response: mac(challenge), now: created)
    }

    @Test func theStateReadsBackAndRefusesWhatIsMalformed() throws {
        var s = OfflineState(card: card, pair: .init(challenge: [1, 2, 3], created: 5, epoch: 9, hash: "$y$j9T$abc$def"))
        s.failures = [10, 11]
        for i in 0..<(OfflineReport.maxLines + 5) { s.report(OfflineReport.line(at: Int64(100 + i), result: "success", service: "sudo", remoteHost: "")) }
        #expect(s.reports.count == OfflineReport.maxLines && s.reports.first?.hasPrefix("105 success sudo -") == true)
        #expect(OfflineState.parse(s.text) == s)
        for bad in ["", "smartotp-offline 2\ncard card - 61 0\n", s.text + "pair 00 1 1 h\n", s.text + "what 1\n",
                    "smartotp-offline 1\ncard bad/id - 61 0\n", s.text + "report 1 maybe a b\n"] {
            #expect(OfflineState.parse(bad) == nil, "\(bad)")
        }
        #expect(OfflineReport.isValid("1764000000 failure sshd 203.0.113.9"))
        #expect(!OfflineReport.isValid("0 success sudo -") && !OfflineReport.isValid("1 success sudo") && !OfflineReport.isValid("1 success su\t -"))
    }

    @Test func aTapLogsInOfflineOnceAPairAndNothingElseDoes() throws {
        try withHost(notice: false) { config in
            let user = try UserName("alice")
            let challenge: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
            keep(config, challenge: challenge, created: now - 60)
            let records = FleetRecords(config)
            let summary = try #require(try records.summary(user, now: now))
            #expect(records.decidingOffline)
            #expect(summary.cards == [card] && summary.codeDigits.isEmpty && !summary.hasPassword, "a tap only")
            #expect(try records.issueChallenge(for: user, now: now) == challenge)
            #expect(throws: RecordError.self) { try records.perform(.code("123456"), for: user, now: now) }
            #expect(throws: RecordError.self) { try records.perform(.password("1234"), for: user, now: now) }
            let wrong = try records.perform(.tap(tokenID: "card", challenge: challenge, response: mac([0])), for: user, now: now)
            #expect(wrong.verdict == .rejected)
            let right = try records.perform(.tap(tokenID: "card", challenge: challenge, response: mac(challenge)), for: user, now: now + 1)
            #expect(right.verdict == .accepted(.token("card")))
            let again = try records.perform(.tap(tokenID: "card", challenge: challenge, response: mac(challenge)), for: user, now: now + 2)
            #expect(again.verdict == .rejected, "a pair is good for one login")
            let state = try #require(OfflinePairs(store: config.store).read(user))
            #expect(state.reports.map { $0.split(separator: " ")[1] } == ["failure", "success", "failure"], "every offline attempt is reported later")
            // The card answered a fresh challenge in that tap: the next login's pair.
            let next: [UInt8] = [1, 1, 2, 3, 5, 8, 13, 21]
            records.keepOffline(for: user, card: card, challenge: next, response: mac(next), now: now + 1)
            let later = FleetRecords(config)
            _ = try later.summary(user, now: now + 5)
            #expect(try later.issueChallenge(for: user, now: now + 5) == next)
            #expect(try later.perform(.tap(tokenID: "card", challenge: next, response: mac(next)), for: user, now: now + 5).verdict == .accepted(.token("card")))
            // Written root's way: 0600 in a 0700 folder.
            let st = try #require(try FileSystem.linkStatus(config.store + "/offline/alice"))
            #expect(st.permissions == 0o600)
        }
    }

    @Test func offlineFailuresLockWithTheSameDenyPolicy() throws {
        try withHost(notice: false) { config in
            let user = try UserName("alice")
            let challenge: [UInt8] = [4, 4, 4, 4]
            keep(config, challenge: challenge, created: now)
            let records = FleetRecords(config)
            _ = try records.summary(user, now: now)
            var last = Attempt(.rejected, lock: .open)
            for i in 0..<3 { last = try records.perform(.tap(tokenID: "card", challenge: challenge, response: mac([UInt8(i)])), for: user, now: now + Int64(i)) }
            #expect(last.lock.isLocked, "deny=3")
            let locked = try records.perform(.tap(tokenID: "card", challenge: challenge, response: mac(challenge)), for: user, now: now + 4)
            #expect(locked.verdict == .locked, "the right answer is refused while locked")
            #expect(try FleetRecords(config).summary(user, now: now + 5)?.lock.isLocked == true)
        }
    }

    @Test func anOldPairOrARefusingVerifierGivesNoOfflineLogin() throws {
        try withHost(notice: false) { config in
            keep(config, challenge: [1, 2], created: now - config.offlineMaxAge - 1)
            #expect(throws: RecordError.self) { try FleetRecords(config).summary(try UserName("alice"), now: now) }
            #expect(throws: RecordError.self, "no pair at all") { try FleetRecords(config).summary(try UserName("bob"), now: now) }
        }
        try withHost(notice: true) { config in
            keep(config, challenge: [1, 2], created: now)
            // A verifier answered and refused (a revoked host, a spent budget): no offline login.
            #expect(throws: RecordError.self) { try FleetRecords(config).summary(try UserName("alice"), now: now) }
        }
    }

    /// A pair in a folder others may write, or a pair file others may read, is no pair.
    @Test func aPairOthersCouldReachIsNoPair() throws {
        try withHost(notice: false) { config in
            keep(config, challenge: [1, 2], created: now)
            chmod(config.store, 0o777)
            #expect(throws: RecordError.self) { try FleetRecords(config).summary(try UserName("alice"), now: now) }
            chmod(config.store, 0o700)
            chmod(config.store + "/offline/alice", 0o644)
            #expect(throws: RecordError.self) { try FleetRecords(config).summary(try UserName("alice"), now: now) }
            chmod(config.store + "/offline/alice", 0o600)
            let summary = try FleetRecords(config).summary(try UserName("alice"), now: now)
            #expect(summary != nil)
        }
    }

    @Test func afterAnUnansweredLoginTheNextAsksBriefly() throws {
        try withHost(notice: false) { config in
            keep(config, challenge: [1, 2], created: Clocks.unixTime())
            var c = config
            c.serverTimeout = 10
            _ = try FleetRecords(c).summary(try UserName("alice"), now: Clocks.unixTime())
            let pairs = OfflinePairs(store: config.store)
            #expect(pairs.lastUnreachable() != nil)
            #expect(FleetRecords(c).arguments.joined(separator: " ").contains("--timeout 2 "), "not the whole server_timeout again")
        }
    }

    /// Online again: the offline logins are sent to the fleet and forgotten here, and a pair
    /// made under another epoch (the user's cards changed meanwhile) is dropped.
    @Test func onlineTheReportsGoAndAnotherEpochVoidsThePair() throws {
        let summary = HelperProtocol.encode(.summary(RecordSummary(cards: [card], codeDigits: [], recoveryCodes: 0, hasPassword: false, failures: 0, lock: .open)))
        let epoch = HelperProtocol.encode(.offline(epoch: 7))
        // Answers the summary, then checks that the report carries the offline login, then the epoch.
        let script = """
            #!/bin/sh
            IFS= read -r n; dd bs=1 count="$n" >/dev/null 2>&1
            ans='\(summary)'; printf '%s\\n%s' "${#ans}" "$ans"
            IFS= read -r n; req=$(dd bs=1 count="$n" 2>/dev/null)
            case "$req" in "alice offline"*"success sudo"*) ;; *) exit 4;; esac
            ans='\(epoch)'; printf '%s\\n%s' "${#ans}" "$ans"
            """
        try withHost(script: script) { config in
            let user = try UserName("alice")
            let pairs = OfflinePairs(store: config.store)
            pairs.update(user) { (state: inout OfflineState?) in
                var s = OfflineState(card: card, pair: .init(challenge: [1], created: now, epoch: 5, hash: "x"))
                s.report(OfflineReport.line(at: now, result: "success", service: "sudo", remoteHost: ""))
                state = s
            }
            let records = FleetRecords(config)
            #expect(try records.summary(user, now: now)?.cards == [card])
            #expect(!records.decidingOffline)
            let after = try #require(pairs.read(user))
            #expect(after.reports.isEmpty, "reported, so forgotten")
            #expect(after.pair == nil, "made under epoch 5, the fleet says 7")
            records.keepOffline(for: user, card: card, challenge: [2], response: mac([2]), now: now)
            #expect(pairs.read(user)?.pair?.epoch == 7, "the next pair is made under the fleet's epoch")
        }
    }
}
