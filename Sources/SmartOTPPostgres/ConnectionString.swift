import CLibPQ
import Glibc

/// `database =` as libpq takes it, and what smartotpd adds: libpq gets the string as
/// written (a URI or `key=value` words; every libpq keyword and PG* environment variable
/// works: several hosts with target_session_attrs, client certificates, a passfile, a
/// service), after smartotpd's defaults, which the string and the environment override:
///
/// - `connect_timeout=3`, `tcp_user_timeout=2000` and keepalives (1 s apart, 3 lost after
///   5 s idle): a server that stops answering fails a statement in seconds, not TCP's
///   minutes, and the host has asked another replica;
/// - `target_session_attrs=read-write`: with several hosts, the one that accepts writes (a
///   standby promoted after a failover) — libpq's own failover, at every new connection;
/// - `application_name=smartotpd`;
/// - with `sslmode=verify-ca` or `verify-full` and no `sslrootcert`, the system's roots
///   (libpq would look in ~/.postgresql/root.crt, which a service has not).
///
/// and, once a connection is open, the timeouts of a verdict's 2 s budget (`setup`): a
/// statement, or a wait for a row's lock, that runs past them fails and rolls its
/// transaction back, so no verdict commits long after the host was told 503.
public enum ConnectionString {
    public static let setup = "SET statement_timeout = 1500; SET lock_timeout = 1000; SET idle_in_transaction_session_timeout = 5000"

    /// The values `conninfo` sets, by keyword (libpq's own parser); throws with libpq's
    /// words when it is no connection string.
    public static func parse(_ conninfo: String) throws(PGError) -> [String: String] {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &message) else {
            let why = message.map { String(cString: $0).split(separator: "\n").joined(separator: " ") } ?? "out of memory"
            if let message { PQfreemem(message) }
            throw PGError(code: "", message: "database = is no libpq connection string: \(why)")
        }
        defer { PQconninfoFree(options) }
        var out: [String: String] = [:]
        var o = options
        while let keyword = o.pointee.keyword {
            if let value = o.pointee.val { out[String(cString: keyword)] = String(cString: value) }
            o += 1
        }
        return out
    }

    /// Refuses a connection string that reaches a server over TCP without
    /// `sslmode=verify-full` (as written, or PGSSLMODE): anyone on the path could read and
    /// change every verdict, record and audit row. A Unix socket (a host that is a
    /// directory, or none: libpq's default) needs no TLS. `insecureAllowed`: the
    /// configuration said `database_tls = insecure`.
    public static func checkTransport(_ conninfo: String, insecureAllowed: Bool,
                                      environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) throws(PGError) {
        guard !insecureAllowed else { return }
        let written = try parse(conninfo)
        let mode = written["sslmode"] ?? environment("PGSSLMODE") ?? "prefer"
        guard mode != "verify-full" else { return }
        // A pg_service.conf service may name a TCP host and its own sslmode, which this
        // check cannot see (PQconninfoParse does not expand it): the string must say.
        if let service = written["service"] ?? environment("PGSERVICE"), !service.isEmpty {
            throw PGError(code: "", message: "names the pg_service.conf service \(service), whose host and sslmode this check cannot see: "
                          + "write host= and sslmode=verify-full in database= (they win over the service file), or say database_tls = insecure")
        }
        let hosts = (written["host"] ?? environment("PGHOST") ?? "").split(separator: ",").map(String.init)
        let addresses = (written["hostaddr"] ?? environment("PGHOSTADDR") ?? "").split(separator: ",").filter { !$0.isEmpty }
        let tcp = !addresses.isEmpty || hosts.contains { !$0.isEmpty && !$0.hasPrefix("/") && !$0.hasPrefix("@") }
        guard tcp else { return }
        throw PGError(code: "", message: "reaches the database over TCP with sslmode=\(mode): anyone on the path could read and change every verdict. "
                      + "Use sslmode=verify-full (with sslrootcert= the database's CA), a Unix socket, or say database_tls = insecure")
    }

    /// libpq's keywords and values for `conninfo`: smartotpd's defaults first (for what
    /// neither the string nor the environment sets), then the string itself, expanded by
    /// libpq (`dbname`).
    public static func settings(_ conninfo: String, environment: (String) -> String? = { getenv($0).map { String(cString: $0) } }) throws(PGError) -> [(String, String)] {
        let written = try parse(conninfo)
        var defaults: [(String, String, String?)] = [
            ("application_name", "smartotpd", "PGAPPNAME"),
            ("connect_timeout", "3", "PGCONNECT_TIMEOUT"),
            ("tcp_user_timeout", "2000", nil),
            ("keepalives_idle", "5", nil), ("keepalives_interval", "1", nil), ("keepalives_count", "3", nil),
            ("target_session_attrs", "read-write", "PGTARGETSESSIONATTRS"),
        ]
        let mode = written["sslmode"] ?? environment("PGSSLMODE") ?? "prefer"
        if mode == "verify-ca" || mode == "verify-full" {
            defaults.append(("sslrootcert", "/etc/ssl/certs/ca-certificates.crt", "PGSSLROOTCERT"))
        }
        var out: [(String, String)] = []
        for (key, value, variable) in defaults where written[key] == nil && (variable.flatMap(environment) ?? "").isEmpty {
            out.append((key, value))
        }
        out.append(("dbname", conninfo))
        return out
    }
}
