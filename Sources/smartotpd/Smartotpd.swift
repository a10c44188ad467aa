// smartotpd — the fleet's verifier: hosts ask it for verdicts over mutual TLS; the
// records, counters and locks live in PostgreSQL, one transaction a verdict.
import ArgumentParser
import CMalloc
import Dispatch
import Glibc
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import POSIX
import Prometheus
import ServiceLifecycle
import SmartOTPFleet
import SmartOTPPostgres
import SmartOTPService
import SmartOTPVault
import OTPCore
import Verifier

/// Why smartotpd will not start or run a command: a setting, a key or a file. Printed as
/// `Error: …` and exit 1 (ArgumentParser's ValidationError would add the usage text and
/// exit 64, as for a mistyped option).
struct StartRefused: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// smartotpd.conf, read through the grammar every setting of smartotp shares; each
/// error names the file and line.
func loadConfig(_ path: String) throws -> ServerConfig {
    let bytes: [UInt8]?
    do { bytes = try FileSystem.read(path, limit: 1 << 20, followingLinks: true) } catch { throw StartRefused("cannot read \(error.description)") }
    guard let bytes else { throw StartRefused("\(path) is larger than 1 MiB") }
    let config: ServerConfig
    do throws(ConfigError) { config = try ServerConfig.parse(String(decoding: bytes, as: UTF8.self), path: path) } catch { throw StartRefused(error.description) }
    // libpq's own parser: a connection string it cannot read is refused now, not at the
    // first verdict.
    do throws(PGError) {
        _ = try ConnectionString.parse(config.database)
        try ConnectionString.checkTransport(config.database, insecureAllowed: config.databaseInsecure)
    } catch {
        throw StartRefused("\(config.places["database"] ?? path): setting database is invalid: \(error.message)")
    }
    return config
}

/// A key named in the configuration: a path, or `credential:NAME` for systemd's
/// LoadCredential= (the file under $CREDENTIALS_DIRECTORY).
func keyPath(_ value: String) throws -> String {
    guard value.hasPrefix("credential:") else { return value }
    guard let dir = getenv("CREDENTIALS_DIRECTORY").map({ String(cString: $0) }), dir.hasPrefix("/") else {
        throw StartRefused("\(value): CREDENTIALS_DIRECTORY is not set (name the key's path, or give the unit LoadCredential=)")
    }
    return dir + "/" + value.dropFirst(11)
}

func loadKey(_ value: String) throws -> KeyFile {
    let path = try keyPath(value)
    do throws(KeyFile.Refusal) { return try KeyFile(path: path) } catch { throw StartRefused("\(error)") }
}

/// The keys a configuration names: the sealer (seal_key, and unseal_keys that only open)
/// and the audit chain's. smartotpd will not start without them.
func loadCodec(_ config: ServerConfig) throws -> LedgerCodec {
    let (sealer, audit) = try loadKeys(config)
    return LedgerCodec(sealer: sealer, audit: audit)
}

