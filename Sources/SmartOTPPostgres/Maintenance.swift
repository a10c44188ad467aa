import Logging
import OTPCore
import SmartOTPService
import SmartOTPVault
import TokenStore

/// The audit trail read back, checked and pruned; secrets re-sealed under a new key.
extension PostgresLedger {
    /// Checks every chain: nil when the trail is intact, else the first broken place.
    /// Returns how many rows were checked too.
    public func verifyAudit() async throws -> (broken: String?, rows: Int) {
        // One snapshot for the heads and the rows (verdicts go on meanwhile); the rows
        // through a cursor, a few thousand at a time: a year's trail is not held in memory.
        try await pool.withTransaction { conn in
            try await conn.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            // Every row and revocation under its mac first: what a verdict would refuse.
            if let broken = try await verifyRows(conn) { return (broken, 0) }
            var heads: [Int64: (Int64, String)] = [:]
            for (chain, seq, mac) in try await conn.query("SELECT audit_chain, audit_seq, audit_mac FROM smartotp_records").decode((Int64, Int64, String).self) {
                heads[chain] = (seq, mac)
            }
            for (chain, seq, mac) in try await conn.query("SELECT chain, seq, mac FROM smartotp_audit_heads").decode((Int64, Int64, String).self) {
                if heads[chain] != nil { return ("chain \(chain) has two heads (a live record and a closed chain)", 0) }
                heads[chain] = (seq, mac)
            }
            var anchors: [Int64: (Int64, String, String)] = [:]
            for (chain, seq, mac, a) in try await conn.query("SELECT chain, seq, mac, anchor_mac FROM smartotp_audit_anchors").decode((Int64, Int64, String, String).self) {
                anchors[chain] = (seq, mac, a)
            }
            var checked = 0
            var current: Int64?
            var rows: [AuditChain.Row] = []
            var seen: Set<Int64> = []
            func finish() -> String? {
                guard let chain = current else { return nil }
                seen.insert(chain)
                guard let head = heads[chain] else { return "chain \(chain) has rows but no head (user \(rows.first?.event.user ?? "?")): its record row was deleted by hand" }
                let ends = AuditChain.Ends(head: head, anchor: anchors[chain].map { ($0.0, $0.1, $0.2) })
                return codec.audit.verify(chain: chain, rows: rows, ends: ends)
            }
            try await conn.query("""
                DECLARE audit_scan NO SCROLL CURSOR FOR
                SELECT chain, seq, at_us, actor, serial, role, peer, rhost, service, username, operation, credential, result, reason, mac
                FROM smartotp_audit ORDER BY chain, seq
                """)
            while true {
                let batch = try await conn.query("FETCH 5000 FROM audit_scan")
                    .decode((Int64, Int64, Int64, String, String, String, String, String, String, String, String, String, String, String, String).self)
                if batch.isEmpty { break }
                for (chain, seq, at, actor, serial, role, peer, rhost, service, name, op, credential, result, reason, mac) in batch {
                    if chain != current {
                        if let broken = finish() { return (broken, checked) }
                        current = chain
                        rows = []
                    }
                    let e = AuditEntry(at: at, actor: actor, serial: serial, role: role, peer: peer, remoteHost: rhost, service: service,
                                       user: name, operation: op, credential: credential, result: result, reason: reason)
                    rows.append(.init(chain: chain, seq: seq, event: e, mac: mac))
                    checked += 1
                }
            }
            if let broken = finish() { return (broken, checked) }
            // A chain whose rows are all gone must end where pruning left it.
            for (chain, head) in heads.sorted(by: { $0.key < $1.key }) where !seen.contains(chain) && head.0 > 0 {
                let ends = AuditChain.Ends(head: head, anchor: anchors[chain].map { ($0.0, $0.1, $0.2) })
                if let broken = codec.audit.verify(chain: chain, rows: [], ends: ends) { return (broken, checked) }
            }
            return (nil, checked)
        }
    }

