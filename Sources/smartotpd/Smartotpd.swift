// smartotpd — the fleet's verifier: hosts ask it for verdicts over mutual TLS; the
// records, counters and locks live in PostgreSQL, one transaction a verdict.
import ArgumentParser
import Glibc
import Logging
import Metrics
import NIOCore
import NIOPosix
import PostgresNIO
import Prometheus
import ServiceLifecycle
import SmartOTPFleet
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
        See smartotpd(8).
        """,
        version: "smartotpd \(SmartOTPVersion.current)",
        subcommands: [Serve.self, Migrate.self],
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
        let config = try loadConfig(options.config)
        let logger = makeLogger()
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                                                   .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                                   .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5)]
        MetricsSystem.bootstrap(factory)
        let group = MultiThreadedEventLoopGroup.singleton
        let client = PostgresClient(configuration: try Database.configuration(config.database, connections: config.databaseConnections),
                                    eventLoopGroup: group, backgroundLogger: logger)
        let database = Database(client: client, logger: logger)
        let service = try VerifierService(config: config, database: database, logger: logger, group: group)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: client),
            // Done once the schema is known to be current; fails the whole group if not.
            .init(service: SchemaCheck(database: database, logger: logger), successTerminationBehavior: .ignore),
            .init(service: service),
        ]
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
        var description: String {
            "PostgreSQL did not answer within 15 s: check database= (the address, sslmode and sslrootcert) and the server's pg_hba.conf"
        }
    }
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config = try loadConfig(options.config)
        let logger = makeLogger()
        let client = PostgresClient(configuration: try Database.configuration(config.database, connections: 1), backgroundLogger: logger)
        let database = Database(client: client, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await client.run() }
            defer { tasks.cancelAll() }
            try await Task.sleep(for: .milliseconds(20))  // let run() start before the first lease
            // A one-shot command gives up with a reason: the pool retries a database that
            // refuses it (TLS, pg_hba.conf) for as long as it is let.
            let migrated = try await withThrowingTaskGroup(of: [Int]?.self) { attempt in
                attempt.addTask { try await database.migrate() }
                attempt.addTask {
                    try await Task.sleep(for: Migrate.deadline)
                    return nil
                }
                defer { attempt.cancelAll() }
                return try await attempt.next() ?? nil
            }
            guard let applied = migrated else { throw Unreachable() }
            print(applied.isEmpty ? "smartotpd: schema is current (version \(Database.latest))"
                  : "smartotpd: applied migration\(applied.count == 1 ? "" : "s") \(applied.map(String.init).joined(separator: ", ")); schema version \(Database.latest)")
        }
    }
}
