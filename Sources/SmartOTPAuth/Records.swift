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
}

/// What an accepted answer was.
public enum Credential: Sendable, Equatable, CustomStringConvertible {
    /// A token's code or a card's tap, by token id.
    case token(String)
    case password
    case recoveryCode

    public var description: String {
        switch self {
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
    public var recoveryCodes: Int
    public var hasPassword: Bool
    /// Failures that count towards the lock now.
    public var failures: Int
    public var lock: LockState

    public init(cards: [Card], codeDigits: [Int], recoveryCodes: Int, hasPassword: Bool, failures: Int, lock: LockState) {
        self.cards = cards
        self.codeDigits = codeDigits
        self.recoveryCodes = recoveryCodes
        self.hasPassword = hasPassword
        self.failures = failures
        self.lock = lock
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
    func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8]) throws(RecordError) -> AccessAnswers?
    /// Performs `operation`. The attempt is counted durably before its verdict is known,
    /// and the count cleared on success: nobody learns a verdict that was not counted.
    func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt
}

/// Lock policy and validation windows, shared by the module and the helper.
public struct Policy: Sendable, Equatable {
    public var skew: Int
    public var window: Int
    public var lock: LockPolicy

    public init(skew: Int, window: Int, lock: LockPolicy) {
        self.skew = skew
        self.window = window
        self.lock = lock
    }

    public init(_ c: ModuleConfig) {
        self.init(skew: c.skew, window: c.window,
                  lock: LockPolicy(deny: c.deny, failInterval: c.failInterval, unlockTime: c.unlockTime,
                                   evenDenyRoot: c.evenDenyRoot, rootUnlockTime: c.rootUnlockTime))
    }
}

/// The record service over a `Store`: every operation runs under the user's lock, checks
/// the lock state, counts the attempt, decides, and clears the count on success, so two
/// logins can never both use one code and no attempt goes uncounted.
public struct LocalRecords<S: Store>: RecordService {
    public let store: S
    public let policy: Policy
    /// Whether a user name is root's (uid 0): root is locked only with `even_deny_root`.
    public let isRoot: (UserName) -> Bool

    public init(store: S, policy: Policy, isRoot: @escaping (UserName) -> Bool) {
        self.store = store
        self.policy = policy
        self.isRoot = isRoot
    }

    /// The store's calls, with their errors as the record service's.
    func run<R>(_ body: () throws(StoreError) -> R) throws(RecordError) -> R {
        do { return try body() } catch { throw .store(error) }
    }

    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        guard let r = try run({ () throws(StoreError) in try store.read(user) }) else { return nil }
        return RecordSummary(
            cards: r.tokens.compactMap { t in
                guard t.kind == .card, let name = t.credentialName else { return nil }
                return .init(tokenID: t.id, deviceID: t.deviceID, credentialName: name, touch: t.touch, protected: t.accessKey != nil)
            },
            codeDigits: r.tokens.map { $0.parameters.digits }, recoveryCodes: r.recoveryCodes.count,
            hasPassword: r.passwordHash != nil, failures: r.countedFailures(policy.lock),
            lock: r.lockState(policy.lock, isRoot: isRoot(user), now: now))
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        try run { () throws(StoreError) in
            try store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> [UInt8] in
                guard var record = current else { throw StoreError.invalidValue(msg("\(user.value) has no record")) }
                guard let bytes = SecureRandom.bytes(8) else { throw StoreError.invalidValue("no random bytes") }
                let (expires, overflow) = now.addingReportingOverflow(TapChallenge.lifetime)
                record.addChallenge(bytes, expires: overflow ? Int64.max : expires, now: now)
                try commit(record)
                return bytes
            }
        }
    }

    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8]) throws(RecordError) -> AccessAnswers? {
        guard let record = try run({ () throws(StoreError) in try store.read(user) }),
              let key = record.tokens.first(where: { $0.id == tokenID && $0.kind == .card })?.accessKey else { return nil }
        return AccessAnswers(response: HMAC.authenticate(.sha1, key: key, message: cardChallenge),
                             expected: HMAC.authenticate(.sha1, key: key, message: ourChallenge))
    }

    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        return try run { () throws(StoreError) in
          try store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> Attempt in
            guard var record = current else { return Attempt(.rejected, lock: .open) }
            let before = record.lockState(policy.lock, isRoot: isRoot(user), now: now)
            if before.isLocked { return Attempt(.locked, lock: before) }
            // Count first: the attempt (and the challenge it uses) is on disk before the
            // verdict exists. A caller killed, limited or signalled from here on has paid.
            var challengeValid = true
            if case .tap(_, let challenge, _) = operation { challengeValid = record.takeChallenge(challenge, now: now) }
            record.countFailure(at: now, policy: policy.lock, isRoot: isRoot(user))
            try commit(record)
            let verdict = challengeValid ? Self.decide(operation, record: &record, policy: policy, now: now) : .rejected
            if case .accepted = verdict {
                record.clearFailures()
                try commit(record)
            }
            return Attempt(verdict, lock: record.lockState(policy.lock, isRoot: isRoot(user), now: now))
          }
        }
    }

    /// The decision itself, on a record in memory.
    static func decide(_ operation: RecordOperation, record: inout UserRecord, policy: Policy, now: Int64) -> RecordVerdict {
        switch operation {
        case .code(let typed):
            guard typed.utf8.count <= AnswerLimit.bytes else { return .rejected }
            switch CodeCheck(skew: policy.skew, window: policy.window).apply(typed, to: &record, now: now) {
            case .accepted(let id, _): return .accepted(.token(id))
            case .replayed(let id): return .replayed(tokenID: id)
            case .rejected:
                return RecoveryCode.consume(typed, in: &record) ? .accepted(.recoveryCode) : .rejected
            }
        case .password(let typed):
            guard typed.utf8.count <= AnswerLimit.bytes, let hash = record.passwordHash,
                  PasswordHash.verify(typed, hash: hash) else { return .rejected }
            return .accepted(.password)
        case .tap(let id, let challenge, let response):
            guard let i = record.tokens.firstIndex(where: { $0.id == id && $0.kind == .card }),
                  ChallengeResponse.verify(response: response, secret: record.tokens[i].secret, challenge: challenge,
                                           algorithm: record.tokens[i].parameters.algorithm) else { return .rejected }
            record.tokens[i].lastUsedTime = now
            return .accepted(.token(id))
        }
    }
}
