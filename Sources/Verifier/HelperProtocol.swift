import OTPCore
import TokenStore

/// What the module and the setuid helper `smartotp-chkotp` say to each other over its
/// standard input and output. One request per run (`smartotp-chkotp USER OPERATION`, the
/// arguments of the operation on standard input, one a line), one answer: a version
/// line, then `key value` lines. No secret ever travels from the helper to the caller.
///
/// ```
/// smartotp-helper 1            smartotp-helper 1           smartotp-helper 1
/// card card - smartotp%3Aa 0 1  verdict accepted card       challenge 0011223344556677
/// digits 6 8                   lock open
/// recovery 3
/// password 1
/// failures 0
/// lock open
/// ```
public enum HelperProtocol {
    public static let version = "smartotp-helper 1"

    /// The operations, as named on the helper's command line.
    public enum Operation: String, Sendable, CaseIterable {
        case summary, challenge, access, code, password, tap
        /// A fleet host's report of its offline logins, answered with the user's offline
        /// epoch (`OfflineReport`).
        case offline
        /// Self-service (`smartotp enroll --self`, `smartotp passwd` run by the user).
        case enrollSelf = "self-enroll", confirmSelf = "self-confirm", passwordSelf = "self-passwd"

        /// The operation spelled `name` (as `init(rawValue:)`, over bytes: `String.equals`).
        public static func named(_ name: String) -> Operation? { allCases.first { $0.rawValue.equals(name) } }
    }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    // MARK: lock

    public static func encode(_ lock: LockState) -> String {
        switch lock {
        case .open: return "open"
        case .lockedUntil(let t): return msg("until \(t)")
        case .lockedForGood: return "forever"
        }
    }

    static func decodeLock(_ v: String) throws(ParseError) -> LockState {
        if v.equals("open") { return .open }
        if v.equals("forever") { return .lockedForGood }
        if v.utf8.begins(with: "until "), let t = ByteNumber.parse(v.utf8.dropFirst(6), as: Int64.self) { return .lockedUntil(t) }
        throw ParseError("bad lock state")
    }

    // MARK: answers

    /// The summary answer (`nil`: the user has no record).
    public static func encode(_ summary: RecordSummary?) -> String {
        guard let s = summary else { return version + "\nnone\n" }
        var out = version + "\n"
        for c in s.cards {
            out += msg("card \(c.tokenID) \(c.deviceID ?? "-") \(OTPAuthURI.percentEncode(c.credentialName)) \(c.touch ? 1 : 0) \(c.protected ? 1 : 0)\n")
        }
        out += "digits" + s.codeDigits.map { msg(" \($0)") }.joined() + "\n"
        out += msg("recovery \(s.recoveryCodes)\npassword \(s.hasPassword ? 1 : 0)\nfailures \(s.failures)\nlock \(encode(s.lock))\n")
        if s.offline { out += "offline 1\n" }
        return out
    }

    public static func decodeSummary(_ text: String) throws(ParseError) -> RecordSummary? {
        let lines = try body(text)
        if lines.count == 1, lines[0].key.equals("none") { return nil }
        var s = RecordSummary(cards: [], codeDigits: [], recoveryCodes: 0, hasPassword: false, failures: 0, lock: .open)
        var sawLock = false
        for (key, value) in lines {
            let words = value.splitBytes(UInt8(ascii: " "))
            if key.equals("card") {
                guard words.count == 5, Token.isValidID(words[0]), let name = OTPAuthURI.percentDecode(words[2]) else {
                    throw ParseError("bad card line")
                }
                s.cards.append(.init(tokenID: words[0], deviceID: words[1].equals("-") ? nil : words[1], credentialName: name,
                                     touch: words[3].equals("1"), protected: words[4].equals("1")))
            } else if key.equals("digits") {
                for w in words {
                    guard let d = Int(w), (6...8).contains(d) else { throw ParseError("bad digits") }
                    s.codeDigits.append(d)
                }
            } else if key.equals("recovery") {
                guard let n = Int(value), n >= 0 else { throw ParseError("bad recovery count") }
                s.recoveryCodes = n
            } else if key.equals("password") {
                s.hasPassword = value.equals("1")
            } else if key.equals("failures") {
                guard let n = Int(value), n >= 0 else { throw ParseError("bad failure count") }
                s.failures = n
            } else if key.equals("lock") {
                s.lock = try decodeLock(value)
                sawLock = true
            } else if key.equals("offline") {
                s.offline = value.equals("1")
            } else {
                throw ParseError("unknown line")
            }
        }
        guard sawLock else { throw ParseError("no lock line") }
        return s
    }

