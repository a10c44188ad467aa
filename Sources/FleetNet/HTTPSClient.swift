import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import OTPCore
import SmartOTPFleet

/// An HTTPS response, whole.
public struct FleetResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct FleetClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The client identity a host or an administrator presents: `DIR/ca.pem` (the CA that
/// signed the servers' certificates), `DIR/cert.pem` and `DIR/key.pem` (root-only).
public struct TLSIdentity {
    public let context: NIOSSLContext

    /// The CA only, no certificate of this host's own: a host that joins has none yet.
    public init(trusting directory: String) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(directory + "/ca.pem"))
            tls.minimumTLSVersion = .tlsv12
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw FleetClientError("cannot load the fleet's CA in \(directory)/ca.pem: \(error)")
        }
    }

    public init(directory: String) throws {
        try Self.checkProtected(directory)
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(directory + "/ca.pem"))
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(directory + "/cert.pem").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: directory + "/key.pem", format: .pem))
            tls.minimumTLSVersion = .tlsv12
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw FleetClientError("cannot load the TLS identity in \(directory) (ca.pem, cert.pem, key.pem): \(error)")
        }
    }

    /// The folder and its key must be this process's user's or root's, the folder not
    /// writable by group or others and the key readable by nobody else, as sshd demands of
    /// a host key: a key others can read is a host certificate anyone can use.
    static func checkProtected(_ directory: String) throws {
        for (path, forbidden) in [(directory, mode_t(0o022)), (directory + "/key.pem", mode_t(0o077))] {
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }  // missing: the load below says so
            guard st.st_uid == 0 || st.st_uid == geteuid(), st.st_mode & forbidden == 0 else {
                throw FleetClientError("refusing the TLS identity in \(directory): \(path) must be owned by root and " +
                                       (forbidden == 0o022 ? "not writable by group or others" : "readable by nobody else (chmod 600)"))
            }
        }
    }
}

/// One HTTPS connection to one server, used for requests one after another (keep-alive).
/// Blocking: for the client process, the CLI and the benchmark's workers, not for code that
/// runs on an event loop.
public final class FleetConnection {
    let channel: Channel
    let collector: ResponseCollector
    public let server: ServerURL

    /// Connects and completes the TLS handshake, or throws, by `deadline`.
    public init(to server: ServerURL, identity: TLSIdentity, group: EventLoopGroup, deadline: NIODeadline) throws {
        self.server = server
        let collector = ResponseCollector()
        self.collector = collector
        let host = server.address.host
        let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
        let timeout = TimeAmount.nanoseconds(max(1_000_000, Int64(deadline.uptimeNanoseconds) - Int64(NIODeadline.now().uptimeNanoseconds)))
        let context = identity.context
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ssl = try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
                    try channel.pipeline.syncOperations.addHandler(ssl)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
        do {
            channel = try bootstrap.connect(host: host, port: server.address.port).wait()
        } catch {
            throw FleetClientError("\(server): cannot connect: \(error)")
        }
    }

    deinit { channel.close(promise: nil) }

    public func close() { channel.close(promise: nil) }

    /// Sends one request and waits for its whole response, or throws by `deadline`.
    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                     deadline: NIODeadline) throws -> FleetResponse {
        let promise = channel.eventLoop.makePromise(of: FleetResponse.self)
        var fields = HTTPHeaders()
        fields.add(name: "Host", value: server.address.description)
        fields.add(name: "Content-Length", value: String(body.count))
        for (k, v) in headers { fields.add(name: k, value: v) }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: fields)
        let server = self.server
        let channel = self.channel
        let collector = self.collector
        let bodyBuffer = channel.allocator.buffer(bytes: body)
        channel.eventLoop.execute {
            collector.expect(promise)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(bodyBuffer)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil)).whenFailure { promise.fail($0) }
        }
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
            promise.fail(FleetClientError("\(server): no answer in time"))
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try promise.futureResult.wait()
        } catch let e as FleetClientError {
            throw e
        } catch {
            throw FleetClientError("\(server): \(error)")
        }
    }
}

/// Collects one response at a time for `FleetConnection`.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    // Touched only on the channel's event loop.
    private var promise: EventLoopPromise<FleetResponse>?
    private var response = FleetResponse(status: 0, headers: [], body: [])

    func expect(_ p: EventLoopPromise<FleetResponse>) {
        promise = p
        response = FleetResponse(status: 0, headers: [], body: [])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = Int(head.status.code)
            response.headers = head.headers.map { ($0.name, $0.value) }
        case .body(var buffer):
            if response.body.count + buffer.readableBytes > FleetAPI.maxBody {
                promise?.fail(FleetClientError("answer too large"))
                promise = nil
                context.close(promise: nil)
                return
            }
            response.body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end:
            promise?.succeed(response)
            promise = nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(FleetClientError("connection closed"))
        promise = nil
    }
}

/// Requests to a list of servers, tried in order within one deadline: the first one that
/// answers with a verdict (any status below 500) decides; a 5xx (the server cannot reach
/// its database) moves on to the next and is returned only when it is the last word.
/// None answering is an error: callers fail closed.
public final class FleetServers {
    /// How long a server may take to accept the connection before the next one is asked:
    /// a verifier that silently drops packets costs a login this, not the whole timeout.
    public static let connectTimeout: TimeAmount = .seconds(1)
    public let servers: [ServerURL]
    let identity: TLSIdentity
    let group: MultiThreadedEventLoopGroup
    private var connection: FleetConnection?

    /// `trustOnly`: present no certificate (a host that joins).
    public init(_ servers: [ServerURL], tlsDirectory: String, trustOnly: Bool = false) throws {
        self.servers = servers
        identity = trustOnly ? try TLSIdentity(trusting: tlsDirectory) : try TLSIdentity(directory: tlsDirectory)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    deinit {
        connection = nil  // its channel closes while the event loop still runs
        try? group.syncShutdownGracefully()
    }

    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
                     timeout: TimeAmount) throws -> FleetResponse {
        let deadline = NIODeadline.now() + timeout
        // One id for this request, the same at every server asked: a replica that finds it
        // already decided (its first answer was lost) answers that verdict again rather
        // than counting the attempt twice (RecentRequests).
        let headers = headers + [("X-SmartOTP-Request", Hex.encode(SecureRandom.bytes(16) ?? []))]
        var errors: [String] = []
        var unavailable: FleetResponse?
        if let open = connection {
            if let r = try? open.send(method, path, headers: headers, body: body, deadline: deadline), r.status < 500 { return r }
            connection = nil
        }
        for server in servers {
            guard NIODeadline.now() < deadline else { errors.append("\(server): not tried (out of time)"); continue }
            do {
                let c = try FleetConnection(to: server, identity: identity, group: group,
                                            deadline: min(deadline, NIODeadline.now() + Self.connectTimeout))
                let r = try c.send(method, path, headers: headers, body: body, deadline: deadline)
                connection = c
                if r.status < 500 { return r }
                unavailable = r
                errors.append("\(server): \(r.status) \(r.text.prefix(100))")
            } catch {
                errors.append("\(error)")
            }
        }
        if let unavailable { return unavailable }
        throw FleetClientError("no verifier answered: " + errors.joined(separator: "; "))
    }
}
