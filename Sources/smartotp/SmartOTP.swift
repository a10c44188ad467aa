import ArgumentParser
import Foundation
import OTPCore
import SmartCard
import PCSC
import POSIX
import SmartOTPAuth
import SmartOTPSystem
import TokenStore

@main
struct SmartOTP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smartotp",
        abstract: "Enroll smart OTP cards and codes, and manage the records pam_smartotp reads.",
        discussion: """
        Records live in /var/lib/smartotp/users/<user> (root, 0600); --store DIR works on
        another store. Secrets are never printed except where a command says it will.

        EXIT STATUS
          0   success
          1   the command failed (the message says why and what to do)
          64  the command line is wrong
        """,
        version: "smartotp \(SmartOTPVersion.current)",
        subcommands: [
            Enroll.self, Passwd.self, List.self, Show.self, Remove.self, Unlock.self, Resync.self,
            Recovery.self, Import.self, Verify.self, CardStatus.self, Check.self, Demo.self,
        ]
    )
}

/// Options every command shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The record store.", valueName: "DIR"))
    var store: String = FileStore.defaultRoot

    /// The store; in a directory the caller owns (tests, demos) the caller's uid owns it.
    func open() -> FileStore {
        FileStore(root: store, owner: store == FileStore.defaultRoot ? 0 : getuid())
    }

    /// The store, created (0700, root's) when it does not exist yet: for the commands that
    /// enroll. Every other command, and every login, refuses a missing store.
    func prepared() throws -> FileStore {
        let store = open()
        try withStore { try store.prepare() }
        return store
    }

    /// Changes an existing record under its lock. `body` returns nil to leave it as it
    /// was; the result is nil when there is no record or nothing changed.
    func modify<R>(_ user: UserName, _ body: (inout UserRecord) -> R?) throws -> R? {
        try withStore {
            try open().update(user) { (current: UserRecord?) -> (R?, RecordChange) in
                guard var record = current, let result = body(&record) else { return (nil, .keep) }
                return (result, .write(record))
            }
        }
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

/// Where PAM modules live: the directory that holds pam_unix.so (as install.sh decides).
func pamModuleDirectory() -> String? {
    ["/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
     "/lib/security", "/usr/lib/security"].first { FileManager.default.fileExists(atPath: "\($0)/pam_unix.so") }
}

func hostName() -> String { ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host" }

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
    return text.trimmingCharacters(in: .whitespaces)
}

/// Whether `name` is a user of this machine (getpwnam_r).
func isSystemUser(_ name: String) -> Bool { Users.uid(of: name) != nil }

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
