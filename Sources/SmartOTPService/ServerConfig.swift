import OTPCore
import SmartOTPFleet
import Verifier

/// A budget of events one host certificate may cause: `count` in `window` seconds.
public struct Budget: Sendable, Equatable {
    public var count: Int
    public var window: Int64

    public init(count: Int, window: Int64) {
        self.count = count
        self.window = window
    }
}

/// smartotpd's configuration: `key = value` lines, `#` comments, read through the grammar
/// every setting of smartotp shares (`ConfigOption`, `OptionValue`: Verifier/Settings.swift),
/// from the one table below. smartotpd(8) lists the same.
public struct ServerConfig: Sendable {
    public var listen = HostPort(host: "0.0.0.0", port: 8443)
    /// PostgreSQL, as libpq takes it: a URI (`postgresql://…`) or `key=value` words, handed
    /// to libpq as written (every libpq keyword and PG* variable applies).
    public var database = ""
    /// Whether `database` may reach a server over TCP without `sslmode=verify-full`
    /// (`database_tls = insecure`): off, such a connection string is refused at start.
    public var databaseInsecure = false
    /// Where each setting was read (`PATH:LINE`), for errors found after parsing (libpq's
    /// reading of `database`).
    public var places: [String: String] = [:]
    public var tlsCert = ""
    public var tlsKey = ""
    public var clientCA = ""
    public var adminCA = ""
    /// Certificates for the helpdesk role (optional).
    public var helpdeskCA: String?
    /// The key that seals token secrets, and further keys that only open (a rekey's old one):
    /// paths, or `credential:NAME` (systemd's LoadCredential=).
    public var sealKey = ""
    public var unsealKeys: [String] = []
    /// The key of the audit chain's macs.
    public var auditKey = ""
    /// Days of audit rows kept (0: for ever).
    public var auditKeep = 365
    /// How often each replica writes the audit chains' moved heads to its journal.
    public var auditCheckpointInterval: Int64 = 60
    public var metricsListen: HostPort?
    public var revoked: String?
    public var policy: Policy = ServerConfig.fleetPolicy(Policy())
    /// Whether root's simple password is accepted (policy word `root_password`; off).
    public var rootPassword = false
    /// The most connections to PostgreSQL.
    public var databaseConnections = 16
    /// Whether statements are prepared once a connection (`database_prepare`; on). Off for
    /// a pooler that shares server sessions between its clients (PgBouncer's transaction
    /// mode without max_prepared_statements).
    public var databasePrepare = true
    /// Failed verdicts one host certificate may cause, across all users, before its
    /// verdicts are refused (nil: no budget).
    public var hostFailureBudget: Budget? = Budget(count: 30, window: 900)
    /// Failed verdicts one host certificate may cause for one user (its share of the
    /// host's budget: a local user failing their own verdicts spends only this).
    public var hostUserFailureBudget: Budget? = Budget(count: 5, window: 900)
    /// Requests to the verify routes one host certificate may make, offline report lines
    /// each counted (nil: no budget).
    public var hostRequestBudget: Budget? = Budget(count: 6000, window: 900)
    /// Tap challenges one host certificate may have issued, across all users (nil: none).
    public var hostChallengeBudget: Budget? = Budget(count: 300, window: 900)
    /// The verifier's listener: at most this many connections, this many from one address,
    /// this long (seconds) to finish TLS and send a request head, kept alive this long.
    public var maxConnections = 4096
    public var maxConnectionsPerSource = 64
    /// The most connections one client certificate may hold at once.
    public var maxConnectionsPerCertificate = 128
    public var handshakeTimeout: Int64 = 5
    public var connectionLifetime: Int64 = 300
    /// `host_ca_key`: the host CA's private key (PEM), to sign the certificates of hosts
    /// that join; nil: hosts do not join through this replica.
    public var hostCAKey: String?
    /// `host_cert_days`: how long a joined host's certificate lives.
    public var hostCertDays = 30
    /// `scope` lines (HostScopes): which users each host may ask about; none: everyone.
    public var scopes: [HostScope] = []

    public init() {}

    /// The settings every file must name.
    public static let required = ["listen", "database", "tls_cert", "tls_key", "client_ca", "admin_ca", "seal_key", "audit_key"]

    public typealias Option = ConfigOption<ServerConfig>

