import Glibc
import OTPCore
import POSIX
import SmartOTPFleet
import TokenStore

/// smartotpd's admin interface as an administrator's (or the helpdesk's) `smartotp` calls
/// it: each change is one request the server makes in one transaction; nothing returns a
/// secret, so there is nothing to read back and write over a login's count.
///
/// The HTTPS is smartotp-fleet's (`--admin METHOD PATH`, the host's fleet client): this
/// program links no TLS library, so a single host's install builds and carries none.
public final class RemoteAdmin {
    let client: String
    let arguments: [String]

    /// `client`: smartotp-fleet beside this program when there is one (a build folder),
    /// else where it is installed (the smartotp-fleet-client package).
    public init(servers: [ServerURL], tlsDirectory: String, timeoutSeconds: Int = 10, client: String? = nil) {
        self.client = client ?? RemoteAdmin.defaultClient()
        arguments = ["--server", servers.map(\.description).joined(separator: ","), "--tls-dir", tlsDirectory,
                     "--timeout", String(timeoutSeconds)]
    }

    static func defaultClient() -> String {
        if let me = ownPath() {
            let beside = parentFolder(me) + "/smartotp-fleet"
            if access(beside, X_OK) == 0 { return beside }
        }
        return Installation.fleetClient
    }

    /// The server's answer to one request (status and body), or why none came.
    func call(_ method: String, _ path: String, body: [UInt8] = [], anyStatus: Bool = false) throws(StoreError) -> (status: Int, body: [UInt8], text: String) {
        guard access(client, X_OK) == 0 else {
            throw .remote("\(client) is not installed: managing the fleet's records needs the fleet client (install smartotp-fleet-client, or ./install.sh --fleet)")
        }
        let result: Subprocess.Result
        do { result = try Subprocess.run(client, arguments + ["--admin", method, path], input: body, outputLimit: 256 << 20) } catch {
            throw .remote("cannot run \(client): \(error)")
        }
        let newline = result.output.firstIndex(of: UInt8(ascii: "\n")) ?? result.output.count
        let rest = newline < result.output.count ? Array(result.output[(newline + 1)...]) : []
        let text = String(decoding: rest, as: UTF8.self)
        guard let status = Int(String(decoding: result.output[..<newline], as: UTF8.self)), status > 0 else {
            throw .remote(text.isEmpty ? "\(client) failed (exit \(result.exitCode.map(String.init) ?? "by a signal"))" : text.trimmingSpaces())
        }
        if anyStatus { return (status, rest, text) }
        if status == 403 { throw .remote("the server refused this certificate (403): \(text.trimmingSpaces())") }
        if status >= 500 { throw .remote("the server failed (\(status)): \(text)") }
        return (status, rest, text)
    }

    /// Makes the change `verb` with its encoded `body` (wiped by the caller); the outcome's text.
    public func change(_ verb: String, _ user: UserName, body: [UInt8]) throws(StoreError) -> String {
        let r = try call("POST", FleetAPI.changePath(verb, user), body: body)
        guard r.status == 200 else { throw .remote("the server refused \(verb) for \(user) (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// The record with every secret taken out (nil: none).
    public func show(_ user: UserName) throws(StoreError) -> UserRecord? {
        let r = try call("GET", FleetAPI.recordPath(user))
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) for \(user)") }
        return try RecordFormat.parse(bytes: r.body, path: "the fleet's \(FleetAPI.recordPath(user))")
    }

    /// `USER TOKENS PASSWORD FAILURES` lines.
    public func users() throws(StoreError) -> [(user: String, tokens: Int, password: Bool, failures: Int)] {
        let r = try call("GET", FleetAPI.usersPath)
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
        let r = try call("GET", FleetAPI.auditPath + (q.isEmpty ? "" : "?" + q))
        guard r.status == 200 else { throw .remote("the server refused the audit query (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// Revokes (or restores) a host certificate by name or serial; the server's answer.
    public func revoke(_ entry: String, _ revoke: Bool) throws(StoreError) -> String {
        let r = try call("POST", FleetAPI.revokePath(revoke), body: Array(entry.utf8))
        guard r.status == 200 else { throw .remote("the server refused (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text
    }

    /// A one-time join token for a host of this name, good for `valid` seconds.
    public func addHost(_ name: String, valid: Int64) throws(StoreError) -> String {
        let r = try call("POST", "/v1/admin/hosts/\(name)?valid=\(valid)")
        guard r.status == 200 else { throw .remote("the server refused (\(r.status)): \(r.text.trimmingSpaces())") }
        return r.text.trimmingSpaces()
    }

    /// `NAME SERIAL NOT-AFTER LAST-SEEN` lines: the host certificates a replica has seen.
    public func hosts() throws(StoreError) -> String {
        let r = try call("GET", FleetAPI.hostsPath)
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) listing hosts") }
        return r.text
    }

    /// A host certificate (PEM) for `body` sent to `path` (/v1/join: the token's line and a
    /// CSR; /v1/renew: a CSR).
    public func certificate(_ path: String, body: [UInt8]) throws(StoreError) -> String {
        let r = try call("POST", path, body: body, anyStatus: true)
        guard r.status == 200, r.text.contains("-----BEGIN CERTIFICATE-----") else {
            throw .remote("the server refused (\(r.status)): \(r.text.trimmingSpaces())")
        }
        return r.text
    }

    /// `ENTRY UNIX-TIME BY` lines.
    public func revocations() throws(StoreError) -> String {
        let r = try call("GET", FleetAPI.revocationsPath)
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) listing revocations") }
        return r.text
    }
}
