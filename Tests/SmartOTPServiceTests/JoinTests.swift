import Crypto
import Foundation
import SmartOTPFleet
import SmartOTPService
import SmartOTPVault
import SwiftASN1
import Testing
import X509

/// Hosts that join: one-time tokens, certificates from the host CA, renewal.
@Suite("smartotpd: hosts that join") struct JoinTests {
    static func hostCA(days: Int = 30) throws -> HostCA {
        try HostCA(keyPEM: sharedPKI.hosts.key.pemRepresentation, candidates: [sharedPKI.admins.certificate, sharedPKI.hosts.certificate], days: days)
    }

    static func csr(_ key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(), name: String = "whatever") throws -> String {
        try CertificateSigningRequest(version: .v1, subject: try DistinguishedName { CommonName(name) }, privateKey: .init(key),
                                      attributes: CertificateSigningRequest.Attributes()).serializeAsPEM().pemString
    }

    func join(_ fleet: Fleet, _ body: String) async -> ServiceResponse {
        await fleet.service.respond(ServiceRequest(method: "POST", uri: FleetAPI.joinPath, body: Array(body.utf8), certificate: nil, address: "192.0.2.50"))
    }

    @Test func aTokenJoinsOnceUntilItEndsAndNamesTheHost() async throws {
        let fleet = try Fleet(hostCA: try Self.hostCA())
        let made = await fleet.ask("POST", "/v1/admin/hosts/web9.example.org?valid=600", as: "admin1")
        #expect(made.status == 200)
        let token = made.text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(await fleet.ask("POST", "/v1/admin/hosts/web9", as: "desk1").status == 403, "the helpdesk makes no token")
        #expect(await join(fleet, token + "x\n" + (try Self.csr())).status == 403, "a tampered token")
        let answer = await join(fleet, token + "\n" + (try Self.csr(name: "admin1")))
        #expect(answer.status == 200 && answer.close)
        let cert = try Certificate(pemEncoded: answer.text)
        #expect(cert.subject.description.contains("web9.example.org"), "the token's name, not the request's: \(cert.subject)")
        #expect(cert.issuer == sharedPKI.hosts.certificate.subject && sharedPKI.hosts.certificate.publicKey.isValidSignature(cert.signature, for: cert))
        #expect(cert.notValidAfter.timeIntervalSince(cert.notValidBefore) == Double(30 * 86_400 + 300))
        // It passes as a host, with the host's own name.
        var der = DER.Serializer()
        try der.serialize(cert)
        #expect(try sharedPKI.identifier().identify(der.serializedBytes, now: 0).role == .host)
        #expect(await join(fleet, token + "\n" + (try Self.csr())).status == 409, "once")
        // Audited in chain 0.
        let rows = fleet.ledger.withContents { $0.audit }.map(\.event)
        #expect(rows.contains { $0.operation == "host-add" && $0.actor == "admin1" })
        #expect(rows.contains { $0.operation == "host-join" && $0.actor == "web9.example.org" && $0.result == "issued" })
        // An ended token.
        let late = await fleet.ask("POST", "/v1/admin/hosts/web10?valid=60", as: "admin1").text.trimmingCharacters(in: .whitespacesAndNewlines)
        fleet.clock.advance(61)
        #expect(await join(fleet, late + "\n" + (try Self.csr())).status == 403)
    }

    @Test func aRequestWhoseSignatureFailsIsRefused() async throws {
        let fleet = try Fleet(hostCA: try Self.hostCA())
        let token = await fleet.ask("POST", "/v1/admin/hosts/web9", as: "admin1").text.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(await join(fleet, token + "\nnot a csr\n").status == 400)
        // A CSR whose public key is not the key that signed it.
        let real = try Self.csr()
        var lines = real.split(separator: "\n").map(String.init)
        lines[2] = String(lines[2].reversed())
        #expect(await join(fleet, token + "\n" + lines.joined(separator: "\n")).status != 200)
    }

    @Test func aHostRenewsUnderItsOwnNameAndNobodyJoinsWithoutHostCAKey() async throws {
        let fleet = try Fleet(hostCA: try Self.hostCA(days: 3))
        let r = await fleet.ask("POST", FleetAPI.renewPath, try Self.csr(name: "admin1"), as: "h2")
        #expect(r.status == 200)
        #expect(try Certificate(pemEncoded: r.text).subject.description.contains("h2"))
        #expect(await fleet.ask("POST", FleetAPI.renewPath, try Self.csr(), as: "admin1").status == 403, "hosts only")
        let closed = try Fleet()
        #expect(await join(closed, "x\n").status == 403, "without host_ca_key a connection without a certificate gets nothing")
        #expect(await closed.ask("POST", "/v1/admin/hosts/web9", as: "admin1").status == 404)
        #expect(throws: HostCA.Failure.self) { try HostCA(keyPEM: P256.Signing.PrivateKey().pemRepresentation, candidates: [sharedPKI.hosts.certificate], days: 1) }
    }
}
