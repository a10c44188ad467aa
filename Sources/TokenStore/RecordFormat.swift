import OTPCore

/// The on-disk text of a `UserRecord`: versioned, one fact a line, readable and diffable.
///
/// ```
/// smartotp-record 1
/// user alice
/// created 1764000000
/// password $y$j9T$…
/// failed-at 1764000100 1764000130
/// challenge 0011223344556677 1764000160
/// token id=card kind=card type=totp period=30 algorithm=sha1 digits=6 secret=JBSW… last=- created=… used=- label=Work%20card name=smartotp%3Aalice device=0a1b… access-key=-
/// recovery $y$j9T$…
/// recovery-used $y$j9T$…
/// ```
/// Values inside `token` lines are percent-encoded; `-` means "none". `failed-at` is the
/// failure tally (pam_faillock's); records of earlier versions said `failures N LAST`,
/// read as N failures at LAST.
public enum RecordFormat {
    public static let header = "smartotp-record 1"
    /// Records larger than this are refused unread: a user has a handful of tokens.
    public static let maxSize = 64 * 1024

    public static func serialise(_ r: UserRecord) -> String {
        var out = ""
        out.reserveCapacity(1024 + 256 * r.tokens.count + 128 * (r.recoveryCodes.count + r.usedRecoveryCodes.count))
        out += "# smartotp user record: managed by smartotp(1). Secrets below; keep this file 0600 root.\n"
        // Appended piece by piece into the one reserved buffer: interpolation would build a
        // temporary String per line, twice per login.
        func line(_ parts: String...) {
            for p in parts { out += p }
            out += "\n"
        }
        line(header)
        line("user ", r.user.value)
        line("created ", String(r.created))
        if let hash = r.passwordHash { line("password ", hash) }
        if !r.failureTimes.isEmpty {
            out += "failed-at"
            for t in r.failureTimes { out += " "; out += String(t) }
            out += "\n"
        }
        for c in r.challenges { line("challenge ", Hex.encode(c.bytes), " ", String(c.expires)) }
        for t in r.tokens { line(tokenLine(t)) }
        for code in r.recoveryCodes { line("recovery ", code) }
        for code in r.usedRecoveryCodes { line("recovery-used ", code) }
        return out
    }

    static func tokenLine(_ t: Token) -> String {
        var out = "token"
        out.reserveCapacity(320)
        func field(_ key: String, _ value: String) {
            out += " "
            out += key
            out += "="
            out += value
        }
        field("id", t.id)
        field("kind", t.kind.rawValue)
        switch t.parameters.kind {
        case .totp(let period): field("type", "totp"); field("period", String(period))
        case .hotp: field("type", "hotp"); field("counter", String(t.initialCounter))
        }
        field("algorithm", t.parameters.algorithm.description)
        field("digits", String(t.parameters.digits))
        var secret = t.secret.copyBytes()
        field("secret", Base32.encode(secret))
        ConstantTime.wipe(&secret)
        field("last", t.lastUsed.map { String($0) } ?? "-")
        field("created", String(t.created))
        field("used", t.lastUsedTime.map { String($0) } ?? "-")
        field("label", t.label.isEmpty ? "-" : OTPAuthURI.percentEncode(t.label))
        if let limit = t.windowLimit { field("window", String(limit)) }
        if t.kind == .card {
            var key = t.accessKey?.copyBytes()
            field("name", t.credentialName.map { OTPAuthURI.percentEncode($0) } ?? "-")
            field("device", t.deviceID ?? "-")
            field("access-key", key.map { Hex.encode($0) } ?? "-")
            field("touch", t.touch ? "1" : "0")
            ConstantTime.wipe(&key)
        }
        return out
    }