    /// Each chain against its latest checkpoint from the journal: its head must be at least
    /// that far, and the row at the checkpoint's place must carry the checkpoint's mac (or
    /// have been pruned past it). nil when every chain reaches its checkpoint.
    public func verifyCheckpoints(_ marks: [Int64: AuditChain.Head]) async throws -> String? {
        guard !marks.isEmpty else { return nil }
        return try await pool.withTransaction { conn -> String? in
            try await conn.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            var heads: [Int64: Int64] = [:]
            for (chain, seq) in try await conn.query("SELECT audit_chain, audit_seq FROM smartotp_records").decode((Int64, Int64).self) { heads[chain] = seq }
            for (chain, seq) in try await conn.query("SELECT chain, seq FROM smartotp_audit_heads").decode((Int64, Int64).self) { heads[chain] = seq }
            var anchors: [Int64: Int64] = [:]
            for (chain, seq) in try await conn.query("SELECT chain, seq FROM smartotp_audit_anchors").decode((Int64, Int64).self) { anchors[chain] = seq }
            for (chain, mark) in marks.sorted(by: { $0.key < $1.key }) {
                let head = heads[chain] ?? 0
                guard head >= mark.seq else {
                    return "chain \(chain) ends at seq \(head), but a replica's checkpoint saw it at seq \(mark.seq): its last rows were cut, or it was wiped"
                }
                var found: String?
                for m in try await conn.query("SELECT mac FROM smartotp_audit WHERE chain = \(chain) AND seq = \(mark.seq)").decode(String.self) { found = m }
                if let found {
                    guard found == mark.mac else { return "chain \(chain): row seq \(mark.seq) is not the row a replica's checkpoint saw there (rewritten)" }
                } else if (anchors[chain] ?? 0) < mark.seq {
                    return "chain \(chain): row seq \(mark.seq), which a replica's checkpoint saw, is gone (and was not pruned)"
                }
            }
            return nil
        }
    }

    /// The first row or revocation whose mac fails, if any.
    func verifyRows(_ conn: PGConnection) async throws -> String? {
        let rows = try await conn.query("""
            SELECT r.username, r.record, r.version, r.audit_chain, r.audit_seq, r.audit_mac, r.recent, r.offline_epoch, r.row_mac,
                   coalesce(array_agg(s.token_id) FILTER (WHERE s.token_id IS NOT NULL), '{}'),
                   coalesce(array_agg(s.key_id) FILTER (WHERE s.token_id IS NOT NULL), '{}'),
                   coalesce(array_agg(s.sealed) FILTER (WHERE s.token_id IS NOT NULL), '{}')
            FROM smartotp_records r LEFT JOIN smartotp_secrets s ON s.username = r.username
            GROUP BY r.username ORDER BY r.username
            """)
        for (name, text, version, chain, seq, mac, recent, epoch, rowMAC, tokens, keys, boxes)
            in try rows.decode((String, String, Int64, Int64, Int64, String, [String], Int64, String, [String], [String], [String]).self) {
            guard let user = try? UserName(name), tokens.count == keys.count, keys.count == boxes.count else { return "the row of \(name) is malformed" }
            var secrets: [String: SealedSecret] = [:]
            for i in tokens.indices { secrets[tokens[i]] = SealedSecret(keyID: keys[i], box: boxes[i]) }
            let row = StoredRow(text: text, secrets: secrets, recent: recent, offlineEpoch: epoch, chain: chain,
                                head: AuditChain.Head(seq: seq, mac: mac), version: version, mac: rowMAC)
            if !ConstantTime.equals(Array(codec.mac(user, row).utf8), Array(rowMAC.utf8)) {
                return "the row of \(name) was changed outside smartotpd (its mac does not match)"
            }
        }
        for r in try await storedRevocations(conn) where !ConstantTime.equals(Array(codec.mac(r).utf8), Array(r.mac.utf8)) {
            return "the revocation row of \(r.entry) was changed outside smartotpd (its mac does not match)"
        }
        return nil
    }

