import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OTPCore
import POSIX
import ServiceLifecycle
import SmartOTPAdmin
import SmartOTPFleet
import TokenStore
import Verifier

/// The HTTPS service: hosts ask for verdicts, administrators manage records.
struct VerifierService: Service {
    let config: ServerConfig
    let database: Database
    let identifier: PeerIdentifier
    let tls: NIOSSLContext
    let logger: Logger
    let group: EventLoopGroup

    /// How long a verdict may wait for PostgreSQL. Past it the request is cancelled (its
    /// transaction rolls back: no verdict) and the host is told 503 in time to ask another
    /// replica within its own timeout.
    static let databaseDeadline: Duration = .seconds(2)

    /// How long a connection may stay silent (no request, or a request that stops midway).
    static let idleTimeout: TimeAmount = .seconds(30)

    static let verdicts = "smartotpd_verdicts_total"
    static let latency = "smartotpd_request_duration_seconds"
    static let databaseErrors = "smartotpd_database_errors_total"
    static let refusals = "smartotpd_refused_connections_total"
    static let sealRefusals = "smartotpd_refused_records_total"
    static let busy = "smartotpd_busy_refusals_total"
    static let overBudget = "smartotpd_host_budget_refusals_total"

    /// Each host certificate's failed verdicts, and the tap challenges it asked for: past
    /// either budget its verdicts are refused until the window moves on.
    let failures: HostBudget
    let challenges: HostBudget
    /// The listener's caps and deadlines (max_connections, …).
    let admission: Admission

