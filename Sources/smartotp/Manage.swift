import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc
import OTPCore
import PCSC
import SmartOTPAuth
import SmartOTPSystem
import TokenStore
import Verifier
import SmartOTPAdmin
import SmartOTPFleet

/// One user in `list`.
struct UserRow: Encodable {
    var user: String
    var tokens: Int
    var password: Bool
    var failures: Int
}

/// One token in `show`: what it is, never its secret.
struct TokenRow: Encodable {
    var id: String
    var kind: String
    var type: String
    var algorithm: String
    var digits: Int
    var period: Int?
    var counter: UInt64?
    var label: String
    var created: Int64
    var last_used: UInt64?
    var window: Int?
    var credential: String?
    var device: String?
    var access_code: Bool?
    var touch: Bool?
    /// `enroll --generate` not yet confirmed: it passes no login.
    var pending: Bool?

    init(_ t: Token) {
        id = t.id
        kind = t.kind.rawValue
        algorithm = t.parameters.algorithm.description
        digits = t.parameters.digits
        label = t.label
        created = t.created
        last_used = t.lastUsed
        window = t.windowLimit
        credential = t.credentialName
        device = t.deviceID
        switch t.parameters.kind {
        case .totp(let p): type = "totp"; period = p
        case .hotp: type = "hotp"; counter = t.initialCounter
        }
        if t.kind == .card { access_code = t.accessKey != nil; touch = t.touch }
        if t.pending { pending = true }
    }

    /// `key=value` pairs for the text output, in a fixed order, absent ones left out.
    var text: String {
        var f: [(String, String?)] = [("id", id), ("kind", kind), ("type", type), ("algorithm", algorithm), ("digits", String(digits))]
        f += [("period", period.map(String.init)), ("counter", counter.map(String.init)), ("label", label),
              ("last_used", last_used.map(String.init)), ("window", window.map(String.init)), ("credential", credential),
              ("device", device), ("access_code", access_code.map { $0 ? "yes" : "no" }), ("touch", touch.map { $0 ? "yes" : "no" }),
              ("pending", pending.map { $0 ? "yes (passes no login until confirmed)" : "no" })]
        return f.compactMap { k, v in v.map { "\(k)=\($0)" } }.joined(separator: " ")
    }
}

/// The record in `show`.
struct RecordRow: Encodable {
    var user: String
    var tokens: [TokenRow]
    var password: Bool
    var failures: Int
    var last_failure: Int64
    var recovery_codes: Int
    var temp_codes: [TempRow] = []
}

struct TempRow: Encodable {
    var until: Int64
    var uses: Int
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List enrolled users.")
    @OptionGroup var options: StoreOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let rows = try options.open().rows()
        if json { return try printJSON(rows) }
        for row in rows {
            print("\(row.user)\ttokens=\(row.tokens)\tpassword=\(row.password ? "yes" : "no")\tfailures=\(row.failures)")
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a user's tokens and state (never a secret).")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let user = try userName(self.user)
        guard let r = try options.open().read(user) else { throw Failure("\(user) has no smartotp record") }
        let row = RecordRow(user: user.value, tokens: r.tokens.map(TokenRow.init), password: r.passwordHash != nil,
                            failures: r.failures, last_failure: r.lastFailure, recovery_codes: r.recoveryCodes.count,
                            temp_codes: r.tempCodes.filter { $0.until > now() && $0.uses > 0 }.map { TempRow(until: $0.until, uses: $0.uses) })
        if json { return try printJSON(row) }
        print("user \(user): \(r.tokens.count) token(s), simple password \(r.passwordHash != nil ? "set" : "not set"), \(r.recoveryCodes.count) recovery code(s), \(r.failures) failure(s)")
        for t in row.tokens { print("  " + t.text) }
        for t in row.temp_codes { print("  temporary code: good until \(CivilTime.format(t.until)), \(t.uses) use(s) left") }
        if let i = r.invitation { print("  invitation: " + (i.until > now() ? "good once until \(CivilTime.format(i.until))" : "ended on \(CivilTime.format(i.until))")) }
    }
}