    /// Every setting of smartotpd.conf: the one list of their names.
    public static let options: [Option] = [
        // HOST:PORT the verifier listens on
        Option(name: "listen", takesValue: true) { c, v throws(ConfigError) in
            c.listen = try v.address()
        },
        // PostgreSQL as libpq takes it: postgresql://USER@HOST/DB?sslmode=verify-full&… or key=value words
        Option(name: "database", takesValue: true) { c, v throws(ConfigError) in
            guard !v.text.isEmpty, v.text.utf8.count < 4096 else { throw v.invalid("a libpq connection string") }
            c.database = v.text
        },
        // verify-full (the default: a TCP server must be reached with sslmode=verify-full), or insecure
        Option(name: "database_tls", takesValue: true) { c, v throws(ConfigError) in
            if v.text.equals("verify-full") { c.databaseInsecure = false }
            else if v.text.equals("insecure") { c.databaseInsecure = true }
            else { throw .badValue(name: v.name, value: v.text, expected: "verify-full or insecure") }
        },
        // the server's certificate (PEM)
        Option(name: "tls_cert", takesValue: true) { c, v throws(ConfigError) in c.tlsCert = try v.absolutePath() },
        // its private key (PEM)
        Option(name: "tls_key", takesValue: true) { c, v throws(ConfigError) in c.tlsKey = try v.absolutePath() },
        // the CA of the hosts' certificates
        Option(name: "client_ca", takesValue: true) { c, v throws(ConfigError) in c.clientCA = try v.absolutePath() },
        // the CA of the administrators' certificates
        Option(name: "admin_ca", takesValue: true) { c, v throws(ConfigError) in c.adminCA = try v.absolutePath() },
        // the CA of the helpdesk's certificates: list, show, audit, unlock, resync (optional)
        Option(name: "helpdesk_ca", takesValue: true) { c, v throws(ConfigError) in
            c.helpdeskCA = try v.absolutePath()
        },
        // the key that seals secrets: a path or credential:NAME (smartotpd keygen)
        Option(name: "seal_key", takesValue: true) { c, v throws(ConfigError) in
            c.sealKey = try v.keyFile()
        },
        // more keys that only open, during a rekey: comma-separated
        Option(name: "unseal_keys", takesValue: true) { c, v throws(ConfigError) in
            c.unsealKeys = try v.list(UInt8(ascii: ","), expected: "paths or credential:NAME, comma-separated") { ServerConfig.isKeyFile($0.trimmingASCIISpaces) ? $0.trimmingASCIISpaces : nil }
        },
        // the key of the audit chain's macs: a path or credential:NAME
        Option(name: "audit_key", takesValue: true) { c, v throws(ConfigError) in
            c.auditKey = try v.keyFile()
        },
        // days of audit rows kept, 0 = for ever (default 365)
        Option(name: "audit_keep", takesValue: true) { c, v throws(ConfigError) in
            c.auditKeep = try v.int(0...36500)
        },
        // how often the moved audit chain heads are written to the journal, 1s-1h (default 1m)
        Option(name: "audit_checkpoint_interval", takesValue: true) { c, v throws(ConfigError) in
            c.auditCheckpointInterval = try v.duration(1...3600)
        },
        // HOST:PORT for Prometheus, plain HTTP (optional; keep it on loopback)
        Option(name: "metrics_listen", takesValue: true) { c, v throws(ConfigError) in
            c.metricsListen = try v.address()
        },
        // a file of revoked host certificates, serials or names (optional)
        Option(name: "revoked", takesValue: true) { c, v throws(ConfigError) in
            c.revoked = try v.absolutePath()
        },
        // deny=5 unlock_time=600 …: pam_smartotp(8)'s policy words, and root_never_locked, root_password
        Option(name: "policy", takesValue: true) { c, v throws(ConfigError) in
            var words = Setting.words(of: v.text)
            c.rootPassword = words.contains("root_password")
            let rootNeverLocked = words.contains("root_never_locked")
            words.removeAll { $0 == "root_never_locked" || $0 == "root_password" }
            var policy: Policy
            do throws(ConfigError) { policy = try Policy.parse(words) } catch {
                throw v.invalid(error.description + "; or root_never_locked, root_password")
            }
            // The fleet's defaults differ from a host's for root: every host certificate
            // could guess at root's one record, so root is locked like anyone
            // (`root_never_locked` turns that off on purpose) and has no simple password
            // (`root_password` allows it).
            if rootNeverLocked {
                guard !words.contains("even_deny_root") else { throw v.invalid("not both even_deny_root and root_never_locked") }
            } else {
                policy = fleetPolicy(policy)
            }
            c.policy = policy
        },
        // connections to PostgreSQL, 1-1000 (default 16)
        Option(name: "database_connections", takesValue: true) { c, v throws(ConfigError) in
            c.databaseConnections = try v.int(1...1000)
        },
        // statements prepared once a connection: on or off (default on)
        Option(name: "database_prepare", takesValue: true) { c, v throws(ConfigError) in
            if v.text.equals("on") { c.databasePrepare = true }
            else if v.text.equals("off") { c.databasePrepare = false }
            else { throw .badValue(name: v.name, value: v.text, expected: "on or off") }
        },
        // failed verdicts one host may cause: COUNT/DURATION, or off (default 30/15m)
        Option(name: "host_failure_budget", takesValue: true) { c, v throws(ConfigError) in
            c.hostFailureBudget = try v.budget()
        },
        // failed verdicts one host may cause for one user: COUNT/DURATION, or off (default 5/15m)
        Option(name: "host_user_failure_budget", takesValue: true) { c, v throws(ConfigError) in
            c.hostUserFailureBudget = try v.budget()
        },
        // requests one host may make to the verify routes: COUNT/DURATION, or off (default 6000/15m)
        Option(name: "host_request_budget", takesValue: true) { c, v throws(ConfigError) in
            c.hostRequestBudget = try v.budget()
        },
        // tap challenges one host may ask for: COUNT/DURATION, or off (default 300/15m)
        Option(name: "host_challenge_budget", takesValue: true) { c, v throws(ConfigError) in
            c.hostChallengeBudget = try v.budget()
        },
        // connections the verifier holds at most (default 4096)
        Option(name: "max_connections", takesValue: true) { c, v throws(ConfigError) in
            c.maxConnections = try v.int(16...1_000_000)
        },
        // … from one address (default 64)
        Option(name: "max_connections_per_source", takesValue: true) { c, v throws(ConfigError) in
            c.maxConnectionsPerSource = try v.int(1...1_000_000)
        },
        // connections one client certificate may hold at once, 1-1000000 (default 128)
        Option(name: "max_connections_per_certificate", takesValue: true) { c, v throws(ConfigError) in
            c.maxConnectionsPerCertificate = try v.int(1...1_000_000)
        },
        // time to finish TLS and send a request, 1s-1m (default 5s)
        Option(name: "handshake_timeout", takesValue: true) { c, v throws(ConfigError) in
            c.handshakeTimeout = try v.duration(1...60)
        },
        // the longest a connection is kept alive, 10s-1d (default 5m)
        Option(name: "connection_lifetime", takesValue: true) { c, v throws(ConfigError) in
            c.connectionLifetime = try v.duration(10...86_400)
        },
        // the host CA's private key (a path or credential:NAME): hosts join with a token (smartotp hosts add) and renew
        Option(name: "host_ca_key", takesValue: true) { c, v throws(ConfigError) in c.hostCAKey = try v.keyFile() },
        // days a joined host's certificate lives, 1-825 (default 30; a host renews at two thirds)
        Option(name: "host_cert_days", takesValue: true) { c, v throws(ConfigError) in c.hostCertDays = try v.int(1...825) },
        // PATTERN GROUP[,GROUP…]: hosts whose certificate name matches PATTERN ask only about members of GROUP (* anyone); one line each, as many as needed
        Option(name: "scope", takesValue: true) { c, v throws(ConfigError) in
            guard let s = HostScope(line: v.text) else {
                throw v.invalid("PATTERN GROUP[,GROUP…] (a host name pattern as fnmatch(3) takes it, then groups, * for anyone)")
            }
            c.scopes.append(s)
        },
    ]