    /// Parses a record. Every problem is reported with the line number; nothing is guessed.
    public static func parse(_ text: String, path: String) throws(StoreError) -> UserRecord {
        var user: UserName?
        var created: Int64 = 0
        var password: String?
        var failureTimes: [Int64] = []
        var tokens: [Token] = []
        var recovery: [String] = []
        var usedRecovery: [String] = []
        var challenges: [PendingChallenge] = []
        var sawHeader = false
        var lineNumber = 0
        // Lines and the keyword are found on the bytes; only the value becomes a String.
        var all = Array(text.utf8)
        defer { ConstantTime.wipe(&all) }
        var lineStart = 0
        while lineStart <= all.count {
            var lineEnd = lineStart
            while lineEnd < all.count && all[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            if lineStart == all.count && lineEnd == all.count { break }
            lineNumber += 1
            var end = lineEnd
            if end > lineStart && all[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = all[lineStart..<end]
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            func fail(_ why: String) -> StoreError { .malformed(path: path, line: lineNumber, reason: why) }
            if !sawHeader {
                guard line.elementsEqual(header.utf8) else { throw fail("expected '\(header)' (unknown format or version)") }
                sawHeader = true
                continue
            }
            let space = line.firstIndex(of: UInt8(ascii: " ")) ?? end
            let keyword = String(decoding: all[lineStart..<space], as: UTF8.self)
            let value = space < end ? String(decoding: all[(space + 1)..<end], as: UTF8.self) : ""
            switch keyword {
            case "user":
                do { user = try UserName(value) } catch { throw fail("\(error)") }
            case "created":
                guard let v = Int64(value) else { throw fail("created is not a number") }
                created = v
            case "password":
                guard isCryptHash(value) else { throw fail("password is not a crypt(3) hash") }
                password = value
            case "failures":
                let f = value.splitBytes(UInt8(ascii: " "))
                guard f.count == 2, let n = Int(f[0]), n >= 0, let t = Int64(f[1]) else {
                    throw fail("failures needs a count and a time")
                }
                failureTimes += Array(repeating: t, count: min(n, UserRecord.maxFailureTimes))
            case "failed-at":
                for word in value.splitBytes(UInt8(ascii: " ")) {
                    guard let t = Int64(word) else { throw fail("failed-at needs Unix times") }
                    guard failureTimes.count < UserRecord.maxFailureTimes else { throw fail("more than \(UserRecord.maxFailureTimes) failure times") }
                    failureTimes.append(t)
                }
            case "challenge":
                let f = value.splitBytes(UInt8(ascii: " "))
                guard f.count == 2, let bytes = try? Hex.decode(f[0]), (1...64).contains(bytes.count),
                      let expires = Int64(f[1]) else { throw fail("challenge needs hex bytes and an expiry time") }
                guard challenges.count < UserRecord.maxChallenges else { throw fail("more than \(UserRecord.maxChallenges) challenges") }
                challenges.append(PendingChallenge(bytes: bytes, expires: expires))
            case "recovery-used":
                guard isCryptHash(value) else { throw fail("recovery-used is not a crypt(3) hash") }
                guard usedRecovery.count < UserRecord.maxUsedRecovery else { throw fail("more than \(UserRecord.maxUsedRecovery) used recovery codes") }
                usedRecovery.append(value)
            case "token":
                do { tokens.append(try parseToken(value)) } catch { throw fail(error.description) }
                if let last = tokens.last, tokens.dropLast().contains(where: { $0.id == last.id }) {
                    throw fail("duplicate token id \(last.id)")
                }
            case "recovery":
                guard isCryptHash(value) else { throw fail("recovery code is not a crypt(3) hash") }
                recovery.append(value)
            default:
                throw fail("unknown keyword '\(keyword.prefix(32))'")
            }
        }
        guard sawHeader else { throw .malformed(path: path, line: max(lineNumber, 1), reason: "empty record") }
        guard let user else { throw .malformed(path: path, line: 1, reason: "no 'user' line") }
        return UserRecord(user: user, tokens: tokens, passwordHash: password, failureTimes: failureTimes,
                          recoveryCodes: recovery, usedRecoveryCodes: usedRecovery, challenges: challenges, created: created)
    }

    static func isCryptHash(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count < 512 && s.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    struct FieldError: Error { let description: String }

    /// A `key=value` field of a token line, as byte ranges into the line.
    struct Field {
        let key: Range<Int>
        let value: Range<Int>
    }

    static func parseToken(_ text: String) throws(FieldError) -> Token {
        // The fields are found as byte ranges in one copy of the line (wiped at the end: it
        // holds the secret), and a String is made only for a value that is asked for: a
        // record is parsed on every login, and small allocations were most of its cost.
        var bytes = Array(text.utf8)
        defer { ConstantTime.wipe(&bytes) }
        var f: [Field] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: " ") { i += 1; continue }
            let start = i
            while i < bytes.count && bytes[i] != UInt8(ascii: " ") { i += 1 }
            guard let eq = bytes[start..<i].firstIndex(of: UInt8(ascii: "=")) else {
                throw FieldError(description: "token field '\(String(decoding: bytes[start..<min(i, start + 32)], as: UTF8.self))' is not key=value")
            }
            f.append(Field(key: start..<eq, value: (eq + 1)..<i))
        }
        func value(_ k: String) -> String? {
            guard let field = f.last(where: { bytes[$0.key].elementsEqual(k.utf8) }) else { return nil }
            return String(decoding: bytes[field.value], as: UTF8.self)
        }
        func need(_ k: String) throws(FieldError) -> String {
            guard let v = value(k) else { throw FieldError(description: "token lacks \(k)=") }
            return v
        }
        func optional(_ k: String) -> String? { value(k).flatMap { $0 == "-" ? nil : $0 } }
        func number<T: FixedWidthInteger>(_ k: String, _: T.Type) throws(FieldError) -> T? {
            guard let v = optional(k) else { return nil }
            guard let n = T(v) else { throw FieldError(description: "token \(k)= is not a number") }
            return n
        }
        let id = try need("id")
        guard Token.isValidID(id) else { throw FieldError(description: "token id must be 1-32 of a-z 0-9 - _") }
        guard let kind = TokenKind(rawValue: try need("kind")) else { throw FieldError(description: "token kind must be card or code") }
        guard let algorithm = HashAlgorithm(name: try need("algorithm")) else { throw FieldError(description: "unknown algorithm") }
        guard let digits = Int(try need("digits")) else { throw FieldError(description: "digits is not a number") }
        let otpKind: OTPKind
        var initial: UInt64 = 0
        switch try need("type") {
        case "totp":
            guard let p = try number("period", Int.self) else { throw FieldError(description: "totp token lacks period=") }
            otpKind = .totp(period: p)
        case "hotp":
            otpKind = .hotp
            initial = try number("counter", UInt64.self) ?? 0
        default: throw FieldError(description: "type must be totp or hotp")
        }
        let parameters: OTPParameters
        do { parameters = try OTPParameters(kind: otpKind, algorithm: algorithm, digits: digits) } catch {
            throw FieldError(description: error.description)
        }
        let secretText = try need("secret")
        var secretBytes: [UInt8]
        do { secretBytes = try Base32.decode(secretText) } catch { throw FieldError(description: "secret: \(error)") }
        guard (1...OTPParameters.maxSecretLength).contains(secretBytes.count) else {
            ConstantTime.wipe(&secretBytes)
            throw FieldError(description: "secret must be 1-\(OTPParameters.maxSecretLength) bytes")
        }
        var accessKey: SecretBytes?
        if let hex = optional("access-key") {
            guard var k = try? Hex.decode(hex), k.count == 16 else { throw FieldError(description: "access-key must be 16 bytes of hex") }
            accessKey = SecretBytes(consuming: &k)
        }
        var deviceID: String?
        if let d = optional("device") {
            guard d.utf8.count <= 64, (try? Hex.decode(d)) != nil else { throw FieldError(description: "device must be hex") }
            deviceID = d.asciiLowercased
        }
        let label = optional("label").flatMap { OTPAuthURI.percentDecode($0) } ?? ""
        let name = optional("name").flatMap { OTPAuthURI.percentDecode($0) }
        if kind == .card && name == nil { throw FieldError(description: "card token lacks name=") }
        var token = Token(id: id, kind: kind, parameters: parameters, secret: SecretBytes(consuming: &secretBytes),
                     initialCounter: initial, lastUsed: try number("last", UInt64.self),
                     credentialName: name, deviceID: deviceID, accessKey: accessKey, label: label,
                     created: try number("created", Int64.self) ?? 0,
                     lastUsedTime: try number("used", Int64.self))
        token.touch = optional("touch") == "1"
        if let limit = try number("window", Int.self) {
            guard (1...1000).contains(limit) else { throw FieldError(description: "token window= must be 1-1000") }
            token.windowLimit = limit
        }
        return token
    }
}
