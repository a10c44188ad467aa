import OTPCore
import Verifier

/// An address to listen on or connect to: `HOST:PORT` (`[V6]:PORT` for IPv6).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        var rest = Substring(text)
        let host: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
        } else {
            guard let colon = rest.lastIndex(of: ":") else { return nil }
            host = rest[..<colon]
            rest = rest[colon...]
        }
        guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (1...65535).contains(port), !host.isEmpty,
              host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }) else { return nil }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A verifier's address as hosts name it: `https://HOST:PORT` (port 443 when left out).
public struct ServerURL: Sendable, Equatable, CustomStringConvertible {
    public var address: HostPort

    public init?(_ text: String) {
        guard text.hasPrefix("https://") else { return nil }
        var rest = String(text.dropFirst(8))
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.contains("/"), !rest.contains("@") else { return nil }
        if let a = HostPort(rest) { address = a } else if let a = HostPort(rest + ":443") { address = a } else { return nil }
    }

    /// A comma-separated list, tried in order.
    public static func list(_ text: String) -> [ServerURL]? {
        let parts = text.split(separator: ",").map(String.init)
        let urls = parts.compactMap(ServerURL.init)
        return urls.count == parts.count && !urls.isEmpty ? urls : nil
    }

    public var description: String { "https://\(address)" }
}

/// Where smartotpd finds PostgreSQL: a libpq-style URL,
/// `postgres://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]…]/DATABASE[?sslmode=MODE[&sslrootcert=FILE]
/// [&target_session_attrs=read-write|any]]`, or with the host part left empty and
/// `?host=/run/postgresql` for a Unix socket directory.
public struct DatabaseURL: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case socket(path: String)
    }

    /// Where the database is: one server, or several (libpq's `HOST:PORT,HOST:PORT` form),
    /// of which smartotpd uses the first that accepts writes (`target_session_attrs`).
    public var endpoints: [Endpoint]
    public var endpoint: Endpoint { endpoints[0] }
    /// libpq's `target_session_attrs`: `read-write` (or `primary`) makes smartotpd follow
    /// whichever listed server accepts writes, e.g. a standby promoted after the primary
    /// failed; `any` takes the first that answers. With several hosts, `read-write` is
    /// the default here (libpq's is `any`): a verdict must be written.
    public var targetSessionAttrs: SessionAttrs
    public enum SessionAttrs: String, Sendable, Equatable {
        case any, readWrite = "read-write"
    }
    public var user: String
    public var password: String?
    public var database: String
    /// libpq's `sslmode`, with libpq's meanings (PostgreSQL 15 manual, §34.19.1); libpq's
    /// default, `prefer`, when the URL names none.
    public var sslMode: SSLMode
    /// `sslrootcert=PATH`: the CA of the database's certificate (a private one, normally).
    /// With it, `require` checks the chain too, as libpq does when the file exists.
    public var sslRootCert: String?

    public enum SSLMode: String, Sendable, Equatable {
        /// No TLS.
        case disable
        /// TLS when the server insists; no certificate check.
        case allow
        /// TLS when the server offers it; no certificate check.
        case prefer
        /// TLS or no connection; the chain checked only against `sslrootcert` when named.
        case require
        /// TLS, the chain checked (against `sslrootcert`, else the system's roots).
        case verifyCA = "verify-ca"
        /// TLS, the chain and the host name checked.
        case verifyFull = "verify-full"
    }

    /// Whether a connection without TLS is refused.
    public var requireTLS: Bool { sslMode == .require || sslMode == .verifyCA || sslMode == .verifyFull }

    public init?(_ text: String) {
        var rest: Substring
        if text.hasPrefix("postgres://") { rest = text.dropFirst(11) } else if text.hasPrefix("postgresql://") { rest = text.dropFirst(13) } else { return nil }
        var query: [String: String] = [:]
        if let q = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { return nil }
                guard let v = OTPAuthURI.percentDecode(kv[1]) else { return nil }
                query[kv[0]] = v
            }
            rest = rest[..<q]
        }
        guard let at = rest.firstIndex(of: "@") else { return nil }
        let credentials = rest[..<at].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map { OTPAuthURI.percentDecode($0) }
        guard let name = credentials.first ?? nil, !name.isEmpty, !credentials.contains(nil) else { return nil }
        user = name
        password = credentials.count > 1 ? credentials[1] : nil
        let afterAt = rest[rest.index(after: at)...]
        guard let slash = afterAt.firstIndex(of: "/") else { return nil }
        database = String(afterAt[afterAt.index(after: slash)...])
        guard !database.isEmpty else { return nil }
        let hostPart = String(afterAt[..<slash])
        guard let mode = SSLMode(rawValue: query["sslmode"] ?? "prefer") else { return nil }
        sslMode = mode
        if let root = query["sslrootcert"] {
            guard root.hasPrefix("/") else { return nil }
            sslRootCert = root
        }
        if hostPart.isEmpty {
            guard let dir = query["host"], dir.hasPrefix("/") else { return nil }
            endpoints = [.socket(path: dir + "/.s.PGSQL." + (query["port"] ?? "5432"))]
        } else {
            var list: [Endpoint] = []
            for one in hostPart.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
                if let hp = HostPort(one) {
                    list.append(.tcp(host: hp.host, port: hp.port))
                } else if HostPort(one + ":5432") != nil {
                    list.append(.tcp(host: one, port: 5432))
                } else {
                    return nil
                }
            }
            guard (1...8).contains(list.count) else { return nil }
            endpoints = list
        }
        switch query["target_session_attrs"] ?? (endpoints.count > 1 ? "read-write" : "any") {
        case "any": targetSessionAttrs = .any
        case "read-write", "primary": targetSessionAttrs = .readWrite
        default: return nil
        }
    }
}

