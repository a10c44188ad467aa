// smartotpd — the fleet's verifier: hosts ask it for verdicts over mutual TLS; the
// records, counters and locks live in PostgreSQL, one transaction a verdict.
import ArgumentParser
import Glibc
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import SmartOTPFleet
import SmartOTPVault
import Verifier

func loadConfig(_ path: String) throws -> ServerConfig {
    guard let f = fopen(path, "r") else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n <= 0 { break }
        bytes += buffer[0..<n]
        if bytes.count > 1 << 20 { throw ValidationError("\(path) is too large") }
    }
    do { return try ServerConfig.parse(String(decoding: bytes, as: UTF8.self), path: path) } catch { throw ValidationError("\(error)") }
}

/// A key named in the configuration: a path, or `credential:NAME` for systemd's
/// LoadCredential= (the file under $CREDENTIALS_DIRECTORY).
func keyPath(_ value: String) throws -> String {
    guard value.hasPrefix("credential:") else { return value }
    guard let dir = getenv("CREDENTIALS_DIRECTORY").map({ String(cString: $0) }), dir.hasPrefix("/") else {
        throw ValidationError("\(value): CREDENTIALS_DIRECTORY is not set (name the key's path, or give the unit LoadCredential=)")
    }
    return dir + "/" + value.dropFirst(11)
}

func loadKey(_ value: String) throws -> KeyFile {
    let path = try keyPath(value)
    do throws(KeyFile.Refusal) { return try KeyFile(path: path) } catch { throw ValidationError("\(error)") }
}

/// The keys a configuration names: the sealer (seal_key, and unseal_keys that only open)
/// and the audit chain's. smartotpd will not start without them.
func loadKeys(_ config: ServerConfig, extra: [KeyFile] = []) throws -> (Sealer, AuditChain) {
    let seal = try loadKey(config.sealKey)
    let audit = try loadKey(config.auditKey)
    guard seal.id != audit.id else { throw ValidationError("seal_key and audit_key are the same key: give each its own (smartotpd keygen)") }
    return (Sealer(current: seal, others: try config.unsealKeys.map(loadKey) + extra), AuditChain(key: audit))
}

func makeLogger() -> Logger {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = .info
        return h
    }
    return Logger(label: "smartotpd")
}

@main
struct Smartotpd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smartotpd",
        abstract: "The smartotp fleet verifier: verdicts over mutual TLS, records in PostgreSQL.",
        discussion: """
        smartotpd --config FILE runs the service; smartotpd migrate --config FILE brings the
        database schema up to date (run it once before the first start and after upgrades).
        smartotpd keygen PATH makes a seal_key or audit_key; rekey re-seals every secret
        under a new key; audit-verify checks the audit trail's chains. See smartotpd(8).
        """,
        version: "smartotpd \(SmartOTPVersion.current)",
        subcommands: [Serve.self, Migrate.self, Keygen.self, Rekey.self, AuditVerify.self],
        defaultSubcommand: Serve.self
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The configuration file.", valueName: "FILE"))
    var config: String = "/etc/smartotpd/smartotpd.conf"
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the service (the default).")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        var config = try loadConfig(options.config)
        try checkReadable(config)
        let logger = makeLogger()
        config.maxConnections = fitDescriptors(config, logger: logger)
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                                                   .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                                   .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5)]
        MetricsSystem.bootstrap(factory)
        let group = MultiThreadedEventLoopGroup.singleton
        let pools = DatabasePools(config.database, connections: config.databaseConnections, logger: logger)
        let (sealer, audit) = try loadKeys(config)
        var database = Database(pools: pools, logger: logger, sealer: sealer, audit: audit)
        database.rootPassword = config.rootPassword
        let service = try VerifierService(config: config, database: database, logger: logger, group: group)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: pools),
            // Done once the schema is known to be current; fails the whole group if not.
            .init(service: SchemaCheck(database: database, logger: logger), successTerminationBehavior: .ignore),
            .init(service: service),
            .init(service: RevocationPoller(database: database, revoked: service.identifier.revoked, logger: logger),
                  successTerminationBehavior: .ignore),
        ]
        if config.auditKeep > 0 { services.append(.init(service: AuditPruner(database: database, days: config.auditKeep, logger: logger),
                                                                successTerminationBehavior: .ignore)) }
        if let m = config.metricsListen {
            services.append(.init(service: MetricsEndpoint(address: m, registry: registry, logger: logger, group: group)))
        }
        var lifecycle = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Requests in hand get this long to finish after SIGTERM; then they are cancelled
        // (their transactions roll back, no verdict is given: the host asks another replica).
        lifecycle.maximumGracefulShutdownDuration = .seconds(10)
        lifecycle.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: lifecycle).run()
    }
}