    /// Removes audit rows older than `days`, leaving each chain an anchor (its last pruned
    /// row's seq and mac, under the audit key), so that verification still holds.
    public func pruneAudit(olderThanDays days: Int) async throws -> Int {
        guard days > 0 else { return 0 }
        return try await pool.withTransaction { conn in
            try await conn.query("SELECT pg_advisory_xact_lock(7311002)")
            var cuts: [(Int64, Int64, String)] = []
            let rows = try await conn.query("""
                SELECT DISTINCT ON (chain) chain, seq, mac FROM smartotp_audit
                WHERE at_us < (extract(epoch from now()) * 1000000)::bigint - \(Int64(days) * 86_400_000_000)
                ORDER BY chain, seq DESC
                """)
            for row in try rows.decode((Int64, Int64, String).self) { cuts.append(row) }
            var removed = 0
            for (chain, seq, mac) in cuts {
                let anchor = codec.audit.anchorMAC(chain: chain, seq: seq, mac: mac)
                try await conn.query("""
                    INSERT INTO smartotp_audit_anchors (chain, seq, mac, anchor_mac) VALUES (\(chain), \(seq), \(mac), \(anchor))
                    ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, mac = excluded.mac, anchor_mac = excluded.anchor_mac
                    """)
                for n in try await conn.query("WITH d AS (DELETE FROM smartotp_audit WHERE chain = \(chain) AND seq <= \(seq) RETURNING 1) SELECT count(*)::bigint FROM d").decode(Int64.self) {
                    removed += Int(n)
                }
            }
            return removed
        }
    }

    /// Re-seals every secret not sealed under `target`'s key, one user's row at a time
    /// (each under that row's lock, so an administrator's change never interleaves), and
    /// signs the row again (its mac covers the sealed secrets). Returns how many secrets
    /// moved, and what was left as it was: rows whose mac fails (already refused at every
    /// verdict), secrets that do not open, and those under a key `target` does not hold.
    public func rekey(to target: Sealer) async throws -> (moved: Int, left: [SealError]) {
        var users: [String] = []
        for name in try await pool.query("SELECT DISTINCT username FROM smartotp_secrets WHERE key_id <> \(target.current.id) ORDER BY username").decode(String.self) {
            users.append(name)
        }
        var moved = 0
        var left: [SealError] = []
        for name in users {
            let (n, problems) = try await pool.withTransaction { conn -> (Int, [SealError]) in
                let user = try UserName(name)
                guard var row = try await load(conn, user, lock: true).row else { return (0, []) }
                guard ConstantTime.equals(Array(codec.mac(user, row).utf8), Array(row.mac.utf8)) else { return (0, [.tampered(user: name)]) }
                let record = try RecordFormat.parse(row.text, path: "database:" + name)
                var n = 0
                var problems: [SealError] = []
                for token in record.tokens {
                    guard let old = row.secrets[token.id], old.keyID != target.current.id else { continue }
                    do throws(SealError) {
                        let (secret, access) = try target.open(old, user: user, token: SealedRecords.binding(token))
                        row.secrets[token.id] = try target.seal(secret: secret, accessKey: access, user: user, token: SealedRecords.binding(token))
                    } catch {
                        problems.append(error)
                        continue
                    }
                    n += 1
                }
                guard n > 0 else { return (0, problems) }
                row.version += 1
                let signed = codec.signed(user, row)
                for token in record.tokens {
                    guard let s = signed.secrets[token.id] else { continue }
                    try await conn.query("UPDATE smartotp_secrets SET key_id = \(s.keyID), sealed = \(s.box) WHERE username = \(name) AND token_id = \(token.id)")
                }
                try await conn.query("UPDATE smartotp_records SET version = \(signed.version), row_mac = \(signed.mac) WHERE username = \(name)")
                return (n, problems)
            }
            moved += n
            left += problems
        }
        return (moved, left)
    }
}

