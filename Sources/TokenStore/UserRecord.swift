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
    /// Card tokens: the credential answers taps only, and no typed code is ever checked
    /// against it. A card computes HMAC over whatever a host sends it: were its tap
    /// credential also the phone's TOTP, a host (or a skimmer) could ask it for the coming
    /// time steps during a tap. Cards enrolled since `smartotp enroll --card` writes a tap
    /// credential of their own; earlier ones share one (`smartotp check` names them).
    public var tapOnly: Bool = false
    /// A token made with `smartotp enroll --generate` whose first code has not been typed
    /// yet: it passes no login until `--confirm` proves the phone holds its secret.
    public var pending: Bool = false
    /// A tighter window than the module's, as google-authenticator's WINDOW_SIZE means it
    /// (kept on import so that nothing imported accepts more than it did): TOTP, this many
    /// codes centred on now (skew (N-1)/2); HOTP, this many counters of look-ahead.
    /// nil: the module's `skew` and `window`.
    public var windowLimit: Int?
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

/// A tap challenge issued by the verifier: single use, valid until `expires`, and only
/// for the host it was issued to.
public struct PendingChallenge: Sendable, Equatable {
    public var bytes: [UInt8]
    public var expires: Int64
    /// The host that asked for it: its certificate's name at smartotpd, "" for the
    /// machine that holds the store (the module, the setuid helper).
    public var host: String

    public init(bytes: [UInt8], expires: Int64, host: String = "") {
        self.bytes = bytes
        self.expires = expires
        self.host = host
    }
}

/// When repeated failures lock a user: pam_faillock's options and their meaning.
public struct LockPolicy: Sendable, Equatable {
    /// Lock after this many failures within `failInterval`; 0 never locks.
    public var deny: Int
    /// Failures further apart than this (seconds) do not add up.
    public var failInterval: Int64
    /// How long a lock lasts after the last failure; 0 = until `smartotp unlock`.
    public var unlockTime: Int64
    /// Whether root (uid 0) can be locked at all.
    public var evenDenyRoot: Bool
    /// `unlockTime` for root when `evenDenyRoot`; nil: the same as `unlockTime`.
    public var rootUnlockTime: Int64?

    public init(deny: Int = 5, failInterval: Int64 = 900, unlockTime: Int64 = 600, evenDenyRoot: Bool = false,
                rootUnlockTime: Int64? = nil) {
        self.deny = deny
        self.failInterval = failInterval
        self.unlockTime = unlockTime
        self.evenDenyRoot = evenDenyRoot
        self.rootUnlockTime = rootUnlockTime
    }

    /// No lock at all (`deny=0`).
    public static let never = LockPolicy(deny: 0)
}

/// Whether a user is locked, as `UserRecord.lockState` decides it.
public enum LockState: Sendable, Equatable {
    case open
    /// Locked until this Unix time.
    case lockedUntil(Int64)
    /// Locked until an administrator runs `smartotp unlock`.
    case lockedForGood

    public var isLocked: Bool { self != .open }
}

/// Everything smartotp keeps about one user.
public struct UserRecord: Sendable {
    public var user: UserName
    public var tokens: [Token]
    /// The simple password, as a crypt(3) hash (yescrypt); nil when none is set.
    public var passwordHash: String?
    /// When each counted failure happened (Unix time, oldest first), at most
    /// `maxFailureTimes`: pam_faillock's tally.
    public private(set) var failureTimes: [Int64]
    /// The most failure times kept: `deny` cannot be larger.
    public static let maxFailureTimes = 1000
    /// One-time recovery codes, hashed like the password.
    public var recoveryCodes: [String]
    /// Hashes of recovery codes already used, so that importing them again cannot bring
    /// them back (at most `maxUsedRecovery`, newest last).
    public var usedRecoveryCodes: [String]
    public static let maxUsedRecovery = 64
    /// Tap challenges issued and not yet answered.
    public var challenges: [PendingChallenge]
    public static let maxChallenges = 16
    public static let maxChallengesPerHost = 2
    public var created: Int64
    /// Temporary codes (`smartotp temp-code`): each logs in until it ends or its uses run out.
    public var tempCodes: [TempCode] = []
    public static let maxTempCodes = 8
    /// An invitation to enrol a phone token oneself (`smartotp invite`): its code's hash and
    /// end. Used once (`enroll --self`).
    public var invitation: Invitation?
    /// Made by an invitation, or by a phone token not yet confirmed, and never able to prove
    /// anything since: only such a record counts as no enrolment (`isEnrolment`). A record
    /// that once could prove something and no longer can (its token removed, its
    /// temporary code used up) still is one: its logins fail closed.
    public var enrolling = false

