import Crypto
import Foundation
import Logging
import OTPCore
import SmartOTPAdmin
import SmartOTPFleet
import SmartOTPService
import SmartOTPVault
import SwiftASN1
import TokenStore
import Verifier
import X509

/// Certificates for the tests: a CA for each role, and leaf certificates signed by them
/// (DER, as the edge hands them to the service), made with swift-certificates.
struct PKI: Sendable {
    struct Authority: Sendable {
        let name: DistinguishedName
        let key: P256.Signing.PrivateKey
        let certificate: Certificate

        init(_ commonName: String) throws {
            key = P256.Signing.PrivateKey()
            name = try DistinguishedName { CommonName(commonName) }
            certificate = try Certificate(version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                                          notValidBefore: Date() - 3600, notValidAfter: Date() + 86_400, issuer: name, subject: name,
                                          signatureAlgorithm: .ecdsaWithSHA256,
                                          extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
                                          issuerPrivateKey: .init(key))
        }

        /// A leaf for `commonName`, signed by this CA: its DER.
        func issue(_ commonName: String, serial: [UInt8]? = nil) throws -> [UInt8] {
            let leafKey = P256.Signing.PrivateKey()
            let leaf = try Certificate(version: .v3, serialNumber: serial.map { Certificate.SerialNumber(bytes: $0) } ?? .init(),
                                       publicKey: .init(leafKey.publicKey), notValidBefore: Date() - 3600, notValidAfter: Date() + 86_400,
                                       issuer: name, subject: try DistinguishedName { CommonName(commonName) },
                                       signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: .init(key))
            var der = DER.Serializer()
            try der.serialize(leaf)
            return der.serializedBytes
        }
    }

    let hosts: Authority
    let admins: Authority
    let helpdesk: Authority
    let rogue: Authority

    init() throws {
        hosts = try Authority("smartotp hosts")
        admins = try Authority("smartotp admins")
        helpdesk = try Authority("smartotp helpdesk")
        rogue = try Authority("smartotp hosts")
    }

    func identifier() throws -> PeerIdentifier {
        try PeerIdentifier(hostCAs: [hosts.certificate], adminCAs: [admins.certificate], helpdeskCAs: [helpdesk.certificate])
    }
}

/// The same PKI for every test in a run: making keys and signing is the slow part.
let sharedPKI: PKI = { (try? PKI())! }()
let sharedCertificates: [String: [UInt8]] = {
    var out: [String: [UInt8]] = [:]
    for h in ["h1", "h2", "h3"] { out[h] = try? sharedPKI.hosts.issue(h) }
    out["admin1"] = try? sharedPKI.admins.issue("admin1")
    out["desk1"] = try? sharedPKI.helpdesk.issue("desk1")
    out["rogue"] = try? sharedPKI.rogue.issue("h1")
    return out
}()

/// A ledger that waits before every commit and read (a database that stalls), and counts
/// what was committed.
final class SlowLedger: Ledger, @unchecked Sendable {
    let inner: MemoryLedger
    let delay: Duration
    init(_ inner: MemoryLedger, delay: Duration) {
        self.inner = inner
        self.delay = delay
    }

    func commit<T: Sendable>(_ subject: LedgerSubject, hashes: Bool, _ body: @escaping @Sendable (inout LedgerState) throws -> T) async throws -> T {
        try await Task.sleep(for: delay)
        return try await inner.commit(subject, hashes: hashes, body)
    }
    func read(_ subject: LedgerSubject) async throws -> LedgerState {
        try await Task.sleep(for: delay)
        return try await inner.read(subject)
    }
    func users() async throws -> [UserListing] { try await inner.users() }
    func auditRows(_ query: AuditQuery) async throws -> [AuditChain.Row] { try await inner.auditRows(query) }
    func check() async throws {
        try await Task.sleep(for: delay)
        try await inner.check()
    }
}

/// The secret every test token holds, and its codes.
let testSecret = Array("12345678901234567890".utf8)
let testB32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
func totp(at t: Int64) -> String { OTP.hotp(secret: SecretBytes(testSecret), counter: UInt64(t / 30), algorithm: .sha1, digits: 6) ?? "" }
func hotp(_ c: UInt64) -> String { OTP.hotp(secret: SecretBytes(testSecret), counter: c, algorithm: .sha1, digits: 6) ?? "" }

/// A clock the budgets count by, that a test moves.
final class TestClock: @unchecked Sendable {
    private let value = NSLock()
    private var seconds: Int64 = 1000
    func now() -> Int64 { value.withLock { seconds } }
    func advance(_ s: Int64) { value.withLock { seconds += s } }
}

/// One verifier in process: the service over a memory ledger, and what a test asks of it.
struct Fleet {
    static let t0: Int64 = 1_764_000_000
    let ledger: MemoryLedger
    var service: VerifierService
    let clock = TestClock()
    let codec: LedgerCodec

