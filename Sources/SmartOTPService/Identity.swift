import OTPCore
import POSIX
import SmartOTPFleet
import Synchronization
import SwiftASN1
import X509

/// Who is asking: the host, helpdesk operator or administrator a verified client
/// certificate names.
public struct Peer: Sendable, Equatable, CustomStringConvertible {
    /// The certificate's common name (the host name, or the person's).
    public let name: String
    /// Its serial, lower-case hex without leading zeros.
    public let serial: String
    public let role: FleetRole
    /// When the certificate ends (Unix time).
    public let notAfter: Int64?

    public init(name: String, serial: String, role: FleetRole, notAfter: Int64? = nil) {
        self.name = name
        self.serial = serial
        self.role = role
        self.notAfter = notAfter
    }

    public var description: String { "\(role.rawValue) \(name) (serial \(serial))" }
}

/// Tells hosts, the helpdesk and administrators apart. TLS has already checked the chain
/// against the CAs of all three roles; the role is the CA whose own key signed the
/// certificate (a name alone could be copied by a sub-CA of another role's CA).
public struct PeerIdentifier: Sendable {
    public let adminCAs: [Certificate]
    public let helpdeskCAs: [Certificate]
    public let hostCAs: [Certificate]
    /// The peers already told apart, by their certificate's DER: parsing a certificate and
    /// checking a CA's signature on it cost more than the rest of a verdict's own work, and
    /// a host sends many requests with one certificate (a keep-alive connection, and its next
    /// ones). A certificate's role never changes; revocation is checked apart, every request.
    let known = KnownPeers()

    public struct RoleConfigurationError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Refuses (throws) when any two roles' CAs are the same certificate or share a key:
    /// then every host would be an administrator, or every helpdesk certificate one.
    public init(hostCAs: [Certificate], adminCAs: [Certificate], helpdeskCAs: [Certificate] = [],
                names: (host: String, admin: String, helpdesk: String) = ("client_ca", "admin_ca", "helpdesk_ca")) throws(RoleConfigurationError) {
        let roles: [(String, [Certificate])] = [(names.host, hostCAs), (names.admin, adminCAs), (names.helpdesk, helpdeskCAs)]
        for (i, a) in roles.enumerated() {
            for b in roles[(i + 1)...] {
                for ca in a.1 where b.1.contains(where: { $0.publicKey == ca.publicKey }) {
                    throw RoleConfigurationError(description: "\(a.0) and \(b.0) share a CA key (\(ca.subject)): one role's certificates would pass as the other's; give each role a CA of its own")
                }
            }
        }
        self.hostCAs = hostCAs
        self.adminCAs = adminCAs
        self.helpdeskCAs = helpdeskCAs
    }

    /// The certificates of a PEM file (one or more), as `client_ca =` names them.
    public static func load(_ path: String) throws -> [Certificate] {
        let bytes: [UInt8]?
        do { bytes = try FileSystem.read(path, limit: 1 << 20, followingLinks: true) } catch { throw RoleConfigurationError(description: "\(path): \(error.description)") }
        guard let bytes else { throw RoleConfigurationError(description: "\(path) is larger than 1 MiB") }
        let pem = try PEMDocument.parseMultiple(pemString: String(decoding: bytes, as: UTF8.self))
        let certificates = try pem.map { try Certificate(pemDocument: $0) }
        guard !certificates.isEmpty else { throw RoleConfigurationError(description: "\(path) holds no certificate") }
        return certificates
    }

    public enum Refusal: Error, CustomStringConvertible, Equatable, Sendable {
        case noCertificate, unreadable(String), unknownIssuer, ended
        public var description: String {
            switch self {
            case .noCertificate: return "no client certificate"
            case .ended: return "the client certificate has ended"
            case .unreadable(let why): return "unreadable client certificate: \(why)"
            case .unknownIssuer: return "the client certificate is signed by none of the roles' CAs"
            }
        }
    }

    /// The peer a verified client certificate (DER) names, if it has not ended at `now`
    /// (Unix seconds). TLS checked the end when the certificate was sent; a resumed TLS
    /// session sends none, and may outlive it.
    public func identify(_ der: [UInt8]?, now: Int64) throws(Refusal) -> Peer {
        guard let der, !der.isEmpty else { throw .noCertificate }
        let peer: Peer
        if let known = known.peer(der) {
            peer = known
        } else {
            peer = try identifyAnew(der)
            known.remember(der, peer)
        }
        if let ends = peer.notAfter, ends < now { throw .ended }
        return peer
    }

