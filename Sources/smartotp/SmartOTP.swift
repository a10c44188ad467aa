import ArgumentParser
import CardEmulator
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc
import OTPCore
import SmartCard
import PCSC
import POSIX
import SmartOTPAuth
import SmartOTPFleet
import SmartOTPAdmin
import SmartOTPSystem
import TokenStore
import Verifier

@main
struct SmartOTP: ParsableCommand {
    /// Called as `smartotp-card` (the smartotp package links that name here), it is the
    /// virtual card; otherwise the administration commands.
    static func main() {
        let name = CommandLine.arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 } ?? ""
        if name == "smartotp-card" {
            SmartOTPCard.main(Array(CommandLine.arguments.dropFirst()))
        } else {
            main(nil)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "smartotp",
        abstract: "Enroll smart OTP cards and codes, and manage the records pam_smartotp reads.",
        discussion: """
        Records live in /var/lib/smartotp/users/<user> (root, 0600); --store DIR works on
        another store, and --server URL --tls-dir DIR on the fleet's records in smartotpd
        (with an administrator's certificate). Secrets are never printed except where a
        command says it will.

        EXIT STATUS
          0   success
          1   the command failed (the message says why and what to do)
          64  the command line is wrong
        """,
        version: "smartotp \(SmartOTPVersion.current)",
        subcommands: [
            Enroll.self, Passwd.self, List.self, Show.self, Remove.self, Unlock.self, Resync.self, TempCodeCommand.self,
            Invite.self, Hosts.self, Join.self, Renew.self,
            Recovery.self, Import.self, MigrateStore.self, Verify.self, Audit.self, RevokeHost.self, CardStatus.self, Check.self, Demo.self,
        ]
    )
}

/// Where the commands make their changes: the local files, or the fleet's records through
/// smartotpd, which makes each change itself (`AdminChange`) and never returns a secret.
enum AdminTarget {
    case local(FileStore)
    case remote(RemoteAdmin)

    /// Makes `change` to `user`'s record: under the file's lock here, in one transaction
    /// on the server.
    func apply(_ user: UserName, _ change: AdminChange) throws -> AdminChange.Outcome {
        switch self {
        case .local(let store):
            return try withStore {
                try store.update(user) { (current: UserRecord?) throws(StoreError) -> (AdminChange.Outcome, RecordChange) in
                    do throws(AdminChange.Failure) { return try change.apply(to: current, user: user, now: now()) } catch {
                        throw .invalidValue(error.description)
                    }
                }
            }
        case .remote(let admin):
            var body = change.encode(for: user)
            defer { ConstantTime.wipe(&body) }
            let text = try withStore { try admin.change(change.verb, user, body: body) }
            guard let outcome = AdminChange.Outcome(text: text) else { throw Failure("the server's answer is not understood: \(text)") }
            return outcome
        }
    }

    /// The record (on the server: with every secret taken out).
    func read(_ user: UserName) throws -> UserRecord? {
        switch self {
        case .local(let store): return try withStore { try store.read(user) }
        case .remote(let admin): return try withStore { try admin.show(user) }
        }
    }

    func rows() throws -> [UserRow] {
        switch self {
        case .local(let store):
            return try withStore { try store.list() }.compactMap { user in
                guard let r = try withStore({ try store.read(user) }) else { return nil }
                return UserRow(user: user.value, tokens: r.tokens.count, password: r.passwordHash != nil, failures: r.failures)
            }
        case .remote(let admin):
            return try withStore { try admin.users() }.map { UserRow(user: $0.user, tokens: $0.tokens, password: $0.password, failures: $0.failures) }
        }
    }

    /// Creates the store when missing (a local one; the fleet's exists with its database).
    func prepare() throws {
        if case .local(let store) = self { try withStore { try store.prepare() } }
    }
}

/// Options every command shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The record store.", valueName: "DIR"))
    var store: String = FileStore.defaultRoot

    @Option(name: .long, help: ArgumentHelp("The fleet's verifiers instead of a local store (tried in order).", valueName: "https://HOST:PORT[,…]"))
    var server: String?

    @Option(name: .customLong("tls-dir"), help: ArgumentHelp("With --server: an administrator's (or the helpdesk's) ca.pem, cert.pem and key.pem.", valueName: "DIR"))
    var tlsDir: String = "/etc/smartotp/admin"

    /// The local store; in a directory the caller owns (tests, demos) the caller's uid owns it.
    func local() throws -> FileStore {
        guard server == nil else { throw Failure("this command works on a local store; leave out --server") }
        return FileStore(root: store, owner: store == FileStore.defaultRoot ? 0 : getuid())
    }

    func remote() throws -> RemoteAdmin {
        guard let server, let urls = ServerURL.list(server) else { throw Failure("--server needs https://HOST[:PORT][,https://…]") }
        return RemoteAdmin(servers: urls, tlsDirectory: tlsDir)
    }

    /// Where the command works: local, or the fleet's with --server.
    func open() throws -> AdminTarget {
        server == nil ? .local(try local()) : .remote(try remote())
    }

    /// The same, created (0700, root's) when it is a local store that does not exist yet:
    /// for the commands that enroll. Every other command, and every login, refuses a
    /// missing store.
    func prepared() throws -> AdminTarget {
        let target = try open()
        try target.prepare()
        return target
    }
}