/// A new code of a recovery code's shape (`xxxx-xxxx-xxxx`) and its hash: what a temporary
/// code and an invitation are. Only the hash is stored; the code is printed once.
func hashedCode() throws -> (code: String, hash: String) {
    guard let code = RecoveryCode.generate(), let normal = RecoveryCode.normalise(code), let hash = PasswordHash.make(normal) else {
        throw Failure("could not make a code (the random source or libxcrypt failed)")
    }
    return (code, hash)
}

struct TempCodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "temp-code",
        abstract: "Print a temporary code for a user who lost their card: it logs in until it ends or is used up.",
        discussion: """
        The code (xxxx-xxxx-xxxx, on a line of its own) is typed at the module's code prompt
        like any code: counted like any code when wrong, audited, and refused once it has
        ended or has been used --uses times. Only its hash is kept (yescrypt); `smartotp
        show` says it exists and when it ends. At most 8 at a time per user. Give it to the
        user over a channel you trust (in person, by phone after a callback).
        EXAMPLES
          smartotp temp-code alice --valid 8h
          smartotp temp-code alice --valid 2d --uses 5 --server https://otp1:8443 --tls-dir /etc/smartotp/admin
        """)
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user (who must have a record).") var user: String
    @Option(help: ArgumentHelp("How long it is good: 30m, 8h, 7d (1 minute to 30 days).", valueName: "DURATION")) var valid = "8h"
    @Option(help: "How many logins it is good for (1-1000).") var uses = 1
    @Flag(help: "Remove every temporary code of the user instead (the card was found).") var remove = false

    func validate() throws {
        guard let seconds = OptionValue.duration(valid), (60...2_592_000).contains(seconds) else {
            throw ValidationError("--valid must be a duration from 1m to 30d (a number of seconds, or with s, m, h or d)")
        }
        guard (1...TempCode.maxUses).contains(uses) else { throw ValidationError("--uses must be 1 to \(TempCode.maxUses)") }
    }

    func run() throws {
        let user = try userName(self.user)
        if remove {
            guard try options.prepared().apply(user, .removeTempCodes) == .done(true) else { throw Failure("\(user) has no temporary code") }
            return print("Removed the temporary codes of \(user).")
        }
        let (code, hash) = try hashedCode()
        let until = now() + (OptionValue.duration(valid) ?? 28_800)
        guard try options.prepared().apply(user, .tempCode(hash: hash, until: until, uses: uses)) == .done(true) else {
            throw Failure("\(user) has no smartotp record: enrol the user first (a temporary code is for a user who lost a card)")
        }
        let note = Array("Temporary code for \(user), good until \(CivilTime.format(until)) for \(uses) login(s):\n".utf8)
        _ = note.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        print(code)
    }
}