    /// The settings that may be given more than once.
    static let repeatable: Set<String> = ["scope"]

    /// Root locked like anyone: the fleet's default.
    static func fleetPolicy(_ p: Policy) -> Policy {
        var p = p
        p.lock.evenDenyRoot = true
        return p
    }

    static func isKeyFile(_ text: String) -> Bool {
        OptionValue.isAbsolutePath(text) || (text.hasPrefix("credential:") && text.count > 11 && !text.contains("/"))
    }

    /// Reads a configuration file's text: every setting known, none twice, every required
    /// one present; each error names the file and line.
    public static func parse(_ text: String, path: String) throws(ConfigError) -> ServerConfig {
        var config = ServerConfig()
        var seen: Set<String> = []
        for setting in try Setting.lines(of: text, path: path) {
            guard !seen.contains(setting.name) || repeatable.contains(setting.name) else {
                throw .atPlace(setting.place, "'\(setting.name)' is given twice")
            }
            guard try options.apply(setting, to: &config) else {
                throw .atPlace(setting.place, "unknown setting '\(ConfigError.printable(setting.name))' (known: \(options.names()))")
            }
            seen.insert(setting.name)
            config.places[setting.name] = setting.place
        }
        for key in required where !seen.contains(key) { throw .atPlace(path, "'\(key)' is required") }
        return config
    }
}

extension OptionValue {
    /// `HOST:PORT` (`[V6]:PORT`).
    func address() throws(ConfigError) -> HostPort {
        guard let a = HostPort(text) else { throw invalid("HOST:PORT") }
        return a
    }

    /// A key's place: an absolute path or `credential:NAME`.
    func keyFile() throws(ConfigError) -> String {
        guard ServerConfig.isKeyFile(text) else { throw invalid("an absolute path or credential:NAME (systemd's LoadCredential=)") }
        return text
    }

    /// `COUNT/DURATION` (at most a day), or `off`/`0` (nil).
    func budget() throws(ConfigError) -> Budget? {
        if text == "0" || text == "off" { return nil }
        let parts = text.splitBytes(UInt8(ascii: "/"), omittingEmpty: false)
        guard parts.count == 2, let n = Int(parts[0]), (1...100_000).contains(n),
              let w = OptionValue.duration(parts[1]), (1...86_400).contains(w) else {
            throw invalid("COUNT/DURATION (30/15m: a count of 1-100000 in 1s-1d), or off")
        }
        return Budget(count: n, window: w)
    }
}
