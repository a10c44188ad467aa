import NIOCore
import NIOHTTP1
import OTPCore
import SmartOTPFleet
import TokenStore

/// The fleet's records as an administrator's `smartotp` sees them: a `Store` over
/// smartotpd's admin interface, so every command works on it as on a local store.
///
/// `withLock` reads the record and its version; each commit writes only if the version is
/// still the one read (If-Match), so an administrator's change never overwrites a login's
/// count or another change made meanwhile: the command fails and says so instead.
public final class RemoteStore: Store {
    let servers: FleetServers
    let timeout: TimeAmount

    public init(servers: [ServerURL], tlsDirectory: String, timeoutSeconds: Int = 10) throws {
        self.servers = try FleetServers(servers, tlsDirectory: tlsDirectory)
        timeout = .seconds(Int64(timeoutSeconds))
    }

    func call(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws(StoreError) -> FleetResponse {
        let r: FleetResponse
        do { r = try servers.send(method, path, headers: headers, body: body, timeout: timeout) } catch {
            throw .remote("\(error)")
        }
        if r.status == 403 { throw .remote("the server refused this certificate for administration (403): \(r.text)") }
        if r.status >= 500 { throw .remote("the server failed (\(r.status)): \(r.text)") }
        return r
    }

    /// The record and its version; nil when the user has none.
    func fetch(_ user: UserName) throws(StoreError) -> (UserRecord, String)? {
        let r = try call(.GET, FleetAPI.recordPath(user))
        if r.status == 404 { return nil }
        guard r.status == 200, let version = r.header("ETag") else { throw .remote("unexpected answer \(r.status) for \(user)") }
        var bytes = r.body
        defer { ConstantTime.wipe(&bytes) }
        return (try RecordFormat.parse(bytes: bytes, path: "\(servers.servers[0])\(FleetAPI.recordPath(user))"), version)
    }

    public func read(_ user: UserName) throws(StoreError) -> UserRecord? { try fetch(user)?.0 }

    public func withLock<R>(_ user: UserName,
                            _ body: (UserRecord?, _ commit: (UserRecord?) throws(StoreError) -> Void) throws(StoreError) -> R) throws(StoreError) -> R {
        let current = try fetch(user)
        var version = current?.1
        return try body(current?.0) { (next: UserRecord?) throws(StoreError) in
            let condition = version.map { ("If-Match", $0) } ?? ("If-None-Match", "*")
            let r: FleetResponse
            if let next {
                var bytes = RecordFormat.encode(next)
                defer { ConstantTime.wipe(&bytes) }
                r = try call(.PUT, FleetAPI.recordPath(user), headers: [condition], body: bytes)
            } else {
                guard version != nil else { return }
                r = try call(.DELETE, FleetAPI.recordPath(user), headers: [condition])
            }
            if r.status == 412 { throw .remote("\(user)'s record changed on the server meanwhile (a login?); nothing was written: run the command again") }
            guard r.status == 204 || r.status == 200 else { throw .remote("the server refused the change (\(r.status)): \(r.text)") }
            version = next == nil ? nil : r.header("ETag")
        }
    }

    public func list() throws(StoreError) -> [UserName] {
        let r = try call(.GET, FleetAPI.usersPath)
        guard r.status == 200 else { throw .remote("unexpected answer \(r.status) listing users") }
        return r.text.split(separator: "\n").compactMap { try? UserName(String($0)) }
    }
}
