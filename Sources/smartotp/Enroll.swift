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
        card presented on the reader as a TOTP credential (YKOATH PUT), and the card's device
        id is recorded, so that pam_smartotp talks only to this card. The same credential
        gives a phone app (Yubico Authenticator over NFC) the codes to type over SSH.

        With --secret: a code-only token (phone app, hardware token) from a Base32 secret.
        Give the secret as `--secret -` (standard input) or `--secret @FILE`, as oathtool
        takes it: a secret on the command line is visible to every user in ps(1) and stays
        in the shell's history.

        The user must exist on this machine (getpwnam), spelled as the name service spells
        it (logins look records up under that spelling); --force enrolls another name (a
        user who comes from LDAP later, say).

        EXAMPLES
          smartotp enroll alice --card
          smartotp enroll alice --card --touch --name "Bank:alice"
          smartotp enroll bob --secret - --digits 8 < bob.secret
        """
    )

    @OptionGroup var options: StoreOptions
    @Argument(help: "The user to enroll.") var user: String

    @Flag(help: "Write a new credential to the card on the reader.") var card = false
    @Option(help: "Use the first reader whose name contains this text.") var reader: String?
    @Flag(help: "The credential needs a touch on the key for every code.") var touch = false
    @Option(help: "The credential's name on the card (default smartotp:USER@HOST).") var name: String?
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
    @Flag(help: "Print the otpauth:// URI (it contains the secret) for a phone app.") var uri = false
    @Flag(help: "Show the otpauth:// URI as a QR code in the terminal, for a phone app to scan.") var qr = false
    @Flag(help: "Print the result as JSON.") var json = false

    func validate() throws {
        guard card != (secret != nil) else { throw ValidationError("give exactly one of --card and --secret") }
        guard !(totp && hotp) else { throw ValidationError("--totp and --hotp exclude each other") }
        if card, period != nil || algorithm != nil || hotp || totp || counter != nil {
            // A card credential is TOTP/SHA-1/30 s: what every phone app reads from a card.
            throw ValidationError("--period, --algorithm, --totp, --hotp and --counter are for --secret tokens; a card credential is TOTP, SHA-1, 30 s")
        }
        guard HashAlgorithm(name: algorithm ?? "sha1") != nil else { throw ValidationError("--algorithm must be sha1, sha256 or sha512") }
        guard (6...8).contains(digits) else { throw ValidationError("--digits must be 6, 7 or 8") }
        guard (1...600).contains(wait) else { throw ValidationError("--wait must be 1 to 600 seconds") }
    }

    func run() throws {
        let user = try userName(self.user)
        try requireSystemUser(user, force: force)
        let store = try options.prepared()
        let created = now()
        let token: Token
        var secretBytes: [UInt8]
        if card {
            guard let random = SecureRandom.bytes(20) else { throw Failure("the system random generator failed") }
            secretBytes = random
            token = try writeToCard(user: user, secret: secretBytes, created: created)
        } else {
            do { secretBytes = try Base32.decode(try secretArgument(secret ?? "")) } catch let e as Failure { throw e } catch {
                throw Failure("--secret: \(error)")
            }
            guard (1...OTPParameters.maxSecretLength).contains(secretBytes.count) else {
                throw Failure("--secret must decode to 1 to \(OTPParameters.maxSecretLength) bytes")
            }
            let parameters = try OTPParameters(kind: hotp ? .hotp : .totp(period: period ?? 30),
                                               algorithm: HashAlgorithm(name: algorithm ?? "sha1") ?? .sha1, digits: digits)
            token = Token(id: "", kind: .code, parameters: parameters, secret: SecretBytes(secretBytes),
                          initialCounter: counter ?? 0, label: label, created: created)
        }
        guard case .token(let id) = try store.apply(user, .enroll(token)) else { throw Failure("the enrolment gave no token id") }
        let parameters = token.parameters
        let uriText = OTPAuthURI(parameters: parameters, secretBase32: Base32.encode(secretBytes), issuer: "smartotp",
                                 account: "\(user)@\(hostName())", counter: counter ?? 0).format()
        ConstantTime.wipe(&secretBytes)
        if json {
            struct Enrolled: Encodable {
                var user: String
                var token: String
                var kind: String
                var device: String?
                var uri: String?
            }
            try printJSON(Enrolled(user: user.value, token: id, kind: token.kind.rawValue, device: token.deviceID, uri: uri ? uriText : nil))
        } else {
            print("Enrolled \(card ? "card \(token.deviceID ?? "")" : "code token") for \(user) as token \(id).")
            if uri { print(uriText) }
            if qr {
                guard let picture = TerminalQR.render(uriText) else { throw Failure("libqrencode could not encode the URI") }
                print("Scan this with an authenticator app (it holds the secret; clear the screen afterwards):")
                print(picture, terminator: "")
            }
        }
    }

    func writeToCard(user: UserName, secret: [UInt8], created: Int64) throws -> Token {
        let context: PCSCContext
        do { context = try PCSCContext() } catch { throw Failure("\(error) (start it: systemctl start pcscd)") }
        var skip: [String] = []
        _ = "Present the card on the reader...\n".utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        let readerName: String
        do {
            readerName = try context.waitForCard(filter: reader, skip: &skip, timeoutMs: wait * 1000,
                                                 now: Clocks.monotonicMilliseconds)
        } catch { throw Failure("\(error)") }
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
            let parameters = try OTPParameters(kind: .totp(period: 30), algorithm: .sha1, digits: digits)
            let credentialName = name ?? YKOATH.credentialName(issuer: "smartotp", account: "\(user)@\(hostName())", kind: parameters.kind)
            guard credentialName.utf8.count <= 64 else { throw Failure("--name is longer than 64 bytes") }
            try session.put(name: credentialName, parameters: parameters, secret: SecretBytes(secret), touch: touch)
            var token = Token(id: "", kind: .card, parameters: parameters, secret: SecretBytes(secret),
                              credentialName: credentialName, deviceID: info.deviceID, accessKey: accessKey,
                              label: label.isEmpty ? readerName : label, created: created)
            token.touch = touch
            return token
        } catch let e as CardError {
            throw Failure("\(readerName): \(e)")
        }
    }
}

struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set or change a user's simple password (the fallback PIN).",
        discussion: "At least \(Passwd.minimumLength) characters. Stored as a yescrypt hash, as /etc/shadow does."
    )
    static let minimumLength = 4

    @OptionGroup var options: StoreOptions
    @Argument(help: "The user.") var user: String
    @Flag(help: "Read the password from standard input (one line; a NUL byte is refused).") var passwordStdin = false
    @Flag(help: "Set it for a name that is not a user of this machine.") var force = false

    func run() throws {
        let user = try userName(self.user)
        try requireSystemUser(user, force: force)
        let password = try readSecret(prompt: "New simple password: ", fromStdin: passwordStdin, confirm: true)
        guard password.count >= Self.minimumLength else { throw Failure("the simple password needs at least \(Self.minimumLength) characters") }
        guard password.utf8.count <= 512 else { throw Failure("the simple password is longer than 512 bytes") }
        guard let hash = PasswordHash.make(password) else { throw Failure("libxcrypt could not hash the password") }
        _ = try options.prepared().apply(user, .passwd(hash: hash))
        print("Simple password set for \(user).")
    }
}
