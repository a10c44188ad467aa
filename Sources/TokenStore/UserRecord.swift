import OTPCore

/// How a token proves itself: a card tapped on a reader (challenge-response, with the
/// same credential readable as a code by a phone), or a code typed from an app or token.
public enum TokenKind: String, Sendable, CaseIterable {
    case card
    case code
}

/// One credential of a user: a card or a code-only token.
public struct Token: Sendable {
    /// Short id, unique within the record: `[a-z0-9_-]{1,32}`.
    public var id: String
    public var kind: TokenKind
    public var parameters: OTPParameters
    public var secret: SecretBytes
    /// HOTP: the first counter to accept before any use.
    public var initialCounter: UInt64
    /// The last accepted time step (TOTP) or counter (HOTP); codes at or below it are replays.
    public var lastUsed: UInt64?
    /// Card tokens: the YKOATH credential name, the card's device id (hex of the applet's
    /// salt, as SELECT returns it) and the applet's access key when it has one.
    public var credentialName: String?
    public var deviceID: String?
    public var accessKey: SecretBytes?
    /// Card tokens: the credential needs a touch on the key (YKOATH "require touch").
    public var touch: Bool = false
    public var label: String
    public var created: Int64
    public var lastUsedTime: Int64?

    public init(id: String, kind: TokenKind, parameters: OTPParameters, secret: SecretBytes,
                initialCounter: UInt64 = 0, lastUsed: UInt64? = nil, credentialName: String? = nil,
                deviceID: String? = nil, accessKey: SecretBytes? = nil, label: String = "",
                created: Int64, lastUsedTime: Int64? = nil) {
        self.id = id
        self.kind = kind
        self.parameters = parameters
        self.secret = secret
        self.initialCounter = initialCounter
        self.lastUsed = lastUsed
        self.credentialName = credentialName
        self.deviceID = deviceID
        self.accessKey = accessKey
        self.label = label
        self.created = created
        self.lastUsedTime = lastUsedTime
    }

    /// Whether `id` is a valid token id.
    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return (1...32).contains(bytes.count) && bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
        }
    }
}

/// Everything smartotp keeps about one user.
public struct UserRecord: Sendable {
    public var user: UserName
    public var tokens: [Token]
    /// The simple password, as a crypt(3) hash (yescrypt); nil when none is set.
    public var passwordHash: String?
    /// Consecutive failed attempts, and when the last one happened (Unix time).
    public var failures: Int
    public var lastFailure: Int64
    /// Failure counts saturate here, so that no record can make `failures + 1` overflow.
    public static let maxFailures = 1_000_000
    /// One-time recovery codes, hashed like the password.
    public var recoveryCodes: [String]
    public var created: Int64

    public init(user: UserName, tokens: [Token] = [], passwordHash: String? = nil, failures: Int = 0,
                lastFailure: Int64 = 0, recoveryCodes: [String] = [], created: Int64) {
        self.user = user
        self.tokens = tokens
        self.passwordHash = passwordHash
        self.failures = failures
        self.lastFailure = lastFailure
        self.recoveryCodes = recoveryCodes
        self.created = created
    }

    /// Whether `deny` consecutive failures lock the user at `now`, with pam_faillock's
    /// meaning: locked for `unlockTime` seconds after the last failure; 0 means until an
    /// administrator unlocks (`smartotp unlock`). `deny` 0 disables the lock.
    public func isLocked(deny: Int, unlockTime: Int64, now: Int64) -> Bool {
        guard deny > 0, failures >= deny else { return false }
        if unlockTime == 0 { return true }
        let (until, overflow) = lastFailure.addingReportingOverflow(unlockTime)
        return overflow || now < until
    }

    /// Seconds until the lock lifts (0 when not locked or locked for good).
    public func secondsUntilUnlock(unlockTime: Int64, now: Int64) -> Int64 {
        guard unlockTime > 0 else { return 0 }
        let (until, overflow) = lastFailure.addingReportingOverflow(unlockTime)
        let (left, overflow2) = until.subtractingReportingOverflow(now)
        return overflow || overflow2 ? 0 : max(0, left)
    }

    /// Counts one more failure at `now` (saturating at `maxFailures`).
    public mutating func countFailure(at now: Int64) {
        failures = min(failures, Self.maxFailures - 1) + 1
        lastFailure = now
    }

    /// The next free token id with `prefix` (`card`, `card2`, …).
    public func nextTokenID(prefix: String) -> String {
        var n = 1
        while true {
            let id = n == 1 ? prefix : "\(prefix)\(n)"
            if !tokens.contains(where: { $0.id == id }) { return id }
            n += 1
        }
    }
}
