import OTPCore
import TokenStore

/// What a login asks of a user's record, each as one locked read-modify-write.
public enum RecordOperation: Sendable, Equatable {
    /// A typed one-time code, or a recovery code.
    case code(String)
    /// The simple password.
    case password(String)
    /// A card's full response to `challenge` for token `tokenID`. The challenge must be
    /// one the record service issued (`issueChallenge`) and not yet used.
    case tap(tokenID: String, challenge: [UInt8], response: [UInt8])
    /// The user enrols a phone token themself with an invitation's code (`smartotp invite`):
    /// the secret is the user's program's, sent one way; the token is written pending.
    case enrollSelf(invitation: String, secret: [UInt8])
    /// The user confirms their pending token with the phone's first code.
    case confirmSelf(code: String)
    /// The user sets a new simple password, proving the second factor with a code, and
    /// the current simple password when one is set (a code relayed by a host would otherwise
    /// become a password that logs in everywhere, for good).
    case passwordSelf(code: String, current: String, new: String)
}

/// What an accepted answer was.
public enum Credential: Sendable, Equatable, CustomStringConvertible {
    /// A token's code or a card's tap, by token id.
    case token(String)
    case password
    case recoveryCode
    /// A temporary code (`smartotp temp-code`).
    case tempCode

    public var description: String {
        switch self {
        case .tempCode: return "temporary code"
        case .token(let id): return msg("token \(id)")
        case .password: return "simple password"
        case .recoveryCode: return "recovery code"
        }
    }
}

/// The verdict on one operation.
public enum RecordVerdict: Sendable, Equatable {
    /// Accepted, and by what.
    case accepted(Credential)
    /// A code at or below the last one used.
    case replayed(tokenID: String)
    case rejected
    /// The user is locked (checked inside the same locked update).
    case locked
}

/// One attempt's verdict and the lock state after it was counted.
public struct Attempt: Sendable, Equatable {
    public var verdict: RecordVerdict
    public var lock: LockState

    public init(_ verdict: RecordVerdict, lock: LockState) {
        self.verdict = verdict
        self.lock = lock
    }
}

/// What the login flow needs to know of a record to choose and prompt: no secret.
public struct RecordSummary: Sendable, Equatable {
    /// A card token, as the tap needs it.
    public struct Card: Sendable, Equatable {
        public var tokenID: String
        public var deviceID: String?
        public var credentialName: String
        public var touch: Bool
        /// The card's applet has an access code (VALIDATE before CALCULATE).
        public var protected: Bool

        public init(tokenID: String, deviceID: String?, credentialName: String, touch: Bool, protected: Bool) {
            self.tokenID = tokenID
            self.deviceID = deviceID
            self.credentialName = credentialName
            self.touch = touch
            self.protected = protected
        }
    }

    public var cards: [Card]
    /// The code length of every token (card tokens too: a phone reads the same credential).
    public var codeDigits: [Int]
    /// Recovery codes and temporary codes still good: the typed words of a recovery code's
    /// shape that can match (one count on the wire, so that hosts of an earlier version
    /// read it too).
    public var recoveryCodes: Int
    public var hasPassword: Bool
    /// Failures that count towards the lock now.
    public var failures: Int
    public var lock: LockState
    /// No verifier answered: the fleet client decides with the host's offline pairs (a tap
    /// only; the summary offers neither codes nor the simple password).
    public var offline: Bool

    public init(cards: [Card], codeDigits: [Int], recoveryCodes: Int, hasPassword: Bool, failures: Int, lock: LockState, offline: Bool = false) {
        self.cards = cards
        self.codeDigits = codeDigits
        self.recoveryCodes = recoveryCodes
        self.hasPassword = hasPassword
        self.failures = failures
        self.lock = lock
        self.offline = offline
    }

    /// A typed code can be checked (a token or a recovery code exists).
    public var acceptsCodes: Bool { !codeDigits.isEmpty || recoveryCodes > 0 }
}

