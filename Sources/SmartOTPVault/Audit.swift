import Crypto
import enum OTPCore.Hex
#if canImport(FoundationEssentials)
import FoundationEssentials  // Data and Base64: no ICU data in smartotpd
#else
import Foundation
#endif

/// One row of the audit trail: who asked, from where, about whom, what was decided and
/// why. Never a secret or a code.
public struct AuditEntry: Sendable, Equatable {
    /// The database's clock, in microseconds since 1970 (every replica judges by it).
    public var at: Int64
    /// The certificate that asked: its common name, its serial, its role.
    public var actor: String
    public var serial: String
    public var role: String
    /// The peer's address as smartotpd saw it.
    public var peer: String
    /// PAM's PAM_RHOST and PAM_SERVICE on the host (empty when not a login).
    public var remoteHost: String
    public var service: String
    public var user: String
    /// The operation: a verdict's (code, password, tap, access, challenge, summary) or an
    /// administrator's (enroll, remove, passwd, …).
    public var operation: String
    /// The credential kind: tap, code, password, recovery, offline, or "" for none.
    public var credential: String
    /// accepted, rejected, replayed, locked, refused, done, …
    public var result: String
    public var reason: String

    public init(at: Int64, actor: String, serial: String, role: String, peer: String, remoteHost: String, service: String,
                user: String, operation: String, credential: String, result: String, reason: String) {
        self.at = at
        self.actor = actor
        self.serial = serial
        self.role = role
        self.peer = peer
        self.remoteHost = remoteHost
        self.service = service
        self.user = user
        self.operation = operation
        self.credential = credential
        self.result = result
        self.reason = reason
    }

    var fields: [String] { [actor, serial, role, peer, remoteHost, service, user, operation, credential, result, reason] }
}

/// The audit trail's chains. Each user has a chain of their own (the verdicts on one user
/// are already serialised by the lock on their row, so the chain adds no contention); the
/// verdicts on names without a record share chain 0. Row `seq` of a chain carries
///
///     mac = HMAC-SHA256(audit_key, "smartotp audit 1" ‖ chain ‖ seq ‖ at ‖ fields… ‖ previous mac)
///
/// (each part length-prefixed), so an edited row, a deleted one, or two swapped are found
/// by `smartotpd audit-verify`; the chain's head (its last seq and mac) is kept beside the
/// record, so a cut-off tail is found too. Pruning old rows leaves an anchor: the last
/// pruned row's seq and mac, itself under the key.
public struct AuditChain: Sendable {
    let file: KeyFile
    var key: SymmetricKey { file.key }
    public var keyID: String { file.id }
    /// HMAC-SHA256 already keyed: every verdict makes two or three tags (the row's, its
    /// audit row's), each a copy of this updated, not a key padded and hashed anew.
    let keyed: HMAC<SHA256>

    public init(key: KeyFile) {
        file = key
        keyed = HMAC<SHA256>(key: key.key)
    }

    /// The tag of `input` under the chain's key.
    func code(_ input: [UInt8]) -> HashedAuthenticationCode<SHA256> {
        var h = keyed
        h.update(data: input)
        return h.finalize()
    }

    /// The mac of the first row of a chain stands on this.
    public static let genesis = ""

    public func mac(chain: Int64, seq: Int64, event: AuditEntry, previous: String) -> String {
        var input = Array("smartotp audit 1".utf8)
        func add(_ bytes: [UInt8]) {
            let n = UInt32(bytes.count)
            input += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
            input += bytes
        }
        add(Array(String(chain).utf8))
        add(Array(String(seq).utf8))
        add(Array(String(event.at).utf8))
        for f in event.fields { add(Array(f.utf8)) }
        add(Array(previous.utf8))
        return Data(code(input)).base64EncodedString()
    }

    /// Where a chain stands: its last row's seq and mac (0 and `genesis` when it has none).
    public struct Head: Sendable, Equatable {
        public var seq: Int64
        public var mac: String

        public init(seq: Int64, mac: String) {
            self.seq = seq
            self.mac = mac
        }

        public static let empty = Head(seq: 0, mac: AuditChain.genesis)
    }

    /// The chain's step, the one place it is taken: `entries` appended to chain `chain`
    /// after `head`, each row's mac over the one before; the rows and the new head.
    public func extend(chain: Int64, head: Head, with entries: [AuditEntry]) -> (rows: [Row], head: Head) {
        var rows: [Row] = []
        var at = head
        for e in entries {
            let seq = at.seq + 1
            let m = mac(chain: chain, seq: seq, event: e, previous: at.mac)
            rows.append(Row(chain: chain, seq: seq, event: e, mac: m))
            at = Head(seq: seq, mac: m)
        }
        return (rows, at)
    }

