import ArgumentParser
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
import SmartOTPSystem
import SmartOTPAdmin
import TokenStore

struct Enroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enroll a smart card, or a code-only token, for a user.",
        discussion: """
        With --card: a new random secret (20 bytes from the system CSPRNG) is written to the
        card presented on the reader as its tap credential (YKOATH PUT, smartotp-tap:USER@HOST),
        and the card's device id is recorded, so that pam_smartotp talks only to this card.
        The tap credential answers taps only: no code typed at a prompt is checked against
        it, so a host that asks the card for the coming time steps during a tap gets nothing
        it can type. With --phone, a second credential with a secret of its own
        (smartotp:USER@HOST, TOTP) gives a phone app (Yubico Authenticator over NFC) the codes
        to type over SSH; it is recorded as a code token. Any host the card is held to can
        ask that credential for codes too: give it --touch, or the card an access code. The
        card's secrets are never printed (no --uri, no --qr).

        With --generate: a phone token with a new 160-bit secret (the system CSPRNG). Its
        otpauth:// URI and a QR code are printed for the phone to scan, and the token stays
        pending, passing no login, until a code from the phone is typed: at once with
        --confirm (the command asks for it), or later with `smartotp enroll USER --confirm`
        (a code on standard input, or asked on the terminal). Through the fleet too.

        With --secret: a code-only token (phone app, hardware token) from a Base32 secret.
        Give the secret as `--secret -` (standard input) or `--secret @FILE`, as oathtool
        takes it: a secret on the command line is visible to every user in ps(1) and stays
        in the shell's history.

        The user must exist on this machine (getpwnam), spelled as the name service spells
        it (logins look records up under that spelling); --force enrolls another name (a
        user who comes from LDAP later, say).

        EXAMPLES
          smartotp enroll alice --card
          smartotp enroll alice --card --phone --touch
          smartotp enroll bob --secret - --digits 8 < bob.secret
          smartotp enroll carol --generate --confirm
          smartotp enroll carol --confirm          # later: the code from her phone
        """
    )

    @OptionGroup var options: StoreOptions
    @Argument(help: "The user to enroll (with --self: yourself, the default).") var user: String?
    @Flag(name: .customLong("self"), help: "Enrol your own phone with an invitation code (smartotp invite), as yourself, not root.") var selfService = false
    @Option(help: .hidden) var helper: String?

    @Flag(help: "Write a new credential to the card on the reader.") var card = false
    @Flag(help: "A phone token with a new secret: prints its URI and QR code; pending until confirmed.") var generate = false
    @Flag(help: "Confirm the pending token with a code from the phone (asked for; or read from standard input).") var confirm = false
    @Option(help: "Use the first reader whose name contains this text.") var reader: String?
    @Flag(help: "The credential needs a touch on the key for every code.") var touch = false
    @Option(help: "The tap credential's name on the card (default smartotp-tap:USER@HOST).") var name: String?
    @Flag(help: "Also write a phone credential (TOTP, smartotp:USER@HOST) for codes read from the card.") var phone = false
    @Flag(help: "Read the card's OATH access code from standard input.") var cardPasswordStdin = false
    @Option(help: "Seconds to wait for the card.") var wait = 30

    @Option(help: ArgumentHelp("A code-only token's secret, Base32: - reads standard input, @FILE a file.", valueName: "SECRET|-|@FILE"))
    var secret: String?
    @Flag(help: "Time-based codes (the default).") var totp = false
    @Flag(help: "Counter-based codes.") var hotp = false
    @Option(help: "Code length: 6, 7 or 8.") var digits = 6
    @Option(help: "TOTP period in seconds (default 30).") var period: Int?
    @Option(help: "sha1, sha256 or sha512 (default sha1).") var algorithm: String?
    @Option(help: "HOTP initial counter (default 0).") var counter: UInt64?
    @Flag(help: "Enroll a name that is not a user of this machine.") var force = false

    @Option(help: "A label to tell tokens apart.") var label = ""
    @Flag(help: "Print the otpauth:// URI (it contains the secret) for a phone app (--secret tokens).") var uri = false
    @Flag(help: "Show the otpauth:// URI as a QR code in the terminal, for a phone app to scan (--secret tokens).") var qr = false
    @Flag(help: "Print the result as JSON.") var json = false

    func validate() throws {
        let kinds = [card, secret != nil, generate, selfService].filter { $0 }.count
        guard kinds == 1 || (kinds == 0 && confirm) else {
            throw ValidationError("give exactly one of --card, --secret and --generate (or --confirm alone, for a pending token)")
        }
        guard !confirm || !card && secret == nil else { throw ValidationError("--confirm goes with --generate or --self, or alone") }
        guard !selfService || options.server == nil else { throw ValidationError("--self asks through this host (its helper, or its fleet client): no --server") }
        guard !(totp && hotp) else { throw ValidationError("--totp and --hotp exclude each other") }
        if card, period != nil || algorithm != nil || hotp || totp || counter != nil {
            // A card credential is TOTP/SHA-1/30 s: what every phone app reads from a card.
            throw ValidationError("--period, --algorithm, --totp, --hotp and --counter are for --secret tokens; a card credential is TOTP, SHA-1, 30 s")
        }
        if card && (uri || qr) {
            // A URI of a card's secret clones the card into any phone that scans it.
            throw ValidationError("--uri and --qr are for --secret tokens: a card's secrets never leave the card (a phone reads the --phone credential from the card)")
        }
        guard !phone || card else { throw ValidationError("--phone goes with --card") }
        guard HashAlgorithm(name: algorithm ?? "sha1") != nil else { throw ValidationError("--algorithm must be sha1, sha256 or sha512") }
        guard (6...8).contains(digits) else { throw ValidationError("--digits must be 6, 7 or 8") }
        guard (1...600).contains(wait) else { throw ValidationError("--wait must be 1 to 600 seconds") }
    }

    func run() throws {
        if selfService { return try SelfService(helper: helper).enrol(user, confirmOnly: confirm) }
        guard let named = self.user else { throw ValidationError("name the user to enroll") }
        let user = try userName(named)
        // Confirming asks nothing of the name service: the record is there already.
        if confirm && !generate { return try confirmPending(user, try options.prepared()) }
        try requireSystemUser(user, force: force)
        let store = try options.prepared()
        let created = now()
        if generate { return try generatePending(user, store, created: created) }
        if card {
            let (tap, phoneToken) = try writeToCard(user: user, created: created)
            guard case .token(let id) = try store.apply(user, .enroll(tap)) else { throw Failure("the enrolment gave no token id") }
            var phoneID: String?
            if let phoneToken {
                guard case .token(let p) = try store.apply(user, .enroll(phoneToken)) else { throw Failure("the enrolment gave no token id") }
                phoneID = p
            }
            if json {
                try printJSON(Enrolled(user: user.value, token: id, kind: tap.kind.rawValue, device: tap.deviceID, phone_token: phoneID))
            } else {
                print("Enrolled card \(tap.deviceID ?? "") for \(user) as token \(id) (taps only)" + (phoneID.map { ", its phone credential as token \($0)" } ?? "") + ".")
            }
            return
        }
        var secretBytes: [UInt8]
        do { secretBytes = try Base32.decode(try secretArgument(secret ?? "")) } catch let e as Failure { throw e } catch {
            throw Failure("--secret: \(error)")
        }
        guard secretBytes.count >= OTPParameters.minSecretLength else {
            ConstantTime.wipe(&secretBytes)
            throw Failure("--secret decodes to \(secretBytes.count * 8) bits: RFC 4226 requires at least 128 (16 bytes; 20 recommended)")
        }
        guard secretBytes.count <= OTPParameters.maxSecretLength else {
            throw Failure("--secret must decode to at most \(OTPParameters.maxSecretLength) bytes")
        }
        let parameters = try OTPParameters(kind: hotp ? .hotp : .totp(period: period ?? 30),
                                           algorithm: HashAlgorithm(name: algorithm ?? "sha1") ?? .sha1, digits: digits)
        let token = Token(id: "", kind: .code, parameters: parameters, secret: SecretBytes(secretBytes),
                          initialCounter: counter ?? 0, label: label, created: created)
        guard case .token(let id) = try store.apply(user, .enroll(token)) else { throw Failure("the enrolment gave no token id") }
        let uriText = OTPAuthURI(parameters: parameters, secretBase32: Base32.encode(secretBytes), issuer: "smartotp",
                                 account: "\(user)@\(hostName())", counter: counter ?? 0).format()
        ConstantTime.wipe(&secretBytes)
        if json {
            try printJSON(Enrolled(user: user.value, token: id, kind: token.kind.rawValue, uri: uri ? uriText : nil))
        } else {
            print("Enrolled code token for \(user) as token \(id).")
            if uri { print(uriText) }
            if qr {
                guard let picture = TerminalQR.render(uriText) else { throw Failure("libqrencode could not encode the URI") }
                print("Scan this with an authenticator app (it holds the secret; clear the screen afterwards):")
                print(picture, terminator: "")
            }
        }
    }

    /// `--generate`: a new secret, the token written pending, its URI and QR code shown;
    /// with `--confirm` the code asked for at once.
    func generatePending(_ user: UserName, _ store: AdminTarget, created: Int64) throws {
        guard var secretBytes = SecureRandom.bytes(20) else { throw Failure("the system's random source failed") }
        defer { ConstantTime.wipe(&secretBytes) }
        let parameters = try OTPParameters(kind: hotp ? .hotp : .totp(period: period ?? 30),
                                           algorithm: HashAlgorithm(name: algorithm ?? "sha1") ?? .sha1, digits: digits)
        var token = Token(id: "", kind: .code, parameters: parameters, secret: SecretBytes(secretBytes),
                          initialCounter: counter ?? 0, label: label.isEmpty ? "phone" : label, created: created)
        token.pending = true
        guard case .token(let id) = try store.apply(user, .enroll(token)) else { throw Failure("the enrolment gave no token id") }
        let uriText = OTPAuthURI(parameters: parameters, secretBase32: Base32.encode(secretBytes), issuer: "smartotp",
                                 account: "\(user)@\(hostName())", counter: counter ?? 0).format()
        if json {
            try printJSON(Enrolled(user: user.value, token: id, kind: "code", uri: uriText, pending: true))
        } else {
            print("Token \(id) for \(user), pending until a code from the phone confirms it.")
            print(uriText)
            if let picture = TerminalQR.render(uriText) {
                print("Scan this with an authenticator app (it holds the secret; clear the screen afterwards):")
                print(picture, terminator: "")
            } else {
                print("(libqrencode could not draw the QR code: type the URI's secret into the app instead)")
            }
        }
        guard confirm else {
            if !json { print("Then confirm it: smartotp enroll \(user) --confirm") }
            return
        }
        fflush(nil)
        try confirmPending(user, store)
    }

    /// `--confirm`: the code from the phone, checked against the user's pending tokens.
    func confirmPending(_ user: UserName, _ store: AdminTarget) throws {
        let code = try readSecret(prompt: "Code from the phone: ", fromStdin: isatty(0) != 1, confirm: false)
            .filter { $0 != " " && $0 != "-" }
        guard !code.isEmpty, code.utf8.count <= 16 else { throw Failure("no code was typed") }
        guard case .token(let id) = try store.apply(user, .confirm(code: code)) else {
            throw Failure("that code matches no pending token of \(user) (a wrong code, or nothing pending): nothing was changed")
        }
        if json { try printJSON(Enrolled(user: user.value, token: id, kind: "code", pending: false)) }
        else { print("Token \(id) of \(user) is confirmed: it logs in from now on.") }
    }

    /// `--json`'s answer.
    struct Enrolled: Encodable {
        var user: String
        var token: String
        var kind: String
        var device: String?
        var phone_token: String?
        var uri: String?
        var pending: Bool?
    }

    /// The card's tap credential (and with --phone its phone credential) written, each with
    /// a secret of its own; the tokens to record.
    func writeToCard(user: UserName, created: Int64) throws -> (tap: Token, phone: Token?) {
        let context: PCSCContext
        do { context = try PCSCContext() } catch { throw Failure("\(error) (start it: systemctl start pcscd)") }
        var skip: [String] = []
        _ = "Present the card on the reader...\n".utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        let readerName: String
        do {
            readerName = try context.waitForCard(filter: reader, skip: &skip, timeoutMs: wait * 1000,
                                                 now: Clocks.monotonicMilliseconds)
        } catch { throw Failure("\(error)") }
        guard var tapSecret = SecureRandom.bytes(20), var phoneSecret = SecureRandom.bytes(20) else {
            throw Failure("the system random generator failed")
        }
        defer {
            ConstantTime.wipe(&tapSecret)
            ConstantTime.wipe(&phoneSecret)
        }
        do {
            let session = OATHSession(transport: try context.connect(reader: readerName))
            let info = try session.select()
            var accessKey: SecretBytes?
            if info.challenge != nil {
                let code = try readSecret(prompt: "Card access code: ", fromStdin: cardPasswordStdin, confirm: false)
                let key = try session.deriveKey(password: code)
                try session.validate(key: key)
                accessKey = key
            }
            // A tap sends the card a challenge of its own (CALCULATE with the full response):
            // the credential is TOTP-typed, as YKOATH calculates a HOTP credential on its own
            // counter, whatever the challenge.
            let parameters = try OTPParameters(kind: .totp(period: 30), algorithm: .sha1, digits: digits)
            let account = "\(user)@\(hostName())"
            let tapName = name ?? YKOATH.credentialName(issuer: "smartotp-tap", account: account, kind: parameters.kind)
            guard tapName.utf8.count <= 64 else { throw Failure("--name is longer than 64 bytes") }
            try session.put(name: tapName, parameters: parameters, secret: SecretBytes(tapSecret), touch: touch)
            var tap = Token(id: "", kind: .card, parameters: parameters, secret: SecretBytes(tapSecret),
                            credentialName: tapName, deviceID: info.deviceID, accessKey: accessKey,
                            label: label.isEmpty ? readerName : label, created: created)
            tap.touch = touch
            tap.tapOnly = true
            guard phone else { return (tap, nil) }
            let phoneName = YKOATH.credentialName(issuer: "smartotp", account: account, kind: parameters.kind)
            guard phoneName.utf8.count <= 64 else { throw Failure("the phone credential's name is longer than 64 bytes") }
            try session.put(name: phoneName, parameters: parameters, secret: SecretBytes(phoneSecret), touch: touch)
            let phoneToken = Token(id: "", kind: .code, parameters: parameters, secret: SecretBytes(phoneSecret),
                                   label: "phone credential \(phoneName) on card \(info.deviceID)", created: created)
            return (tap, phoneToken)
        } catch let e as CardError {
            throw Failure("\(readerName): \(e)")
        }
    }
}

struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set or change a user's simple password (the fallback PIN); run by a user, their own.",
        discussion: """
        At least \(Passwd.minimumLength) characters. Stored as a yescrypt hash, as /etc/shadow does.
        Run by a user who is not root (no USER, or their own name): it asks first for a
        one-time code of theirs (a token's, a recovery code or a temporary code), which is
        checked and counted like any login, then the current simple password when one is set,
        then the new one twice; with --password-stdin, three lines: the code, the current
        simple password (an empty line when none is set) and the new one.
        """
    )
    static let minimumLength = 4

    @OptionGroup var options: StoreOptions
    @Argument(help: "The user (root: anyone; a user: themself, the default).") var user: String?
    @Flag(help: "Read the password from standard input (one line; a NUL byte is refused).") var passwordStdin = false
    @Flag(help: "Set it for a name that is not a user of this machine.") var force = false
    @Option(help: .hidden) var helper: String?

    func run() throws {
        if getuid() != 0 { return try SelfService(helper: helper).password(user, fromStdin: passwordStdin) }
        guard let named = self.user else { throw ValidationError("name the user (root sets anyone's simple password)") }
        let user = try userName(named)
        try requireSystemUser(user, force: force)
        let password = try readSecret(prompt: "New simple password: ", fromStdin: passwordStdin, confirm: true)
        guard password.count >= Self.minimumLength else { throw Failure("the simple password needs at least \(Self.minimumLength) characters") }
        guard password.utf8.count <= 512 else { throw Failure("the simple password is longer than 512 bytes") }
        guard let hash = PasswordHash.make(password) else { throw Failure("libxcrypt could not hash the password") }
        _ = try options.prepared().apply(user, .passwd(hash: hash))
        print("Simple password set for \(user).")
    }
}
