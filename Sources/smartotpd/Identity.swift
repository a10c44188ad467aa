import Glibc
import NIOConcurrencyHelpers
import NIOSSL
import OTPCore
import SmartOTPFleet
import SwiftASN1
import X509

/// Who is asking: the host or administrator a verified client certificate names.
struct Peer: Sendable, CustomStringConvertible {
    typealias Role = FleetRole
    /// The certificate's common name (the host name, or the administrator's).
    let name: String
    let serial: String
    let role: Role

    var description: String { "\(role.rawValue) \(name) (serial \(serial))" }
}

/// Tells hosts from administrators. TLS has already checked the chain against both CAs;
/// an administrator's certificate must also be signed by the admin CA's own key (a name
/// alone could be copied by a sub-CA of the hosts' CA).
struct PeerIdentifier: Sendable {
    let adminCAs: [Certificate]
    let helpdeskCAs: [Certificate]
    let revoked: RevocationList

    /// Refuses (throws) when any two of the hosts', the administrators' and the helpdesk's
    /// CAs are the same certificate or share a key: then every host would be an
    /// administrator, or every helpdesk certificate one.
    init(adminCAPath: String, clientCAPath: String, helpdeskCAPath: String? = nil, revoked: RevocationList) throws {
        let admins = try Self.load(adminCAPath)
        let helpdesk = try helpdeskCAPath.map(Self.load) ?? []
        let hostCAs = try Self.load(clientCAPath)
        var roles: [(String, String, [Certificate])] = [("client_ca", clientCAPath, hostCAs), ("admin_ca", adminCAPath, admins)]
        if let helpdeskCAPath { roles.append(("helpdesk_ca", helpdeskCAPath, helpdesk)) }
        for (i, a) in roles.enumerated() {
            for b in roles[(i + 1)...] {
                for ca in a.2 where b.2.contains(where: { $0.publicKey == ca.publicKey }) {
                    throw RoleConfigurationError(description: "\(a.0) (\(a.1)) and \(b.0) (\(b.1)) share a CA key (\(ca.subject)): one role's certificates would pass as the other's; give each role a CA of its own")
                }
            }
        }
        adminCAs = admins
        helpdeskCAs = helpdesk
        self.revoked = revoked
    }

    static func load(_ path: String) throws -> [Certificate] {
        try NIOSSLCertificate.fromPEMFile(path).map { try Certificate(derEncoded: try $0.toDERBytes()) }
    }

    struct RoleConfigurationError: Error, CustomStringConvertible {
        let description: String
    }

    enum Refusal: Error, CustomStringConvertible {
        case noCertificate, unreadable(String)
        var description: String {
            switch self {
            case .noCertificate: return "no client certificate"
            case .unreadable(let why): return "unreadable client certificate: \(why)"
            }
        }
    }

    func identify(_ certificate: NIOSSLCertificate?) throws(Refusal) -> Peer {
        guard let certificate else { throw .noCertificate }
        let cert: Certificate
        do { cert = try Certificate(derEncoded: try certificate.toDERBytes()) } catch { throw .unreadable("\(error)") }
        var name = ""
        for rdn in cert.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName { name = "\(attribute.value)" }
        }
        let serial = RevocationList.normalised(cert.serialNumber.bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
        if name.isEmpty { name = "serial-" + serial }
        func signed(by cas: [Certificate]) -> Bool {
            cas.contains { ca in ca.subject == cert.issuer && ca.publicKey.isValidSignature(cert.signature, for: cert) }
        }
        return Peer(name: name, serial: serial, role: signed(by: adminCAs) ? .admin : signed(by: helpdeskCAs) ? .helpdesk : .host)
    }
}

/// Host certificates an administrator has revoked: those in the database
/// (`smartotp revoke-host`, read by `RevocationPoller` every two seconds) and, when
/// `revoked=` names one, a file of serial numbers (hex, colons allowed) or common names,
/// one a line, `#` comments, read again whenever it changes. A file that cannot be read
/// (missing, unreadable to the service's user, no descriptor left) revokes everyone until
/// it can be: an empty list would let every revoked host back in, silently.
final class RevocationList: @unchecked Sendable {
    let path: String?
    private let lock = NIOLockedValueBox(State())

    struct State {
        var stamp: String = ""
        /// nil: the file could not be read.
        var entries: Set<String>? = []
        /// The database's entries, as last read.
        var stored: Set<String> = []
    }

    /// Replaces the database's entries (RevocationPoller).
    func setStored(_ words: [String]) {
        let set = Set(words.flatMap(Self.entries(of:)))
        lock.withLockedValue { $0.stored = set }
    }

    /// Why every certificate is refused now, or nil.
    func unreadable() -> String? {
        guard let path else { return nil }
        return lock.withLockedValue { state in
            refresh(&state, path)
            return state.entries == nil ? "the revocation list \(path) cannot be read" : nil
        }
    }

    private func refresh(_ state: inout State, _ path: String) {
        let stamp = Self.stamp(path)
        if stamp != state.stamp || state.entries == nil {
            state.stamp = stamp
            state.entries = Self.load(path)
        }
    }

    init(path: String?) { self.path = path }

    func contains(serial: String, name: String) -> Bool {
        lock.withLockedValue { state in
            let cn = "cn=" + name.lowercased()
            if state.stored.contains(serial) || state.stored.contains(cn) { return true }
            guard let path else { return false }
            refresh(&state, path)
            guard let entries = state.entries else { return true }
            return entries.contains(serial) || entries.contains(cn)
        }
    }

    /// What an entry matches: a common name always, a serial too when it is hex.
    static func entries(of word: String) -> [String] {
        let hex = word.lowercased().filter { $0 != ":" }
        return (!hex.isEmpty && hex.allSatisfy { $0.isHexDigit } ? [normalised(hex)] : []) + ["cn=" + word.lowercased()]
    }

    /// A serial as compared: lower-case hex without leading zeros.
    static func normalised(_ hex: String) -> String {
        let trimmed = hex.lowercased().drop { $0 == "0" }
        return trimmed.isEmpty ? "0" : String(trimmed)
    }

    static func stamp(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "missing" }
        return "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec).\(st.st_size).\(st.st_ino)"
    }

    static func load(_ path: String) -> Set<String>? {
        guard let f = fopen(path, "re") else { return nil }
        defer { fclose(f) }
        var out: Set<String> = []
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        while getline(&line, &cap, f) > 0, let l = line {
            let text = String(cString: l).split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let word = text.trimmingSpaces()
            guard !word.isEmpty else { continue }
            // A serial (hex digits, colons allowed) or a common name.
            out.formUnion(entries(of: String(word)))
        }
        free(line)
        return out
    }
}
