import TokenStore
import Verifier

/// smartotpd's HTTP interface (HTTPS with client certificates).
///
/// Hosts (a certificate from `client_ca`):
///
///     POST /v1/verify/OPERATION/USER    body: the helper's input lines
///                                        200: the helper's answer (HelperProtocol)
///
/// Administrators (a certificate from `admin_ca`) also:
///
///     GET    /v1/admin/users             200: one user a line
///     GET    /v1/admin/records/USER      200: the record (ETag: its version) · 404
///     PUT    /v1/admin/records/USER      body: a record; If-Match: VERSION or If-None-Match: *
///                                        204 · 412 when it changed meanwhile
///     DELETE /v1/admin/records/USER      If-Match: VERSION · 204 · 412
///
/// Anyone with a valid certificate: `GET /v1/health` (200 when PostgreSQL answers).
/// No host-callable path returns a secret: summaries carry none.
public enum FleetAPI {
    public enum Route: Equatable, Sendable {
        case verify(HelperProtocol.Operation, UserName)
        case users
        case record(UserName)
        case health
    }

    /// The route of a path, or nil (404).
    public static func route(_ path: String) -> Route? {
        let parts = path.split(separator: "?", maxSplits: 1).first.map { $0.split(separator: "/", omittingEmptySubsequences: false) } ?? []
        guard parts.count >= 3, parts[0].isEmpty, parts[1] == "v1" else { return nil }
        switch (parts.count, parts[2]) {
        case (3, "health"): return .health
        case (5, "verify"):
            guard let op = HelperProtocol.Operation(rawValue: String(parts[3])), let user = try? UserName(String(parts[4])) else { return nil }
            return .verify(op, user)
        case (4, "admin") where parts[3] == "users": return .users
        case (5, "admin") where parts[3] == "records":
            guard let user = try? UserName(String(parts[4])) else { return nil }
            return .record(user)
        default: return nil
        }
    }

    public static func verifyPath(_ op: HelperProtocol.Operation, _ user: UserName) -> String { "/v1/verify/\(op.rawValue)/\(user.value)" }
    public static func recordPath(_ user: UserName) -> String { "/v1/admin/records/\(user.value)" }
    public static let usersPath = "/v1/admin/users"
    public static let healthPath = "/v1/health"
    /// The most a request body may hold (a record is at most 64 KB).
    public static let maxBody = RecordFormat.maxSize + 1024
}
