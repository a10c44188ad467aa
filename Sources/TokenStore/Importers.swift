import OTPCore

/// Reads the files of the modules smartotp replaces, so that users keep their tokens.
public enum Importers {
    /// One imported user: the token plus what else the file said.
    public struct Imported: Sendable {
        public var user: UserName
        public var token: Token
        /// pam_oath's password field, a plaintext PIN: becomes the simple password.
        public var password: String?
        /// google-authenticator's scratch codes: become recovery codes.
        public var scratchCodes: [String]
    }

    /// pam_oath's users file (`/etc/users.oath`):
    /// `TYPE USER PASSWORD SECRET-HEX [COUNTER [TIME]]`, TYPE one of `HOTP`, `HOTP/E`,
    /// `HOTP/T30`, `HOTP/T60`, each with an optional `/6`, `/7`, `/8`; PASSWORD `-` for none.
    /// For HOTP the counter is the next one expected; for TOTP it is the last step used.
    public static func pamOath(_ text: String, path: String, now: Int64) throws(StoreError) -> [Imported] {
        var out: [Imported] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line[0].hasPrefix("#") { continue }
            func fail(_ why: String) -> StoreError { .malformed(path: path, line: lineNumber, reason: why) }
            guard line.count >= 4 else { throw fail("expected TYPE USER PASSWORD SECRET") }
            var typeParts = line[0].uppercased().split(separator: "/").map(String.init)
            var digits = 6
            if let last = typeParts.last, let d = Int(last) { digits = d; typeParts.removeLast() }
            let kind: OTPKind
            switch typeParts {
            case ["HOTP"], ["HOTP", "E"]: kind = .hotp
            case ["HOTP", "T30"]: kind = .totp(period: 30)
            case ["HOTP", "T60"]: kind = .totp(period: 60)
            default: throw fail("unsupported token type \(line[0].prefix(16))")
            }
            let parameters: OTPParameters
            do { parameters = try OTPParameters(kind: kind, digits: digits) } catch { throw fail(error.description) }
            let user: UserName
            do { user = try UserName(String(line[1])) } catch { throw fail(error.description) }
            var secret: [UInt8]
            do { secret = try Hex.decode(String(line[3])) } catch { throw fail("secret: \(error)") }
            guard (1...OTPParameters.maxSecretLength).contains(secret.count) else { throw fail("secret length") }
            var counter: UInt64 = 0
            if line.count >= 5 {
                guard let c = UInt64(line[4]) else { throw fail("counter is not a number") }
                counter = c
            }
            let password = line[2] == "-" ? nil : String(line[2])
            var token = Token(id: "oath", kind: .code, parameters: parameters, secret: SecretBytes(consuming: &secret),
                              label: "imported from pam_oath", created: now)
            if case .hotp = kind { token.initialCounter = counter } else if counter > 0 { token.lastUsed = counter }
            out.append(Imported(user: user, token: token, password: password, scratchCodes: []))
        }
        return out
    }

    /// A google-authenticator file (`~/.google_authenticator`): the Base32 secret, then
    /// `" OPTION` lines (`TOTP_AUTH`, `HOTP_COUNTER n`, `STEP_SIZE n`, `WINDOW_SIZE n`, …),
    /// then 8-digit scratch codes.
    public static func googleAuthenticator(_ text: String, path: String, user: UserName, now: Int64) throws(StoreError) -> Imported {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        guard let first = lines.first else { throw .malformed(path: path, line: 1, reason: "empty file") }
        var secret: [UInt8]
        do { secret = try Base32.decode(String(first)) } catch { throw .malformed(path: path, line: 1, reason: "secret: \(error)") }
        guard (1...OTPParameters.maxSecretLength).contains(secret.count) else {
            throw .malformed(path: path, line: 1, reason: "secret length")
        }
        var hotpCounter: UInt64?
        var period = 30
        var scratch: [String] = []
        for (i, line) in lines.dropFirst().enumerated() {
            if line.hasPrefix("\"") {
                let words = line.dropFirst().split(separator: " ")
                if words.first == "HOTP_COUNTER", words.count > 1 {
                    guard let c = UInt64(words[1]) else { throw .malformed(path: path, line: i + 2, reason: "HOTP_COUNTER is not a number") }
                    hotpCounter = c
                } else if words.first == "STEP_SIZE", words.count > 1 {
                    guard let p = Int(words[1]), (1...3600).contains(p) else { throw .malformed(path: path, line: i + 2, reason: "bad STEP_SIZE") }
                    period = p
                }
            } else {
                let code = String(line).trimmingSpaces()
                guard code.utf8.count == 8, code.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
                    throw .malformed(path: path, line: i + 2, reason: "scratch code must be 8 digits")
                }
                scratch.append(code)
            }
        }
        let parameters: OTPParameters
        do { parameters = try OTPParameters(kind: hotpCounter == nil ? .totp(period: period) : .hotp) } catch {
            throw .malformed(path: path, line: 1, reason: error.description)
        }
        let token = Token(id: "ga", kind: .code, parameters: parameters, secret: SecretBytes(consuming: &secret),
                          initialCounter: hotpCounter ?? 0, label: "imported from google-authenticator", created: now)
        return Imported(user: user, token: token, password: nil, scratchCodes: scratch)
    }
}