func loadKeys(_ config: ServerConfig, extra: [KeyFile] = []) throws -> (Sealer, AuditChain) {
    let seal = try loadKey(config.sealKey)
    let audit = try loadKey(config.auditKey)
    guard seal.id != audit.id else { throw StartRefused("seal_key and audit_key are the same key: give each its own (smartotpd keygen)") }
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

/// Swift concurrency's jobs run on NIO's event loops (the singleton group the server
/// listens on): a request's task no longer hops from the event loop to the cooperative
/// pool and back. Nothing a task does may block: the database waits on the pool's own
/// threads, and every verdict's decision (its hashing) runs there too (PostgresLedger's
/// `optimistic` and `decided`).
@main
enum Entry {
    static func main() {
        // malloc, for a process that runs for months. Two arenas, not eight a core: each
        // of the database pool's threads (16 by default) would otherwise get one, and keep
        // its high-water mark.
        _ = mallopt(M_ARENA_MAX, 2)
        // Blocks of 128 KiB and more always get pages of their own, given back when freed.
        // By default glibc raises this bound to the largest block freed so far, and from
        // then on such blocks come from the arenas: the versions-seen tables (16 shards of
        // two generations, each a dictionary of about 1 MB that is dropped and grown again
        // by doubling as generations turn) left holes there that were never given back.
        // fleet-bench's soak over 1,000,000 users: 33 MB in use, 93 MB held by the arenas
        // after four minutes, and rising (smartotpd_malloc_* in /metrics show both).
        _ = mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        Task {
            await Smartotpd.main()
            exit(0)
        }
        dispatchMain()
    }
}

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
        let codec = try loadCodec(config)
        let pool = try PostgresLedger.pool(config.database, connections: config.databaseConnections, prepare: config.databasePrepare, logger: logger)
        let ledger = PostgresLedger(pool: pool, codec: codec, logger: logger)
        let identifier = try loadIdentifier(config)
        let revoked = RevocationList(path: config.revoked)
        let service = VerifierService(config: config, ledger: ledger, budgets: ledger, identifier: identifier, revoked: revoked,
                                      binder: RequestBinder(audit: codec.audit), logger: logger,
                                      clock: { Clocks.unixTime() }, hashingSlots: max(2, System.coreCount),
                                      hostCA: try loadHostCA(config, identifier))
        let tls = TLSReloader(try serverTLS(config))
        let admission = Admission(.init(total: config.maxConnections, perSource: config.maxConnectionsPerSource,
                                        handshake: .seconds(config.handshakeTimeout), lifetime: .seconds(config.connectionLifetime),
                                        perCertificate: config.maxConnectionsPerCertificate),
                                  listener: "verifier")
        let edge = VerifierEdge(service: service, listen: config.listen, tls: tls, admission: admission, logger: logger, group: group)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: PoolService(pool: pool)),
            // Done once the schema is known to be current; fails the whole group if not.
            .init(service: SchemaCheck(ledger: ledger, logger: logger), successTerminationBehavior: .ignore),
            .init(service: edge),
            .init(service: RevocationPoller(ledger: ledger, revoked: revoked, logger: logger), successTerminationBehavior: .ignore),
            .init(service: Reloader(path: options.config, tls: tls, service: service, logger: logger), successTerminationBehavior: .ignore),
            .init(service: CheckpointWriter(codec: codec, interval: .seconds(config.auditCheckpointInterval), logger: logger),
                  successTerminationBehavior: .ignore),
        ]
        services.append(.init(service: Pruner(ledger: ledger, auditDays: config.auditKeep, logger: logger), successTerminationBehavior: .ignore))
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

/// The roles' CAs (client_ca, admin_ca, helpdesk_ca), each role's own.
func loadIdentifier(_ config: ServerConfig) throws -> PeerIdentifier {
    do {
        return try PeerIdentifier(hostCAs: PeerIdentifier.load(config.clientCA), adminCAs: PeerIdentifier.load(config.adminCA),
                                  helpdeskCAs: config.helpdeskCA.map(PeerIdentifier.load) ?? [],
                                  names: ("client_ca (\(config.clientCA))", "admin_ca (\(config.adminCA))", "helpdesk_ca (\(config.helpdeskCA ?? "-"))"))
    } catch let e as PeerIdentifier.RoleConfigurationError { throw StartRefused(e.description) }
}

/// The host CA that signs joining hosts' certificates: `host_ca_key` and the certificate of
/// `client_ca` it belongs to (nil when no host_ca_key is set).
func loadHostCA(_ config: ServerConfig, _ identifier: PeerIdentifier) throws -> HostCA? {
    guard let setting = config.hostCAKey else { return nil }
    let path = try keyPath(setting)
    let bytes: [UInt8]?
    do { bytes = try FileSystem.read(path, limit: 64 << 10, followingLinks: true) } catch { throw StartRefused("host_ca_key \(path): \(error)") }
    guard var bytes else { throw StartRefused("host_ca_key \(path) is larger than 64 KiB") }
    defer { ConstantTime.wipe(&bytes) }
    do throws(HostCA.Failure) {
        return try HostCA(keyPEM: String(decoding: bytes, as: UTF8.self), candidates: identifier.hostCAs, days: config.hostCertDays)
    } catch { throw StartRefused("host_ca_key \(path): \(error)") }
}

/// The server's TLS: its certificate and key; a client certificate checked against the
/// hosts', the administrators' and the helpdesk's CAs (which one signed it decides the
/// role: PeerIdentifier); TLS 1.2 at least. Required, unless hosts may join here
/// (host_ca_key): then a connection without one may only ask to join (VerifierService).
func serverTLS(_ config: ServerConfig) throws -> NIOSSLContext {
    var t = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(config.tlsCert).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: config.tlsKey, format: .pem)))
    t.certificateVerification = config.hostCAKey == nil ? .noHostnameVerification : .optionalVerification
    t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(config.clientCA) + NIOSSLCertificate.fromPEMFile(config.adminCA)
                                 + (config.helpdeskCA.map(NIOSSLCertificate.fromPEMFile) ?? []))
    t.minimumTLSVersion = .tlsv12
    return try NIOSSLContext(configuration: t)
}

