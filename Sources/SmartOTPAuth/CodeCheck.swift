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

    /// Validates `code` against every token of `record` (card tokens too: a phone reads
    /// the same credential) and, when one accepts, stores its new last-used value.
    public func apply(_ code: String, to record: inout UserRecord, now: Int64) -> Result {
        var replayedBy: String?
        for index in record.tokens.indices {
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

/// One-time recovery codes: `xxxx-xxxx-xxxx` from the Base32 alphabet (ours), or the
/// 8-digit scratch codes imported from google-authenticator; hashed like the simple
/// password, each removed from the record when used.
public enum RecoveryCode {
    /// Normalised form (lower case, no separators) when `text` looks like a recovery code.
    public static func normalise(_ text: String) -> String? {
        var out = ""
        for ch in text.lowercased() where ch != "-" && ch != " " {
            guard ch.isASCII, ch.isLetter || ch.isNumber else { return nil }
            out.append(ch)
            if out.count > 12 { return nil }
        }
        let base32 = out.count == 12 && out.allSatisfy { $0.isLetter || ("2"..."7").contains($0) }
        let scratch = out.count == 8 && out.allSatisfy(\.isNumber)
        return base32 || scratch ? out : nil
    }

    /// A fresh code, formatted for display.
    public static func generate() -> String? {
        guard let bytes = SecureRandom.bytes(8) else { return nil }
        let text = Base32.encode(bytes).lowercased().prefix(12)
        return "\(text.prefix(4))-\(text.dropFirst(4).prefix(4))-\(text.dropFirst(8))"
    }

    /// Uses up the matching code in `record` (its hash moves to the used list, so that an
    /// import cannot bring it back); true if one matched.
    public static func consume(_ typed: String, in record: inout UserRecord) -> Bool {
        guard let code = normalise(typed) else { return false }
        for (i, hash) in record.recoveryCodes.enumerated() where PasswordHash.verify(code, hash: hash) {
            record.markRecoveryUsed(at: i)
            return true
        }
        return false
    }

    /// Whether `code` (normalised) is among `hashes`.
    public static func isAmong(_ code: String, _ hashes: [String]) -> Bool {
        guard let normal = normalise(code) else { return false }
        return hashes.contains { PasswordHash.verify(normal, hash: $0) }
    }
}