    func identifyAnew(_ der: [UInt8]) throws(Refusal) -> Peer {
        let cert: Certificate
        do { cert = try Certificate(derEncoded: der) } catch { throw .unreadable("\(error)") }
        var name = ""
        for rdn in cert.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName { name = "\(attribute.value)" }
        }
        let serial = RevocationList.normalised(cert.serialNumber.bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())
        if name.isEmpty { name = "serial-" + serial }
        func signed(by cas: [Certificate]) -> Bool {
            cas.contains { ca in ca.subject == cert.issuer && ca.publicKey.isValidSignature(cert.signature, for: cert) }
        }
        let ends = Int64(cert.notValidAfter.timeIntervalSince1970)
        if signed(by: adminCAs) { return Peer(name: name, serial: serial, role: .admin, notAfter: ends) }
        if signed(by: helpdeskCAs) { return Peer(name: name, serial: serial, role: .helpdesk, notAfter: ends) }
        if signed(by: hostCAs) { return Peer(name: name, serial: serial, role: .host, notAfter: ends) }
        throw .unknownIssuer
    }
}

/// `PeerIdentifier`'s memory: at most `limit` certificates (forgotten all at once when full:
/// a fleet has fewer hosts than that, and a flood of new certificates each passed TLS).
final class KnownPeers: Sendable {
    static let limit = 10_000
    private let peers = Mutex<[[UInt8]: Peer]>([:])

    func peer(_ der: [UInt8]) -> Peer? { peers.withLock { $0[der] } }

    func remember(_ der: [UInt8], _ peer: Peer) {
        peers.withLock { known in
            if known.count >= Self.limit { known.removeAll(keepingCapacity: true) }
            known[der] = peer
        }
    }
}

/// Host certificates an administrator has revoked: those in the ledger (`smartotp
/// revoke-host`, read again by every replica every two seconds) and, when `revoked=` names
/// one, a file of serial numbers (hex, colons allowed) or common names, one a line, `#`
/// comments, read again whenever it changes. A file that cannot be read (missing,
/// unreadable to the service's user, no descriptor left) revokes everyone until it can be:
/// an empty list would let every revoked host back in, silently.
public final class RevocationList: Sendable {
    public let path: String?
    private let state = Mutex(State())

    struct State {
        var stamp: FileStatus?
        /// nil: the file could not be read.
        var entries: Set<String>? = []
        /// The ledger's entries, as last read.
        var stored: Set<String> = []
    }

    public init(path: String?) { self.path = path }

    /// Replaces the ledger's entries.
    public func setStored(_ words: [String]) {
        let set = Set(words.flatMap(Self.entries(of:)))
        state.withLock { $0.stored = set }
    }

    /// Why every certificate is refused now, or nil.
    public func unreadable() -> String? {
        guard let path else { return nil }
        return state.withLock { s in
            refresh(&s, path)
            return s.entries == nil ? "the revocation list \(path) cannot be read" : nil
        }
    }

    private func refresh(_ s: inout State, _ path: String) {
        let stamp = try? FileSystem.linkStatus(path)
        if stamp != s.stamp || s.entries == nil {
            s.stamp = stamp
            s.entries = Self.load(path)
        }
    }

    /// Whether the certificate with this serial and common name is revoked.
    public func contains(serial: String, name: String) -> Bool {
        state.withLock { s in
            let cn = "cn=" + name.lowercased()
            if s.stored.contains(serial) || s.stored.contains(cn) { return true }
            guard let path else { return false }
            refresh(&s, path)
            guard let entries = s.entries else { return true }
            return entries.contains(serial) || entries.contains(cn)
        }
    }

    /// What an entry matches: a common name always, a serial too when it is hex.
    public static func entries(of word: String) -> [String] {
        let hex = word.lowercased().filter { $0 != ":" }
        return (!hex.isEmpty && hex.allSatisfy { $0.isHexDigit } ? [normalised(hex)] : []) + ["cn=" + word.lowercased()]
    }

    /// A serial as compared: lower-case hex without leading zeros.
    public static func normalised(_ hex: String) -> String {
        let trimmed = hex.lowercased().drop { $0 == "0" }
        return trimmed.isEmpty ? "0" : String(trimmed)
    }

    static func load(_ path: String) -> Set<String>? {
        guard let bytes = (try? FileSystem.read(path, limit: 16 << 20, followingLinks: true)) ?? nil else { return nil }
        var out: Set<String> = []
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let word = String(line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmingSpaces()
            guard !word.isEmpty else { continue }
            // A serial (hex digits, colons allowed) or a common name.
            out.formUnion(entries(of: word))
        }
        return out
    }
}