    public static func encode(_ attempt: Attempt) -> String {
        let verdict: String
        switch attempt.verdict {
        case .accepted(.token(let id)): verdict = msg("accepted token \(id)")
        case .accepted(.password): verdict = "accepted password"
        case .accepted(.recoveryCode): verdict = "accepted recovery-code"
        case .accepted(.tempCode): verdict = "accepted temp-code"
        case .replayed(let id): verdict = msg("replayed \(id)")
        case .rejected: verdict = "rejected"
        case .locked: verdict = "locked"
        }
        return version + msg("\nverdict \(verdict)\nlock \(encode(attempt.lock))\n")
    }

    public static func decodeAttempt(_ text: String) throws(ParseError) -> Attempt {
        let lines = try body(text)
        guard lines.count == 2, lines[0].key.equals("verdict"), lines[1].key.equals("lock") else { throw ParseError("bad verdict") }
        let words = lines[0].value.splitBytes(UInt8(ascii: " "), maxSplits: 1)
        let verdict: RecordVerdict
        let first = words.first ?? ""
        if first.equals("accepted") {
            let what = words.count > 1 ? words[1] : ""
            if what.equals("password") { verdict = .accepted(.password) }
            else if what.equals("recovery-code") { verdict = .accepted(.recoveryCode) }
            else if what.equals("temp-code") { verdict = .accepted(.tempCode) }
            else if what.utf8.begins(with: "token "), Token.isValidID(what.droppingBytes(6)) { verdict = .accepted(.token(what.droppingBytes(6))) }
            else { throw ParseError("bad verdict") }
        } else if first.equals("replayed") { verdict = .replayed(tokenID: words.count > 1 ? words[1] : "")
        } else if first.equals("rejected") { verdict = .rejected
        } else if first.equals("locked") { verdict = .locked
        } else { throw ParseError("bad verdict") }
        return Attempt(verdict, lock: try decodeLock(lines[1].value))
    }

    public static func encode(challenge: [UInt8]) -> String { version + msg("\nchallenge \(Hex.encode(challenge))\n") }

    public static func decodeChallenge(_ text: String) throws(ParseError) -> [UInt8] {
        let lines = try body(text)
        guard lines.count == 1, lines[0].key.equals("challenge"), let bytes = try? Hex.decode(lines[0].value),
              (1...64).contains(bytes.count) else { throw ParseError("bad challenge") }
        return bytes
    }

    public static func encode(access: AccessAnswers?) -> String {
        guard let a = access else { return version + "\naccess none\n" }
        return version + msg("\naccess \(Hex.encode(a.response)) \(Hex.encode(a.expected))\n")
    }

    public static func decodeAccess(_ text: String) throws(ParseError) -> AccessAnswers? {
        let lines = try body(text)
        guard lines.count == 1, lines[0].key.equals("access") else { throw ParseError("bad access answer") }
        if lines[0].value.equals("none") { return nil }
        let words = lines[0].value.splitBytes(UInt8(ascii: " "))
        guard words.count == 2, let r = try? Hex.decode(words[0]), let e = try? Hex.decode(words[1]) else {
            throw ParseError("bad access answer")
        }
        return AccessAnswers(response: r, expected: e)
    }

    /// The lines after the version line, split at the first space.
    static func body(_ text: String) throws(ParseError) -> [(key: String, value: String)] {
        var lines = text.splitBytes(UInt8(ascii: "\n"))
        guard (lines.first ?? "").equals(version) else { throw ParseError(msg("not a \(version) answer")) }
        lines.removeFirst()
        return lines.map { line in
            let parts = line.splitBytes(UInt8(ascii: " "), maxSplits: 1, omittingEmpty: false)
            return (parts.first ?? "", parts.count > 1 ? parts[1] : "")
        }
    }
}
