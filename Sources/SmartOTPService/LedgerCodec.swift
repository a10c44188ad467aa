import OTPCore
import SmartOTPVault
import Synchronization
import TokenStore
import Verifier

/// A user's row as a ledger keeps it: the record's text with every secret taken out, the
/// secrets sealed one a token, the remembered verdicts, the offline epoch, where the
/// user's audit chain stands, a version that every write moves on, and the row's mac over
/// all of it (`LedgerCodec.mac`).
public struct StoredRow: Sendable, Equatable {
    public var text: String
    public var secrets: [String: SealedSecret]
    /// `RememberedVerdict.stored` lines, oldest first.
    public var recent: [String]
    public var offlineEpoch: Int64
    public var chain: Int64
    public var head: AuditChain.Head
    public var version: Int64
    public var mac: String

    public init(text: String, secrets: [String: SealedSecret], recent: [String], offlineEpoch: Int64, chain: Int64,
                head: AuditChain.Head, version: Int64, mac: String = "") {
        self.text = text
        self.secrets = secrets
        self.recent = recent
        self.offlineEpoch = offlineEpoch
        self.chain = chain
        self.head = head
        self.version = version
        self.mac = mac
    }
}

/// The revocations this process has seen with a good mac, each as last seen: a row that
/// later vanishes, or comes back older (an earlier copy: revoked, then restored, then
/// revoked again, put back at "restored"), does not lift a revocation here.
final class SeenRevocations: Sendable {
    private let rows = Mutex<[String: RevocationRow]>([:])
    /// What was already said: each finding goes to the log once, not every read.
    private let said = Mutex<Set<String>>([])

    /// `findings` not said before (and from now on said).
    func new(_ findings: [String]) -> [String] {
        said.withLock { s in findings.filter { s.insert($0).inserted } }
    }

    /// The revocations in force: `stored` (macs already checked) merged with what was seen;
    /// what `stored` lacks or holds older goes to `warnings`.
    func merge(_ stored: [RevocationRow], warnings: inout [String]) -> [Revocation] {
        rows.withLock { seen in
            var current: [String: RevocationRow] = [:]
            for r in stored { current[r.entry] = r }
            for (entry, known) in seen {
                if let now = current[entry], now.changed >= known.changed { continue }
                if known.revoked {
                    warnings.append(current[entry] == nil
                        ? "the revocation of \(entry) vanished from the database; it stays revoked here"
                        : "the revocation of \(entry) was put back to an older state in the database; it stays revoked here")
                }
                current[entry] = known
            }
            seen = current
            return current.values.filter(\.revoked).sorted { ($0.at, $0.entry) < ($1.at, $1.entry) }
                .map { Revocation(entry: $0.entry, at: $0.at, by: $0.by) }
        }
    }
}

/// The chains' heads moved since the last checkpoint was written (`Checkpoints.drain`):
/// each replica writes them to its journal, out of the database's reach, at least once a
/// minute (smartotpd's CheckpointWriter), so that a tail cut from a chain, or a chain
/// wiped, with its head rewound in the same database, is found (`audit-verify
/// --checkpoints`). The adapters report a head only once the commit that moved it is
/// durable.
public final class Checkpoints: Sendable {
    private let moved = Mutex<[Int64: AuditChain.Head]>([:])

    public init() {}

    public func note(chain: Int64, head: AuditChain.Head) {
        moved.withLock { m in
            if (m[chain]?.seq ?? -1) < head.seq { m[chain] = head }
        }
    }

