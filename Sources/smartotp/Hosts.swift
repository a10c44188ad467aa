import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import POSIX
import SmartOTPAuth
import SmartOTPFleet
import SmartOTPSystem
import Verifier

/// Hosts that join the fleet themselves: an administrator makes a one-time join token
/// (`hosts add`), the new host makes its key and asks for its certificate with it (`join`),
/// and renews it before it ends (`renew`, from smartotp-renew.timer).
struct Hosts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hosts of the fleet: a join token for a new one, and the certificates the replicas have seen.",
        subcommands: [HostsAdd.self, HostsList.self])
}

struct HostsAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Print a one-time join token for a new host (an administrator's certificate).",
        discussion: """
        On the new host, as root: smartotp join --server URL --token TOKEN --ca ca.pem. The
        token names the host (its certificate's common name), works once in the whole
        fleet, and ends after --valid. It is a secret until used: whoever holds it can join
        as that host. The replicas need host_ca_key (smartotpd(8)). Audited.
          smartotp hosts add web7.example.org --server https://otp1:8443 --tls-dir /etc/smartotp/admin
        """)
    @OptionGroup var options: StoreOptions
    @Argument(help: "The host's name (its certificate's common name).") var name: String
    @Option(help: ArgumentHelp("How long the token is good: 30m, 24h, 7d (1 minute to 30 days).", valueName: "DURATION")) var valid = "24h"

    func validate() throws {
        guard FleetAPI.isHostName(name) else { throw ValidationError("a host name is 1-253 of letters, digits, '.', '-' and '_'") }
        guard let s = OptionValue.duration(valid), (60...2_592_000).contains(s) else { throw ValidationError("--valid must be a duration from 1m to 30d") }
    }

    func run() throws {
        guard options.server != nil else { throw Failure("hosts join the fleet: give --server (and --tls-dir, an administrator's)") }
        let admin = try options.remote()
        print(try withStore { try admin.addHost(name, valid: OptionValue.duration(valid) ?? 86_400) })
    }
}

struct HostsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "The host certificates a replica has seen: serial, when each ends, when last seen.",
        discussion: "One replica's view (the first of --server that answers); a host that logs in through another is seen there.")
    @OptionGroup var options: StoreOptions

    func run() throws {
        guard options.server != nil else { throw Failure("give --server (and --tls-dir)") }
        let admin = try options.remote()
        let now = Int64(time(nil))
        for line in try withStore({ try admin.hosts() }).split(separator: "\n") {
            let w = line.split(separator: " ").map(String.init)
            guard w.count == 4, let ends = Int64(w[2]), let seen = Int64(w[3]) else { continue }
            let left = ends - now
            let state = left <= 0 ? "EXPIRED" : left < 7 * 86_400 ? "ends in \(left / 86_400) day(s)" : "ok"
            print("\(w[0])  serial \(w[1])  until \(CivilTime.format(ends)) (\(state))  last seen \(CivilTime.format(seen))")
        }
    }
}

/// The host's key, certificate request and certificate, made with openssl(1) (the host's
/// own OpenSSL: no TLS library in this program).
enum HostIdentity {
    static let openssl = "/usr/bin/openssl"

