import OTPCore
import SmartCard
import Verifier

/// The PAM conversation, as the flow sees it.
public protocol Prompter {
    /// A message for the user (PAM_TEXT_INFO); dropped under PAM_SILENT.
    func info(_ text: String)
    /// An instruction the user must act on ("tap your card"): as needed as a prompt, so it
    /// is sent even under PAM_SILENT (which sudo sets by default).
    func instruct(_ text: String)
    /// An error message for the user (PAM_ERROR_MSG); dropped under PAM_SILENT.
    func error(_ text: String)
    /// Asks with echo off (PAM_PROMPT_ECHO_OFF). nil when the conversation failed.
    func askSecret(_ prompt: String) -> String?
    /// Shows `note` (PAM_TEXT_INFO, even under PAM_SILENT) and asks `prompt` with echo off
    /// in one conversation call, so that a window shows both in one dialog: a window
    /// locker such as xscreensaver holds a lone message up until the user clicks OK.
    func askSecret(_ prompt: String, after note: String) -> String?
}

/// The verifier's side of a tap: it issues the challenge (so a captured challenge and
/// response are worth nothing) and answers a protected card's VALIDATE (so the access key
/// never leaves the verifier).
public struct TapAuthority {
    /// A fresh challenge for token `tokenID`, asked for once that card is on the reader.
    public var challenge: (_ tokenID: String) -> [UInt8]?
    /// VALIDATE answers for token `tokenID`'s card; nil when the verifier has no key.
    public var access: (_ tokenID: String, _ cardChallenge: [UInt8], _ ourChallenge: [UInt8]) -> AccessAnswers?

    public init(challenge: @escaping (String) -> [UInt8]?,
                access: @escaping (String, [UInt8], [UInt8]) -> AccessAnswers?) {
        self.challenge = challenge
        self.access = access
    }
}

/// What happens during a tap that the user should know.
public enum TapNotice: Sendable, Equatable {
    case secondsLeft(Int)
    case touchRequired
    case wrongCard
}

/// What came of waiting for a tap.
public enum TapResult: Sendable, Equatable {
    /// A card of `tokenID` answered `challenge` with this full response.
    case response(tokenID: String, challenge: [UInt8], mac: [UInt8])
    /// No reader or no pcscd: the card method cannot be used at all.
    case unavailable(CardError)
    /// Nobody tapped in time.
    case timeout
    /// A card was presented but could not be used (wrong card, removed, no touch, …).
    case failed(CardError)
}

/// The card reader, as the flow sees it.
public protocol CardReader {
    /// Whether pcscd runs and a reader matching `filter` is connected (no waiting).
    func readerAvailable(filter: String?) -> Bool
    /// Waits up to `timeoutSeconds` for one of `cards`, then sends the challenge that
    /// `authority` issues for it (CALCULATE, full response). `notice` tells the flow what
    /// the user should hear while waiting.
    func tap(cards: [RecordSummary.Card], filter: String?, timeoutSeconds: Int, authority: TapAuthority,
             notice: (TapNotice) -> Void) -> TapResult
}

/// Wall-clock time, injected so that tests control it.
public protocol Clock {
    func now() -> Int64
}

/// Where the flow reports each attempt: user, service, method, result, reason. Never a secret.
public protocol AuditLog {
    func record(_ event: AuditEvent)
    func debug(_ text: String)
}

public struct AuditEvent: Sendable, Equatable, CustomStringConvertible {
    public enum Result: String, Sendable { case success, failure, skipped, locked, error }
    public var user: String
    public var service: String
    public var method: String
    public var result: Result
    public var reason: String
    /// The remote host (PAM_RHOST), "" when the application set none.
    public var rhost: String = ""

    public var description: String {
        msg("user=\(user) service=\(service) rhost=\(rhost) method=\(method) result=\(result.rawValue) reason=\"\(reason)\"")
    }
}