    /// The heads moved since the last call, by chain.
    public func drain() -> [(chain: Int64, head: AuditChain.Head)] {
        moved.withLock { m in
            defer { m = [:] }
            return m.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
    }
}

/// The highest version of each row (a user's, in one audit chain) this process has seen
/// with a good mac: a row put back from an older copy carries a good mac of its own, and
/// only this memory tells it from the current one. A chain this process closed (the user
/// removed) is never taken again.
///
/// Bounded: two generations of at most `generation` rows each (in each of its shards, a
/// share of it); when the newer is full it becomes the older and the older is forgotten.
/// A row a replica has not served in the last `generation` to 2×`generation` rows it
/// served is checked by `audit-verify` alone (its chain's head against the audit rows),
/// not here; memory stays flat however many users the fleet holds (fleet-bench: 1,000,000).
final class SeenVersions: Sendable {
    struct Key: Hashable {
        let user: String
        let chain: Int64
    }

    struct Generations {
        var newer: [Key: Int64] = [:]
        var older: [Key: Int64] = [:]
        /// Chains closed here (their users removed): never forgotten, never taken again
        /// (removals are rare; a row put back after one would be a user brought back).
        var closed: Set<Key> = []
    }

    /// Locks of their own for parts of the rows (by the user's hash): every verdict of
    /// every connection's thread passes here, and one lock was fleet-bench's most
    /// contended (a thread descheduled while it held it: the others slept in futex).
    final class Shard: Sendable {
        let state = Mutex(Generations())
    }
    private let shards: [Shard]
    let generation: Int

    init(generation: Int = 250_000, shards: Int = 16) {
        self.generation = max(1, generation / shards)
        self.shards = (0..<max(1, shards)).map { _ in Shard() }
    }

    private func shard(_ key: Key) -> Shard { shards[Int(UInt(bitPattern: key.hashValue) % UInt(shards.count))] }

    /// nil when `version` is no older than what was seen (and it is now the highest seen),
    /// else the version seen.
    func check(_ user: UserName, chain: Int64, version: Int64) -> Int64? {
        let k = Key(user: user.value, chain: chain)
        return shard(k).state.withLock { seen in
            if seen.closed.contains(k) { return .max }
            if let known = seen.newer[k] ?? seen.older[k], known > version { return known }
            remember(&seen, k, version)
            return nil
        }
    }

    func close(_ user: UserName, chain: Int64) {
        let k = Key(user: user.value, chain: chain)
        shard(k).state.withLock { seen in
            seen.closed.insert(k)
            seen.newer[k] = nil
            seen.older[k] = nil
        }
    }

    private func remember(_ seen: inout Generations, _ key: Key, _ version: Int64) {
        if seen.newer[key] == nil && seen.newer.count >= generation {
            seen.older = seen.newer
            seen.newer = [:]
        }
        seen.newer[key] = version
        seen.older[key] = nil
    }

    /// Rows remembered (tests, the memory figures).
    var count: Int { shards.reduce(0) { n, s in n + s.state.withLock { $0.newer.count + $0.older.count } } }
}

/// What a commit changed, as a ledger must write it: the one translation between a
/// handler's `LedgerState` and stored rows, shared by every adapter, so that sealing
/// (through `SealedRecords`, the vault's tested type) and the audit chain's step
/// (`AuditChain.extend`) are written once.
public struct LedgerCodec: Sendable {
    public let sealer: Sealer
    public let audit: AuditChain
    let seen: SeenVersions
    let seenRevocations = SeenRevocations()
    /// The chains' heads moved by durable commits, for the journal's checkpoints.
    public let checkpoints = Checkpoints()

    /// `remembered`: how many rows' newest versions the replica keeps at least (SeenVersions).
    public init(sealer: Sealer, audit: AuditChain, remembered: Int = 250_000) {
        self.sealer = sealer
        self.audit = audit
        seen = SeenVersions(generation: remembered, shards: remembered >= 1_000 ? 16 : 1)
    }

