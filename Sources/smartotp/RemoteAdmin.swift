import NIOCore
import NIOHTTP1
import OTPCore
import SmartOTPFleet
import TokenStore

/// smartotpd's admin interface as an administrator's (or the helpdesk's) `smartotp` calls
/// it: each change is one request the server makes in one transaction; nothing returns a
/// secret, so there is nothing to read back and write over a login's count.
public final class RemoteAdmin {
    let servers: FleetServers
    let timeout: TimeAmount

    public init(servers: [ServerURL], tlsDirectory: String, timeoutSeconds: Int = 10) throws {
        self.servers = try FleetServers(servers, tlsDirectory: tlsDirectory)
        timeout = .seconds(Int64(timeoutSeconds))
    }

    func call(_ method: HTTPMethod, _ path: String, body: [UInt8] = []) throws(StoreError) -> FleetResponse {
        let r: FleetResponse
        do { r = try servers.send(method, path, body: body, timeout: timeout) } catch {
            throw .remote("\(error)")
        }
        if r.status == 403 { throw .remote("the server refused this certificate (403): \(r.text.trimmingSpaces())") }
        if r.status >= 500 { throw .remote("the server failed (\(r.status)): \(r.text)") }
        return r
    }

    /// Makes the change `verb` with its encoded `body` (wiped by the caller); the outcome's text.
    public func change(_ verb: String, _ user: UserName, body: [UInt8]) throws(StoreError) -> String {
        let r = try call(.POST, FleetAPI.changePath(verb, user), body: body)
        guard r.status == 200 else { throw .remote("the server refused \(verb) for \(user) (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// The record with every secret taken out (nil: none).
    public func show(_ user: UserName) throws(StoreError) -> UserRecord? {
        let r = try call(.GET, FleetAPI.recordPath(user))
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) for \(user)") }
        return try RecordFormat.parse(bytes: r.body, path: "\(servers.servers[0])\(FleetAPI.recordPath(user))")
    }

    /// `USER TOKENS PASSWORD FAILURES` lines.
    public func users() throws(StoreError) -> [(user: String, tokens: Int, password: Bool, failures: Int)] {
        let r = try call(.GET, FleetAPI.usersPath)
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) listing users") }
        return r.text.split(separator: "\n").compactMap { line in
            let w = line.split(separator: " ")
            guard w.count == 4, let t = Int(w[1]), let f = Int(w[3]) else { return nil }
            return (String(w[0]), t, w[2] == "1", f)
        }
    }

    /// The audit rows a query selects, as the server's tab-separated text.
    public func audit(query: [(String, String)]) throws(StoreError) -> String {
        let q = query.map { "\($0.0)=\(OTPAuthURI.percentEncode($0.1))" }.joined(separator: "&")
        let r = try call(.GET, FleetAPI.auditPath + (q.isEmpty ? "" : "?" + q))
        guard r.status == 200 else { throw .remote("the server refused the audit query (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// Revokes (or restores) a host certificate by name or serial; the server's answer.
    public func revoke(_ entry: String, _ revoke: Bool) throws(StoreError) -> String {
        let r = try call(.POST, FleetAPI.revokePath(revoke), body: Array(entry.utf8))
        guard r.status == 200 else { throw .remote("the server refused (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// `ENTRY UNIX-TIME BY` lines.
    public func revocations() throws(StoreError) -> String {
        let r = try call(.GET, FleetAPI.revocationsPath)
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) listing revocations") }
        return r.text
    }
}