/// Moves a host's file store into the fleet's database.
struct MigrateStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-store",
        abstract: "Copy a local store's records into the fleet's verifier (smartotpd).",
        discussion: """
        Every record of --from goes to --server as it is (tokens, replay state, simple
        password, recovery codes, failure count); the server seals every secret on the way
        in. A user who already has a record on the
        server is left alone and named. The local store is not changed: point the hosts at
        the server (server= in /etc/smartotp/smartotp.conf) once this has run.
        """)
    @Option(help: ArgumentHelp("The local store to copy.", valueName: "DIR")) var from: String = FileStore.defaultRoot
    @Option(help: ArgumentHelp("The fleet's verifiers.", valueName: "https://HOST:PORT[,…]")) var server: String
    @Option(name: .customLong("tls-dir"), help: ArgumentHelp("An administrator's ca.pem, cert.pem and key.pem.", valueName: "DIR"))
    var tlsDir: String = "/etc/smartotp/admin"

    func run() throws {
        let local = FileStore(root: from, owner: from == FileStore.defaultRoot ? 0 : getuid())
        let remote = try StoreOptions.parse(["--server", server, "--tls-dir", tlsDir]).open()
        var copied = 0, kept = 0
        for user in try withStore({ try local.list() }) {
            guard let record = try withStore({ try local.read(user) }) else { continue }
            // The server seals every secret on the way in.
            if try remote.apply(user, .place(record)) == .done(true) { copied += 1 } else {
                kept += 1
                print("\(user): already has a record on the server; left as it is")
            }
        }
        print("Copied \(copied) record(s) to \(server); \(kept) already there.")
    }
}

/// A failure the user can act on: printed as "smartotp: MESSAGE", exit status 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

func userName(_ raw: String) throws -> UserName {
    do { return try UserName(raw) } catch { throw Failure("\(error)") }
}

func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

/// This program's own path, symbolic links resolved (`/proc/self/exe`), and the folder
/// above a path: where the demo script and the fleet client are looked for.
func ownPath() -> String? {
    guard let resolved = realpath("/proc/self/exe", nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

func parentFolder(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
    return String(path[..<slash])
}

/// Where PAM modules live: the directory that holds pam_unix.so (as install.sh decides).
func pamModuleDirectory() -> String? {
    ["/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
     "/lib/security", "/usr/lib/security"].first { FileManager.default.fileExists(atPath: "\($0)/pam_unix.so") }
}

func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "host" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.split(separator: ".").first.map(String.init) ?? "host"
}

/// UTC dates without Foundation's calendar (and its ICU data): days from 1970-01-01 by the
/// proleptic Gregorian calendar (Howard Hinnant's civil-date algorithm).
enum CivilTime {
    /// `YYYY-MM-DD` as the Unix time of that day's midnight, UTC; nil when not a real date.
    static func parseDay(_ text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int64(parts[0]), let m = Int64(parts[1]), let d = Int64(parts[2]), (1...12).contains(m), d >= 1 else { return nil }
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        let lengths: [Int64] = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard d <= lengths[Int(m - 1)] else { return nil }
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return (era * 146_097 + doe - 719_468) * 86_400
    }

    /// A Unix time as `YYYY-MM-DDTHH:MM:SSZ`.
    static func format(_ t: Int64) -> String {
        var time = time_t(t)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else { return String(t) }
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}

/// Reads a secret: from standard input when asked, else twice from the terminal.
/// A NUL byte is refused: crypt(3) would ignore everything from it on.
func readSecret(prompt: String, fromStdin: Bool, confirm: Bool) throws -> String {
    if fromStdin {
        guard let line = readLine(strippingNewline: true) else { throw Failure("nothing on standard input") }
        guard PasswordHash.acceptable(line) else { throw Failure("the input holds a NUL byte; refusing it (crypt(3) would ignore everything after it)") }
        return line
    }
    guard isatty(0) == 1 else { throw Failure("standard input is not a terminal: use --password-stdin") }
    guard let first = getpass(prompt) else { throw Failure("cannot read from the terminal") }
    let a = String(cString: first)
    if confirm {
        guard let second = getpass("Again: ") else { throw Failure("cannot read from the terminal") }
        guard a == String(cString: second) else { throw Failure("the two entries differ") }
    }
    return a
}

/// A secret given as oathtool takes one: `-` reads standard input, `@FILE` reads FILE,
/// anything else is the secret itself (visible in `ps` and shell history: avoid).
func secretArgument(_ value: String) throws -> String {
    let text: String
    if value == "-" {
        guard let line = readLine(strippingNewline: true) else { throw Failure("nothing on standard input for --secret -") }
        text = line
    } else if value.hasPrefix("@") {
        let path = String(value.dropFirst())
        guard let contents = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure("cannot read \(path)") }
        text = String(contents.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    } else {
        text = value
    }
    return text.trimmingSpaces()
}

/// Refuses a name that is not a user of this machine, or that the name service spells
/// otherwise (`ALICE` for alice through a case-insensitive SSSD): logins look the record up
/// under the name service's spelling, so a record under another would never be found.
/// `force` lets any valid name through (a user who comes from LDAP later, say).
func requireSystemUser(_ user: UserName, force: Bool) throws {
    guard !force else { return }
    guard let canonical = Users.canonicalName(of: user.value) else {
        throw Failure("\(user) is not a user of this machine (getpwnam); check the name, or give --force")
    }
    guard canonical == user.value else {
        throw Failure("the name service spells \(user) as \(canonical), and logins look records up under that spelling: use \(canonical)")
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension StoreError {
    var failure: Failure { Failure(description) }
}

/// Runs a store operation, turning its typed errors into plain failures.
func withStore<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as StoreError { throw e.failure }
}
