import OTPCore
import TokenStore

/// The record service over a `Store`: every operation runs under the user's lock, checks
/// the lock state, counts the attempt, decides, and clears the count on success, so two
/// logins can never both use one code and no attempt goes uncounted.
public struct LocalRecords<S: Store>: RecordService {
    public let store: S
    public let policy: Policy
    /// Whether a user name is root's (uid 0): root is locked only with `even_deny_root`.
    public let isRoot: (UserName) -> Bool
    /// Who asks: a tap challenge is issued to this host and answered only by it ("" for
    /// the machine that holds the store; smartotpd names the host's certificate).
    public let requester: String

    public init(store: S, policy: Policy, requester: String = "", isRoot: @escaping (UserName) -> Bool) {
        self.store = store
        self.policy = policy
        self.requester = requester
        self.isRoot = isRoot
    }

    /// The store's calls, with their errors as the record service's.
    func run<R>(_ body: () throws(StoreError) -> R) throws(RecordError) -> R {
        do { return try body() } catch { throw .store(error) }
    }

    public func summary(_ user: UserName, now: Int64) throws(RecordError) -> RecordSummary? {
        // A record still being made (an invitation alone, a token not yet confirmed) is no
        // enrolment: as no record. One that could prove something once stays one.
        guard let r = try run({ () throws(StoreError) in try store.read(user) }), r.isEnrolment(at: now) else { return nil }
        return RecordSummary(
            cards: r.tokens.compactMap { t in
                guard t.kind == .card, !t.pending, let name = t.credentialName else { return nil }
                return .init(tokenID: t.id, deviceID: t.deviceID, credentialName: name, touch: t.touch, protected: t.accessKey != nil)
            },
            codeDigits: r.tokens.filter { !$0.tapOnly && !$0.pending }.map { $0.parameters.digits },
            recoveryCodes: r.recoveryCodes.count + TempCodes.active(in: r, now: now),
            hasPassword: r.passwordHash != nil, failures: r.countedFailures(policy.lock),
            lock: r.lockState(policy.lock, isRoot: isRoot(user), now: now))
    }

    public func issueChallenge(for user: UserName, now: Int64) throws(RecordError) -> [UInt8] {
        try run { () throws(StoreError) in
            try store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> [UInt8] in
                guard var record = current else { throw StoreError.invalidValue(msg("\(user.value) has no record")) }
                guard let bytes = SecureRandom.bytes(8) else { throw StoreError.invalidValue("no random bytes") }
                let (expires, overflow) = now.addingReportingOverflow(TapChallenge.lifetime)
                guard record.addChallenge(bytes, host: requester, expires: overflow ? Int64.max : expires, now: now) else {
                    throw StoreError.invalidValue(msg("\(user.value) has \(UserRecord.maxChallenges) taps pending on other hosts; try again in a minute"))
                }
                try commit(record)
                return bytes
            }
        }
    }

    /// The VALIDATE answers for a protected card, only when `ourChallenge` is a challenge
    /// issued to this requester (`issueChallenge`) and not yet used: it is used up here.
    /// Otherwise nothing is answered and the attempt counts as a failure, so that no one
    /// holding a host's certificate and a stolen card can have the access key's answer
    /// to bytes of their choosing, or unlimited answers.
    public func accessAnswers(for user: UserName, tokenID: String, cardChallenge: [UInt8], ourChallenge: [UInt8], now: Int64) throws(RecordError) -> AccessAnswers? {
        try run { () throws(StoreError) in
            try store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> AccessAnswers? in
                guard var record = current, !record.lockState(policy.lock, isRoot: isRoot(user), now: now).isLocked else { return nil }
                guard record.takeChallenge(ourChallenge, host: requester, now: now) else {
                    record.countFailure(at: now, policy: policy.lock, isRoot: isRoot(user))
                    try commit(record)
                    return nil
                }
                try commit(record)
                guard let key = record.tokens.first(where: { $0.id.equals(tokenID) && $0.kind == .card })?.accessKey else { return nil }
                return AccessAnswers(response: HMAC.authenticate(.sha1, key: key, message: cardChallenge),
                                     expected: HMAC.authenticate(.sha1, key: key, message: ourChallenge))
            }
        }
    }

    public func perform(_ operation: RecordOperation, for user: UserName, now: Int64) throws(RecordError) -> Attempt {
        return try run { () throws(StoreError) in
            try store.withLock(user) { (current: UserRecord?, commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> Attempt in
                try VerdictProcedure.perform(current, policy: policy.lock, isRoot: { isRoot(user) }, now: now,
                                             commit: { (r: UserRecord) throws(StoreError) in try commit(r) },
                                             use: { record in
                                                 // A tap uses up its challenge, whatever the answer.
                                                 guard case .tap(_, let challenge, _) = operation else { return true }
                                                 return record.takeChallenge(challenge, host: requester, now: now)
                                             },
                                             decide: { record in Self.decide(operation, record: &record, policy: policy, now: now) })
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
                if RecoveryCode.consume(typed, in: &record) { return .accepted(.recoveryCode) }
                return TempCodes.consume(typed, in: &record, now: now) ? .accepted(.tempCode) : .rejected
            }
        case .password(let typed):
            guard typed.utf8.count <= AnswerLimit.bytes, let hash = record.passwordHash,
                  PasswordHash.verify(typed, hash: hash) else { return .rejected }
            return .accepted(.password)
        case .tap(let id, let challenge, let response):
            guard let i = record.tokens.firstIndex(where: { $0.id.equals(id) && $0.kind == .card }),
                  ChallengeResponse.verify(response: response, secret: record.tokens[i].secret, challenge: challenge,
                                           algorithm: record.tokens[i].parameters.algorithm) else { return .rejected }
            record.tokens[i].lastUsedTime = now
            return .accepted(.token(id))
        case .enrollSelf(let invitation, let secret):
            // Only a first enrolment: a user who can prove something already adds no token
            // with an invitation (whoever gave it out could otherwise enrol one of theirs).
            guard !record.canProve(at: now), let invite = record.invitation, invite.until > now, let typed = RecoveryCode.normalise(invitation),
                  PasswordHash.verify(typed, hash: invite.hash), (OTPParameters.minSecretLength...OTPParameters.maxSecretLength).contains(secret.count),
                  let parameters = try? OTPParameters(kind: .totp(period: 30)) else { return .rejected }
            var token = Token(id: record.nextTokenID(prefix: "code"), kind: .code, parameters: parameters, secret: SecretBytes(secret),
                              label: "phone (enrolled by the user)", created: now)
            token.pending = true
            record.tokens.append(token)
            record.invitation = nil
            return .accepted(.token(token.id))
        case .confirmSelf(let code):
            guard code.utf8.count <= AnswerLimit.bytes, let id = PendingTokens.confirm(code, in: &record, now: now) else { return .rejected }
            return .accepted(.token(id))
        case .passwordSelf(let code, let current, let new):
            guard new.utf8.count >= 4, new.utf8.count <= 512, PasswordHash.acceptable(new), current.utf8.count <= AnswerLimit.bytes else { return .rejected }
            let proof = decide(.code(code), record: &record, policy: policy, now: now)
            guard case .accepted = proof else { return proof }
            if let old = record.passwordHash, !PasswordHash.verify(current, hash: old) { return .rejected }
            guard let hash = PasswordHash.make(new) else { return .rejected }
            record.passwordHash = hash
            return proof
        }
    }
}

