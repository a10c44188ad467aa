import OTPCore
import TokenStore

/// Checks a typed one-time code against a user's tokens, under the user's lock, and
/// records the accepted step or counter in the same locked update: of two logins that
/// present the same code at once, exactly one wins.
public struct CodeCheck: Sendable {
    public var skew: Int
    public var window: Int

    public init(skew: Int, window: Int) {
        self.skew = skew
        self.window = window
    }

    public enum Result: Sendable, Equatable {
        case accepted(tokenID: String, counter: UInt64)
        case replayed(tokenID: String)
        case rejected
    }

    /// Validates `code` against every token of `record` that takes codes (a card enrolled
    /// before tap credentials of their own too: a phone reads the same credential) and,
    /// when one accepts, stores its new last-used value.
    public func apply(_ code: String, to record: inout UserRecord, now: Int64) -> Result {
        var replayedBy: String?
        for index in record.tokens.indices where !record.tokens[index].tapOnly && !record.tokens[index].pending {
            let token = record.tokens[index]
            let result: ValidationResult
            switch token.parameters.kind {
            case .totp:
                result = TOTPValidator(parameters: token.parameters, skew: min(skew, token.windowLimit.map { ($0 - 1) / 2 } ?? skew))
                    .validate(code, secret: token.secret, at: now, lastUsedStep: token.lastUsed)
            case .hotp:
                result = HOTPValidator(parameters: token.parameters, window: min(window, token.windowLimit ?? window))
                    .validate(code, secret: token.secret, initialCounter: token.initialCounter, lastUsedCounter: token.lastUsed)
            }
            switch result {
            case .accepted(let counter):
                record.tokens[index].lastUsed = counter
                record.tokens[index].lastUsedTime = now
                return .accepted(tokenID: token.id, counter: counter)
            case .replayed:
                replayedBy = token.id
            case .rejected:
                continue
            }
        }
        if let replayedBy { return .replayed(tokenID: replayedBy) }
        return .rejected
    }
}