    public init(user: UserName, tokens: [Token] = [], passwordHash: String? = nil, failureTimes: [Int64] = [],
                recoveryCodes: [String] = [], usedRecoveryCodes: [String] = [], challenges: [PendingChallenge] = [],
                created: Int64) {
        self.user = user
        self.tokens = tokens
        self.passwordHash = passwordHash
        self.failureTimes = Array(Self.ascending(failureTimes).suffix(Self.maxFailureTimes))
        self.recoveryCodes = recoveryCodes
        self.usedRecoveryCodes = usedRecoveryCodes
        self.challenges = challenges
        self.created = created
    }

    /// Failures in the tally (what `smartotp show` reports).
    public var failures: Int { failureTimes.count }
    /// The last failure's time, 0 when none.
    public var lastFailure: Int64 { failureTimes.last ?? 0 }

    /// Failures that count towards a lock: those less than `failInterval` before the
    /// latest one (pam_faillock's check_tally).
    public func countedFailures(_ policy: LockPolicy) -> Int {
        guard let latest = failureTimes.last else { return 0 }
        return failureTimes.reduce(0) { n, t in
            let (age, overflow) = latest.subtractingReportingOverflow(t)
            return !overflow && age < policy.failInterval ? n + 1 : n
        }
    }

    /// Whether the user is locked at `now`, with pam_faillock's meaning: `deny` failures
    /// within `failInterval` lock for `unlockTime` after the last of them (0: until an
    /// administrator unlocks); root only with `evenDenyRoot`, then for `rootUnlockTime`.
    /// `isRoot` is asked only when `deny` failures are counted: it costs a user-database
    /// lookup, which an ordinary login should not pay.
    public func lockState(_ policy: LockPolicy, isRoot: @autoclosure () -> Bool, now: Int64) -> LockState {
        guard policy.deny > 0, countedFailures(policy) >= policy.deny else { return .open }
        let root = isRoot()
        guard !root || policy.evenDenyRoot else { return .open }
        let unlockTime = root ? policy.rootUnlockTime ?? policy.unlockTime : policy.unlockTime
        if unlockTime == 0 { return .lockedForGood }
        let (until, overflow) = lastFailure.addingReportingOverflow(unlockTime)
        if overflow { return .lockedForGood }
        return now < until ? .lockedUntil(until) : .open
    }

    /// Counts one failure at `now`. As pam_faillock's write_tally: a lock that has
    /// expired clears the tally first, and failures `failInterval` or more before `now`
    /// are dropped.
    public mutating func countFailure(at now: Int64, policy: LockPolicy, isRoot: @autoclosure () -> Bool) {
        if policy.deny > 0, countedFailures(policy) >= policy.deny, lockState(policy, isRoot: isRoot(), now: now) == .open {
            failureTimes.removeAll()
        }
        failureTimes.removeAll { t in
            let (age, overflow) = now.subtractingReportingOverflow(t)
            return overflow || age >= policy.failInterval
        }
        failureTimes.append(now)
        failureTimes = Self.ascending(failureTimes)
        if failureTimes.count > Self.maxFailureTimes { failureTimes.removeFirst(failureTimes.count - Self.maxFailureTimes) }
    }

    /// `times` in ascending order. An insertion sort: a tally is written sorted and gets one
    /// time at a time, so this is one pass, and it keeps the standard library's general
    /// sort (a kilobyte and a half) out of the module.
    static func ascending(_ times: [Int64]) -> [Int64] {
        var out = times
        var i = 1
        while i < out.count {
            let t = out[i]
            var j = i - 1
            while j >= 0 && out[j] > t {
                out[j + 1] = out[j]
                j -= 1
            }
            out[j + 1] = t
            i += 1
        }
        return out
    }