    /// The row's mac: everything a verdict trusts — the record's text (hashes, counters,
    /// failures, lock, challenges), the sealed secrets under their token ids, the remembered
    /// verdicts, the offline epoch, the audit chain's place and the version — under the
    /// audit key, which never enters the database. A row whose mac does not match is
    /// refused, never repaired: a database writer can change nothing a verdict reads.
    public func mac(_ user: UserName, _ row: StoredRow) -> String {
        var parts: [[UInt8]] = [Array(user.value.utf8), Array(String(row.version).utf8), Array(row.text.utf8),
                                Array(String(row.recent.count).utf8)]
        parts += row.recent.map { Array($0.utf8) }
        parts += [Array(String(row.offlineEpoch).utf8), Array(String(row.chain).utf8), Array(String(row.head.seq).utf8),
                  Array(row.head.mac.utf8), Array(String(row.secrets.count).utf8)]
        for (token, sealed) in row.secrets.sorted(by: { $0.key < $1.key }) {
            parts += [Array(token.utf8), Array(sealed.keyID.utf8), Array(sealed.box.utf8)]
        }
        return audit.tag(label: "smartotp row 1", parts: parts)
    }

    /// A revocation row's mac: the entry, who revoked it and when, and its restore if any.
    public func mac(_ r: RevocationRow) -> String {
        audit.tag(label: "smartotp revocation 1", parts: [Array(r.entry.utf8), Array(String(r.at).utf8), Array(r.by.utf8),
                                                          Array((r.restoredAt.map { String($0) } ?? "-").utf8), Array(r.restoredBy.utf8)])
    }

    /// The revocation row with its mac.
    public func signed(_ r: RevocationRow) -> RevocationRow {
        var row = r
        row.mac = mac(row)
        return row
    }

    /// The revocations in force from the stored rows. A row whose mac fails (planted, or
    /// edited: "restored" written into it) fails closed: its entry is revoked until an
    /// administrator restores it, which writes a row of its own. What this process saw
    /// before is not lifted by a row that vanished or went back (`SeenRevocations`). Each
    /// finding goes to `warnings`.
    public func revocations(_ stored: [RevocationRow], warnings: inout [String]) -> [Revocation] {
        var good: [RevocationRow] = []
        var bad: [RevocationRow] = []
        for r in stored {
            if verified(r) { good.append(r) }
            else {
                bad.append(r)
                warnings.append("the revocation row of \(r.entry) was changed outside smartotpd (its mac does not match): it is revoked until restored")
            }
        }
        var found: [String] = []
        var current = seenRevocations.merge(good, warnings: &found)
        for r in bad where !current.contains(where: { $0.entry == r.entry }) {
            current.append(Revocation(entry: r.entry, at: r.at, by: "(a row changed outside smartotpd)"))
        }
        warnings = seenRevocations.new(warnings + found)
        return current
    }

    /// Whether a revocation row carries its own mac.
    func verified(_ r: RevocationRow) -> Bool { ConstantTime.equals(Array(mac(r).utf8), Array(r.mac.utf8)) }

    /// The rows a commit writes for the revocations it added and lifted, at `now`: a lifted
    /// one keeps its row, restored.
    public func revocationRows(_ diff: Diff, stored: [RevocationRow], now: Int64) -> [RevocationRow] {
        var out: [RevocationRow] = []
        for r in diff.revocationsAdded { out.append(signed(RevocationRow(entry: r.entry, at: now, by: r.by))) }
        for entry in diff.revocationsRemoved {
            // A row deleted in the database (kept revoked here) is written back, restored.
            // Only a row whose mac holds keeps what it says; another is written anew.
            var r = stored.first(where: { $0.entry == entry && verified($0) }) ?? RevocationRow(entry: entry, at: now, by: "")
            r.restoredAt = now
            r.restoredBy = diff.entries.last?.actor ?? ""
            out.append(signed(r))
        }
        return out
    }

    /// The row with its mac.
    public func signed(_ user: UserName, _ row: StoredRow) -> StoredRow {
        var r = row
        r.mac = mac(user, r)
        return r
    }

