import OTPCore
import TokenStore
import POSIX

/// Reads the files of the modules smartotp replaces, so that users keep their tokens.
///
/// Nothing imported may accept more than it did before: every piece of replay state
/// (used counters, used steps, the window) comes along, so the code the old module just
/// accepted is refused here too.
public enum Importers {
    /// One imported user: the token plus what else the file said.
    public struct Imported: Sendable {
        public var user: UserName
        public var token: Token
        /// pam_oath's password field: a PIN typed together with the code there. It is not a
        /// factor on its own, so it becomes the simple password only when the admin asks.
        public var pin: String?
        /// google-authenticator's scratch codes: become recovery codes.
        public var scratchCodes: [String]
        /// What could not be carried over, for the admin to read.
        public var notes: [String]

        public init(user: UserName, token: Token, pin: String?, scratchCodes: [String], notes: [String]) {
            self.user = user
            self.token = token
            self.pin = pin
            self.scratchCodes = scratchCodes
            self.notes = notes
        }
    }

    /// pam_oath's users file (`/etc/users.oath`), as liboath reads it:
    /// `TYPE USER PASSWORD SECRET-HEX [COUNTER [LAST-OTP [TIME]]]`, TYPE one of `HOTP`,
    /// `HOTP/E`, `HOTP/T30`, `HOTP/T60`, each with an optional `/6`, `/7`, `/8`; PASSWORD
    /// `-` for none. After a login liboath writes the counter of the accepted code, that
    /// code, and the local time; it refuses LAST-OTP again, so:
    /// - HOTP with a LAST-OTP: COUNTER is the last counter used; without: the first to accept.
    /// - TOTP: the step of LAST-OTP (found near TIME) is the last step used.
    public static func pamOath(_ text: String, path: String, now: Int64) throws(StoreError) -> [Imported] {
        try pamOath(text, path: path, now: now) { y, mo, d, h, mi, s in
            Clocks.localTime(year: y, month: mo, day: d, hour: h, minute: mi, second: s)
        }
    }