/// smartotpd's configuration: `key = value` lines, `#` comments.
///
///     listen = 0.0.0.0:8443
///     database = postgres://smartotpd@db.example/smartotp
///     tls_cert = /etc/smartotpd/server.pem
///     tls_key = /etc/smartotpd/server.key
///     client_ca = /etc/smartotpd/hosts-ca.pem
///     admin_ca = /etc/smartotpd/admin-ca.pem
///     seal_key = /etc/smartotpd/seal.key      (32 random bytes: smartotpd keygen; or credential:NAME)
///     audit_key = /etc/smartotpd/audit.key    (the same, for the audit chain's macs)
///     helpdesk_ca = /etc/smartotpd/helpdesk-ca.pem  (optional: show, list, unlock, resync, audit)
///     unseal_keys = /etc/smartotpd/old.key    (optional: more keys that open, during a rekey)
///     audit_keep = 365                        (optional: days of audit rows kept)
///     metrics_listen = 127.0.0.1:9464        (optional: Prometheus, plain HTTP)
///     revoked = /etc/smartotpd/revoked        (optional: host certificates refused)
///     host_failure_budget = 30/15m            (optional: failed verdicts a host may cause, or off)
///     host_challenge_budget = 300/15m         (optional: tap challenges a host may ask for, or off)
///     max_connections = 4096                  (optional: the listener's caps and deadlines)
///     max_connections_per_source = 64
///     handshake_timeout = 5s
///     connection_lifetime = 5m
///     policy = deny=5 unlock_time=600 fail_interval=900   (optional: pam_smartotp(8) syntax;
///              root is locked like anyone unless root_never_locked, and has no simple
///              password unless root_password)
public struct ServerConfig: Sendable {
    public var listen: HostPort
    public var database: DatabaseURL
    public var tlsCert: String
    public var tlsKey: String
    public var clientCA: String
    public var adminCA: String
    /// Certificates for the helpdesk role (optional).
    public var helpdeskCA: String?
    /// The key that seals token secrets, and further keys that only open (a rekey's old one).
    public var sealKey: String
    public var unsealKeys: [String]
    /// The key of the audit chain's macs.
    public var auditKey: String
    /// Days of audit rows kept (0: kept for ever).
    public var auditKeep: Int
    public var metricsListen: HostPort?
    public var revoked: String?
    public var policy: Policy
    /// Whether root's simple password is accepted (policy word `root_password`; off).
    public var rootPassword: Bool
    /// The most connections to PostgreSQL (default 16).
    public var databaseConnections: Int
    /// Failed verdicts one host certificate may cause in `window` seconds, across all users,
    /// before its verdicts are refused (nil: no budget). `host_failure_budget = 30/15m`.
    public var hostFailureBudget: (count: Int, window: Int64)?
    /// Tap challenges one host certificate may have issued in `window` seconds, across all
    /// users (nil: no budget). `host_challenge_budget = 300/15m`.
    public var hostChallengeBudget: (count: Int, window: Int64)?
    /// The verifier's listener: at most this many connections (`max_connections`, 4096),
    /// this many from one address (`max_connections_per_source`, 64), this long to finish
    /// TLS and send a request head (`handshake_timeout`, 5s), and kept alive this long at
    /// most (`connection_lifetime`, 5m). Seconds.
    public var maxConnections: Int
    public var maxConnectionsPerSource: Int
    public var handshakeTimeout: Int64
    public var connectionLifetime: Int64

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static let required = ["listen", "database", "tls_cert", "tls_key", "client_ca", "admin_ca", "seal_key", "audit_key"]
    public static let optional = ["metrics_listen", "revoked", "policy", "database_connections", "helpdesk_ca", "unseal_keys", "audit_keep", "host_failure_budget",
                                  "host_challenge_budget", "max_connections", "max_connections_per_source", "handshake_timeout",
                                  "connection_lifetime"]