    /// A new P-256 key written to `keyPath` (0600) and a certificate request for it (PEM).
    static func newKeyAndRequest(keyPath: String) throws -> [UInt8] {
        guard access(openssl, X_OK) == 0 else { throw Failure("\(openssl) is missing (apt-get install openssl)") }
        unlink(keyPath)
        let old = umask(0o077)
        defer { umask(old) }
        let r = try Subprocess.run(openssl, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                             "-keyout", keyPath, "-subj", "/CN=smartotp-host", "-outform", "PEM"],
                                   input: [], outputLimit: 64 << 10)
        guard r.exitCode == 0, String(decoding: r.output, as: UTF8.self).contains("BEGIN CERTIFICATE REQUEST") else {
            unlink(keyPath)
            throw Failure("openssl could not make the key and request (exit \(r.exitCode.map(String.init) ?? "by a signal"))")
        }
        return r.output
    }

    /// When the certificate in `path` begins and ends (Unix time).
    static func dates(_ path: String) throws -> (notBefore: Int64, notAfter: Int64) {
        let r = try Subprocess.run(openssl, ["x509", "-noout", "-dates", "-dateopt", "iso_8601", "-in", path], input: [], outputLimit: 4096)
        var out: [String: Int64] = [:]
        for line in String(decoding: r.output, as: UTF8.self).split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            // YYYY-MM-DD HH:MM:SSZ
            guard kv.count == 2, kv[1].count == 20, let day = CivilTime.parseDay(String(kv[1].prefix(10))) else { continue }
            let t = kv[1].dropFirst(11).prefix(8).split(separator: ":").compactMap { Int64($0) }
            guard t.count == 3 else { continue }
            out[kv[0]] = day + t[0] * 3600 + t[1] * 60 + t[2]
        }
        guard r.exitCode == 0, let b = out["notBefore"], let a = out["notAfter"] else { throw Failure("cannot read the dates of \(path)") }
        return (b, a)
    }

    /// Puts the new key and certificate in place of the old (key first: a login between the
    /// two renames fails its handshake and is retried, never uses a key with another's
    /// certificate for long).
    static func install(key newKey: String, certificate pem: String, in dir: String) throws {
        let newCert = dir + "/cert.pem.new"
        guard FileManager.default.createFile(atPath: newCert, contents: Data(pem.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw Failure("cannot write \(newCert)")
        }
        guard rename(newKey, dir + "/key.pem") == 0, rename(newCert, dir + "/cert.pem") == 0 else {
            throw Failure("cannot put the new key and certificate in \(dir): \(String(cString: strerror(errno)))")
        }
    }
}

struct Join: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join the fleet with a token from `smartotp hosts add`: make this host's key and get its certificate.",
        discussion: """
        As root, on the new host. Writes DIR/key.pem (0600, made here, never sent), DIR/cert.pem
        (signed by the fleet's host CA for host_cert_days) and, with --ca, DIR/ca.pem (the CA
        of the replicas' certificates: check its fingerprint with the administrator). Then
        enable renewal: systemctl enable --now smartotp-renew.timer.
          smartotp join --server https://otp1:8443,https://otp2:8443 --token web7.example.org.1796… --ca /root/fleet-ca.pem
        """)
    @Option(help: ArgumentHelp("The fleet's verifiers.", valueName: "https://HOST:PORT[,…]")) var server: String
    @Option(help: ArgumentHelp("The join token (smartotp hosts add): - reads standard input, @FILE a file (a token on the command line is visible in ps(1) until it is used).", valueName: "TOKEN|-|@FILE")) var token: String
    @Option(help: ArgumentHelp("Where the host's TLS identity goes.", valueName: "DIR")) var tlsDir = "/etc/smartotp/tls"
    @Option(help: ArgumentHelp("The CA of the replicas' certificates, copied to DIR/ca.pem (default: DIR/ca.pem is there already).", valueName: "FILE"))
    var ca: String?

    func run() throws {
        guard geteuid() == 0 else { throw Failure("run as root: the host's key is root's") }
        guard let urls = ServerURL.list(server) else { throw Failure("--server needs https://HOST[:PORT][,…]") }
        guard mkdir(tlsDir, 0o755) == 0 || errno == EEXIST else { throw Failure("cannot make \(tlsDir): \(String(cString: strerror(errno)))") }
        if let ca {
            guard let pem = FileManager.default.contents(atPath: ca), String(decoding: pem, as: UTF8.self).contains("BEGIN CERTIFICATE") else {
                throw Failure("\(ca) holds no PEM certificate")
            }
            guard FileManager.default.createFile(atPath: tlsDir + "/ca.pem", contents: pem, attributes: [.posixPermissions: 0o644]) else {
                throw Failure("cannot write \(tlsDir)/ca.pem")
            }
        }
        guard access(tlsDir + "/ca.pem", R_OK) == 0 else { throw Failure("\(tlsDir)/ca.pem is missing: give --ca FILE (the CA of the replicas' certificates)") }
        let tokenText = try secretArgument(token).trimmingSpaces()
        guard !tokenText.isEmpty else { throw Failure("the join token is empty") }
        let newKey = tlsDir + "/key.pem.new"
        let csr = try HostIdentity.newKeyAndRequest(keyPath: newKey)
        let pem: String
        do { pem = try withStore { try RemoteAdmin(servers: urls, tlsDirectory: tlsDir).certificate(FleetAPI.joinPath, body: Array((tokenText + "\n").utf8) + csr) } } catch {
            unlink(newKey)
            throw error
        }
        try HostIdentity.install(key: newKey, certificate: pem, in: tlsDir)
        let ends = (try? HostIdentity.dates(tlsDir + "/cert.pem").notAfter).map(CivilTime.format) ?? "?"
        print("Joined the fleet: \(tlsDir)/cert.pem, valid until \(ends). Renewal: systemctl enable --now smartotp-renew.timer")
    }
}

