import OTPCore
import SmartOTPFleet
import SmartOTPVault
import TokenStore
import Verifier

/// Whose state one commit reads and changes.
public enum LedgerSubject: Sendable, Hashable, CustomStringConvertible {
    /// A user's row: the record, the verdicts remembered by request id, the offline epoch,
    /// and the user's audit chain.
    case user(UserName)
    /// The fleet's own state: the host certificates administrators revoked, audited in
    /// chain 0 (which names without a record share).
    case fleet

    public var description: String {
        switch self {
        case .user(let u): return u.value
        case .fleet: return "the fleet"
        }
    }
}

/// A host certificate's revocation as the ledger keeps it: revoked at `at` by `by`, and
/// perhaps restored later (`restoredAt`, `restoredBy`): a restore keeps the row, so that a
/// revocation deleted by a database writer is told from one an administrator lifted. Each
/// row carries a mac under the audit key (`LedgerCodec.mac(_:)`).
public struct RevocationRow: Sendable, Equatable {
    public var entry: String
    public var at: Int64
    public var by: String
    public var restoredAt: Int64?
    public var restoredBy: String
    public var mac: String

    public init(entry: String, at: Int64, by: String, restoredAt: Int64? = nil, restoredBy: String = "", mac: String = "") {
        self.entry = entry
        self.at = at
        self.by = by
        self.restoredAt = restoredAt
        self.restoredBy = restoredBy
        self.mac = mac
    }

    /// Whether the row says the certificate is revoked now.
    public var revoked: Bool { restoredAt == nil }
    /// When the row last changed.
    public var changed: Int64 { max(at, restoredAt ?? at) }
}

/// A host certificate an administrator revoked: by its common name or its serial.
public struct Revocation: Sendable, Equatable {
    public var entry: String
    /// When, in Unix time.
    public var at: Int64
    /// The administrator's certificate name.
    public var by: String

    public init(entry: String, at: Int64, by: String) {
        self.entry = entry
        self.at = at
        self.by = by
    }
}

/// What one commit sees of its subject, and changes. The handler's body gets it as the
/// ledger holds it now (a user's secrets opened under the vault's key), changes what it
/// decides to change and records what the audit trail must say; the ledger writes exactly
/// that, all of it or none of it.
public struct LedgerState: Sendable {
    public let subject: LedgerSubject
    /// The ledger's clock when the commit began, in microseconds since 1970: every replica
    /// judges time by the database's.
    public let nowMicros: Int64
    public var now: Int64 { nowMicros / 1_000_000 }
    /// The user's record with its secrets in; nil: none. Set to nil, it is removed (and its
    /// audit chain closed); set where there was none, it is created.
    public var record: UserRecord?
    /// Why the stored record cannot be used (a secret that does not open, one in the
    /// clear): `record` is then the stored one without secrets, and must not be written.
    public let refusal: SealError?
    /// The verdicts the row remembers by request id, oldest first (`RecentRequests`).
    public var recent: [RememberedVerdict]
    /// The user's offline epoch: a host's offline pair made under another is void.
    public let offlineEpoch: Int64
    /// Whether the commit moves the offline epoch on (a card enrolled, removed or replaced).
    public private(set) var renewsOfflineEpoch = false
    /// The revoked host certificates (subject `.fleet`; empty for a user).
    public var revocations: [Revocation]
    /// What the audit trail gets from this commit, in order.
    public private(set) var entries: [AuditEntry] = []
    /// What reading the subject found wrong and set aside (a revocation row whose mac fails,
    /// one that vanished): for the log.
    public var warnings: [String] = []

    public init(subject: LedgerSubject, nowMicros: Int64, record: UserRecord?, refusal: SealError? = nil,
                recent: [RememberedVerdict] = [], offlineEpoch: Int64 = 0, revocations: [Revocation] = []) {
        self.subject = subject
        self.nowMicros = nowMicros
        self.record = record
        self.refusal = refusal
        self.recent = recent
        self.offlineEpoch = offlineEpoch
        self.revocations = revocations
    }

    /// The user this state is about (nil for the fleet's own).
    public var user: UserName? {
        if case .user(let u) = subject { return u }
        return nil
    }