/// The answers a protected card's VALIDATE needs, computed by whoever holds the access key.
public struct AccessAnswers: Sendable, Equatable {
    /// HMAC(key, the card's challenge): sent to the card.
    public var response: [UInt8]
    /// HMAC(key, our challenge): what the card must answer.
    public var expected: [UInt8]

    public init(response: [UInt8], expected: [UInt8]) {
        self.response = response
        self.expected = expected
    }
}

/// Why the record side could not answer. The flow turns any of these into
/// PAM_AUTHINFO_UNAVAIL: fail closed.
public enum RecordError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The store (missing, insecure, malformed, I/O, a count that could not be written).
    case store(StoreError)
    /// The verifier behind the record service (the setuid helper) failed or answered
    /// something unexpected.
    case verifier(String)

    public var description: String {
        switch self {
        case .store(let e): return e.description
        case .verifier(let why): return why
        }
    }
}

/// A tap's challenge, as the record service issues it.
public enum TapChallenge {
    /// How long an issued challenge stays valid, in seconds. It is issued once the card is
    /// on the reader, so this covers the card's answer and a touch (a YubiKey waits 15 s).
    public static let lifetime: Int64 = 60
}

/// The record side of a login. Root processes use `LocalRecords` (the store itself);
/// processes that run as the user (screen lockers) use `HelperRecords`, which asks the
/// setuid `smartotp-chkotp` to do the same thing for the caller's own record. Either way
/// the lock is decided here, with the verifier's own policy.
public protocol RecordService {
    /// What the flow needs of the user's record; nil when the user has none.
    func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary?
    /// A fresh tap challenge for `user`, remembered by the verifier: single use, valid for
    /// `TapChallenge.lifetime` seconds.
    func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8]
    /// VALIDATE answers for a protected card of token `tokenID`; nil when it has no key.
    func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers?
    /// Performs `operation`. The attempt is counted durably before its verdict is known,
    /// and the count cleared on success: nobody learns a verdict that was not counted.
    func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt
}

/// The fleet agent's word: `smartotp-fleet --agent` answers a session's first frame (the
/// client's arguments, NUL-separated) with this frame when it will serve the session.
public enum FleetAgent {
    public static let welcome = "smartotp-fleet agent 1\n"
    /// The longest first frame: the arguments a module can give.
    public static let helloLimit = 65_536
}

/// The last frame of a fleet client session that ends without a verdict: `smartotp-fleet
/// no-verdict` and why, on a second line. The module fails closed on it.
public enum FleetNotice {
    public static let first = "smartotp-fleet no-verdict"

    public static func text(_ why: String) -> String { first + "\n" + why + "\n" }

    /// nil: not a notice; else why.
    public static func read(_ text: String) -> String? {
        guard text.utf8.begins(with: "smartotp-fleet no-verdict\n") else { return nil }
        let lines = text.splitBytes(UInt8(ascii: "\n"))
        return lines.count > 1 ? lines[1] : "no reason given"
    }
}
/// One offline login a fleet host reports once it reaches the verifiers again:
/// `UNIX-TIME RESULT SERVICE RHOST` (RESULT success, failure or locked; `-` for an empty
/// service or remote host), printable ASCII, at most 300 bytes.
public enum OfflineReport {
    public static let maxLines = 64

    public static func line(at time: Int64, result: String, service: String, remoteHost: String) -> String {
        func word(_ s: String) -> String {
            var bytes: [UInt8] = []
            for b in s.utf8.prefix(100) { bytes.append(b > 0x20 && b < 0x7F ? b : UInt8(ascii: "?")) }
            return bytes.isEmpty ? "-" : String(decoding: bytes, as: UTF8.self)
        }
        return msg("\(time) \(result) \(word(service)) \(word(remoteHost))")
    }

    public static func isValid(_ line: String) -> Bool {
        let words = line.splitBytes(UInt8(ascii: " "), omittingEmpty: false)
        guard line.utf8.count <= 300, words.count == 4, let t = Int64(words[0]), t > 0 else { return false }
        guard words[1].equals("success") || words[1].equals("failure") || words[1].equals("locked") else { return false }
        return line.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F } && !words[2].isEmpty && !words[3].isEmpty
    }
}