    /// The row a commit leaves: `row` (nil: a new one, in `chain`) changed by `diff`, its
    /// chain at `head`, its version one on (1 for a new row), the offline epoch renewed at
    /// `nowMicros` when the diff asks (always later than the one before), and its mac; nil
    /// when the row is removed. Versions are remembered when read back, never here: a write
    /// that does not become durable must not make the row look rolled back.
    public func next(_ user: UserName, from row: StoredRow?, chain: Int64, diff: Diff, head: AuditChain.Head, nowMicros: Int64) -> StoredRow? {
        if diff.record == .remove { return nil }
        var r = row ?? StoredRow(text: "", secrets: [:], recent: [], offlineEpoch: nowMicros, chain: chain, head: .empty, version: 0)
        if case .write(let text, let secrets, _) = diff.record {
            r.text = text
            r.secrets = secrets
        }
        if let recent = diff.recent { r.recent = recent }
        if diff.renewsOfflineEpoch && row != nil { r.offlineEpoch = max(nowMicros, r.offlineEpoch + 1) }
        r.head = head
        r.version += 1
        return signed(user, r)
    }

    /// After a removal is durable: the row's chain is closed here, and a copy of the row put
    /// back is refused (as an older version).
    public func removed(_ user: UserName, chain: Int64) { seen.close(user, chain: chain) }

    /// How many rows' versions this replica remembers (bounded: SeenVersions).
    public var rememberedVersions: Int { seen.count }

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
        /// The row was refused (its mac, its version or its secrets): it is neither rewritten
        /// nor signed again — that would repair what a database writer changed — and the
        /// commit's audit rows go to chain 0. Only its removal changes it.
        public var refusedRow = false

        /// Whether nothing at all is written (a repeated request, a read-only answer).
        public var isEmpty: Bool {
            record == .unchanged && recent == nil && !renewsOfflineEpoch && entries.isEmpty
                && revocationsAdded.isEmpty && revocationsRemoved.isEmpty
        }

        /// Whether only the row's own columns change, with at most one audit row: what one
        /// conditional statement can write (no secret to seal, no row made or removed).
        public var rowOnly: Bool {
            if case .write(_, _, true) = record { return false }
            return existed && !refusedRow && record != .remove && entries.count <= 1 && revocationsAdded.isEmpty && revocationsRemoved.isEmpty
        }
    }

    /// The state a commit sees of `subject`: a user's `row` opened (nil: no record), or the
    /// fleet's `revocations`.
    public func state(_ subject: LedgerSubject, row: StoredRow?, nowMicros: Int64, revocations: [RevocationRow] = []) throws(StoreError) -> LedgerState {
        guard case .user(let user) = subject, let row else {
            var warnings: [String] = []
            let current = subject == .fleet ? self.revocations(revocations, warnings: &warnings) : []
            var state = LedgerState(subject: subject, nowMicros: nowMicros, record: nil, revocations: current)
            state.warnings = warnings
            return state
        }
        // Nothing of a row is believed before its mac: not even its text is parsed.
        guard ConstantTime.equals(Array(mac(user, row).utf8), Array(row.mac.utf8)) else {
            return LedgerState(subject: subject, nowMicros: nowMicros, record: UserRecord(user: user, created: 0),
                               refusal: .tampered(user: user.value), offlineEpoch: row.offlineEpoch)
        }
        if let known = seen.check(user, chain: row.chain, version: row.version) {
            return LedgerState(subject: subject, nowMicros: nowMicros, record: UserRecord(user: user, created: 0),
                               refusal: .rolledBack(user: user.value, version: row.version, seen: known), offlineEpoch: row.offlineEpoch)
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
        var diff = Diff(record: record, existed: before.record != nil, recent: recentBefore == recent ? nil : recent,
                        renewsOfflineEpoch: after.renewsOfflineEpoch, entries: after.entries,
                        revocationsAdded: added, revocationsRemoved: removed)
        if before.refusal != nil {
            diff.refusedRow = true
            diff.recent = nil
            diff.renewsOfflineEpoch = false
        }
        return diff
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
