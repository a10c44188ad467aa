import OTPCore
import TokenStore
import Verifier

/// smartotpd's HTTP interface (HTTPS with client certificates).
///
/// Hosts (a certificate from `client_ca`):
///
///     POST /v1/verify/OPERATION/USER    body: the helper's input lines
///                                        200: the helper's answer (HelperProtocol)
///
/// Administrators (`admin_ca`) and the helpdesk (`helpdesk_ca`, the verbs marked ·):
///
///     GET  /v1/admin/users              · 200: `USER TOKENS PASSWORD FAILURES` a line
///     GET  /v1/admin/records/USER       · 200: the record with every secret taken out · 404
///     POST /v1/admin/VERB/USER          enroll, remove, passwd, recovery, import, place,
///                                        · resync, · unlock: body `AdminChange`'s lines;
///                                        200: its outcome (never a secret)
///     GET  /v1/admin/audit?user=U&host=H&since=UNIX&limit=N   · 200: audit rows, TSV
///     GET  /v1/admin/revocations        · 200: `ENTRY UNIX-TIME BY` a line
///     POST /v1/admin/revoke-host        body: a host's certificate name or serial; every
///     POST /v1/admin/restore-host       replica refuses it within seconds (or no longer)
///
/// Hosts that join (where `host_ca_key` is set):
///
///     POST /v1/admin/hosts/NAME?valid=SECONDS   administrator: 200, a one-time join token
///     GET  /v1/admin/hosts              · 200: `NAME SERIAL NOT-AFTER LAST-SEEN` a line (this replica's)
///     POST /v1/join                     no certificate: body the token's line, then a CSR (PEM);
///                                        200: the host's certificate (PEM)
///     POST /v1/renew                    a host: body a CSR (PEM); 200: a new certificate, same name
///
/// Anyone with a valid certificate: `GET /v1/health` (200 when PostgreSQL answers).
/// No path returns a secret: an enrolment carries one in, once; nothing reads it back.
public enum FleetAPI {
    public enum Route: Equatable, Sendable {
        case verify(HelperProtocol.Operation, UserName)
        case users
        case show(UserName)
        case change(String, UserName)
        case audit
        case revocations
        /// Revoke (true) or restore (false) a host certificate.
        case revoke(Bool)
        case health
        /// An administrator makes a join token for a host of this name.
        case hostAdd(String)
        /// The host certificates this replica has seen, with their ends.
        case hosts
        /// A new host's first certificate, for a join token (no client certificate).
        case join
        /// A host's next certificate, for its current one.
        case renew
    }

    /// The verbs of `POST /v1/admin/VERB/USER`.
    public static let verbs: Set = ["enroll", "remove", "passwd", "recovery", "resync", "unlock", "import", "place", "confirm", "temp-code", "invite"]
    /// What the helpdesk may do besides reading: nothing that sets or removes a secret (an
    /// invitation is used by the user themself, logged in as that user: `enroll --self`).
    public static let helpdeskVerbs: Set = ["resync", "unlock", "invite"]

    /// The route of a path, or nil (404).
    public static func route(_ path: String) -> Route? {
        let parts = path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/", omittingEmptySubsequences: false) } ?? []
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "v1" else { return nil }
        switch (parts.count, parts[2]) {
        case (3, "health"): return .health
        case (3, "join"): return .join
        case (3, "renew"): return .renew
        case (4, "admin") where parts[3] == "hosts": return .hosts
        case (5, "verify"):
            guard let op = HelperProtocol.Operation(rawValue: String(parts[3])), let user = try? UserName(String(parts[4])) else { return nil }
            return .verify(op, user)
        case (4, "admin") where parts[3] == "users": return .users
        case (4, "admin") where parts[3] == "audit": return .audit
        case (4, "admin") where parts[3] == "revocations": return .revocations
        case (4, "admin") where parts[3] == "revoke-host": return .revoke(true)
        case (4, "admin") where parts[3] == "restore-host": return .revoke(false)
        case (5, "admin") where parts[3] == "hosts":
            let name = String(parts[4])
            guard isHostName(name) else { return nil }
            return .hostAdd(name)
        case (5, "admin"):
            guard let user = try? UserName(String(parts[4])) else { return nil }
            if parts[3] == "records" { return .show(user) }
            guard verbs.contains(String(parts[3])) else { return nil }
            return .change(String(parts[3]), user)
        default: return nil
        }
    }

    /// The query of a path as name → value (percent-decoded); nil when malformed.
    public static func query(_ path: String) -> [String: String]? {
        guard let q = path.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var out: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, let v = OTPAuthURI.percentDecode(kv[1]) else { return nil }
            out[kv[0]] = v
        }
        return out
    }

    public static func verifyPath(_ op: HelperProtocol.Operation, _ user: UserName) -> String { "/v1/verify/\(op.rawValue)/\(user.value)" }
    public static func recordPath(_ user: UserName) -> String { "/v1/admin/records/\(user.value)" }
    public static func changePath(_ verb: String, _ user: UserName) -> String { "/v1/admin/\(verb)/\(user.value)" }
    public static let usersPath = "/v1/admin/users"
    public static let auditPath = "/v1/admin/audit"
    public static let healthPath = "/v1/health"
    public static let revocationsPath = "/v1/admin/revocations"
    public static let hostsPath = "/v1/admin/hosts"
    public static let joinPath = "/v1/join"
    public static let renewPath = "/v1/renew"

    /// A host name as a certificate's common name takes it: letters, digits, `.`, `-`, `_`.
    public static func isHostName(_ name: String) -> Bool {
        (1...253).contains(name.utf8.count) && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x2D || b == 0x5F
        } && !name.hasPrefix(".") && !name.hasPrefix("-")
    }
    public static func revokePath(_ revoke: Bool) -> String { revoke ? "/v1/admin/revoke-host" : "/v1/admin/restore-host" }

    /// A revocation entry as an administrator names it: a certificate's common name or its
    /// serial (hex, colons allowed), printable ASCII without spaces, at most 128.
    public static func isRevocationEntry(_ word: String) -> Bool {
        (1...128).contains(word.utf8.count) && word.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }
    /// The most a request body may hold (a record is at most 64 KB).
    public static let maxBody = RecordFormat.maxSize + 1024
}
