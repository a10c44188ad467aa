import Logging
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
    /// (each under that row's lock, so an administrator's change never interleaves).
    /// Returns how many secrets moved, and the ones left as they were: those that do not
    /// open (forged or moved: already refused at every verdict) and those under a key
    /// `target` does not hold.
    public func rekey(to target: Sealer) async throws -> (moved: Int, left: [SealError]) {
        var users: [String] = []
        for name in try await pool.query("SELECT DISTINCT username FROM smartotp_secrets WHERE key_id <> \(target.current.id) ORDER BY username").decode(String.self) {
            users.append(name)
        }
        var moved = 0
        var left: [SealError] = []
        for name in users {
            let (n, problems) = try await pool.withTransaction { conn -> (Int, [SealError]) in
                try await conn.query("SELECT 1 FROM smartotp_records WHERE username = \(name) FOR UPDATE")
                var rows: [(String, String, String)] = []
                for row in try await conn.query("SELECT token_id, key_id, sealed FROM smartotp_secrets WHERE username = \(name) AND key_id <> \(target.current.id)").decode((String, String, String).self) {
                    rows.append(row)
                }
                let user = try UserName(name)
                var n = 0
                var problems: [SealError] = []
                for (token, keyID, box) in rows {
                    let sealed: SealedSecret
                    do throws(SealError) {
                        let (secret, access) = try target.open(SealedSecret(keyID: keyID, box: box), user: user, token: token)
                        sealed = try target.seal(secret: secret, accessKey: access, user: user, token: token)
                    } catch {
                        problems.append(error)
                        continue
                    }
                    try await conn.query("UPDATE smartotp_secrets SET key_id = \(sealed.keyID), sealed = \(sealed.box) WHERE username = \(name) AND token_id = \(token)")
                    n += 1
                }
                return (n, problems)
            }
            moved += n
            left += problems
        }
        return (moved, left)
    }
}

