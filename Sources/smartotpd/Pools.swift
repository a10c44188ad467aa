import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SmartOTPFleet

/// One connection pool for each server the `database` URL lists, and which one verdicts
/// use. With one server that is all. With several and `target_session_attrs=read-write`
/// (the default for several), every server is asked each second whether it accepts writes
/// (`pg_is_in_recovery()`), and the first that does in the listed order is used: when
/// the primary stops and a standby is promoted, smartotpd follows within about a second
/// of the promotion, without a restart. A verdict in flight on the old primary fails
/// (503: the host asks another replica, which has moved too or soon will).
///
/// Nothing accepted before the switch is accepted after it only if every commit was on
/// the standby first: run it as a synchronous standby (docs/fleet.md).
final class DatabasePools: Service, Sendable {
    let clients: [PGPool]
    let names: [String]
    let follow: Bool
    let logger: Logger
    private let chosen = NIOLockedValueBox(0)

    static let probeInterval: Duration = .seconds(1)
    static let probeDeadline: Duration = .milliseconds(900)

    init(_ url: DatabaseURL, connections: Int, logger: Logger) {
        clients = url.endpoints.map {
            PGPool(url, $0, connections: connections)
        }
        names = url.endpoints.map { e in
            switch e {
            case .tcp(let host, let port): return HostPort(host: host, port: port).description
            case .socket(let path): return path
            }
        }
        follow = clients.count > 1 && url.targetSessionAttrs == .readWrite
        self.logger = logger
    }

    var current: PGPool { clients[chosen.withLockedValue { $0 }] }

    /// Runs every pool, and with several servers the probe, until cancelled or shutdown.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { tasks in
                for c in self.clients { tasks.addTask { await c.run() } }
                if self.follow { tasks.addTask { await self.watch() } }
            }
        }
    }

    /// Each second: the first listed server that accepts writes becomes the one in use.
    func watch() async {
        while !Task.isCancelled {
            await choose()
            try? await Task.sleep(for: Self.probeInterval)
        }
    }

    /// Asks every server at once whether it accepts writes; moves to the first that does.
    /// Returns whether one does.
    @discardableResult
    func choose() async -> Bool {
        let writable = await withTaskGroup(of: (Int, Bool).self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask { (i, await Self.acceptsWrites(c)) }
            }
            var out = Array(repeating: false, count: clients.count)
            for await (i, w) in group { out[i] = w }
            return out
        }
        guard let first = writable.firstIndex(of: true) else { return false }
        let previous = chosen.withLockedValue { p in
            defer { p = first }
            return p
        }
        if previous != first {
            logger.warning("the database in use is now another server: it accepts writes", metadata: ["from": "\(names[previous])", "to": "\(names[first])"])
        }
        return true
    }

    /// Whether `client`'s server answers within the probe's deadline and accepts writes.
    static func acceptsWrites(_ client: PGPool) async -> Bool {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask {
                do {
                    for standby in try await client.query("SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'").decode(Bool.self) {
                        return !standby
                    }
                } catch {}
                return false
            }
            group.addTask {
                try? await Task.sleep(for: probeDeadline)
                return nil
            }
            defer { group.cancelAll() }
            return (await group.next() ?? nil) ?? false
        }
    }
}