struct Invite: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a one-time invitation code with which a user enrols their own phone (smartotp enroll --self).",
        discussion: """
        An administrator or the helpdesk gives the code to the user over a channel they trust;
        the user, logged in as themself, runs `smartotp enroll --self`, types it, scans the QR
        code and confirms with the phone's first code. The code works once and ends after
        --valid; a new invitation replaces the last. A user with an invitation and nothing
        else has no enrolment yet (nullok still applies). Audited.
          smartotp invite alice --valid 24h
          smartotp invite alice --server https://otp1:8443 --tls-dir /etc/smartotp/helpdesk
        """)
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Option(help: ArgumentHelp("How long it is good: 30m, 24h, 7d (1 minute to 30 days).", valueName: "DURATION")) var valid = "24h"
    @Flag(help: "Invite a name that is not a user of this machine.") var force = false

    func validate() throws {
        guard let s = OptionValue.duration(valid), (60...2_592_000).contains(s) else { throw ValidationError("--valid must be a duration from 1m to 30d") }
    }

    func run() throws {
        let user = try userName(self.user)
        if options.server == nil { try requireSystemUser(user, force: force) }
        let (code, hash) = try hashedCode()
        let until = now() + (OptionValue.duration(valid) ?? 86_400)
        guard try options.prepared().apply(user, .invite(hash: hash, until: until)) == .done(true) else { throw Failure("the invitation was not written") }
        let note = Array("Invitation for \(user), good once until \(CivilTime.format(until)) (smartotp enroll --self):\n".utf8)
        _ = note.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        print(code)
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a user's record, or one token of it.")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Option(help: "Remove only this token.") var token: String?

    func run() throws {
        let user = try userName(self.user)
        let removed = try options.open().apply(user, token.map { .removeToken($0) } ?? .removeUser) == .done(true)
        guard removed else { throw Failure(token.map { "\(user) has no token \($0)" } ?? "\(user) has no smartotp record") }
        print(token.map { "Removed token \($0) of \(user)." } ?? "Removed the record of \(user).")
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Clear a user's failure count (and lock).")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String

    func run() throws {
        let user = try userName(self.user)
        guard try options.open().apply(user, .unlock) == .done(true) else { throw Failure("\(user) has no smartotp record") }
        print("Unlocked \(user).")
    }
}

struct Resync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resynchronise an HOTP token from two consecutive codes.",
        discussion: "Searches up to 10,000 counters past the last one used (RFC 4226 §7.4).")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Argument(help: "A code.") var code1: String
    @Argument(help: "The code that follows it.") var code2: String
    @Option(help: "The token (default: the first HOTP token).") var token: String?

    func run() throws {
        let user = try userName(self.user)
        guard case .counter(let counter?) = try options.open().apply(user, .resync(token: token, first: code1, second: code2)) else { throw Failure("no HOTP token of \(user) produced those two codes in a row") }
        print("Resynchronised: the next code is counter \(counter &+ 1).")
    }
}

