#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import OTPCore
import SmartOTPFleet
import SmartOTPVault
import SwiftASN1
import X509
import Metrics
import Synchronization

/// What makes the hosts' certificates: the host CA (one of `client_ca`'s certificates and
/// its key, `host_ca_key`, kept as `seal_key` is: never in the database) and how long a
/// certificate lives (`host_cert_days`).
public struct HostCA: Sendable {
    public let certificate: Certificate
    let key: Certificate.PrivateKey
    public let days: Int

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// The CA among `candidates` whose public key is `keyPEM`'s (PKCS#8 or SEC1, P-256 or P-384).
    public init(keyPEM: String, candidates: [Certificate], days: Int) throws(Failure) {
        let key: Certificate.PrivateKey
        do { key = try Certificate.PrivateKey(pemEncoded: keyPEM) } catch {
            throw Failure("host_ca_key is not a PEM private key of an EC CA: \(error)")
        }
        guard let ca = candidates.first(where: { $0.publicKey == key.publicKey }) else {
            throw Failure("host_ca_key is the key of none of client_ca's certificates: hosts would get certificates no replica accepts")
        }
        certificate = ca
        self.key = key
        self.days = days
    }

    /// A client certificate for `name` on the public key of `csrPEM` (whose own signature
    /// must hold: the host has the key), valid from a few minutes ago for `days`; its PEM
    /// and when it ends (Unix time). The name is the join token's, never the request's.
    public func issue(csrPEM: String, name: String, now: Int64) throws(Failure) -> (pem: String, notAfter: Int64) {
        let csr: CertificateSigningRequest
        do { csr = try CertificateSigningRequest(pemEncoded: csrPEM) } catch { throw Failure("the certificate request is not a PEM CSR: \(error)") }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw Failure("the certificate request's signature does not hold (the key that made it did not sign it)")
        }
        let notAfter = now + Int64(days) * 86_400
        do {
            var serial = [UInt8](repeating: 0, count: 16)
            guard let random = SecureRandom.bytes(16) else { throw Failure("no random bytes for a serial") }
            serial = random
            serial[0] &= 0x7F
            let leaf = try Certificate(
                version: .v3, serialNumber: .init(bytes: serial), publicKey: csr.publicKey,
                notValidBefore: Date(timeIntervalSince1970: Double(now - 300)), notValidAfter: Date(timeIntervalSince1970: Double(notAfter)),
                issuer: certificate.subject, subject: try DistinguishedName { CommonName(name) },
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.clientAuth])
                },
                issuerPrivateKey: key)
            return (try leaf.serializeAsPEM().pemString, notAfter)
        } catch let f as Failure { throw f } catch {
            throw Failure("the certificate could not be made: \(error)")
        }
    }
}

/// One-time join tokens: `NAME.UNTIL.NONCE.TAG`, the tag a mac under the audit key (never in
/// the database) over the other three, so a replica checks a token with no row to read.
/// Single use is the fleet's budget store's: the nonce's unit, leased once.
public struct JoinTokens: Sendable {
    let audit: AuditChain

    public init(audit: AuditChain) { self.audit = audit }

    func tag(_ name: String, _ until: Int64, _ nonce: String) -> String {
        audit.tag(label: "smartotp join token 1", parts: [Array(name.utf8), Array(String(until).utf8), Array(nonce.utf8)])
    }

    public func make(name: String, until: Int64) -> String? {
        guard FleetAPI.isHostName(name), let n = SecureRandom.bytes(16) else { return nil }
        let nonce = Hex.encode(n)
        return "\(name).\(until).\(nonce).\(tag(name, until, nonce))"
    }

    /// The host name, end and nonce of an authentic token that has not ended; nil otherwise.
    public func open(_ token: String, now: Int64) -> (name: String, until: Int64, nonce: String)? {
        // The name may hold dots: the last three fields are the fixed ones.
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4, token.utf8.count <= 512 else { return nil }
        let name = parts.dropLast(3).joined(separator: ".")
        guard let until = Int64(parts[parts.count - 3]), FleetAPI.isHostName(name) else { return nil }
        let nonce = parts[parts.count - 2], given = parts[parts.count - 1]
        guard nonce.utf8.count == 32, ConstantTime.equals(Array(tag(name, until, nonce).utf8), Array(given.utf8)), now < until else { return nil }
        return (name, until, nonce)
    }
}

/// The host certificates a replica has seen (by name: the latest serial, its end, when last
/// seen), for `GET /v1/admin/hosts` and the expiry gauge. At most 100,000 names.
public final class SeenHosts: Sendable {
    public struct Seen: Sendable, Equatable {
        public var serial: String
        public var notAfter: Int64
        public var lastSeen: Int64
    }
    private let hosts = Mutex<[String: Seen]>([:])
    public static let expiryMetric = "smartotpd_host_certificate_expiry_seconds"