    /// Forgets every failure (a success, or `smartotp unlock`).
    public mutating func clearFailures() { failureTimes.removeAll() }

    /// Remembers a new tap challenge for `host`, valid until `expires`, and drops expired
    /// ones. A host keeps at most `maxChallengesPerHost` pending (its own oldest goes), and
    /// never pushes out another host's: with `maxChallenges` pending from other hosts the
    /// new one is refused (false), so one host's certificate cannot cancel the tap that a
    /// user is making on another.
    public mutating func addChallenge(_ bytes: [UInt8], host: String, expires: Int64, now: Int64) -> Bool {
        challenges.removeAll { $0.expires <= now }
        let own = challenges.indices.filter { challenges[$0].host.equals(host) }
        if own.count >= Self.maxChallengesPerHost { challenges.remove(at: own[0]) }
        guard challenges.count < Self.maxChallenges else { return false }
        challenges.append(PendingChallenge(bytes: bytes, expires: expires, host: host))
        return true
    }

    /// Removes `bytes` from `host`'s pending challenges; true when it was pending there and
    /// unexpired. Used up whatever the answer: a challenge is good for one try. Another
    /// host's answer to it finds nothing (refused, and counted as a failure by the
    /// verifier), and leaves it to the host it was issued to.
    public mutating func takeChallenge(_ bytes: [UInt8], host: String, now: Int64) -> Bool {
        guard let i = challenges.firstIndex(where: { $0.host.equals(host) && ConstantTime.equals($0.bytes, bytes) }) else { return false }
        let valid = challenges[i].expires > now
        challenges.remove(at: i)
        return valid
    }

    /// Moves a used recovery code's hash to the used list.
    public mutating func markRecoveryUsed(at index: Int) {
        guard recoveryCodes.indices.contains(index) else { return }
        usedRecoveryCodes.append(recoveryCodes.remove(at: index))
        if usedRecoveryCodes.count > Self.maxUsedRecovery {
            usedRecoveryCodes.removeFirst(usedRecoveryCodes.count - Self.maxUsedRecovery)
        }
    }

    /// The next free token id with `prefix` (`card`, `card2`, …).
    public func nextTokenID(prefix: String) -> String {
        var n = 1
        while true {
            let id = n == 1 ? prefix : msg("\(prefix)\(n)")
            if !tokens.contains(where: { $0.id.equals(id) }) { return id }
            n += 1
        }
    }
}

/// A temporary code for a user who lost their card (Duo's bypass codes): hashed like the
/// simple password, good until `until` (Unix time) for `uses` more logins.
public struct TempCode: Sendable, Equatable {
    public var hash: String
    public var until: Int64
    public var uses: Int
    public static let maxUses = 1000

    public init(hash: String, until: Int64, uses: Int) {
        self.hash = hash
        self.until = until
        self.uses = uses
    }
}

/// An invitation's code (hashed like the simple password) and when it ends (Unix time).
public struct Invitation: Sendable, Equatable {
    public var hash: String
    public var until: Int64

    public init(hash: String, until: Int64) {
        self.hash = hash
        self.until = until
    }
}

extension UserRecord {
    /// Whether anything in the record can prove the second factor at `now`: a token that is
    /// not pending, the simple password, a recovery code or a temporary code still good. A
    /// record without (only an invitation, or a token not yet confirmed) is no enrolment:
    /// logins treat it as no record, so `nullok` still lets such a user through.
    public func canProve(at now: Int64) -> Bool {
        tokens.contains { !$0.pending } || passwordHash != nil || !recoveryCodes.isEmpty
            || tempCodes.contains { $0.until > now && $0.uses > 0 }
    }

    /// Whether logins treat this record as an enrolment: every record but one still being
    /// made (`enrolling`) that cannot prove anything yet.
    public func isEnrolment(at now: Int64) -> Bool { !enrolling || canProve(at: now) }
}