    init(config: ServerConfig, database: Database, logger: Logger, group: EventLoopGroup) throws {
        self.config = config
        self.database = database
        self.logger = logger
        self.group = group
        failures = HostBudget(config.hostFailureBudget)
        challenges = HostBudget(config.hostChallengeBudget)
        admission = Admission(.init(total: config.maxConnections, perSource: config.maxConnectionsPerSource,
                                    handshake: .seconds(config.handshakeTimeout), lifetime: .seconds(config.connectionLifetime)),
                              listener: "verifier")
        identifier = try PeerIdentifier(adminCAPath: config.adminCA, clientCAPath: config.clientCA, helpdeskCAPath: config.helpdeskCA,
                                        revoked: RevocationList(path: config.revoked))
        var t = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(config.tlsCert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: config.tlsKey, format: .pem)))
        // A client certificate is required and checked against both CAs; which one signed
        // it decides the role (PeerIdentifier).
        t.certificateVerification = .noHostnameVerification
        t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(config.clientCA) + NIOSSLCertificate.fromPEMFile(config.adminCA)
                                     + (config.helpdeskCA.map(NIOSSLCertificate.fromPEMFile) ?? []))
        t.minimumTLSVersion = .tlsv12
        tls = try NIOSSLContext(configuration: t)
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    func run() async throws {
        let (context, admission) = (tls, self.admission)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: config.listen.host, port: config.listen.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The caps and the handshake deadline come first (Admission); then a
                    // connection that sends nothing for 30 s between requests is closed.
                    try channel.pipeline.syncOperations.addHandler(AdmissionHandler(admission))
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return (channel, try Connection(wrappingChannelSynchronously: channel))
                }
            }
        logger.info("listening", metadata: ["address": "\(config.listen)", "max connections": "\(admission.limits.total)",
                                            "per source": "\(admission.limits.perSource)"])
        // Stop accepting on shutdown; connections finish the request in hand.
        try await serveConnections(server) { accepted in await self.serve(accepted.0, accepted.1) }
        logger.info("stopped")
    }

    /// Whether a connection is in the middle of a request, and whether shutdown began.
    struct ConnectionState {
        var busy = false
        var closing = false
    }

    /// One connection: requests one after another (keep-alive) until the peer closes. On
    /// shutdown an idle connection is closed at once; a busy one after its answer.
    func serve(_ channel: Channel, _ connection: Connection) async {
        let state = NIOLockedValueBox(ConnectionState())
        await withGracefulShutdownHandler {
            await serveRequests(channel, connection, state)
        } onGracefulShutdown: {
            let idle = state.withLockedValue { s in
                s.closing = true
                return !s.busy
            }
            if idle { channel.close(promise: nil) }
        }
    }

    func serveRequests(_ channel: Channel, _ connection: Connection, _ state: NIOLockedValueBox<ConnectionState>) async {
        do {
            let opened = NIODeadline.now()
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                var peer: Peer?
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        admission.admit(channel)
                        head = h
                        body = []
                        tooLarge = false
                        state.withLockedValue { $0.busy = true }
                    case .body(var b):
                        if body.count + b.readableBytes > FleetAPI.maxBody { tooLarge = true } else { body += b.readBytes(length: b.readableBytes) ?? [] }
                    case .end:
                        guard let h = head else { continue }
                        if peer == nil {
                            let certificate = try? await channel.eventLoop.submit { try channel.pipeline.syncOperations.nioSSL_peerCertificate() }.get()
                            do throws(PeerIdentifier.Refusal) { peer = try identifier.identify(certificate ?? nil) } catch {
                                Counter(label: Self.refusals).increment()
                                logger.warning("refused", metadata: ["why": "\(error)"])
                                try await respond(outbound, 403, "\(error)\n", keepAlive: false)
                                return
                            }
                        }
                        guard let p = peer else { return }
                        // Revocation is checked on every request, not only the first: a
                        // host revoked while its connection stays open is cut off too.
                        if identifier.revoked.contains(serial: p.serial, name: p.name) {
                            Counter(label: Self.refusals).increment()
                            let why = identifier.revoked.unreadable() ?? "revoked certificate: \(p.name) (serial \(p.serial))"
                            logger.warning("refused", metadata: ["why": "\(why)"])
                            try await respond(outbound, 403, "\(why)\n", keepAlive: false)
                            return
                        }
                        let started = ContinuousClock.now
                        let requester = Requester(name: p.name, serial: p.serial, role: p.role,
                                                  address: channel.remoteAddress?.ipAddress ?? "?",
                                                  remoteHost: Self.header(h, "X-SmartOTP-RHost"), service: Self.header(h, "X-SmartOTP-Service"),
                                                  requestID: Self.header(h, "X-SmartOTP-Request"))
                        let (status, headers, text) = tooLarge ? (413, [], "request too large\n") : await handle(h, body: body, peer: requester)
                        ConstantTime.wipe(&body)
                        let elapsed = ContinuousClock.now - started
                        Metrics.Timer(label: Self.latency).recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
                        // Kept alive only within connection_lifetime: a host reconnects (and its
                        // certificate is checked anew) at least that often.
                        let young = NIODeadline.now() - opened < admission.limits.lifetime
                        let keepAlive = state.withLockedValue { s in
                            s.busy = false
                            return h.isKeepAlive && !s.closing && young
                        }
                        try await respond(outbound, status, text, headers: headers, keepAlive: keepAlive)
                        if !keepAlive { return }
                        head = nil
                    }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    func respond(_ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, _ status: Int, _ text: String,
                 headers: [(String, String)] = [], keepAlive: Bool) async throws {
        var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: status))
        let bytes = Array(text.utf8)
        head.headers.add(name: "Content-Length", value: String(bytes.count))
        head.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        head.headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        for (k, v) in headers { head.headers.add(name: k, value: v) }
        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(ByteBuffer(bytes: bytes))), .end(nil)])
    }

    /// A header a host's fleet client sends (PAM_RHOST, PAM_SERVICE), bounded and printable.
    static func header(_ head: HTTPRequestHead, _ name: String) -> String {
        String((head.headers.first(name: name) ?? "").prefix(255).map { $0.isASCII && !$0.isNewline && $0 != "\t" ? $0 : "?" })
    }

    func handle(_ head: HTTPRequestHead, body: [UInt8], peer: Requester) async -> (Int, [(String, String)], String) {
        guard let route = FleetAPI.route(head.uri) else { return (404, [], "no such path\n") }
        if let refusal = FleetHandlers.authorize(route, method: head.method.rawValue, role: peer.role) {
            if refusal.status == 403 { logger.warning("admin operation refused", metadata: ["peer": "\(peer)", "path": "\(head.uri)"]) }
            return (refusal.status, [], refusal.text)
        }
        do {
            switch route {
            case .health:
                try await database.check()
                return (200, [], "ok\n")
            case .verify(let op, let user):
                return try await verify(op, user, body: body, peer: peer)
            case .users, .show, .change, .audit, .revocations, .revoke:
                return try await administer(route, head, body: body, peer: peer)
            }
        } catch let refused as Database.Refused {
            logger.critical("record refused", metadata: ["peer": "\(peer)", "path": "\(head.uri)", "why": "\(refused.why)"])
            Counter(label: Self.sealRefusals).increment()
            return (422, [], "\(refused)\n")
        } catch let refusal as RecordError {
            // The record logic refused (a challenge for a user without a card, …): the
            // request's fault, not the database's.
            logger.notice("request refused", metadata: ["peer": "\(peer)", "path": "\(head.uri)", "why": "\(refusal)"])
            return (422, [], "\(refusal)\n")
        } catch {
            Counter(label: Self.databaseErrors).increment()
            logger.error("request failed", metadata: ["peer": "\(peer)", "path": "\(head.uri)", "error": "\(loggable(error))"])
            return (503, [], "the verifier cannot answer now\n")
        }
    }

    /// Verdicts that hash (a simple password, a code that could be a recovery code: one
    /// yescrypt per stored hash, tens of milliseconds each, with the row locked and a pool
    /// connection held) at once; more are answered 503 at once, before a connection is
    /// taken, so a burst of them cannot hold the pool that every other login needs.
    static let hashingSlots = max(2, System.coreCount)
    let hashing = NIOLockedValueBox(0)

    static func hashes(_ op: HelperProtocol.Operation, _ body: [UInt8]) -> Bool {
        op == .password || (op == .code && RecoveryCode.normalise(HelperProtocol.lines(body).first ?? "") != nil)
    }

    func verify(_ op: HelperProtocol.Operation, _ user: UserName, body: [UInt8], peer: Requester) async throws -> (Int, [(String, String)], String) {
        let hashes = Self.hashes(op, body)
        if hashes {
            let taken = hashing.withLockedValue { n in
                guard n < Self.hashingSlots else { return false }
                n += 1
                return true
            }
            guard taken else {
                Counter(label: Self.busy).increment()
                logger.warning("hashing verdicts at their limit; refused", metadata: ["peer": "\(peer)", "user": "\(user.value)"])
                return (503, [], "the verifier is busy; ask another\n")
            }
        }
        defer { if hashes { hashing.withLockedValue { $0 -= 1 } } }
        // A host that has caused more failed verdicts than its budget gets no more verdicts
        // (and its failures no longer count against users) until the window moves on: a
        // stolen host certificate locks at most budget ÷ deny users a window.
        if op != .summary && failures.spent(peer.serial) {
            Counter(label: Self.overBudget, dimensions: [("budget", "failures")]).increment()
            logger.warning("host over its failure budget; refused", metadata: ["host": "\(peer)", "user": "\(user.value)", "operation": "\(op.rawValue)"])
            return (429, [], "this host has caused too many failed verdicts; try later\n")
        }
        // Challenges too: each one written into a user's record costs the host, so one
        // certificate cannot churn every user's row.
        if op == .challenge {
            guard challenges.spend(peer.serial) else {
                Counter(label: Self.overBudget, dimensions: [("budget", "challenges")]).increment()
                logger.warning("host over its challenge budget; refused", metadata: ["host": "\(peer)", "user": "\(user.value)"])
                return (429, [], "this host has asked for too many tap challenges; try later\n")
            }
        }
        let (database, policy) = (self.database, config.policy)
        let (response, decision) = try await withDeadline(Self.databaseDeadline) {
            try await FleetHandlers.verify(op, user, body: body, by: peer, policy: policy, store: database)
        }
        if let decision, decision.repeated {
            logger.notice("verdict repeated for a retried request", metadata: ["host": "\(peer.name)", "user": "\(user.value)",
                                                                             "operation": "\(op.rawValue)", "request": "\(peer.requestID)"])
        } else if let decision {
            let result = decision.reply.result
            switch decision.reply {
            case .attempt(let a) where !decision.reply.accepted && a.verdict != .locked: _ = failures.spend(peer.serial)
            case .access(.none): _ = failures.spend(peer.serial)
            default: break
            }
            Counter(label: Self.verdicts, dimensions: [("result", result)]).increment()
            logger.notice("verdict", metadata: ["host": "\(peer.name)", "serial": "\(peer.serial)", "peer": "\(peer.address)",
                                                "rhost": "\(peer.remoteHost)", "service": "\(peer.service)", "user": "\(user.value)",
                                                "operation": "\(op.rawValue)", "result": "\(result)"])
        }
        return (response.status, [], response.text)
    }

    struct DeadlineExceeded: Error, CustomStringConvertible {
        var description: String { "PostgreSQL did not answer in time" }
    }

    /// `body`, or DeadlineExceeded once `limit` has passed (then `body` is cancelled).
    func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                throw DeadlineExceeded()
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw DeadlineExceeded() }
            return first
        }
    }

    func administer(_ route: FleetAPI.Route, _ head: HTTPRequestHead, body: [UInt8], peer: Requester) async throws -> (Int, [(String, String)], String) {
        switch route {
        case .users:
            logger.notice("users listed", metadata: ["admin": "\(peer)"])
            return (200, [], try await database.users().map { "\($0.0) \($0.1) \($0.2 ? 1 : 0) \($0.3)\n" }.joined())
        case .show(let user):
            guard let text = try await database.view(user) else { return (404, [], "\(user.value) has no record\n") }
            logger.notice("record shown", metadata: ["admin": "\(peer)", "user": "\(user.value)"])
            return (200, [], text)
        case .change(let verb, let user):
            let change: AdminChange
            do throws(AdminChange.Failure) { change = try AdminChange.decode(verb: verb, body: body, user: user) } catch {
                return (400, [], "\(error)\n")
            }
            let outcome: AdminChange.Outcome
            do { outcome = try await database.change(change, user: user, by: peer) } catch let e as AdminChange.Failure {
                return (422, [], "\(e)\n")
            }
            logger.notice("record changed", metadata: ["admin": "\(peer)", "user": "\(user.value)", "change": "\(verb)", "outcome": "\(outcome.text.dropLast())"])
            return (200, [], outcome.text)
        case .audit:
            guard let q = FleetAPI.query(head.uri) else { return (400, [], "a bad query\n") }
            let since = Int64(q["since"] ?? "0") ?? -1
            let limit = Int(q["limit"] ?? "1000") ?? -1
            guard since >= 0, (1...100_000).contains(limit) else { return (400, [], "since must be a Unix time, limit 1-100000\n") }
            logger.notice("audit read", metadata: ["admin": "\(peer)"])
            return (200, [], try await database.auditRows(user: q["user"], host: q["host"], since: since, limit: limit))
        case .revocations:
            return (200, [], try await database.revocations().map { "\($0.0) \($0.1) \($0.2)\n" }.joined())
        case .revoke(let revoke):
            let entry = String(decoding: body, as: UTF8.self).trimmingSpaces()
            guard FleetAPI.isRevocationEntry(entry) else { return (400, [], "name a host certificate by its common name or serial\n") }
            let changed = try await database.revoke(entry, revoke, by: peer)
            logger.notice(revoke ? "host revoked" : "host restored", metadata: ["admin": "\(peer)", "entry": "\(entry)", "changed": "\(changed)"])
            // This replica at once; the others at their next read (RevocationPoller).
            identifier.revoked.setStored(try await database.revocations().map(\.0))
            return (200, [], changed ? (revoke ? "revoked \(entry)\n" : "restored \(entry)\n")
                                      : (revoke ? "\(entry) was already revoked\n" : "\(entry) was not revoked\n"))
        default:
            return (405, [], "method not allowed\n")
        }
    }
}

