import OTPCore
import SmartOTPVault
import TokenStore
import Verifier

/// A user's row as a ledger keeps it: the record's text with every secret taken out, the
/// secrets sealed one a token, the remembered verdicts, the offline epoch, where the
/// user's audit chain stands, and a version that every write moves on.
public struct StoredRow: Sendable, Equatable {
    public var text: String
    public var secrets: [String: SealedSecret]
    /// `RememberedVerdict.stored` lines, oldest first.
    public var recent: [String]
    public var offlineEpoch: Int64
    public var chain: Int64
    public var head: AuditChain.Head
    public var version: Int64

    public init(text: String, secrets: [String: SealedSecret], recent: [String], offlineEpoch: Int64, chain: Int64,
                head: AuditChain.Head, version: Int64) {
        self.text = text
        self.secrets = secrets
        self.recent = recent
        self.offlineEpoch = offlineEpoch
        self.chain = chain
        self.head = head
        self.version = version
    }
}

/// What a commit changed, as a ledger must write it: the one translation between a
/// handler's `LedgerState` and stored rows, shared by every adapter, so that sealing
/// (through `SealedRecords`, the vault's tested type) and the audit chain's step
/// (`AuditChain.extend`) are written once.
public struct LedgerCodec: Sendable {
    public let sealer: Sealer
    public let audit: AuditChain

    public init(sealer: Sealer, audit: AuditChain) {
        self.sealer = sealer
        self.audit = audit
    }

    /// What the row changes to.
    public enum RecordWrite: Sendable, Equatable {
        /// The record is as it was (the row may still change: remembered verdicts, the epoch).
        case unchanged
        /// A new or changed text; `secrets` is the whole set after it (unchanged tokens keep
        /// their sealed value), `sealing` whether any secret was sealed anew or dropped.
        case write(text: String, secrets: [String: SealedSecret], sealing: Bool)
        /// The record is removed; its audit chain is closed.
        case remove
    }

    /// Everything a commit writes.
    public struct Diff: Sendable {
        public var record: RecordWrite
        /// Whether there was a record before (false: a new one is created by `.write`).
        public var existed: Bool
        /// The remembered verdicts after the commit, nil when unchanged.
        public var recent: [String]?
        public var renewsOfflineEpoch: Bool
        public var entries: [AuditEntry]
        public var revocationsAdded: [Revocation]
        public var revocationsRemoved: [String]

        /// Whether nothing at all is written (a repeated request, a read-only answer).
        public var isEmpty: Bool {
            record == .unchanged && recent == nil && !renewsOfflineEpoch && entries.isEmpty
                && revocationsAdded.isEmpty && revocationsRemoved.isEmpty
        }

        /// Whether only the row's own columns change, with at most one audit row: what one
        /// conditional statement can write (no secret to seal, no row made or removed).
        public var rowOnly: Bool {
            if case .write(_, _, true) = record { return false }
            return existed && record != .remove && entries.count <= 1 && revocationsAdded.isEmpty && revocationsRemoved.isEmpty
        }
    }

    /// The state a commit sees of `subject`: a user's `row` opened (nil: no record), or the
    /// fleet's `revocations`.
    public func state(_ subject: LedgerSubject, row: StoredRow?, nowMicros: Int64, revocations: [Revocation] = []) throws(StoreError) -> LedgerState {
        guard case .user(let user) = subject, let row else {
            return LedgerState(subject: subject, nowMicros: nowMicros, record: nil, revocations: revocations)
        }
        let stripped = try RecordFormat.parse(row.text, path: "ledger:" + user.value)
        guard stripped.user == user else { throw .invalidValue(msg("the ledger's row for \(user.value) holds \(stripped.user.value)'s record")) }
        let recent = row.recent.compactMap(RememberedVerdict.init(stored:))
        do throws(SealError) {
            let record = try SealedRecords.open(stripped, secrets: row.secrets, with: sealer)
            return LedgerState(subject: subject, nowMicros: nowMicros, record: record, recent: recent, offlineEpoch: row.offlineEpoch)
        } catch {
            return LedgerState(subject: subject, nowMicros: nowMicros, record: stripped, refusal: error, recent: recent,
                               offlineEpoch: row.offlineEpoch)
        }
    }

    /// What to write for a commit that began at `before` (on `row`) and ended at `after`.
    /// Throws when it would write a record that did not open (`refusal`): such a record is
    /// refused, never repaired or rewritten, except by removing it.
    public func diff(before: LedgerState, after: LedgerState, row: StoredRow?) throws(SealError) -> Diff {
        var record = RecordWrite.unchanged
        switch (before.record, after.record) {
        case (nil, nil): break
        case (_?, nil): record = .remove
        case (let was, let now?):
            let text = RecordFormat.text(SealedRecords.stripped(now))
            let stored = row?.secrets ?? [:]
            if let why = before.refusal {
                // A record that did not open is kept as it is, or removed: anything else
                // would seal markers, or rewrite a record nobody can check.
                guard let was, RecordFormat.text(was) == RecordFormat.text(now) else { throw why }
            } else if was == nil || text != row?.text || !sameSecrets(was, now) {
                let sealed = try SealedRecords.seal(now, with: sealer, keeping: stored, opened: was)
                record = .write(text: sealed.text, secrets: sealed.secrets, sealing: sealed.secrets != stored)
            }
        }
        let recentBefore = before.recent.map(\.stored), recent = after.recent.map(\.stored)
        var added: [Revocation] = [], removed: [String] = []
        if case .fleet = after.subject {
            let old = Set(before.revocations.map(\.entry)), new = Set(after.revocations.map(\.entry))
            added = after.revocations.filter { !old.contains($0.entry) }
            removed = before.revocations.map(\.entry).filter { !new.contains($0) }
        }
        return Diff(record: record, existed: before.record != nil, recent: recentBefore == recent ? nil : recent,
                    renewsOfflineEpoch: after.renewsOfflineEpoch, entries: after.entries,
                    revocationsAdded: added, revocationsRemoved: removed)
    }

    /// Whether two records hold the same secrets under the same token ids.
    func sameSecrets(_ a: UserRecord?, _ b: UserRecord) -> Bool {
        guard let a, a.tokens.count == b.tokens.count else { return false }
        for (x, y) in zip(a.tokens, b.tokens) {
            guard x.id == y.id, x.secret.constantTimeEquals(y.secret), SealedRecords.sameKey(x.accessKey, y.accessKey) else { return false }
        }
        return true
    }
}