/// The pool's life: open until shutdown, then every connection closed.
struct PoolService: Service {
    let pool: PGPool

    func run() async throws {
        try? await gracefulShutdown()
        await pool.close()
    }
}

/// Names the file when a certificate or key the configuration names cannot be read (the
/// TLS library's own error says only that a certificate failed to load).
func checkReadable(_ config: ServerConfig) throws {
    let files = [("tls_cert", config.tlsCert), ("tls_key", config.tlsKey), ("client_ca", config.clientCA), ("admin_ca", config.adminCA)]
        + (config.helpdeskCA.map { [("helpdesk_ca", $0)] } ?? [])
    for (key, path) in files where access(path, R_OK) != 0 {
        throw StartRefused("\(key) \(path): \(String(cString: strerror(errno)))")
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
    let ledger: PostgresLedger
    let logger: Logger

    func run() async throws {
        var version: Int?
        while version == nil {
            do { version = try await ledger.schemaVersion() } catch {
                logger.warning("PostgreSQL does not answer yet; verdicts fail closed until it does", metadata: ["error": "\(loggable(error))"])
                try await Task.sleep(for: .seconds(2))
                if Task.isCancelled { return }
            }
        }
        guard version == PostgresLedger.latest else {
            logger.critical("the database schema is version \(version ?? 0), this smartotpd needs \(PostgresLedger.latest): run smartotpd migrate")
            throw ExitCode(1)
        }
        logger.info("database schema is current", metadata: ["version": "\(PostgresLedger.latest)"])
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
        let applied = try await withDatabase(config, codec: try loadCodec(config), deadline: Migrate.deadline) { try await $0.migrate() }
        print(applied.isEmpty ? "smartotpd: schema is current (version \(PostgresLedger.latest))"
              : "smartotpd: applied migration\(applied.count == 1 ? "" : "s") \(applied.map(String.init).joined(separator: ", ")); schema version \(PostgresLedger.latest)")
    }
}

/// Runs a one-shot command's `body` on the database. It gives up with a reason after
/// `deadline` (when given): a database that cannot be reached or refuses the connection
/// (TLS, pg_hba.conf: libpq's errors, no SQLSTATE) is tried again each second for as long
/// as it is let — one that is still starting is waited for.
func withDatabase<T: Sendable>(_ config: ServerConfig, codec: LedgerCodec, deadline: Duration?,
                               _ body: @escaping @Sendable (PostgresLedger) async throws -> T) async throws -> T {
    let pool = try PostgresLedger.pool(config.database, connections: 1)
    let ledger = PostgresLedger(pool: pool, codec: codec, logger: makeLogger())
    defer { Task { await pool.close() } }
    let last = NIOLockedValueBox<String?>(nil)
    let result = try await withThrowingTaskGroup(of: T?.self) { attempt in
        attempt.addTask {
            while true {
                do { return try await body(ledger) } catch let e as PGError where e.code.isEmpty && deadline != nil {
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

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a key file (seal_key, audit_key): 32 random bytes, mode 0400.",
        discussion: "An existing file is never replaced: the values sealed under it would be lost.")
    @Argument(help: "Where to write it.") var path: String

    func run() throws {
        do throws(KeyFile.Refusal) { print("smartotpd: wrote \(path) (key id \(try KeyFile.generate(at: path).id))") } catch { throw StartRefused("\(error)") }
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
        let (moved, problems) = try await withDatabase(config, codec: LedgerCodec(sealer: target, audit: audit), deadline: nil) { try await $0.rekey(to: target) }
        print("smartotpd: re-sealed \(moved) secret(s) under key \(fresh.id)")
        for p in problems { print("smartotpd: left as it was: \(p)") }
        // A secret under a key this command does not hold would be lost with that key.
        if problems.contains(where: { if case .unknownKey = $0 { return true } else { return false } }) { throw ExitCode(1) }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-verify",
        abstract: "Check the audit trail: exit 0 when every chain is intact, 1 naming the first broken row.",
        discussion: """
        Every row and revocation is checked under its mac, every chain row by row against its
        head. With --checkpoints FILE (the replicas' journals: journalctl -u smartotpd -o cat),
        each chain must also reach at least as far as its latest checkpoint there, with the
        same row at that place: a tail cut from a chain, or a chain wiped, with its head
        rewound in the same database, is found. A checkpoint line whose tag is not under the
        audit key is reported.
        """)
    @OptionGroup var options: ConfigOption
    @Option(help: "A journal export holding the replicas' audit checkpoints.") var checkpoints: String?

    func run() async throws {
        let config = try loadConfig(options.config)
        let codec = try loadCodec(config)
        var latest: [Int64: AuditChain.Head] = [:]
        var forged = 0
        if let path = checkpoints {
            guard let bytes = try? FileSystem.read(path, limit: 1 << 30, followingLinks: true) else { throw StartRefused("\(path): cannot be read") }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                guard let c = AuditChain.Checkpoint.parse(line) else { continue }
                guard codec.audit.authentic(c) else { forged += 1; continue }
                if (latest[c.chain]?.seq ?? -1) < c.head.seq { latest[c.chain] = c.head }
            }
        }
        let marks = latest
        let (broken, rows) = try await withDatabase(config, codec: codec, deadline: Migrate.deadline) { ledger -> (String?, Int) in
            let (broken, rows) = try await ledger.verifyAudit()
            if let broken { return (broken, rows) }
            return (try await ledger.verifyCheckpoints(marks), rows)
        }
        if let broken {
            print("smartotpd: the audit trail is broken: \(broken)")
            throw ExitCode(1)
        }
        if forged > 0 {
            print("smartotpd: \(forged) checkpoint line(s) in \(checkpoints ?? "") are not under the audit key: forged or from another fleet")
            throw ExitCode(1)
        }
        print("smartotpd: the audit trail is intact (\(rows) rows" + (checkpoints == nil ? ")" : ", \(marks.count) chains as far as their checkpoints)"))
    }
}

/// Runs `body` now and then every `interval` until the service group shuts down (the sleep,
/// and `body` in hand, cancelled then).
func untilShutdown(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    try? await cancelWhenGracefulShutdown {
        while true {
            await body()
            try await Task.sleep(for: interval)
        }
    }
}

/// A value one iteration of a service's loop leaves for the next.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NIOLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// Hourly: prunes audit rows older than audit_keep days (when set), and the fleet's budget
/// rows of windows that ended more than a day ago (a window is at most a day long).
struct Pruner: Service {
    let ledger: PostgresLedger
    let auditDays: Int
    let logger: Logger

    /// Stops at shutdown (its sleep and any pruning in hand are cancelled: a pruning
    /// transaction rolls back whole).
    func run() async throws {
        await untilShutdown(every: .seconds(3600)) {
            do {
                if auditDays > 0 {
                    let n = try await ledger.pruneAudit(olderThanDays: auditDays)
                    if n > 0 { logger.info("audit rows pruned", metadata: ["rows": "\(n)", "older than days": "\(auditDays)"]) }
                }
                let b = try await ledger.pruneBudgets(startedBefore: Int64(time(nil)) - 2 * 86_400)
                if b > 0 { logger.debug("budget rows pruned", metadata: ["rows": "\(b)"]) }
            } catch is CancellationError {
            } catch {
                logger.warning("pruning failed", metadata: ["error": "\(loggable(error))"])
            }
        }
    }
}

/// Writes a keyed checkpoint of every audit chain head moved since the last, to the journal
/// (smartotpd's standard error under systemd), every `audit_checkpoint_interval` and at
/// shutdown: a record of the chains out of the database's reach, which `audit-verify
/// --checkpoints` holds the database to.
struct CheckpointWriter: Service {
    let codec: LedgerCodec
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await untilShutdown(every: interval) { write() }
        write()
    }

    func write() {
        for (chain, head) in codec.checkpoints.drain() { logger.notice("\(codec.audit.checkpointLine(chain: chain, head: head))") }
    }
}

/// Reads the revocations from the ledger every two seconds, so that a host revoked on any
/// replica is refused by all within a few seconds (on its next request, even on an open
/// connection). While the database cannot be read the last list read stays.
struct RevocationPoller: Service {
    let ledger: PostgresLedger
    let revoked: RevocationList
    let logger: Logger
    static let interval: Duration = .seconds(2)

    func run() async throws {
        let failing = Box(false)
        await untilShutdown(every: Self.interval) {
            do {
                revoked.setStored(try await ledger.read(.fleet).revocations.map(\.entry))
                if failing.value { logger.info("revocations read again from the database") }
                failing.value = false
            } catch is CancellationError {
            } catch {
                if !failing.value { logger.warning("cannot read the revocations; the last list read stays", metadata: ["error": "\(loggable(error))"]) }
                failing.value = true
            }
        }
    }
}