/// Tokens made pending (`enroll --generate`, `enroll --self`) until the phone's first code.
public enum PendingTokens {
    /// Makes live the first pending token of `record` that accepts `code` (its counter
    /// used: the same code cannot log in after); its id, or nil when none does.
    public static func confirm(_ code: String, in record: inout UserRecord, now: Int64) -> String? {
        var trial = record
        trial.tokens = record.tokens.filter { $0.pending }.map { t in
            var live = t
            live.pending = false
            return live
        }
        guard case .accepted(let id, let counter) = CodeCheck(skew: 1, window: 20).apply(code, to: &trial, now: now),
              let i = record.tokens.firstIndex(where: { $0.id.equals(id) }) else { return nil }
        record.tokens[i].pending = false
        record.tokens[i].lastUsed = counter
        record.tokens[i].lastUsedTime = now
        record.enrolling = false
        return id
    }
}

/// What the verdict procedure counts on: a tally of failures that locks, with
/// pam_faillock's meaning (`UserRecord`'s; a fleet host's offline stock has one too).
public protocol Tally {
    func lockState(_ policy: LockPolicy, isRoot: @autoclosure () -> Bool, now: Int64) -> LockState
    mutating func countFailure(at now: Int64, policy: LockPolicy, isRoot: @autoclosure () -> Bool)
    mutating func clearFailures()
}

extension UserRecord: Tally {}

/// The one procedure every verdict goes through, on a record (or an offline stock) held
/// under its lock: refused while locked; what the attempt uses up (a challenge, an offline
/// pair) and the attempt itself counted and written (`commit`) before anything is
/// decided; then the decision; on success the count cleared and written again. A caller
/// killed, limited or signalled after the first write has paid; nobody learns a verdict
/// that was not counted.
public enum VerdictProcedure {
    /// `use` takes what the attempt spends and says whether it is valid (false: rejected
    /// without a decision); `decide` decides on the record as counted.
    public static func perform<R: Tally, E: Error>(_ current: R?, policy: LockPolicy, isRoot: () -> Bool, now: Int64,
                                                   commit: (R) throws(E) -> Void, use: (inout R) -> Bool,
                                                   decide: (inout R) -> RecordVerdict) throws(E) -> Attempt {
        guard var record = current else { return Attempt(.rejected, lock: .open) }
        let before = record.lockState(policy, isRoot: isRoot(), now: now)
        if before.isLocked { return Attempt(.locked, lock: before) }
        let usable = use(&record)
        record.countFailure(at: now, policy: policy, isRoot: isRoot())
        try commit(record)
        let verdict = usable ? decide(&record) : .rejected
        if case .accepted = verdict {
            record.clearFailures()
            try commit(record)
        }
        return Attempt(verdict, lock: record.lockState(policy, isRoot: isRoot(), now: now))
    }
}
