import Foundation
import Glibc
import Logging
import SmartOTPPostgres
import SmartOTPService
import SmartOTPVault

/// A PostgreSQL cluster of the tests' own: initdb and pg_ctl as the postgres user in a
/// folder of their own, listening on a Unix socket (and with TLS on loopback: `tls`).
/// Started once per test process; a watchdog (a shell of its own session) stops it and
/// removes its folder once this process is gone, however it ends. Needs root (to run as
/// postgres) and Debian's PostgreSQL: where either is missing, the tests that need it are
/// skipped, and say why.
final class TestCluster: Sendable {
    static let shared: TestCluster? = try? TestCluster()
    /// Why there is no cluster, for the skip's words.
    static var missing: String {
        if getuid() != 0 { return "needs root (initdb runs as the postgres user)" }
        if bin == nil { return "needs PostgreSQL (/usr/lib/postgresql/*/bin)" }
        return "the test cluster did not start"
    }
    static var available: Bool { shared != nil }

    static let bin: String? = {
        let base = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: base))?.compactMap(Int.init).sorted() ?? []
        return versions.last.map { "\(base)/\($0)/bin" }
    }()

    let dir: String
    /// The Unix socket's port, and loopback's when `tls`.
    let port: Int
    /// Whether the cluster also listens on 127.0.0.1 with TLS (a self-signed certificate;
    /// where openssl is at hand and a free port was found): `tlsConninfo`.
    let tls: Bool

    struct Failed: Error { let why: String }

    init() throws {
        guard getuid() == 0, let bin = Self.bin else { throw Failed(why: Self.missing) }
        // In /tmp itself, not TMPDIR: the postgres user must reach the folder, and a
        // toolchain's TMPDIR (with_private_tmp) is root's alone (0700). The watchdog removes it.
        var template = Array("/tmp/smartotp-pgtest.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failed(why: "mkdtemp") }
        dir = String(cString: made)
        chmod(dir, 0o755)
        guard let pw = getpwnam("postgres") else { throw Failed(why: "no postgres user") }
        // The TLS key is made while the folder is still root's: once it is the postgres
        // user's, a link planted there could turn root's writes and chown elsewhere.
        let certified = Self.certificate(in: dir, owner: pw.pointee)
        chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid)
        // The watchdog first: whatever happens next, the cluster and its folder go with us.
        let watchdog = """
            while kill -0 \(getpid()) 2>/dev/null; do sleep 0.3; done
            [ -f '\(dir)/data/postmaster.pid' ] && runuser -u postgres -- '\(bin)/pg_ctl' -D '\(dir)/data' -m immediate -w stop >/dev/null 2>&1
            rm -rf '\(dir)'
            """
        try Self.spawn(["/usr/bin/setsid", "/bin/sh", "-c", watchdog], wait: false)
        try Self.spawn(["/usr/sbin/runuser", "-u", "postgres", "--", "\(bin)/initdb", "-D", "\(dir)/data", "-A", "trust", "-U", "postgres"])
        let folder = dir
        func start(_ listen: String, _ port: Int) throws {
            try Self.spawn(["/usr/sbin/runuser", "-u", "postgres", "--", "\(bin)/pg_ctl", "-D", "\(folder)/data", "-l", "\(folder)/log", "-w", "-t", "30",
                            "-o", "-c listen_addresses=\(listen) -k \(folder) -p \(port) -c fsync=off -c max_connections=100", "start"])
        }
        // TLS on loopback too, for what only a TLS connection does; on a port free a moment
        // ago, so if another process took it meanwhile, the Unix socket alone (the TLS test
        // is then skipped, not every test).
        if certified, let free = Self.freePort(),
           (try? start("127.0.0.1 -c ssl=on -c ssl_cert_file=\(dir)/tls.crt -c ssl_key_file=\(dir)/tls.key", free)) != nil {
            (port, tls) = (free, true)
        } else {
            try start("''", 5999)
            (port, tls) = (5999, false)
        }
        try Self.spawn(["/usr/sbin/runuser", "-u", "postgres", "--", "\(bin)/psql", "-h", dir, "-p", "\(port)", "-qc", "CREATE DATABASE smartotp"])
    }

    /// libpq's connection string for the tests' database.
    var conninfo: String { "host=\(dir) port=\(port) user=postgres dbname=smartotp" }
    /// The same database over TLS on loopback (only when `tls`).
    var tlsConninfo: String { "host=127.0.0.1 port=\(port) user=postgres dbname=smartotp sslmode=require" }

    /// A port on loopback no one listens on now (the kernel's choice).
    static func freePort() -> Int? {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return nil }
        defer { close(s) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) == 0 && getsockname(s, $0, &length) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    /// A self-signed certificate and its key in `dir`, the postgres user's (openssl).
    static func certificate(in dir: String, owner: passwd) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"),
              (try? spawn(["/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", "\(dir)/tls.key", "-out", "\(dir)/tls.crt", "-subj", "/CN=localhost", "-days", "2"])) != nil
        else { return false }
        for file in ["tls.key", "tls.crt"] { chown("\(dir)/\(file)", owner.pw_uid, owner.pw_gid) }
        return chmod("\(dir)/tls.key", 0o600) == 0
    }

    /// Runs `sql` as postgres in the tests' database (psql), returning its output.
    @discardableResult
    func psql(_ sql: String, db: String = "smartotp") throws -> String {
        try Self.spawn(["/usr/sbin/runuser", "-u", "postgres", "--", "\(Self.bin ?? "")/psql", "-h", dir, "-p", "\(port)", "-d", db, "-qAtc", sql])
    }

    /// The PIDs of the cluster's processes: the postmaster and its children.
    func processes() -> [pid_t] {
        guard let text = try? String(contentsOfFile: "\(dir)/data/postmaster.pid", encoding: .utf8),
              let pm = text.split(separator: "\n").first.flatMap({ pid_t($0) }) else { return [] }
        var out = [pm]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { continue }
            // "PID (NAME) STATE PPID …": the fields after the name's closing parenthesis.
            guard let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == pm { out.append(pid) }
        }
        return out
    }

    /// Stops every process of the cluster for `seconds`, then lets them go on.
    func freeze(for duration: Duration) async throws {
        let pids = processes()
        for p in pids { kill(p, SIGSTOP) }
        defer { for p in pids { kill(p, SIGCONT) } }
        try await Task.sleep(for: duration)
    }

    /// Runs `arguments` (posix_spawn; Foundation's Process can wait for ever inside a test
    /// process's run loop) and, unless it is a watchdog (`wait` false), waits for it and
    /// returns its output; throws when it fails.
    @discardableResult
    static func spawn(_ given: [String], wait: Bool = true) throws -> String {
        // From "/": the postgres user may not enter the checkout's folder (a clone in a 0700
        // temporary folder), and psql says so on standard error, which is read here.
        let arguments = ["/bin/sh", "-c", "cd / && exec \"$@\"", "sh"] + given
        var pipe: [Int32] = [-1, -1]
        guard Glibc.pipe(&pipe) == 0 else { throw Failed(why: "pipe") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if wait {
            posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
            posix_spawn_file_actions_adddup2(&actions, pipe[1], 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addclose(&actions, pipe[1])
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, nil, &argv, environ)
        close(pipe[1])
        defer { close(pipe[0]) }
        guard rc == 0 else { throw Failed(why: "cannot run \(given[0])") }
        guard wait else { return "" }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(pipe[0], &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard status == 0 else { throw Failed(why: "\(arguments.joined(separator: " ")): \(text)") }
        return text
    }
}

/// A ledger on the test cluster, in a database of its own (so tests do not see each other).
/// A ledger on a database of its own, `name` (made anew), migrated to the latest schema
/// unless `migrated` is false.
func testLedger(_ name: String, migrated: Bool = true) async throws -> PostgresLedger {
    let cluster = try requireCluster()
    try cluster.psql("DROP DATABASE IF EXISTS \(name)")
    try cluster.psql("CREATE DATABASE \(name)")
    let pool = try PostgresLedger.pool("host=\(cluster.dir) port=\(cluster.port) user=postgres dbname=\(name)", connections: 4)
    let codec = LedgerCodec(sealer: Sealer(current: KeyFile(bytes: Array(repeating: 1, count: 32))),
                            audit: AuditChain(key: KeyFile(bytes: Array(repeating: 2, count: 32))))
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let ledger = PostgresLedger(pool: pool, codec: codec, logger: logger)
    if migrated { _ = try await ledger.migrate() }
    return ledger
}

func requireCluster() throws -> TestCluster {
    guard let c = TestCluster.shared else { throw TestCluster.Failed(why: TestCluster.missing) }
    return c
}

/// A value one task sets and another reads.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