    init(config: ServerConfig = Fleet.config(), revokedFile: String? = nil, wrap: ((MemoryLedger) -> any Ledger)? = nil,
         groupsOf: @escaping @Sendable (String) -> Set<String>? = { _ in nil }, hostCA: HostCA? = nil, remembered: Int = 250_000) throws {
        codec = LedgerCodec(sealer: Sealer(current: KeyFile(bytes: Array(repeating: 1, count: 32))),
                            audit: AuditChain(key: KeyFile(bytes: Array(repeating: 2, count: 32))), remembered: remembered)
        ledger = MemoryLedger(codec: codec, now: Fleet.t0)
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let clock = self.clock
        service = VerifierService(config: config, ledger: wrap?(ledger) ?? ledger, budgets: ledger, identifier: try sharedPKI.identifier(),
                                  revoked: RevocationList(path: revokedFile), binder: RequestBinder(audit: codec.audit), logger: logger,
                                  clock: { clock.now() }, hashingSlots: 2, groupsOf: groupsOf, hostCA: hostCA)
        // The deadline is wall-clock time kept by its own thread, and these tests share
        // Swift's cooperative pool (two threads here) with tests that block it for seconds
        // (sockets, processes): a request may wait its turn longer than smartotpd's 2 s, and
        // a ledger in memory is never what is slow. Deadlines are tested where a test sets one.
        service.deadline = .seconds(60)
    }

    /// The settings every configuration must name.
    static let required = """
        listen = 127.0.0.1:8443
        database = postgresql://smartotpd@db/smartotp
        tls_cert = /c
        tls_key = /k
        client_ca = /h
        admin_ca = /a
        seal_key = /s
        audit_key = /t

        """

    static func config(_ extra: String = "") -> ServerConfig {
        (try? ServerConfig.parse(required + """
            policy = deny=3 unlock_time=600
            host_failure_budget = off
            \(extra)
            """, path: "test.conf")) ?? ServerConfig()
    }

    /// A request by `who` (a certificate name of sharedCertificates, or nil for none).
    func ask(_ method: String, _ path: String, _ body: String = "", as who: String?, headers: [String: String] = [:]) async -> ServiceResponse {
        await service.respond(ServiceRequest(method: method, uri: path, headers: headers, body: Array(body.utf8),
                                             certificate: who.flatMap { sharedCertificates[$0] }, address: "192.0.2.7"))
    }

    /// A host's verdict: the typed reply (nil when not 200).
    func verdict(_ op: HelperProtocol.Operation, _ user: String, _ lines: String..., from host: String = "h1", id: String? = nil) async -> ServiceResponse {
        await ask("POST", "/v1/verify/\(op.rawValue)/\(user)", lines.map { $0 + "\n" }.joined(), as: host,
                  headers: id.map { ["x-smartotp-request": $0] } ?? [:])
    }

    /// An administrator's change with `AdminChange`'s body.
    func change(_ change: AdminChange, _ user: String, as who: String = "admin1") async throws -> ServiceResponse {
        var body = change.encode(for: try UserName(user))
        defer { ConstantTime.wipe(&body) }
        return await service.respond(ServiceRequest(method: "POST", uri: FleetAPI.changePath(change.verb, try UserName(user)), body: body,
                                                    certificate: sharedCertificates[who], address: "192.0.2.9"))
    }

    /// Enrols `user` with a TOTP token (`card` when `card`), through the admin route.
    func enroll(_ user: String, card: Bool = false, hotpToken: Bool = false, accessKey: [UInt8]? = nil) async throws {
        let kind: OTPKind = hotpToken ? .hotp : .totp(period: 30)
        var token = Token(id: card ? "card" : "code", kind: card ? .card : .code, parameters: try OTPParameters(kind: kind),
                          secret: SecretBytes(testSecret), credentialName: card ? "smartotp:\(user)" : nil, created: Fleet.t0)
        token.accessKey = accessKey.map(SecretBytes.init)
        let r = try await change(.enroll(token), user)
        guard r.status == 200 else { throw AdminChange.Failure("enroll \(user): \(r.status) \(r.text)") }
    }

    /// The user's record as the ledger opens it.
    func record(_ user: String) async throws -> UserRecord? { try await ledger.read(.user(try UserName(user))).record }
}

extension ServiceResponse {
    /// The verdict word of an attempt's answer.
    var verdict: String? {
        guard status == 200, let a = try? HelperProtocol.decodeAttempt(text) else { return nil }
        switch a.verdict {
        case .accepted: return "accepted"
        case .replayed: return "replayed"
        case .rejected: return "rejected"
        case .locked: return "locked"
        }
    }
}
