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
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=MODE[&sslrootcert=FILE]]`, or
/// with the host part left empty and `?host=/run/postgresql` for a Unix socket directory.
public struct DatabaseURL: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case socket(path: String)
    }

    public var endpoint: Endpoint
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
            endpoint = .socket(path: dir + "/.s.PGSQL." + (query["port"] ?? "5432"))
        } else if let hp = HostPort(hostPart) {
            endpoint = .tcp(host: hp.host, port: hp.port)
        } else if HostPort(hostPart + ":5432") != nil {
            endpoint = .tcp(host: hostPart, port: 5432)
        } else {
            return nil
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
///     metrics_listen = 127.0.0.1:9464        (optional: Prometheus, plain HTTP)
///     revoked = /etc/smartotpd/revoked        (optional: host certificates refused)
///     policy = deny=5 unlock_time=600 fail_interval=900   (optional: pam_smartotp(8) syntax)
public struct ServerConfig: Sendable {
    public var listen: HostPort
    public var database: DatabaseURL
    public var tlsCert: String
    public var tlsKey: String
    public var clientCA: String
    public var adminCA: String
    public var metricsListen: HostPort?
    public var revoked: String?
    public var policy: Policy
    /// The most connections to PostgreSQL (default 16).
    public var databaseConnections: Int

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static let required = ["listen", "database", "tls_cert", "tls_key", "client_ca", "admin_ca"]
    public static let optional = ["metrics_listen", "revoked", "policy", "database_connections"]

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
        for key in ["tls_cert", "tls_key", "client_ca", "admin_ca"] + (values["revoked"] == nil ? [] : ["revoked"]) where !value(key).hasPrefix("/") {
            throw Error("\(path): \(key) must be an absolute path")
        }
        let policy: Policy
        do throws(ConfigError) { policy = try Policy.parse(Setting.words(of: values["policy"] ?? "")) } catch {
            throw Error("\(path): policy: \(error.description)")
        }
        var connections = 16
        if let c = values["database_connections"] {
            guard let n = Int(c), (1...1000).contains(n) else { throw Error("\(path): database_connections must be 1-1000") }
            connections = n
        }
        return ServerConfig(listen: listen, database: db, tlsCert: value("tls_cert"), tlsKey: value("tls_key"),
                            clientCA: value("client_ca"), adminCA: value("admin_ca"), metricsListen: metrics,
                            revoked: values["revoked"], policy: policy, databaseConnections: connections)
    }
}