    public init() {}

    func saw(_ name: String, serial: String, notAfter: Int64, at now: Int64) {
        let isNew = hosts.withLock { h -> Bool in
            let was = h[name]
            guard was != nil || h.count < 100_000 else { return false }
            // A second's precision is enough: most requests change nothing here.
            if let was, was.serial == serial, now - was.lastSeen < 60 { return false }
            h[name] = Seen(serial: serial, notAfter: notAfter, lastSeen: now)
            return was?.serial != serial
        }
        if isNew { Gauge(label: Self.expiryMetric, dimensions: [("host", name)]).record(Double(notAfter)) }
    }

    public var all: [(name: String, seen: Seen)] {
        hosts.withLock { $0.map { ($0.key, $0.value) }.sorted { $0.name < $1.name } }
    }
}

extension VerifierService {
    /// `POST /v1/join` (a join token, then a CSR) and `POST /v1/renew` (a host's CSR): a
    /// certificate signed by the host CA, audited in chain 0. A join token works once, in
    /// the whole fleet, and only until it ends; the name is always the token's or the
    /// current certificate's, never the request's.
    func hostCertificate(_ route: FleetAPI.Route, uri: String, body: [UInt8], by requester: Requester) async throws -> ServiceResponse {
        guard let hostCA else { return ServiceResponse(404, "hosts cannot join through this replica: smartotpd.conf sets no host_ca_key\n", close: true) }
        let text = String(decoding: body, as: UTF8.self)
        let now = clock()
        var name = requester.name
        var csr = text
        var operation = "host-renew"
        if route == .join {
            operation = "host-join"
            let line = text.prefix { $0 != "\n" }
            csr = String(text.dropFirst(line.count))
            guard let token = joinTokens.open(String(line).trimmingSpaces(), now: now) else {
                Counter(label: ServiceMetrics.refusals).increment()
                logger.warning("join refused: the token is not authentic or has ended", metadata: ["peer": "\(requester.address)"])
                return ServiceResponse(403, "the join token is not valid, or has ended: ask an administrator for another (smartotp hosts add)\n", close: true)
            }
            name = token.name
            // The request checked and the certificate made before the token is spent: a
            // malformed request costs the host nothing but another try.
            let issued: (pem: String, notAfter: Int64)
            do throws(HostCA.Failure) { issued = try hostCA.issue(csrPEM: csr, name: name, now: now) } catch {
                return ServiceResponse(400, "\(error)\n", close: true)
            }
            // Once in the fleet: the nonce's one unit, in the budget store every replica shares.
            guard try await budgets.lease("join " + token.nonce, bucket: token.until, want: 1, limit: 1) == 1 else {
                logger.warning("join refused: the token was used already", metadata: ["host": "\(token.name)", "peer": "\(requester.address)"])
                return ServiceResponse(409, "this join token was used already: ask an administrator for another\n", close: true)
            }
            return try await recordIssued(issued, route: route, name: name, operation: operation, by: requester)
        }
        guard try await requests.reserve(requester.serial) != nil else {
            return ServiceResponse(429, "this host has made too many requests; try later\n")
        }
        let issued: (pem: String, notAfter: Int64)
        do throws(HostCA.Failure) { issued = try hostCA.issue(csrPEM: csr, name: name, now: now) } catch {
            return ServiceResponse(400, "\(error)\n")
        }
        return try await recordIssued(issued, route: route, name: name, operation: operation, by: requester)
    }

    /// The certificate issued: audited in chain 0; a renewal also revokes the certificate it
    /// replaces (by serial), so a host holds one live certificate, and the key it no longer
    /// uses opens nothing.
    func recordIssued(_ issued: (pem: String, notAfter: Int64), route: FleetAPI.Route, name: String, operation: String,
                      by requester: Requester) async throws -> ServiceResponse {
        var who = requester
        if route == .join { who.name = name }
        let (actor, facts) = (who, AuditFacts(operation: operation, credential: "", result: "issued", reason: "\(name) until \(issued.notAfter) from \(requester.address)"))
        let old = route == .renew ? requester.serial : nil
        let list = try await ledger.commit(.fleet) { state -> [String] in
            state.audit(facts, by: actor)
            if let old, !state.revocations.contains(where: { $0.entry == old }) {
                state.revocations.append(Revocation(entry: old, at: state.now, by: "renewal of \(name)"))
            }
            return state.revocations.map(\.entry)
        }
        if old != nil { revoked.setStored(list) }
        logger.notice(route == .join ? "host joined" : "host certificate renewed", metadata: ["host": "\(name)", "until": "\(issued.notAfter)", "peer": "\(requester.address)"])
        return ServiceResponse(200, issued.pem, close: route == .join)
    }
}
