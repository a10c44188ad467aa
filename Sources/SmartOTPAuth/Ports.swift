import OTPCore
import SmartCard

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
}

/// One card credential to look for on a tap.
public struct CardCandidate: Sendable {
    public var tokenID: String
    /// The enrolled card's device id (hex salt); nil accepts any card holding the credential.
    public var deviceID: String?
    public var credentialName: String
    public var accessKey: SecretBytes?
    public var touch: Bool

    public init(tokenID: String, deviceID: String?, credentialName: String, accessKey: SecretBytes?, touch: Bool) {
        self.tokenID = tokenID
        self.deviceID = deviceID
        self.credentialName = credentialName
        self.accessKey = accessKey
        self.touch = touch
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
    /// A card of `tokenID` answered the challenge with this full response.
    case response(tokenID: String, mac: [UInt8])
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
    /// Waits up to `timeoutSeconds` for one of `candidates`' cards, then sends `challenge`
    /// (CALCULATE, full response). `notice` tells the flow what the user should hear
    /// while waiting.
    func tap(candidates: [CardCandidate], challenge: [UInt8], filter: String?, timeoutSeconds: Int,
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

    public var description: String {
        "user=\(user) service=\(service) method=\(method) result=\(result.rawValue) reason=\"\(reason)\""
    }
}