/// Reads the revocations from PostgreSQL every two seconds, so that a host revoked on any
/// replica is refused by all within a few seconds (on its next request, even on an open
/// connection). While the database cannot be read the last list read stays.
struct RevocationPoller: Service {
    let database: Database
    let revoked: RevocationList
    let logger: Logger
    static let interval: Duration = .seconds(2)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var failing = false
            while true {
                do {
                    revoked.setStored(try await database.revocations().map(\.0))
                    if failing { logger.info("revocations read again from the database") }
                    failing = false
                } catch is CancellationError {
                    return
                } catch {
                    if !failing { logger.warning("cannot read the revocations; the last list read stays", metadata: ["error": "\(loggable(error))"]) }
                    failing = true
                }
                try await Task.sleep(for: Self.interval)
            }
        }
    }
}

/// Events one host certificate (by serial) caused in a sliding window, against a budget of
/// `count` a `window` seconds. Kept by this replica: with N replicas a host may spend up
/// to N budgets.
final class HostBudget: Sendable {
    let limit: (count: Int, window: Int64)?
    let events = NIOLockedValueBox([String: [Int64]]())

    init(_ limit: (count: Int, window: Int64)?) { self.limit = limit }

    /// Drops `host`'s events older than the window; returns how many remain.
    private func current(_ all: inout [String: [Int64]], _ host: String, _ now: Int64, _ window: Int64) -> Int {
        var times = all[host] ?? []
        times.removeAll { now - $0 >= window }
        all[host] = times.isEmpty ? nil : times
        return times.count
    }

    /// Whether `host` has spent its budget.
    func spent(_ host: String) -> Bool {
        guard let limit else { return false }
        let now = Int64(Clocks.monotonicMilliseconds() / 1000)
        return events.withLockedValue { current(&$0, host, now, limit.window) >= limit.count }
    }

    /// Spends one event of `host`'s budget; false (nothing spent) when none is left.
    func spend(_ host: String) -> Bool {
        guard let limit else { return true }
        let now = Int64(Clocks.monotonicMilliseconds() / 1000)
        return events.withLockedValue { all in
            guard current(&all, host, now, limit.window) < limit.count else { return false }
            all[host, default: []].append(now)
            return true
        }
    }
}

/// Closes the connection when IdleStateHandler says nothing came in for too long.
final class CloseWhenIdle: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
