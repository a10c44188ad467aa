import Foundation
import SmartOTPFleet
import SmartOTPService
import Testing
import Verifier

/// smartotpd.conf through the one grammar of every smartotp setting.
@Suite("smartotpd: its configuration")
struct ServerConfigTests {
    @Test func serverConfiguration() throws {
        let text = """
        # smartotpd
        listen = 0.0.0.0:8443
        database = postgres://smartotpd@127.0.0.1/smartotp
        tls_cert = /etc/smartotpd/server.pem
        tls_key = /etc/smartotpd/server.key
        client_ca = /etc/smartotpd/hosts-ca.pem
        admin_ca = /etc/smartotpd/admin-ca.pem
        seal_key = /etc/smartotpd/seal.key
        audit_key = /etc/smartotpd/audit.key
        policy = deny=3 unlock_time=60
        """
        let c = try ServerConfig.parse(text, path: "t")
        #expect(c.auditKeep == 365 && c.helpdeskCA == nil && c.unsealKeys.isEmpty)
        #expect(c.hostFailureBudget == Budget(count: 30, window: 900), "30/15m by default")
        #expect(try ServerConfig.parse(text + "\nhost_failure_budget = 6/2h", path: "t").hostFailureBudget?.window == 7200)
        // A # inside a value (a password) is part of it; one after a blank starts a comment.
        let hashed = try ServerConfig.parse(text.replacingOccurrences(of: "database = postgres://smartotpd@127.0.0.1/smartotp", with: "database = host=db password=pa#ss#  # the primary\n\t# indented comment"), path: "t")
        #expect(hashed.database == "host=db password=pa#ss#")
        #expect(try ServerConfig.parse(text + "\nhost_failure_budget = off", path: "t").hostFailureBudget == nil)
        for bad in ["30", "x/15m", "30/15d", "30/2h/1", "0/15m", "30/48h"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ServerConfig.parse(text + "\nhost_failure_budget = \(bad)", path: "t") }
        }
        #expect(c.hostChallengeBudget == Budget(count: 300, window: 900), "300/15m by default")
        #expect(c.databasePrepare, "statements prepared by default")
        #expect(try !ServerConfig.parse(text + "\ndatabase_prepare = off", path: "t").databasePrepare)
        #expect(throws: ConfigError.self, "on or off") { try ServerConfig.parse(text + "\ndatabase_prepare = sometimes", path: "t") }
        #expect(c.maxConnections == 4096 && c.maxConnectionsPerSource == 64 && c.handshakeTimeout == 5 && c.connectionLifetime == 300)
        let limits = try ServerConfig.parse(text + "\nmax_connections = 500\nmax_connections_per_source = 10\nhandshake_timeout = 3s\nconnection_lifetime = 2m", path: "t")
        #expect(limits.maxConnections == 500 && limits.maxConnectionsPerSource == 10 && limits.handshakeTimeout == 3 && limits.connectionLifetime == 120)
        for bad in ["max_connections = 0", "max_connections = many", "handshake_timeout = 0", "handshake_timeout = 2m",
                    "connection_lifetime = 5", "host_challenge_budget = 10", "max_connections_per_source = -1"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ServerConfig.parse(text + "\n" + bad, path: "t") }
        }
        #expect(throws: ConfigError.self) { try ServerConfig.parse(text.replacingOccurrences(of: "seal_key = /etc/smartotpd/seal.key", with: ""), path: "t") }
        #expect(try ServerConfig.parse(text + "\nunseal_keys = /a.key, credential:old\naudit_keep = 30", path: "t").unsealKeys == ["/a.key", "credential:old"])
        #expect(throws: ConfigError.self) { try ServerConfig.parse(text + "\nunseal_keys = credential:../x", path: "t") }
        // The example administrators start from parses, keys from the unit's credentials.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = try String(contentsOf: root.appendingPathComponent("docs/smartotpd.conf.example"), encoding: .utf8)
        let parsed = try ServerConfig.parse(example, path: "smartotpd.conf.example")
        #expect(parsed.sealKey == "credential:seal.key" && parsed.auditKey == "credential:audit.key")
        #expect(parsed.policy.lock.evenDenyRoot && !parsed.rootPassword)
        #expect(c.listen.port == 8443)
        #expect(c.policy.lock.deny == 3)
        #expect(throws: ConfigError.self) { try ServerConfig.parse(text + "\nlisten = 1.2.3.4:1", path: "t") }
        #expect(throws: ConfigError.self) { try ServerConfig.parse(text + "\ntls_kye = /x", path: "t") }
        #expect(throws: ConfigError.self) { try ServerConfig.parse(text + "\npolicy = nullok", path: "t") }
        #expect(throws: ConfigError.self) { try ServerConfig.parse("listen = x", path: "t") }
    }


    /// Every error names the file, the line and what was expected, in the words a
    /// smartotp.conf error uses.
    @Test func errorsNameThePlace() throws {
        let base = "listen = 0.0.0.0:8443\ndatabase = host=db dbname=smartotp\ntls_cert = /c\ntls_key = /k\nclient_ca = /h\nadmin_ca = /a\nseal_key = /s\naudit_key = /t\n"
        #expect(try ServerConfig.parse(base, path: "s.conf").database == "host=db dbname=smartotp", "libpq's key=value words, as written")
        func error(_ extra: String) -> String {
            do { _ = try ServerConfig.parse(base + extra, path: "s.conf"); return "" } catch { return error.description }
        }
        #expect(error("handshake_timeout = 2m") == "s.conf:9: setting handshake_timeout=2m is invalid: expected a duration from 1s to 1m (a number of seconds, or with s, m, h or d)")
        #expect(error("listen = 1.2.3.4:1") == "s.conf:9: 'listen' is given twice")
        #expect(error("tls_kye = /x").hasPrefix("s.conf:9: unknown setting 'tls_kye' (known: listen, database,"))
        #expect(error("just words") == "s.conf:9: expected key = value")
        #expect(error("policy = deny=x").hasPrefix("s.conf:9: setting policy=deny=x is invalid: expected setting deny=x is invalid"))
        #expect(error("audit_keep = -1") == "s.conf:9: setting audit_keep=-1 is invalid: expected a number from 0 to 36500")
        #expect((try? ServerConfig.parse("listen = 0.0.0.0:1\n", path: "s.conf")) == nil)
        do { _ = try ServerConfig.parse("listen = 0.0.0.0:1\n", path: "s.conf") } catch { #expect(error.description == "s.conf: 'database' is required") }
        #expect(try ServerConfig.parse(base + "connection_lifetime = 1d", path: "s.conf").connectionLifetime == 86_400)
        #expect(try ServerConfig.parse(base + "handshake_timeout = 30", path: "s.conf").handshakeTimeout == 30, "a bare number is seconds")
        #expect(try ServerConfig.parse(base + "metrics_listen = [::1]:9464", path: "s.conf").metricsListen == HostPort(host: "::1", port: 9464))
    }
}
