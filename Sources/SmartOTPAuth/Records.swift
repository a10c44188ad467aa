import OTPCore
import TokenStore

/// What a login asks of a user's record, each as one locked read-modify-write.
public enum RecordOperation: Sendable, Equatable {
    /// A typed one-time code, or a recovery code.
    case code(String)
    /// The simple password.
    case password(String)
    /// A card's full response to `challenge` for token `tokenID`.
    case tap(tokenID: String, challenge: [UInt8], response: [UInt8])
}

/// The verdict on one operation.
public enum RecordVerdict: Sendable, Equatable {
    /// Accepted; `detail` names what matched (a token id, "password", "recovery").
    case accepted(String)
    /// A code at or below the last one used.
    case replayed(tokenID: String)
    case rejected
    /// The user is locked (checked inside the same locked update).
    case locked
}

/// The record side of a login. Root processes use `LocalRecords` (the store itself);
/// processes that run as the user (screen lockers) use `HelperRecords`, which asks the
/// setuid `smartotp-chkotp` to do the same thing for the caller's own record.
public protocol RecordService {
    /// The user's record as far as the flow needs it (a helper leaves the secrets out).
    func summary(_ user: UserName) throws -> UserRecord?
    /// Performs `operation`; failures count towards the lock when `countFailure`.
    func perform(_ operation: RecordOperation, for user: UserName, now: Int64, countFailure: Bool) throws -> RecordVerdict
}

/// Lock policy and validation windows, shared by the module and the helper.
public struct Policy: Sendable, Equatable {
    public var skew: Int
    public var window: Int
    public var deny: Int
    public var unlockTime: Int64

    public init(skew: Int, window: Int, deny: Int, unlockTime: Int64) {
        self.skew = skew
        self.window = window
        self.deny = deny
        self.unlockTime = unlockTime
    }

    public init(_ c: ModuleConfig) { self.init(skew: c.skew, window: c.window, deny: c.deny, unlockTime: c.unlockTime) }
}

/// The record service over a `Store`: every operation runs under the user's lock, checks
/// the lock state, decides, and writes the outcome (last-used step, failure count) in the
/// same update, so two logins can never both use one code.
public struct LocalRecords: RecordService {
    public let store: any Store
    public let policy: Policy

    public init(store: any Store, policy: Policy) {
        self.store = store
        self.policy = policy
    }

    public func summary(_ user: UserName) throws -> UserRecord? { try store.read(user) }

    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64, countFailure: Bool) throws -> RecordVerdict {
        try store.update(user) { (r: inout UserRecord?, changed: inout Bool) -> RecordVerdict in
            guard var record = r else { return .rejected }
            if record.isLocked(deny: policy.deny, unlockTime: policy.unlockTime, now: now) { return .locked }
            let verdict = Self.decide(operation, record: &record, policy: policy, now: now)
            switch verdict {
            case .accepted:
                record.failures = 0
            case .locked:
                return verdict
            case .replayed, .rejected:
                guard countFailure else { return verdict }
                record.countFailure(at: now)
            }
            r = record
            changed = true
            return verdict
        }
    }

    /// The decision itself, on a record in memory.
    static func decide(_ operation: RecordOperation, record: inout UserRecord, policy: Policy, now: Int64) -> RecordVerdict {
        switch operation {
        case .code(let typed):
            guard typed.utf8.count <= LoginFlow.maxAnswer else { return .rejected }
            switch CodeCheck(skew: policy.skew, window: policy.window).apply(typed, to: &record, now: now) {
            case .accepted(let id, _): return .accepted(id)
            case .replayed(let id): return .replayed(tokenID: id)
            case .rejected:
                return RecoveryCode.consume(typed, in: &record) ? .accepted("recovery") : .rejected
            }
        case .password(let typed):
            guard typed.utf8.count <= LoginFlow.maxAnswer, let hash = record.passwordHash,
                  PasswordHash.verify(typed, hash: hash) else { return .rejected }
            return .accepted("password")
        case .tap(let id, let challenge, let response):
            guard let i = record.tokens.firstIndex(where: { $0.id == id && $0.kind == .card }),
                  ChallengeResponse.verify(response: response, secret: record.tokens[i].secret, challenge: challenge,
                                           algorithm: record.tokens[i].parameters.algorithm) else { return .rejected }
            record.tokens[i].lastUsedTime = now
            return .accepted(id)
        }
    }
}
