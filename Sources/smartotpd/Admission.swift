import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Who may hold a connection to a listener, and for how long. Anyone who can reach the port
/// can open connections before presenting a certificate, so the caps are what keep an
/// honest host served under a flood:
/// - at most `total` connections, and at most `perSource` from one address;
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
        static let grace: TimeAmount = .seconds(30)
    }

    enum Reason: String { case total, perSource = "per_source", deadline, evicted, lifetime }

    struct Entry {
        let channel: Channel
        let source: String
        let number: UInt64
        var admitted = false
    }

    struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var perSource: [String: Int] = [:]
        var opened: UInt64 = 0
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
        let source = channel.remoteAddress?.ipAddress ?? "?"
        let (verdict, evict): (Reason?, Channel?) = state.withLockedValue { s in
            if s.perSource[source, default: 0] >= limits.perSource { return (.perSource, nil) }
            var evict: Channel?
            if s.entries.count >= limits.total {
                // The oldest connection that has not authenticated yet makes room.
                guard let oldest = s.entries.filter({ !$0.value.admitted }).min(by: { $0.value.number < $1.value.number }) else {
                    return (.total, nil)
                }
                s.entries[oldest.key] = nil
                s.perSource[oldest.value.source, default: 1] -= 1
                if s.perSource[oldest.value.source] == 0 { s.perSource[oldest.value.source] = nil }
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

    /// The connection's first request head arrived (after TLS, with a certificate the
    /// handshake verified): it is no longer the first to be pushed out.
    func admit(_ channel: Channel) {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.admitted = true }
    }

    func isAdmitted(_ channel: Channel) -> Bool {
        state.withLockedValue { $0.entries[ObjectIdentifier(channel)]?.admitted ?? false }
    }

    func close(_ channel: Channel) {
        state.withLockedValue { s in
            guard let e = s.entries.removeValue(forKey: ObjectIdentifier(channel)) else { return }
            s.perSource[e.source, default: 1] -= 1
            if s.perSource[e.source] == 0 { s.perSource[e.source] = nil }
        }
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