struct Renew: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Renew this host's fleet certificate: a new key, and a certificate for the same name.",
        discussion: """
        Asks the verifiers (server= and tls_dir= of /etc/smartotp/smartotp.conf, or --server and
        --tls-dir) with the current certificate, which must still be valid and not revoked.
        With --if-due, only once two thirds of its life have passed (smartotp-renew.timer runs
        this daily). Exit 0 when renewed or not yet due; 1 when renewal failed (the old
        certificate stays).
        """)
    @Option(help: ArgumentHelp("The fleet's verifiers (default: server= of smartotp.conf).", valueName: "https://HOST:PORT[,…]")) var server: String?
    @Option(help: ArgumentHelp("The host's TLS identity (default: tls_dir= of smartotp.conf).", valueName: "DIR")) var tlsDir: String?
    @Flag(help: "Renew only when two thirds of the certificate's life have passed.") var ifDue = false

    func run() throws {
        guard geteuid() == 0 else { throw Failure("run as root: the host's key is root's") }
        let config = (try? ModuleConfig.load(arguments: []).config) ?? ModuleConfig()
        let dir = tlsDir ?? config.tlsDir
        guard let urls = ServerURL.list(server ?? config.servers.joined(separator: ",")) else {
            throw Failure("no verifiers: give --server, or server= in /etc/smartotp/smartotp.conf")
        }
        let (begins, ends) = try HostIdentity.dates(dir + "/cert.pem")
        let due = begins + (ends - begins) * 2 / 3
        let now = Int64(time(nil))
        if ifDue && now < due {
            print("Not due: \(dir)/cert.pem is valid until \(CivilTime.format(ends)); renewal from \(CivilTime.format(due)).")
            return
        }
        guard now < ends else { throw Failure("\(dir)/cert.pem ended on \(CivilTime.format(ends)): it cannot renew itself; join again (smartotp hosts add, smartotp join)") }
        let newKey = dir + "/key.pem.new"
        let csr = try HostIdentity.newKeyAndRequest(keyPath: newKey)
        let pem: String
        do { pem = try withStore { try RemoteAdmin(servers: urls, tlsDirectory: dir).certificate(FleetAPI.renewPath, body: csr) } } catch {
            unlink(newKey)
            throw error
        }
        try HostIdentity.install(key: newKey, certificate: pem, in: dir)
        print("Renewed: \(dir)/cert.pem, valid until \((try? HostIdentity.dates(dir + "/cert.pem").notAfter).map(CivilTime.format) ?? "?").")
    }
}