/// Names the file when a certificate or key the configuration names cannot be read (the
/// TLS library's own error says only that a certificate failed to load).
func checkReadable(_ config: ServerConfig) throws {
    let files = [("tls_cert", config.tlsCert), ("tls_key", config.tlsKey), ("client_ca", config.clientCA), ("admin_ca", config.adminCA)]
        + (config.helpdeskCA.map { [("helpdesk_ca", $0)] } ?? [])
    for (key, path) in files where access(path, R_OK) != 0 {
        throw ValidationError("\(key) \(path): \(String(cString: strerror(errno)))")
    }
}

/// The connection cap the descriptor limit allows: every connection is a descriptor, and so
/// are the metrics listener's, the database pool's and the files smartotpd opens. The soft
/// limit is raised to the hard one as needed (the unit's LimitNOFILE= sets both); if it is
/// still too low the cap is lowered to fit, and the log says so: a cap above the limit
/// would fail accept() with EMFILE for everyone, honest hosts first.
func fitDescriptors(_ config: ServerConfig, logger: Logger) -> Int {
    let reserve = MetricsEndpoint.limits.total + config.databaseConnections + 64
    let wanted = rlim_t(config.maxConnections + reserve)
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return config.maxConnections }
    if limit.rlim_cur < wanted {
        limit.rlim_cur = min(wanted, limit.rlim_max)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    guard limit.rlim_cur < wanted else { return config.maxConnections }
    let fits = max(16, Int(limit.rlim_cur) - reserve)
    logger.warning("the descriptor limit is too low for max_connections; the cap is lowered to fit (raise LimitNOFILE=)",
                   metadata: ["max_connections": "\(config.maxConnections)", "limit": "\(limit.rlim_cur)", "cap now": "\(fits)"])
    return fits
}

/// Refuses to serve a database whose schema is not this version's (no guessing): it
/// waits for PostgreSQL, checks, and stays until shutdown.
struct SchemaCheck: Service {
    let database: Database
    let logger: Logger

    func run() async throws {
        var version: Int?
        while version == nil {
            do { version = try await database.schemaVersion() } catch {
                logger.warning("PostgreSQL does not answer yet; verdicts fail closed until it does", metadata: ["error": "\(loggable(error))"])
                try await Task.sleep(for: .seconds(2))
                if Task.isCancelled { return }
            }
        }
        guard version == Database.latest else {
            logger.critical("the database schema is version \(version ?? 0), this smartotpd needs \(Database.latest): run smartotpd migrate")
            throw ExitCode(1)
        }
        logger.info("database schema is current", metadata: ["version": "\(Database.latest)"])
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Bring the database schema up to date.")
    static let deadline: Duration = .seconds(15)

    struct Unreachable: Error, CustomStringConvertible {
        /// What the last try was told (libpq's words: a refused certificate, pg_hba.conf).
        var last: String?
        var description: String {
            "PostgreSQL did not answer within 15 s: check database= (the address, sslmode and sslrootcert) and the server's pg_hba.conf"
                + (last.map { " (last: \($0))" } ?? "")
        }
    }
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try loadConfig(options.config)
        let (sealer, audit) = try loadKeys(config)
        let applied = try await withDatabase(config, sealer: sealer, audit: audit, deadline: Migrate.deadline) { try await $0.migrate() }
        print(applied.isEmpty ? "smartotpd: schema is current (version \(Database.latest))"
              : "smartotpd: applied migration\(applied.count == 1 ? "" : "s") \(applied.map(String.init).joined(separator: ", ")); schema version \(Database.latest)")
    }
}