    /// A keyed tag of `parts` under this chain's key and `label` (each part length-prefixed),
    /// hex of its first 16 bytes: what binds a request id to its request.
    public func tag(label: String, parts: [[UInt8]]) -> String {
        var input = Array(label.utf8)
        for p in parts {
            let n = UInt32(p.count)
            input += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
            input += p
        }
        defer { for i in input.indices { input[i] = 0 } }
        return Hex.encode(Array(code(input).prefix(16)))
    }

    /// A checkpoint's tag: a chain's head (seq and mac) as a replica wrote it to its journal,
    /// under the audit key, so that a line forged in the journal is told apart.
    public func checkpointTag(chain: Int64, seq: Int64, mac: String) -> String {
        tag(label: "smartotp audit checkpoint 1", parts: [Array(String(chain).utf8), Array(String(seq).utf8), Array(mac.utf8)])
    }

    /// The line a checkpoint is written as (and found by `Checkpoint.parse`).
    public func checkpointLine(chain: Int64, head: Head) -> String {
        "audit checkpoint chain=\(chain) seq=\(head.seq) mac=\(head.mac) tag=\(checkpointTag(chain: chain, seq: head.seq, mac: head.mac))"
    }

    /// A chain's head as a checkpoint line gave it.
    public struct Checkpoint: Sendable, Equatable {
        public var chain: Int64
        public var head: Head
        public var tag: String

        /// The checkpoint in a line of a journal export (anything around it is ignored);
        /// nil when the line has none.
        public static func parse(_ line: Substring) -> Checkpoint? {
            let words = line.split(separator: " ")
            guard let i = words.indices.first(where: { words[$0] == "audit" && $0 + 2 < words.count && words[$0 + 1] == "checkpoint" }) else {
                return nil
            }
            var fields: [String: String] = [:]
            for word in words[(i + 2)...] {
                let kv = word.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
            }
            guard let c = fields["chain"].flatMap({ Int64($0) }), let s = fields["seq"].flatMap({ Int64($0) }),
                  let m = fields["mac"], let t = fields["tag"] else { return nil }
            return Checkpoint(chain: c, head: Head(seq: s, mac: m), tag: t)
        }
    }

    /// Whether a checkpoint's tag is this key's.
    public func authentic(_ c: Checkpoint) -> Bool {
        let expected = Array(checkpointTag(chain: c.chain, seq: c.head.seq, mac: c.head.mac).utf8)
        let given = Array(c.tag.utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// The mac of a pruning anchor (the last row pruned from a chain).
    public func anchorMAC(chain: Int64, seq: Int64, mac: String) -> String {
        let input = Array("smartotp audit anchor 1\0\(chain)\0\(seq)\0\(mac)".utf8)
        return Data(code(input)).base64EncodedString()
    }

    /// A row as read back for verification.
    public struct Row: Sendable {
        public var chain: Int64
        public var seq: Int64
        public var event: AuditEntry
        public var mac: String

        public init(chain: Int64, seq: Int64, event: AuditEntry, mac: String) {
            self.chain = chain
            self.seq = seq
            self.event = event
            self.mac = mac
        }
    }

    /// Where one chain stands: its head (from the record, or chain 0's own row) and the
    /// anchor pruning left, if any.
    public struct Ends: Sendable {
        public var head: (seq: Int64, mac: String)?
        public var anchor: (seq: Int64, mac: String, anchorMAC: String)?

        public init(head: (seq: Int64, mac: String)?, anchor: (seq: Int64, mac: String, anchorMAC: String)?) {
            self.head = head
            self.anchor = anchor
        }
    }

    /// Checks one chain's rows (in seq order) against its ends: nil when intact, else the
    /// first broken place.
    public func verify(chain: Int64, rows: [Row], ends: Ends) -> String? {
        var previous = Self.genesis
        var expected: Int64 = 1
        if let a = ends.anchor {
            guard anchorMAC(chain: chain, seq: a.seq, mac: a.mac) == a.anchorMAC else {
                return "chain \(chain): the pruning anchor (seq \(a.seq)) was edited"
            }
            previous = a.mac
            expected = a.seq + 1
        }
        for r in rows {
            guard r.seq == expected else {
                return r.seq > expected ? "chain \(chain): row seq \(expected) is missing (the next is seq \(r.seq), user \(r.event.user))"
                    : "chain \(chain): row seq \(r.seq) is out of order or repeated"
            }
            guard mac(chain: chain, seq: r.seq, event: r.event, previous: previous) == r.mac else {
                return "chain \(chain): row seq \(r.seq) (user \(r.event.user), time \(r.event.at / 1_000_000)) was edited or its predecessor removed"
            }
            previous = r.mac
            expected += 1
        }
        if let head = ends.head, head.seq != expected - 1 || (head.seq > 0 && head.mac != previous) {
            return "chain \(chain): the last rows are missing (the head says seq \(head.seq), the table ends at \(expected - 1))"
        }
        return nil
    }
}
