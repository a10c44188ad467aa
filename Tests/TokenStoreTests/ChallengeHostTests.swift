import Testing
import OTPCore
import TokenStore

/// A tap challenge belongs to the host that asked for it, in the record itself.
@Suite("Tap challenges bound to their host")
struct ChallengeHostTests {
    func record() throws -> UserRecord { UserRecord(user: try UserName("alice"), created: 1) }

    @Test func onlyTheHostThatAskedCanAnswer() throws {
        var r = try record()
        _ = r.addChallenge([7, 7], host: "h1.example.org", expires: 100, now: 0)
        let fromAnother = r.takeChallenge([7, 7], host: "h2.example.org", now: 10)
        #expect(!fromAnother, "another host's answer is refused")
        let fromItsHost = r.takeChallenge([7, 7], host: "h1.example.org", now: 10)
        #expect(fromItsHost, "… and leaves the challenge to the host it was issued to")
        #expect(r.challenges.isEmpty, "used once")
        _ = r.addChallenge([9], host: "", expires: 100, now: 0)
        let localFromHost = r.takeChallenge([9], host: "h1.example.org", now: 10)
        #expect(!localFromHost, "a local challenge is no fleet host's")
    }

    @Test func theHostSurvivesTheRecordText() throws {
        var r = try record()
        _ = r.addChallenge([1, 2, 3, 4], host: "host one/ü", expires: 1_764_000_160, now: 0)
        _ = r.addChallenge([5, 6], host: "", expires: 1_764_000_170, now: 0)
        let text = RecordFormat.encode(r)
        let line = String(decoding: text, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("challenge 01020304") }
        #expect(line == "challenge 01020304 1764000160 host%20one%2F%C3%BC")
        let back = try RecordFormat.parse(bytes: text, path: "test")
        #expect(back.challenges == r.challenges)
    }

    @Test func aMalformedHostIsRefused() {
        let text = Array("smartotp-record 1\nuser alice\ncreated 1\nchallenge 0102 100 %zz\n".utf8)
        #expect(throws: StoreError.self) { try RecordFormat.parse(bytes: text, path: "test") }
    }
}