struct Recovery: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make new one-time recovery codes (replacing the old ones) and show them once.",
        discussion: "Each code works once, at the one-time code prompt. Store them offline.")
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Option(help: "How many codes.") var count = 10

    func validate() throws {
        guard (1...50).contains(count) else { throw ValidationError("--count must be 1 to 50") }
    }

    func run() throws {
        let user = try userName(self.user)
        var codes: [String] = []
        var hashes: [String] = []
        for _ in 0..<count {
            guard let code = RecoveryCode.generate(), let normal = RecoveryCode.normalise(code),
                  let hash = PasswordHash.make(normal) else { throw Failure("could not make a recovery code") }
            codes.append(code)
            hashes.append(hash)
        }
        guard try options.open().apply(user, .recovery(hashes: hashes)) == .done(true) else { throw Failure("\(user) has no smartotp record; enroll first") }
        print("Recovery codes for \(user) (each works once; they are not shown again):")
        for c in codes { print("  \(c)") }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import tokens from pam_oath's users file or a google-authenticator file.",
        discussion: """
          smartotp import --pam-oath /etc/users.oath
          smartotp import --google-authenticator ~alice/.google_authenticator --user alice

        Every piece of replay state comes along (pam_oath's last counter, last code and its
        time; google-authenticator's DISALLOW_REUSE steps, HOTP_COUNTER and WINDOW_SIZE),
        so a code the old module accepted is refused here too. Importing again is safe: a
        token with the same secret is updated, not added twice, and a scratch code already
        used stays used. google-authenticator scratch codes become recovery codes.

        A pam_oath PIN is typed together with the code there; on its own it is not a second
        factor, so it is dropped unless --pin-as-password makes it the simple password.
        """)
    @OptionGroup var options: StoreOptions
    @Option(help: "pam_oath users file.") var pamOath: String?
    @Option(help: "google-authenticator file.") var googleAuthenticator: String?
    @Option(help: "The user the google-authenticator file belongs to.") var user: String?
    @Flag(help: "Make a pam_oath PIN the user's simple password (a factor on its own).") var pinAsPassword = false

    func validate() throws {
        guard (pamOath == nil) != (googleAuthenticator == nil) else { throw ValidationError("give --pam-oath or --google-authenticator") }
        if googleAuthenticator != nil && user == nil { throw ValidationError("--google-authenticator needs --user") }
        if pinAsPassword && pamOath == nil { throw ValidationError("--pin-as-password goes with --pam-oath") }
    }

    func run() throws {
        let path = pamOath ?? googleAuthenticator ?? ""
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure("cannot read \(path)") }
        let imported: [Importers.Imported] = try withStore {
            if pamOath != nil { return try Importers.pamOath(text, path: path, now: now()) }
            return [try Importers.googleAuthenticator(text, path: path, user: try UserName(user ?? ""), now: now())]
        }
        let store = try options.prepared()
        for item in imported {
            guard case .imported(let report) = try store.apply(item.user, .merge(item, pinAsPassword: pinAsPassword)) else {
                throw Failure("the import of \(item.user) gave no report")
            }
            var parts = [report.newToken ? "new token \(report.tokenID)" : "token \(report.tokenID) already there (replay state updated)"]
            if report.recoveryAdded + report.recoverySkipped > 0 {
                parts.append("\(report.recoveryAdded) recovery code(s) added, \(report.recoverySkipped) already present or used")
            }
            if report.pinSet { parts.append("PIN set as the simple password") }
            print("Imported \(item.user): \(parts.joined(separator: "; ")).")
            if item.pin != nil && !pinAsPassword {
                print("  note: the pam_oath PIN of \(item.user) was not imported (see --pin-as-password); set one with smartotp passwd")
            }
            for note in item.notes { print("  note: \(note)") }
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a one-time code as a login would (it is used up when accepted).",
        discussion: """
            The policy is a login's: the policy file (default /etc/smartotp/smartotp.conf, the one \
            the module and the setuid helper read), with --store over its store=. A locked user is \
            refused, and every attempt is counted as a login's is. With server= in the file and no \
            --store, the fleet's verifiers decide, through smartotp-fleet, as a login on this host would.
            Exit status 0 when accepted, 1 when wrong, replayed or locked.
            """)
    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Option(help: "The code (read from standard input when absent).") var code: String?
    @Option(help: ArgumentHelp("The policy file.", valueName: "FILE")) var config = ModuleConfig.defaultFile
    @Option(help: "Check at this Unix time instead of now (testing).") var at: Int64?

    func run() throws {
        let user = try userName(self.user)
        guard options.server == nil else { throw Failure("verify asks what a login on this host asks: set server= in the policy file, not --server") }
        guard let typed = code ?? readLine(strippingNewline: true) else { throw Failure("no code given") }
        let explicitStore = options.store != FileStore.defaultRoot
        let policy: ModuleConfig
        do {
            policy = try ModuleConfig.load(arguments: explicitStore ? [.init(name: "store", value: options.store)] : [], file: config).config
        } catch { throw Failure(error.description) }
        let attempt: Attempt
        do {
            if policy.servers.isEmpty || explicitStore {
                let store = FileStore(root: policy.store, owner: policy.store == FileStore.defaultRoot ? 0 : getuid())
                attempt = try LocalRecords.system(store: store, policy: policy.policy).perform(.code(typed), for: user, now: at ?? now())
            } else {
                attempt = try SessionRecords(client: policy.client ?? RemoteAdmin.defaultClient(), settings: [Setting(name: "conf", value: config)])
                    .perform(.code(typed), for: user, now: at ?? now())
            }
        } catch { throw Failure(error.description) }
        switch attempt.verdict {
        case .accepted(let credential): print("accepted: \(credential)")
        case .replayed(let id): print("replayed: token \(id)"); throw ExitCode(1)
        case .rejected: print(attempt.lock.isLocked ? "rejected; the user is now locked" : "rejected"); throw ExitCode(1)
        case .locked: print("locked"); throw ExitCode(1)
        }
    }
}

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the fleet's audit trail (an administrator's or the helpdesk's certificate).",
        discussion: """
        One row for every verdict and every administrator's change, newest first: when, the
        certificate that asked (name, serial, role), its address, PAM's remote host and
        service, the user, the operation, the credential kind, the result and its reason.
        Never a secret or a code. smartotpd audit-verify checks that no row was edited,
        removed or reordered.

          smartotp audit --server https://otp1:8443 --user alice --since 2026-12-01
        """)
    @OptionGroup var options: StoreOptions
    @Option(help: "Only this user's rows.") var user: String?
    @Option(help: "Only the rows of the certificate with this name (a host, an administrator).") var host: String?
    @Option(help: ArgumentHelp("Only rows from this time on: a Unix time or YYYY-MM-DD (UTC).", valueName: "TIME")) var since: String?
    @Option(help: "At most this many rows (default 1000).") var limit = 1000
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be 1 to 100000") }
        if let since { guard Self.unixTime(since) != nil else { throw ValidationError("--since needs a Unix time or YYYY-MM-DD") } }
    }

    static func unixTime(_ text: String) -> Int64? {
        if let n = Int64(text), n >= 0 { return n }
        return CivilTime.parseDay(text)
    }

    func run() throws {
        guard options.server != nil else { throw Failure("the audit trail is the fleet's: give --server (and --tls-dir)") }
        var query: [(String, String)] = [("limit", String(limit))]
        if let user { query.append(("user", try userName(user).value)) }
        if let host { query.append(("host", host)) }
        if let since, let t = Self.unixTime(since) { query.append(("since", String(t))) }
        let text = try withStore { try options.remote().audit(query: query) }
        guard json else { return print(text, terminator: "") }
        let lines = text.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        guard let header = lines.first else { return try printJSON([[String: String]]()) }
        try printJSON(lines.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) })
    }
}

