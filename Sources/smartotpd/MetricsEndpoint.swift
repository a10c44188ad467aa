import CMalloc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization
import SmartOTPFleet

/// Prometheus's `/metrics`, in plain HTTP on its own address (keep it on loopback or a
/// management network): verdicts by result, request latency, database errors, refusals.
struct MetricsEndpoint: Service {
    let address: HostPort
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    let group: EventLoopGroup

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// A scraper asks once every few seconds: a few connections, 5 s to send its request,
    /// one answer, closed. Nothing a flood on this port opens can starve the verifier's.
    static let limits = Admission.Limits(total: 64, perSource: 16, handshake: .seconds(5), lifetime: .seconds(30))
    let admission = Admission(MetricsEndpoint.limits, listener: "metrics")
    let memory: MallocGauges

    init(address: HostPort, registry: PrometheusCollectorRegistry, logger: Logger, group: EventLoopGroup) {
        (self.address, self.registry, self.logger, self.group) = (address, registry, logger, group)
        memory = MallocGauges(registry)
    }

    func run() async throws {
        let admission = self.admission
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AdmissionHandler(admission))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return (channel, try Connection(wrappingChannelSynchronously: channel))
                }
            }
        logger.info("metrics listening", metadata: ["address": "\(address)"])
        try await serveConnections(server) { await self.serve($0.0, $0.1) }
    }

    func serve(_ channel: Channel, _ connection: Connection) async {
        try? await connection.executeThenClose { inbound, outbound in
            var uri = ""
            for try await part in inbound {
                switch part {
                case .head(let h):
                    admission.admit(channel)
                    uri = h.uri
                case .body: continue
                case .end:
                    let ok = uri == "/metrics"
                    if ok { memory.update() }
                    let bytes = ok ? registry.emitToBuffer() : Array("not found\n".utf8)
                    var head = HTTPResponseHead(version: .http1_1, status: ok ? .ok : .notFound)
                    head.headers.add(name: "Content-Type", value: ok ? "text/plain; version=0.0.4" : "text/plain")
                    head.headers.add(name: "Content-Length", value: String(bytes.count))
                    head.headers.add(name: "Connection", value: "close")
                    try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(ByteBuffer(bytes: bytes))), .end(nil)])
                    return
                }
            }
        }
    }
}

/// malloc's own account, read at each scrape: what it holds from the system and what of it
/// is in use. A resident size that grows with the first and not the second is memory freed
/// and kept (holes in the arenas), not a leak; see CONTRIBUTING ("Where smartotpd's memory
/// goes"). Read at most once a second: `mallinfo2` locks each arena in turn and walks its
/// free blocks, on an event loop that also serves verdicts, and the scraper is not
/// authenticated.
final class MallocGauges: Sendable {
    let held: Gauge
    let inUse: Gauge
    private let last = Mutex<ContinuousClock.Instant?>(nil)

    init(_ registry: PrometheusCollectorRegistry) {
        held = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "smartotpd", subsystem: "malloc", metricName: "held", unitName: "bytes",
            helpText: "Bytes malloc holds from the system: its arenas and its blocks of pages of their own"))
        inUse = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "smartotpd", subsystem: "malloc", metricName: "in_use", unitName: "bytes", helpText: "Of those, bytes in use"))
    }

    func update() {
        let now = ContinuousClock.now
        let due = last.withLock { last -> Bool in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        let m = mallinfo2()
        held.set(Double(m.arena + m.hblkhd))
        inUse.set(Double(m.uordblks + m.hblkhd))
    }
}

/// Serves every connection `server` accepts, each in a task of its own, until graceful
/// shutdown closes the listening socket; the connections in hand finish first. Shared by
/// the verifier's listener and the metrics listener.
func serveConnections<Connection: Sendable>(_ server: NIOAsyncChannel<Connection, Never>,
                                            _ handle: @escaping @Sendable (Connection) async -> Void) async throws {
    try await withGracefulShutdownHandler {
        try await withThrowingDiscardingTaskGroup { tasks in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    tasks.addTask { await handle(connection) }
                }
            }
        }
    } onGracefulShutdown: {
        server.channel.close(promise: nil)
    }
}