    /// `30`, `90s`, `15m`, `2h`: seconds, within `range`.
    static func duration(_ text: String, _ range: ClosedRange<Int64>) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last else { return nil }
        let scale = units[unit] ?? (unit.isNumber ? 1 : nil)
        guard let scale, let amount = Int64(unit.isNumber ? text : String(text.dropLast())), amount <= Int64.max / 86_400,
              range.contains(amount * scale) else { return nil }
        return amount * scale
    }

    /// `COUNT/DURATION` (at most a day), or `off`/`0` (nil, nil); nil when malformed.
    static func budget(_ text: String) -> (count: Int, window: Int64)?? {
        if text == "0" || text == "off" { return .some(nil) }
        let parts = text.split(separator: "/").map(String.init)
        guard parts.count == 2, let n = Int(parts[0]), (1...100_000).contains(n), let w = duration(parts[1], 1...86_400) else { return nil }
        return (n, w)
    }

    public static func parse(_ text: String, path: String) throws -> ServerConfig {
        var values: [String: String] = [:]
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            if line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            let kv = line.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
            guard kv.count == 2, !kv[0].isEmpty else { throw Error("\(path):\(number + 1): expected key = value") }
            guard required.contains(kv[0]) || optional.contains(kv[0]) else { throw Error("\(path):\(number + 1): unknown key '\(kv[0])'") }
            guard values[kv[0]] == nil else { throw Error("\(path):\(number + 1): '\(kv[0])' given twice") }
            values[kv[0]] = kv[1]
        }
        for key in required where values[key] == nil { throw Error("\(path): '\(key)' is required") }
        func value(_ k: String) -> String { values[k] ?? "" }
        guard let listen = HostPort(value("listen")) else { throw Error("\(path): listen must be HOST:PORT") }
        guard let db = DatabaseURL(value("database")) else {
            throw Error("\(path): database must be postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…] or postgres://USER@/DB?host=/SOCKET/DIR")
        }
        var metrics: HostPort?
        if let m = values["metrics_listen"] {
            guard let hp = HostPort(m) else { throw Error("\(path): metrics_listen must be HOST:PORT") }
            metrics = hp
        }
        for key in ["tls_cert", "tls_key", "client_ca", "admin_ca"] + ["revoked", "helpdesk_ca"].filter({ values[$0] != nil })
            where !value(key).hasPrefix("/") {
            throw Error("\(path): \(key) must be an absolute path")
        }
        let unseal = (values["unseal_keys"] ?? "").split(separator: ",").map { $0.trimmingSpaces() }
        for (key, file) in [("seal_key", value("seal_key")), ("audit_key", value("audit_key"))] + unseal.map({ ("unseal_keys", $0) })
            where !(file.hasPrefix("/") || (file.hasPrefix("credential:") && file.count > 11 && !file.contains("/"))) {
            throw Error("\(path): \(key) must be an absolute path or credential:NAME (systemd's LoadCredential=)")
        }
        var keep = 365
        if let k = values["audit_keep"] {
            guard let n = Int(k), (0...36500).contains(n) else { throw Error("\(path): audit_keep must be 0-36500 days (0: for ever)") }
            keep = n
        }
        // The fleet's defaults differ from a host's for root: every host certificate could
        // guess at root's one record, so root is locked like anyone (`root_never_locked`
        // turns that off on purpose) and has no simple password (`root_password` allows it).
        var words = Setting.words(of: values["policy"] ?? "")
        let rootNeverLocked = words.contains("root_never_locked")
        let rootPassword = words.contains("root_password")
        words.removeAll { $0 == "root_never_locked" || $0 == "root_password" }
        var policy: Policy
        do throws(ConfigError) { policy = try Policy.parse(words) } catch {
            throw Error("\(path): policy: \(error.description) (or root_never_locked, root_password)")
        }
        if rootNeverLocked {
            guard !words.contains("even_deny_root") else { throw Error("\(path): policy: even_deny_root and root_never_locked contradict each other") }
        } else {
            policy.lock.evenDenyRoot = true
        }
        var connections = 16
        if let c = values["database_connections"] {
            guard let n = Int(c), (1...1000).contains(n) else { throw Error("\(path): database_connections must be 1-1000") }
            connections = n
        }
        var budget: (count: Int, window: Int64)? = (30, 900)
        if let b = values["host_failure_budget"] {
            guard let parsed = Self.budget(b) else {
                throw Error("\(path): host_failure_budget must be COUNT/DURATION (30/15m; s, m or h; at most a day) or off")
            }
            budget = parsed
        }
        var challengeBudget: (count: Int, window: Int64)? = (300, 900)
        if let b = values["host_challenge_budget"] {
            guard let parsed = Self.budget(b) else {
                throw Error("\(path): host_challenge_budget must be COUNT/DURATION (300/15m; s, m or h; at most a day) or off")
            }
            challengeBudget = parsed
        }
        func number(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let v = values[key] else { return fallback }
            guard let n = Int(v), range.contains(n) else { throw Error("\(path): \(key) must be \(range.lowerBound)-\(range.upperBound)") }
            return n
        }
        func seconds(_ key: String, _ fallback: Int64, _ range: ClosedRange<Int64>, _ example: String) throws -> Int64 {
            guard let v = values[key] else { return fallback }
            guard let n = Self.duration(v, range) else {
                throw Error("\(path): \(key) must be a duration of \(range.lowerBound)-\(range.upperBound) s (\(example); s, m or h)")
            }
            return n
        }
        let total = try number("max_connections", 4096, 16...1_000_000)
        let perSource = try number("max_connections_per_source", 64, 1...1_000_000)
        let handshake = try seconds("handshake_timeout", 5, 1...60, "5s")
        let lifetime = try seconds("connection_lifetime", 300, 10...86_400, "5m")
        return ServerConfig(listen: listen, database: db, tlsCert: value("tls_cert"), tlsKey: value("tls_key"),
                            clientCA: value("client_ca"), adminCA: value("admin_ca"), helpdeskCA: values["helpdesk_ca"],
                            sealKey: value("seal_key"), unsealKeys: unseal, auditKey: value("audit_key"), auditKeep: keep,
                            metricsListen: metrics,
                            revoked: values["revoked"], policy: policy, rootPassword: rootPassword, databaseConnections: connections,
                            hostFailureBudget: budget, hostChallengeBudget: challengeBudget, maxConnections: total,
                            maxConnectionsPerSource: perSource, handshakeTimeout: handshake, connectionLifetime: lifetime)
    }
}