struct RevokeHost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke-host",
        abstract: "Revoke a host's certificate fleet-wide (an administrator's certificate).",
        discussion: """
        The revocation is kept in the fleet's database: every replica refuses the host within
        a few seconds, on its next request, even on a connection it holds open. Name the
        certificate by its common name or its serial (hex, as `openssl x509 -serial` prints
        it). --restore lifts a revocation; --list shows them. Audited.

          smartotp revoke-host --server https://otp1:8443 --tls-dir /etc/smartotp/admin web7
        """)
    @OptionGroup var options: StoreOptions
    @Flag(help: "Lift the revocation instead.") var restore = false
    @Flag(help: "List the revocations (name or serial, when, by whom).") var list = false
    @Argument(help: ArgumentHelp("The host certificate's common name or serial.", valueName: "NAME|SERIAL")) var entry: String?

    func validate() throws {
        if list { guard entry == nil, !restore else { throw ValidationError("--list takes no name") } } else {
            guard let entry, FleetAPI.isRevocationEntry(entry) else {
                throw ValidationError("name the host certificate: its common name or serial (printable, no spaces, at most 128)")
            }
        }
    }

    func run() throws {
        guard options.server != nil else { throw Failure("revocations are the fleet's: give --server (and --tls-dir)") }
        let admin = try options.remote()
        if list {
            for line in try withStore({ try admin.revocations() }).split(separator: "\n") {
                let w = line.split(separator: " ", maxSplits: 2).map(String.init)
                guard w.count == 3, let t = Int64(w[1]) else { continue }
                print("\(w[0])\t\(CivilTime.format(t))\t\(w[2])")
            }
            return
        }
        print(try withStore { try admin.revoke(entry ?? "", !restore) }, terminator: "")
    }
}