    /// `localTime` turns TIME's fields (year, month, day, hour, minute, second) into Unix time.
    static func pamOath(_ text: String, path: String, now: Int64,
                        localTime: (Int, Int, Int, Int, Int, Int) -> Int64?) throws(StoreError) -> [Imported] {
        var out: [Imported] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
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
            default: throw fail(msg("unsupported token type \(line[0].prefix(16))"))
            }
            let parameters: OTPParameters
            do { parameters = try OTPParameters(kind: kind, digits: digits) } catch { throw fail(error.description) }
            let user: UserName
            do { user = try UserName(String(line[1])) } catch { throw fail(error.description) }
            var secret: [UInt8]
            do { secret = try Hex.decode(String(line[3])) } catch { throw fail(msg("secret: \(error)")) }
            guard secret.count >= OTPParameters.minSecretLength else {
                throw fail(msg("the secret is \(secret.count * 8) bits: RFC 4226 requires at least 128 (give the user a new one)"))
            }
            guard secret.count <= OTPParameters.maxSecretLength else { throw fail("secret length") }
            var counter: UInt64 = 0
            if line.count >= 5 {
                guard let c = UInt64(line[4]) else { throw fail("counter is not a number") }
                counter = c
            }
            let lastOTP = line.count >= 6 ? String(line[5]) : nil
            var lastTime: Int64?
            if line.count >= 7 {
                guard let t = parseOathTime(String(line[6]), localTime) else { throw fail("time is not YYYY-MM-DDTHH:MM:SSL") }
                lastTime = t
            }
            let pin = line[2] == "-" ? nil : String(line[2])
            var token = Token(id: "oath", kind: .code, parameters: parameters, secret: SecretBytes(consuming: &secret),
                              label: "imported from pam_oath", created: now)
            var notes: [String] = []
            switch kind {
            case .hotp:
                token.initialCounter = counter
                if lastOTP != nil { token.lastUsed = counter }
            case .totp(let period):
                if let lastOTP {
                    // The step whose code was LAST-OTP, near the time it was used; when it
                    // cannot be found, nothing up to one step past that time is accepted.
                    let around = lastTime ?? now
                    if let step = findStep(lastOTP, token: token, near: around, period: period) {
                        token.lastUsed = step
                    } else if let base = OTP.timeStep(at: around, period: period) {
                        token.lastUsed = base &+ 1
                        notes.append(msg("line \(lineNumber): the last code used was not found near its time; steps up to \(base &+ 1) count as used"))
                    }
                }
            }
            out.append(Imported(user: user, token: token, pin: pin, scratchCodes: [], notes: notes))
        }
        return out
    }

    /// liboath's time format, `%Y-%m-%dT%H:%M:%SL` (local time).
    static func parseOathTime(_ s: String, _ localTime: (Int, Int, Int, Int, Int, Int) -> Int64?) -> Int64? {
        let b = Array(s.utf8)
        guard b.count == 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[19] == UInt8(ascii: "L") else { return nil }
        func n(_ r: Range<Int>) -> Int? { Int(String(decoding: b[r], as: UTF8.self)) }
        guard let y = n(0..<4), let mo = n(5..<7), let d = n(8..<10), let h = n(11..<13), let mi = n(14..<16),
              let se = n(17..<19), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        return localTime(y, mo, d, h, mi, se)
    }

    /// The time step within ±10 of `time` whose code is `code`.
    static func findStep(_ code: String, token: Token, near time: Int64, period: Int) -> UInt64? {
        guard let center = OTP.timeStep(at: time, period: period) else { return nil }
        for offset in 0...10 {
            for step in [center &+ UInt64(offset), center >= UInt64(offset) ? center - UInt64(offset) : center] {
                if let c = OTP.code(secret: token.secret, parameters: token.parameters, counter: step), c == code { return step }
            }
        }
        return nil
    }

    /// A google-authenticator file (`~/.google_authenticator`): the Base32 secret, then
    /// `" OPTION` lines, then 8-digit scratch codes. Carried over: `HOTP_COUNTER` (the next
    /// counter), `STEP_SIZE`, `WINDOW_SIZE` (as the token's window limit) and
    /// `DISALLOW_REUSE` (its list of used time steps: the last becomes the last step used).
    /// `RATE_LIMIT` has no per-token equivalent: the module's lock policy replaces it.
    public static func googleAuthenticator(_ text: String, path: String, user: UserName, now: Int64) throws(StoreError) -> Imported {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map { $0.hasSuffix("\r") ? $0.dropLast() : $0 }
        guard let first = lines.first else { throw .malformed(path: path, line: 1, reason: "empty file") }
        var secret: [UInt8]
        do { secret = try Base32.decode(String(first)) } catch { throw .malformed(path: path, line: 1, reason: msg("secret: \(error)")) }
        guard secret.count >= OTPParameters.minSecretLength else {
            throw .malformed(path: path, line: 1, reason: msg("the secret is \(secret.count * 8) bits: RFC 4226 requires at least 128 (give the user a new one)"))
        }
        guard secret.count <= OTPParameters.maxSecretLength else {
            throw .malformed(path: path, line: 1, reason: "secret length")
        }
        var hotpCounter: UInt64?
        var period = 30
        var windowSize: Int?
        var usedSteps: [UInt64] = []
        var notes: [String] = []
        var scratch: [String] = []
        for (i, line) in lines.dropFirst().enumerated() {
            func fail(_ why: String) -> StoreError { .malformed(path: path, line: i + 2, reason: why) }
            if line.hasPrefix("\"") {
                let words = line.dropFirst().split(separator: " ")
                switch words.first {
                case "HOTP_COUNTER":
                    guard words.count > 1, let c = UInt64(words[1]) else { throw fail("HOTP_COUNTER is not a number") }
                    hotpCounter = c
                case "STEP_SIZE":
                    guard words.count > 1, let p = Int(words[1]), (1...3600).contains(p) else { throw fail("bad STEP_SIZE") }
                    period = p
                case "WINDOW_SIZE":
                    guard words.count > 1, let w = Int(words[1]), (1...1000).contains(w) else { throw fail("bad WINDOW_SIZE") }
                    windowSize = w
                case "DISALLOW_REUSE":
                    for w in words.dropFirst() {
                        guard let step = UInt64(w) else { throw fail("DISALLOW_REUSE holds a non-number") }
                        usedSteps.append(step)
                    }
                case "RATE_LIMIT":
                    notes.append("RATE_LIMIT is not per token here: the module's deny/fail_interval/unlock_time limit guessing instead")
                default:
                    continue
                }
            } else {
                let code = String(line).trimmingSpaces()
                guard code.utf8.count == 8, code.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
                    throw fail("scratch code must be 8 digits")
                }
                scratch.append(code)
            }
        }
        let parameters: OTPParameters
        do { parameters = try OTPParameters(kind: hotpCounter == nil ? .totp(period: period) : .hotp) } catch {
            throw .malformed(path: path, line: 1, reason: error.description)
        }
        var token = Token(id: "ga", kind: .code, parameters: parameters, secret: SecretBytes(consuming: &secret),
                          initialCounter: hotpCounter ?? 0, label: "imported from google-authenticator", created: now)
        token.windowLimit = windowSize
        if hotpCounter == nil, let last = usedSteps.max() { token.lastUsed = last }
        return Imported(user: user, token: token, pin: nil, scratchCodes: scratch, notes: notes)
    }
}

extension Token {
    /// Whether `other` is the same credential: same secret and the same kind of codes.
    public func sameCredential(as other: Token) -> Bool {
        parameters == other.parameters && secret.constantTimeEquals(other.secret)
    }

    /// Takes over `other`'s replay state where it is further on (a re-import never moves
    /// a token back): the later last-used value and the tighter window.
    public mutating func absorbReplayState(of other: Token) {
        switch (lastUsed, other.lastUsed) {
        case (nil, let b?): lastUsed = b
        case (let a?, let b?): lastUsed = max(a, b)
        default: break
        }
        initialCounter = max(initialCounter, other.initialCounter)
        if let b = other.windowLimit { windowLimit = min(windowLimit ?? b, b) }
    }
}
