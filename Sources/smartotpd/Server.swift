import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SmartOTPFleet
import SmartOTPService

/// The verifier's edge: TLS and HTTP framing, nothing else. Each request becomes a
/// `ServiceRequest` (method, path, headers, body, the client certificate TLS verified, the
/// peer's address); `VerifierService` decides what to answer, and its answer is written
/// back. The listener's caps and deadlines are `Admission`'s.
struct VerifierEdge: Service {
    let service: VerifierService
    let listen: HostPort
    let tls: TLSReloader
    let admission: Admission
    let logger: Logger
    let group: EventLoopGroup

    /// How long a connection may stay silent (no request, or a request that stops midway).
    static let idleTimeout: TimeAmount = .seconds(30)

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    func run() async throws {
        let (reloader, admission, service) = (tls, self.admission, self.service)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: listen.host, port: listen.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The caps and the handshake deadline come first (Admission); then a
                    // connection that sends nothing for 30 s between requests is closed.
                    try channel.pipeline.syncOperations.addHandler(AdmissionHandler(admission))
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    // The context of the moment: SIGHUP's new certificate for new connections.
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: reloader.current))
                    // Admitted when TLS completes with a certificate of a role, not revoked.
                    try channel.pipeline.syncOperations.addHandler(CertificateAdmission(admission, service: service))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return (channel, try Connection(wrappingChannelSynchronously: channel))
                }
            }
        logger.info("listening", metadata: ["address": "\(listen)", "max connections": "\(admission.limits.total)",
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
            let address = channel.remoteAddress?.ipAddress ?? "?"
            var certificate: [UInt8]??
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body: [UInt8] = []
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                        body = []
                        tooLarge = false
                        state.withLockedValue { $0.busy = true }
                    case .body(var b):
                        if body.count + b.readableBytes > FleetAPI.maxBody { tooLarge = true } else { body += b.readBytes(length: b.readableBytes) ?? [] }
                    case .end:
                        guard let h = head else { continue }
                        if certificate == nil {
                            // The certificate TLS verified, once a connection.
                            let peer = try? await channel.eventLoop.submit { try channel.pipeline.syncOperations.nioSSL_peerCertificate() }.get()
                            certificate = .some(try? peer?.toDERBytes())
                        }
                        var headers: [String: String] = [:]
                        for (name, value) in h.headers where headers[name.lowercased()] == nil { headers[name.lowercased()] = value }
                        let request = ServiceRequest(method: h.method.rawValue, uri: h.uri, headers: headers, body: body,
                                                     certificate: certificate ?? nil, address: address, bodyTooLarge: tooLarge)
                        let response = await service.respond(request)
                        for i in body.indices { body[i] = 0 }
                        // Kept alive only within connection_lifetime: a host reconnects (and its
                        // certificate is checked anew) at least that often.
                        let young = NIODeadline.now() - opened < admission.limits.lifetime
                        let keepAlive = state.withLockedValue { s in
                            s.busy = false
                            return h.isKeepAlive && !s.closing && young && !response.close
                        }
                        try await respond(outbound, response, keepAlive: keepAlive)
                        if !keepAlive { return }
                        head = nil
                    }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    func respond(_ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, _ response: ServiceResponse, keepAlive: Bool) async throws {
        var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: response.status))
        let bytes = Array(response.text.utf8)
        head.headers.add(name: "Content-Length", value: String(bytes.count))
        head.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        head.headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(ByteBuffer(bytes: bytes))), .end(nil)])
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
