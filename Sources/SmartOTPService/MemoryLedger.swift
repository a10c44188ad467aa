import OTPCore
import SmartOTPVault
import Synchronization
import TokenStore
import Verifier

/// The ledger in memory: the service's handlers run on it in process, in the tests, with
/// the very codec PostgreSQL's adapter uses (records without secrets, secrets sealed,
/// audit rows chained). Every commit runs under one lock, so it is atomic by construction.
/// Its clock is its own: a test sets it.
public final class MemoryLedger: Ledger, BudgetStore {
    /// Everything the ledger holds, as the tests may read and plant it.
    public struct Contents: Sendable {
        public var rows: [String: StoredRow] = [:]
        /// Chain 0's head: names without a record and the fleet's own events.
        public var zero = AuditChain.Head.empty
        /// The heads of closed chains (users removed).
        public var closed: [Int64: AuditChain.Head] = [:]
        public var audit: [AuditChain.Row] = []
        public var revocations: [RevocationRow] = []
        /// The fleet's budgets: units spent by key in a window.
        public var budgets: [String: (bucket: Int64, spent: Int)] = [:]
        public var nextChain: Int64 = 1
        /// The clock, in microseconds since 1970.
        public var nowMicros: Int64
        /// Errors the next commits, reads or checks throw instead of running (a database
        /// that fails), oldest first.
        public var failures: [any Error & Sendable] = []
    }

    public let codec: LedgerCodec
    let contents: Mutex<Contents>

    public init(codec: LedgerCodec, now: Int64) {
        self.codec = codec
        contents = Mutex(Contents(nowMicros: now * 1_000_000))
    }

    /// Reads or changes the contents directly (a test's hand in the database).
    public func withContents<T>(_ body: (inout Contents) throws -> T) rethrows -> T {
        try contents.withLock { try body(&$0) }
    }

    /// Moves the clock to `now` (Unix time).
    public func set(now: Int64) { contents.withLock { $0.nowMicros = now * 1_000_000 } }

    static func failing(_ c: inout Contents) throws {
        if !c.failures.isEmpty { throw c.failures.removeFirst() }
    }

    public func commit<T: Sendable>(_ subject: LedgerSubject, hashes: Bool, _ body: @escaping @Sendable (inout LedgerState) throws -> T) async throws -> T {
        try Task.checkCancellation()
        return try contents.withLock { c in
            try Self.failing(&c)
            let row = subject.userName.flatMap { c.rows[$0] }
            let before = try codec.state(subject, row: row, nowMicros: c.nowMicros, revocations: c.revocations)
            var after = before
            let value = try body(&after)
            let diff = try codec.diff(before: before, after: after, row: row)
            guard !diff.isEmpty else { return value }
            let written = c.audit.count
            try apply(diff, to: &c, subject: subject, row: row, now: c.nowMicros)
            for r in c.audit[written...] { codec.checkpoints.note(chain: r.chain, head: AuditChain.Head(seq: r.seq, mac: r.mac)) }
            // Each commit a microsecond on, as a database's clock moves: two commits never
            // share a time (the offline epoch is one).
            c.nowMicros += 1
            return value
        }
    }

    func apply(_ diff: LedgerCodec.Diff, to c: inout Contents, subject: LedgerSubject, row: StoredRow?, now: Int64) throws {
        guard case .user(let user) = subject else {
            let (rows, head) = codec.audit.extend(chain: 0, head: c.zero, with: diff.entries)
            c.audit += rows
            c.zero = head
            for r in codec.revocationRows(diff, stored: c.revocations, now: now / 1_000_000) {
                c.revocations.removeAll { $0.entry == r.entry }
                c.revocations.append(r)
            }
            return
        }
        let name = user.value
        switch (row, diff.record) {
        case (nil, .write):
            let chain = c.nextChain
            c.nextChain += 1
            let (rows, head) = codec.audit.extend(chain: chain, head: .empty, with: diff.entries)
            c.audit += rows
            c.rows[name] = codec.next(user, from: nil, chain: chain, diff: diff, head: head, nowMicros: now)
        case (nil, _):
            // A name without a record: chain 0.
            let (rows, head) = codec.audit.extend(chain: 0, head: c.zero, with: diff.entries)
            c.audit += rows
            c.zero = head
        case (let r?, .remove) where diff.refusedRow:
            // A refused row is removed without trusting its chain's head: chain 0 says so.
            let (rows, head) = codec.audit.extend(chain: 0, head: c.zero, with: diff.entries)
            c.audit += rows
            c.zero = head
            c.closed[r.chain] = r.head
            c.rows[name] = nil
            codec.removed(user, chain: r.chain)
        case (let r?, .remove):
            let (rows, head) = codec.audit.extend(chain: r.chain, head: r.head, with: diff.entries)
            c.audit += rows
            c.closed[r.chain] = head
            c.rows[name] = nil
            codec.removed(user, chain: r.chain)
        case (_?, _) where diff.refusedRow:
            let (rows, head) = codec.audit.extend(chain: 0, head: c.zero, with: diff.entries)
            c.audit += rows
            c.zero = head
        case (let r?, _):
            let (rows, head) = codec.audit.extend(chain: r.chain, head: r.head, with: diff.entries)
            c.audit += rows
            c.rows[name] = codec.next(user, from: r, chain: r.chain, diff: diff, head: head, nowMicros: now)
        }
    }

    public func read(_ subject: LedgerSubject) async throws -> LedgerState {
        try contents.withLock { c in
            try Self.failing(&c)
            return try codec.state(subject, row: subject.userName.flatMap { c.rows[$0] }, nowMicros: c.nowMicros, revocations: c.revocations)
        }
    }

    public func users() async throws -> [UserListing] {
        try contents.withLock { c in
            try Self.failing(&c)
            return c.rows.keys.sorted().compactMap { name in
                guard let row = c.rows[name], let r = try? RecordFormat.parse(row.text, path: "ledger:" + name) else { return nil }
                return UserListing(user: name, tokens: r.tokens.count, hasPassword: r.passwordHash != nil, failures: r.failures)
            }
        }
    }

    public func auditRows(_ query: AuditQuery) async throws -> [AuditChain.Row] {
        try contents.withLock { c in
            try Self.failing(&c)
            let chosen = c.audit.filter { r in
                (query.user == nil || r.event.user == query.user) && (query.host == nil || r.event.actor == query.host)
                    && r.event.at >= query.since * 1_000_000
            }
            return Array(chosen.sorted { ($0.event.at, $1.chain, $0.seq) > ($1.event.at, $0.chain, $1.seq) }.prefix(query.limit))
        }
    }

    public func lease(_ key: String, bucket: Int64, want: Int, limit: Int) async throws -> Int {
        try contents.withLock { c in
            try Self.failing(&c)
            var b = c.budgets[key] ?? (bucket, 0)
            if b.bucket < bucket { b = (bucket, 0) }
            let got = max(0, min(want, limit - b.spent))
            b.spent += got
            c.budgets[key] = b
            return got
        }
    }

    public func check() async throws {
        try contents.withLock { try Self.failing(&$0) }
    }
}

extension LedgerSubject {
    /// The user's name, the key of their row.
    public var userName: String? {
        if case .user(let u) = self { return u.value }
        return nil
    }
}
