import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS
import SmartOTPService

/// Who may hold a connection to a listener, and for how long. Anyone who can reach the port
/// can open connections before presenting a certificate, so the caps are what keep an
/// honest host served under a flood:
/// - at most `total` connections, and at most `perSource` from one address (an IPv6
///   address's /64: one host may be given a whole /64) that have not yet presented a
///   certificate: once its certificate is admitted a connection counts against that
///   certificate instead, so the many hosts of one server /64 are never refused for one
///   another's connections, and no one in that /64 can hold their slots with connections
///   that never authenticate;
/// - on the verifier's listener, a connection is admitted when its TLS handshake completes,
///   with a certificate that names a role and is not revoked (`CertificateAdmission`), and
///   at most `perCertificate` connections hold one certificate: a stolen or revoked
///   certificate cannot take the slots honest hosts need;
/// - a new connection past `total` pushes out the oldest one that has not yet sent a
///   request head (unauthenticated), never an admitted one; with none to push out it is
///   refused;
/// - a connection has `handshake` to finish TLS and send its first request head, whatever
///   it trickles meanwhile (an absolute deadline, not an idle timer);
/// - an admitted connection is not kept alive past `lifetime`: its next answer says
///   `Connection: close`, and `lifetime + grace` closes it whatever it is doing (so a
///   revoked or trickling client cannot keep one for ever).
/// Every refusal is counted in `smartotpd_connection_refusals_total{listener,reason}`.
final class Admission: Sendable {
    struct Limits: Sendable {
        var total: Int
        var perSource: Int
        var handshake: TimeAmount
        var lifetime: TimeAmount
        var perCertificate: Int = .max
        static let grace: TimeAmount = .seconds(30)
    }

    enum Reason: String {
        case total, perSource = "per_source", deadline, evicted, lifetime
        case perCertificate = "per_certificate", revoked, unidentified
    }

    struct Entry {
        let channel: Channel
        let source: String
        let number: UInt64
        var admitted = false
        var certificate: String?
        /// Whether it still counts in `perSource` (until its certificate is admitted).
        var bySource = true
    }

    struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var perSource: [String: Int] = [:]
        var perCertificate: [String: Int] = [:]
        var opened: UInt64 = 0
    }

    /// Where a connection comes from, as the per-source cap counts: an IPv4 address, or an
    /// IPv6 address's first 64 bits (the part a single host is handed). An IPv4 client of
    /// a listener on `[::]` arrives as ::ffff:a.b.c.d: that is its IPv4 address, not one
    /// /64 that every IPv4 client would share.
    static func source(_ address: SocketAddress?) -> String {
        guard let address else { return "?" }
        if case .v6(let a) = address {
            let all = withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
            if all.prefix(10).allSatisfy({ $0 == 0 }) && all[10] == 0xff && all[11] == 0xff {
                return all[12...].map { String($0) }.joined(separator: ".")
            }
            return all.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() + "::/64"
        }
        return address.ipAddress ?? "?"
    }

    let limits: Limits
    let listener: String
    let state = NIOLockedValueBox(State())

    init(_ limits: Limits, listener: String) {
        self.limits = limits
        self.listener = listener
    }

    static let metric = "smartotpd_connection_refusals_total"

    func count(_ reason: Reason) {
        Counter(label: Self.metric, dimensions: [("listener", listener), ("reason", reason.rawValue)]).increment()
    }

    /// Registers a new connection; false when it is refused (the caller closes it). A
    /// connection pushed out to make room is closed here.
    func open(_ channel: Channel) -> Bool {
        let source = Self.source(channel.remoteAddress)
        let (verdict, evict): (Reason?, Channel?) = state.withLockedValue { s in
            if s.perSource[source, default: 0] >= limits.perSource { return (.perSource, nil) }
            var evict: Channel?
            if s.entries.count >= limits.total {
                // The oldest connection that has not authenticated yet makes room.
                guard let oldest = s.entries.filter({ !$0.value.admitted }).min(by: { $0.value.number < $1.value.number }) else {
                    return (.total, nil)
                }
                Self.forget(oldest.key, &s)
                evict = oldest.value.channel
            }
            s.opened += 1
            s.entries[ObjectIdentifier(channel)] = Entry(channel: channel, source: source, number: s.opened)
            s.perSource[source, default: 0] += 1
            return (nil, evict)
        }
        if let evict {
            count(.evicted)
            evict.close(promise: nil)
        }
        if let verdict {
            count(verdict)
            return false
        }
        return true
    }

    /// The connection's first request head arrived (a listener without client
    /// certificates): it is no longer the first to be pushed out.
    func admit(_ channel: Channel) {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.admitted = true }
    }

    /// The connection's TLS handshake completed with `certificate` (its serial), which
    /// names a role and is not revoked: admitted, unless that certificate already holds
    /// `perCertificate` connections (the reason, and the caller closes it).
    func admit(_ channel: Channel, certificate: String) -> Reason? {
        state.withLockedValue { s in
            let id = ObjectIdentifier(channel)
            guard let entry = s.entries[id] else { return .evicted }
            if entry.admitted { return nil }
            guard s.perCertificate[certificate, default: 0] < limits.perCertificate else { return .perCertificate }
            s.entries[id]?.admitted = true
            s.entries[id]?.certificate = certificate
            s.perCertificate[certificate, default: 0] += 1
            s.entries[id]?.bySource = false
            Self.release(source: entry.source, &s)
            return nil
        }
    }

    func isAdmitted(_ channel: Channel) -> Bool {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.admitted ?? false }
    }

    func close(_ channel: Channel) {
        state.withLockedValue { Self.forget(ObjectIdentifier(channel), &$0) }
    }

    /// A connection's place in every count given up.
    static func forget(_ id: ObjectIdentifier, _ s: inout State) {
        guard let e = s.entries.removeValue(forKey: id) else { return }
        if e.bySource { release(source: e.source, &s) }
        if let c = e.certificate {
            s.perCertificate[c, default: 1] -= 1
            if s.perCertificate[c] == 0 { s.perCertificate[c] = nil }
        }
    }

    static func release(source: String, _ s: inout State) {
        s.perSource[source, default: 1] -= 1
        if s.perSource[source] == 0 { s.perSource[source] = nil }
    }

    var connections: Int { state.withLockedValue { $0.entries.count } }
}