/// Runs a one-shot command's `body` on the database. It gives up with a reason after
/// `deadline` (when given): a database that cannot be reached or refuses the connection
/// (TLS, pg_hba.conf: libpq's errors, no SQLSTATE) is tried again each second for as long
/// as it is let — one that is still starting is waited for.
func withDatabase<T: Sendable>(_ config: ServerConfig, sealer: Sealer, audit: AuditChain, deadline: Duration?,
                               _ body: @escaping @Sendable (Database) async throws -> T) async throws -> T {
    let logger = makeLogger()
    let pools = DatabasePools(config.database, connections: 1, logger: logger)
    let database = Database(pools: pools, logger: logger, sealer: sealer, audit: audit)
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await pools.run() }
        defer { tasks.cancelAll() }
        try await Task.sleep(for: .milliseconds(20))  // let run() start before the first lease
        let last = NIOLockedValueBox<String?>(nil)
        let result = try await withThrowingTaskGroup(of: T?.self) { attempt in
            attempt.addTask {
                while true {
                    // With several servers listed: the one that accepts writes.
                    while pools.follow, await !pools.choose() { try await Task.sleep(for: DatabasePools.probeInterval) }
                    do { return try await body(database) } catch let e as PGError where e.code.isEmpty && deadline != nil {
                        last.withLockedValue { $0 = e.message }
                        try await Task.sleep(for: .seconds(1))
                    }
                }
            }
            if let deadline {
                attempt.addTask {
                    try await Task.sleep(for: deadline)
                    return nil
                }
            }
            defer { attempt.cancelAll() }
            return try await attempt.next() ?? nil
        }
        guard let result else { throw Migrate.Unreachable(last: last.withLockedValue { $0 }) }
        return result
    }
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a key file (seal_key, audit_key): 32 random bytes, mode 0400.",
        discussion: "An existing file is never replaced: the values sealed under it would be lost.")
    @Argument(help: "Where to write it.") var path: String

    func run() throws {
        do throws(KeyFile.Refusal) { print("smartotpd: wrote \(path) (key id \(try KeyFile.generate(at: path).id))") } catch { throw ValidationError("\(error)") }
    }
}

struct Rekey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-seal every secret under a new key, while the fleet runs.",
        discussion: """
        1. Make the key (smartotpd keygen) and give it to every replica as unseal_keys = PATH;
           restart them one at a time. They now open what is sealed under either key.
        2. smartotpd rekey --config FILE --new-key PATH (this command): every secret is
           re-sealed under the new key, a user's row at a time.
        3. Make the new key seal_key on every replica, drop the old one from unseal_keys,
           restart them one at a time, and destroy the old key.
        """)
    @OptionGroup var options: ConfigOption
    @Option(name: .customLong("new-key"), help: ArgumentHelp("The new key.", valueName: "PATH")) var newKey: String

    func run() async throws {
        let config = try loadConfig(options.config)
        let fresh = try loadKey(newKey)
        let (old, audit) = try loadKeys(config, extra: [fresh])
        let target = Sealer(current: fresh, others: old.keyIDs.compactMap { old.key($0) })
        let (moved, problems) = try await withDatabase(config, sealer: target, audit: audit, deadline: nil) { try await $0.rekey(to: target) }
        print("smartotpd: re-sealed \(moved) secret(s) under key \(fresh.id)")
        for p in problems { print("smartotpd: left as it was: \(p)") }
        // A secret under a key this command does not hold would be lost with that key.
        if problems.contains(where: { if case .unknownKey = $0 { return true } else { return false } }) { throw ExitCode(1) }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-verify",
        abstract: "Check the audit trail: exit 0 when every chain is intact, 1 naming the first broken row.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try loadConfig(options.config)
        let (sealer, audit) = try loadKeys(config)
        let (broken, rows) = try await withDatabase(config, sealer: sealer, audit: audit, deadline: Migrate.deadline) { try await $0.verifyAudit() }
        if let broken {
            print("smartotpd: the audit trail is broken: \(broken)")
            throw ExitCode(1)
        }
        print("smartotpd: the audit trail is intact (\(rows) rows)")
    }
}

/// Prunes audit rows older than audit_keep days, hourly.
struct AuditPruner: Service {
    let database: Database
    let days: Int
    let logger: Logger

    /// Stops at shutdown (its sleep and any pruning in hand are cancelled: a pruning
    /// transaction rolls back whole).
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                do {
                    let n = try await database.pruneAudit(olderThanDays: days)
                    if n > 0 { logger.info("audit rows pruned", metadata: ["rows": "\(n)", "older than days": "\(days)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("audit pruning failed", metadata: ["error": "\(loggable(error))"])
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }
}