    /// Adds an audit row: what `requester` asked and what came of it, at the ledger's time.
    /// `about`: the user it concerns when the state is the fleet's own (a host out of scope).
    public mutating func audit(_ facts: AuditFacts, by requester: Requester, about: UserName? = nil) {
        entries.append(AuditEntry(at: nowMicros, actor: requester.name, serial: requester.serial, role: requester.role.rawValue,
                                  peer: requester.address, remoteHost: requester.remoteHost, service: requester.service,
                                  user: (user ?? about)?.value ?? "", operation: facts.operation, credential: facts.credential,
                                  result: facts.result, reason: facts.reason))
    }

    /// Moves the user's offline epoch on: every host's offline pair for them is void.
    public mutating func renewOfflineEpoch() { renewsOfflineEpoch = true }
}

/// A user in the list administrators see: never a secret or a hash.
public struct UserListing: Sendable, Equatable {
    public var user: String
    public var tokens: Int
    public var hasPassword: Bool
    public var failures: Int

    public init(user: String, tokens: Int, hasPassword: Bool, failures: Int) {
        self.user = user
        self.tokens = tokens
        self.hasPassword = hasPassword
        self.failures = failures
    }
}

/// Which audit rows an administrator reads: newest first.
public struct AuditQuery: Sendable, Equatable {
    public var user: String?
    public var host: String?
    /// Unix time: rows at or after it.
    public var since: Int64
    public var limit: Int

    public init(user: String? = nil, host: String? = nil, since: Int64 = 0, limit: Int = 1000) {
        self.user = user
        self.host = host
        self.since = since
        self.limit = limit
    }
}

/// The ledger: where every verdict, offline report, administrator's change and revocation
/// is decided and kept. One primitive changes it, `commit`; the rest only reads.
///
/// Adapters: `MemoryLedger` (the service's tests) and PostgreSQL's (smartotpd). Both keep
/// the record's text without secrets, the secrets sealed (`SealedRecords`), and each
/// subject's audit chain (`AuditChain`), through `LedgerCodec`: sealing and the chain's
/// step are written once, there.
public protocol Ledger: Sendable {
    /// Runs `body` on `subject`'s state as it is now and writes what it changed — the
    /// record (its text, the secrets of new or changed tokens, a removal), the remembered
    /// verdicts, the offline epoch, the revocations — with its audit rows chained, atomically.
    /// Returns `body`'s value only once that is durable; when `body` throws, nothing is
    /// written. `body` may run more than once (an adapter may decide optimistically and
    /// decide again on a row that changed meanwhile): it must only read its state.
    /// Cancelled (a deadline), nothing is written after the cancellation: the commit either
    /// completed before it or did not happen. `hashes`: `body` may hash a password
    /// (yescrypt, tens of milliseconds), so the adapter must run it where it blocks no event
    /// loop; false lets it decide in place (a code, a tap: microseconds).
    func commit<T: Sendable>(_ subject: LedgerSubject, hashes: Bool, _ body: @escaping @Sendable (inout LedgerState) throws -> T) async throws -> T

    /// `subject`'s state as stored, for reading only (no lock, nothing written).
    func read(_ subject: LedgerSubject) async throws -> LedgerState

    /// Every user, by name.
    func users() async throws -> [UserListing]

    /// Audit rows, newest first.
    func auditRows(_ query: AuditQuery) async throws -> [AuditChain.Row]

    /// Whether the ledger answers (`GET /v1/health`).
    func check() async throws
}

extension Ledger {
    /// A commit whose body may take long (an administrator's change, the fleet's state):
    /// run where it blocks no event loop.
    public func commit<T: Sendable>(_ subject: LedgerSubject, _ body: @escaping @Sendable (inout LedgerState) throws -> T) async throws -> T {
        try await commit(subject, hashes: true, body)
    }
}

/// What smartotpd answers when the ledger refuses a record it holds.
public struct RecordRefused: Error, CustomStringConvertible, Sendable {
    public let why: SealError
    public var description: String { "the record cannot be used: \(why)" }
}