/// The first handler of every accepted connection: registers it with its listener's
/// Admission (closing it at once when refused), closes it when its first request head has
/// not come by the handshake deadline, and at `lifetime + grace`.
final class AdmissionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let admission: Admission
    var deadline: Scheduled<Void>?
    var endOfLife: Scheduled<Void>?

    init(_ admission: Admission) {
        self.admission = admission
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        guard admission.open(channel) else {
            context.close(promise: nil)
            return
        }
        let admission = self.admission
        deadline = context.eventLoop.scheduleTask(in: admission.limits.handshake) {
            guard !admission.isAdmitted(channel) else { return }
            admission.count(.deadline)
            channel.close(promise: nil)
        }
        endOfLife = context.eventLoop.scheduleTask(in: admission.limits.lifetime + Admission.Limits.grace) {
            admission.count(.lifetime)
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        endOfLife?.cancel()
        admission.close(context.channel)
        context.fireChannelInactive()
    }
}

/// After TLS on the verifier's listener: when the handshake completes, the client's
/// certificate is told apart (`PeerIdentifier`) and checked against the revocations before
/// the connection counts as admitted; one that names no role, or is revoked, or whose
/// certificate already holds its share of connections, is closed there.
final class CertificateAdmission: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let admission: Admission
    let service: VerifierService

    init(_ admission: Admission, service: VerifierService) {
        self.admission = admission
        self.service = service
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            let der = try? context.pipeline.syncOperations.nioSSL_peerCertificate()?.toDERBytes()
            // No certificate where hosts may join: not admitted (the handshake deadline, the
            // per-source cap and eviction go on applying), and only the join route answers.
            if der == nil && service.hostCA != nil {
                context.fireUserInboundEventTriggered(event)
                return
            }
            let refusal: Admission.Reason?
            do throws(PeerIdentifier.Refusal) {
                let peer = try service.identifier.identify(der, now: service.clock())
                // Capped by the certificate's name and role, not its serial: a host that renews
                // (or an attacker who renews a stolen certificate again and again) holds one
                // name's share of the connections whatever number of serials it has.
                refusal = service.revoked.contains(serial: peer.serial, name: peer.name)
                    ? .revoked : admission.admit(context.channel, certificate: peer.role.rawValue + ":" + peer.name)
            } catch {
                refusal = .unidentified
            }
            if let refusal {
                admission.count(refusal)
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }
}
