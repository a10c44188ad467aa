import OTPCore

/// The on-disk text of a `UserRecord`: versioned, one fact a line, readable and diffable.
///
/// ```
/// smartotp-record 1
/// user alice
/// created 1764000000
/// password $y$j9T$…
/// failed-at 1764000100 1764000130
/// challenge 0011223344556677 1764000160 host1.example.org
/// token id=card kind=card type=totp period=30 algorithm=sha1 digits=6 secret=JBSW… last=- created=… used=- label=Work%20card name=smartotp%3Aalice device=0a1b… access-key=-
/// recovery $y$j9T$…
/// recovery-used $y$j9T$…
/// ```
/// Values inside `token` lines, and a challenge's host (absent for this machine), are
/// percent-encoded; `-` means "none". `failed-at` is the
/// failure tally (pam_faillock's); records of earlier versions said `failures N LAST`,
/// read as N failures at LAST.
public enum RecordFormat {
    public static let header = "smartotp-record 1"
    /// Records larger than this are refused unread: a user has a handful of tokens.
    public static let maxSize = 64 * 1024

    /// The record as the text a file holds.
    public static func serialise(_ r: UserRecord) -> String {
        var bytes = encode(r)
        defer { ConstantTime.wipe(&bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The record's text as bytes, built in one reserved buffer (a login writes its record
    /// twice; String appends cost several times more in the module). Holds secrets: the
    /// caller wipes it.
    public static func encode(_ r: UserRecord) -> [UInt8] {
        var out = ByteWriter(capacity: 1024 + 256 * r.tokens.count + 128 * (r.recoveryCodes.count + r.usedRecoveryCodes.count))
        out.add("# smartotp user record: managed by smartotp(1). Secrets below; keep this file 0600 root.\n")
        out.add(header)
        out.add("\nuser "); out.add(r.user.value)
        out.add("\ncreated "); out.add(r.created)
        if let hash = r.passwordHash { out.add("\npassword "); out.add(hash) }
        if !r.failureTimes.isEmpty {
            out.add("\nfailed-at")
            for t in r.failureTimes { out.add(byte: UInt8(ascii: " ")); out.add(t) }
        }
        for c in r.challenges {
            out.add("\nchallenge "); out.add(Hex.encode(c.bytes))
            out.add(byte: UInt8(ascii: " ")); out.add(c.expires)
            if !c.host.isEmpty { out.add(byte: UInt8(ascii: " ")); out.add(OTPAuthURI.percentEncode(c.host)) }
        }
        for t in r.tokens { out.add("\n"); tokenLine(t, into: &out) }
        for code in r.recoveryCodes { out.add("\nrecovery "); out.add(code) }
        for code in r.usedRecoveryCodes { out.add("\nrecovery-used "); out.add(code) }
        if r.enrolling { out.add("\nenrolling") }
        if let i = r.invitation {
            out.add("\ninvite "); out.add(i.hash)
            out.add(byte: UInt8(ascii: " ")); out.add(i.until)
        }
        for t in r.tempCodes {
            out.add("\ntemp "); out.add(t.hash)
            out.add(byte: UInt8(ascii: " ")); out.add(t.until)
            out.add(byte: UInt8(ascii: " ")); out.add(t.uses)
        }
        out.add("\n")
        return out.take()
    }

    static func tokenLine(_ t: Token, into out: inout ByteWriter) {
        out.add("token id="); out.add(t.id)
        out.add(" kind="); out.add(t.kind.rawValue)
        switch t.parameters.kind {
        case .totp(let period): out.add(" type=totp period="); out.add(period)
        case .hotp: out.add(" type=hotp counter="); out.add(t.initialCounter)
        }
        out.add(" algorithm="); out.add(t.parameters.algorithm.description)
        out.add(" digits="); out.add(t.parameters.digits)
        var encoded = t.secret.withUnsafeBytes { Base32.encodeBytes($0) }
        out.add(" secret="); out.add(bytes: encoded)
        ConstantTime.wipe(&encoded)
        out.add(" last=")
        if let last = t.lastUsed { out.add(last) } else { out.add("-") }
        out.add(" created="); out.add(t.created)
        out.add(" used=")
        if let used = t.lastUsedTime { out.add(used) } else { out.add("-") }
        out.add(" label=")
        if t.label.isEmpty { out.add("-") } else { out.add(OTPAuthURI.percentEncode(t.label)) }
        if let limit = t.windowLimit { out.add(" window="); out.add(limit) }
        if t.kind == .card {
            out.add(" name=")
            if let name = t.credentialName { out.add(OTPAuthURI.percentEncode(name)) } else { out.add("-") }
            out.add(" device="); out.add(t.deviceID ?? "-")
            out.add(" access-key=")
            if var key = t.accessKey?.copyBytes() {
                var hex = Array(Hex.encode(key).utf8)
                out.add(bytes: hex)
                ConstantTime.wipe(&key)
                ConstantTime.wipe(&hex)
            } else {
                out.add("-")
            }
            out.add(t.touch ? " touch=1" : " touch=0")
            if t.tapOnly { out.add(" codes=0") }
        }
        if t.pending { out.add(" pending=1") }
    }

    /// A record's text as a String (smartotpd's column): the encoded bytes are wiped.
    public static func text(_ r: UserRecord) -> String {
        var bytes = encode(r)
        defer { ConstantTime.wipe(&bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses a record's text (smartotpd's column, tests and tools; the store parses the
    /// bytes it read).
    public static func parse(_ text: String, path: String) throws(StoreError) -> UserRecord {
        var bytes = Array(text.utf8)
        defer { ConstantTime.wipe(&bytes) }
        return try parse(bytes: bytes, path: path)
    }

    /// Parses a record. Every problem is reported with the line number; nothing is guessed.
    /// Lines and keywords are matched on the bytes; only a value that is kept becomes a
    /// String (a record is parsed on every login).
    public static func parse(bytes all: [UInt8], path: String) throws(StoreError) -> UserRecord {
        var user: UserName?
        var created: Int64 = 0
        var password: String?
        var failureTimes: [Int64] = []
        var tokens: [Token] = []
        var recovery: [String] = []
        var usedRecovery: [String] = []
        var challenges: [PendingChallenge] = []
        var temp: [TempCode] = []
        var invitation: Invitation?
        var enrolling = false
        var sawHeader = false
        var lineNumber = 0
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
                guard line.elementsEqual(header.utf8) else { throw fail(msg("expected '\(header)' (unknown format or version)")) }
                sawHeader = true
                continue
            }
            let space = line.firstIndex(of: UInt8(ascii: " ")) ?? end
            let keyword = all[lineStart..<space]
            let value = all[min(space + 1, end)..<end]
            func text() -> String { String(decoding: value, as: UTF8.self) }
            if keyword.spells("user") {
                do { user = try UserName(text()) } catch { throw fail(msg("\(error)")) }
            } else if keyword.spells("created") {
                guard let v = ByteNumber.parse(value, as: Int64.self) else { throw fail("created is not a number") }
                created = v
            } else if keyword.spells("password") {
                guard isCryptHash(value) else { throw fail("password is not a crypt(3) hash") }
                password = text()
            } else if keyword.spells("failures") {
                let f = words(value)
                guard f.count == 2, let n = ByteNumber.parse(value[f[0]], as: Int.self), n >= 0,
                      let t = ByteNumber.parse(value[f[1]], as: Int64.self) else {
                    throw fail("failures needs a count and a time")
                }
                failureTimes += Array(repeating: t, count: min(n, UserRecord.maxFailureTimes))
            } else if keyword.spells("failed-at") {
                for word in words(value) {
                    guard let t = ByteNumber.parse(value[word], as: Int64.self) else { throw fail("failed-at needs Unix times") }
                    guard failureTimes.count < UserRecord.maxFailureTimes else { throw fail(msg("more than \(UserRecord.maxFailureTimes) failure times")) }
                    failureTimes.append(t)
                }
            } else if keyword.spells("challenge") {
                let f = words(value)
                guard f.count == 2 || f.count == 3, let bytes = try? Hex.decode(String(decoding: value[f[0]], as: UTF8.self)),
                      (1...64).contains(bytes.count),
                      let expires = ByteNumber.parse(value[f[1]], as: Int64.self) else { throw fail("challenge needs hex bytes, an expiry time and optionally a host") }
                var host = ""
                if f.count == 3 {
                    guard let h = OTPAuthURI.percentDecode(String(decoding: value[f[2]], as: UTF8.self)), !h.isEmpty, h.utf8.count <= 255 else {
                        throw fail("a challenge's host is not percent-encoded text")
                    }
                    host = h
                }
                guard challenges.count < UserRecord.maxChallenges else { throw fail(msg("more than \(UserRecord.maxChallenges) challenges")) }
                challenges.append(PendingChallenge(bytes: bytes, expires: expires, host: host))
            } else if keyword.spells("recovery-used") {
                guard isCryptHash(value) else { throw fail("recovery-used is not a crypt(3) hash") }
                guard usedRecovery.count < UserRecord.maxUsedRecovery else { throw fail(msg("more than \(UserRecord.maxUsedRecovery) used recovery codes")) }
                usedRecovery.append(text())
            } else if keyword.spells("token") {
                do { tokens.append(try parseToken(value)) } catch { throw fail(error.description) }
                if let last = tokens.last, tokens.dropLast().contains(where: { $0.id.equals(last.id) }) {
                    throw fail(msg("duplicate token id \(last.id)"))
                }
            } else if keyword.spells("recovery") {
                guard isCryptHash(value) else { throw fail("recovery code is not a crypt(3) hash") }
                recovery.append(text())
            } else if keyword.spells("enrolling") {
                enrolling = true
            } else if keyword.spells("invite") {
                let f = words(value)
                guard f.count == 2, isCryptHash(value[f[0]]), let until = ByteNumber.parse(value[f[1]], as: Int64.self) else {
                    throw fail("invite needs a crypt(3) hash and an end time")
                }
                guard invitation == nil else { throw fail("more than one invite line") }
                invitation = Invitation(hash: String(decoding: value[f[0]], as: UTF8.self), until: until)
            } else if keyword.spells("temp") {
                let f = words(value)
                guard f.count == 3, isCryptHash(value[f[0]]), let until = ByteNumber.parse(value[f[1]], as: Int64.self),
                      let uses = ByteNumber.parse(value[f[2]], as: Int.self), (1...TempCode.maxUses).contains(uses) else {
                    throw fail(msg("temp needs a crypt(3) hash, an end time and the uses left (1-\(TempCode.maxUses))"))
                }
                guard temp.count < UserRecord.maxTempCodes else { throw fail(msg("more than \(UserRecord.maxTempCodes) temporary codes")) }
                temp.append(TempCode(hash: String(decoding: value[f[0]], as: UTF8.self), until: until, uses: uses))
            } else {
                throw fail(msg("unknown keyword '\(String(decoding: keyword.prefix(32), as: UTF8.self))'"))
            }
        }
        guard sawHeader else { throw .malformed(path: path, line: max(lineNumber, 1), reason: "empty record") }
        guard let user else { throw .malformed(path: path, line: 1, reason: "no 'user' line") }
        var record = UserRecord(user: user, tokens: tokens, passwordHash: password, failureTimes: failureTimes,
                                recoveryCodes: recovery, usedRecoveryCodes: usedRecovery, challenges: challenges, created: created)
        record.tempCodes = temp
        record.invitation = invitation
        record.enrolling = enrolling
        return record
    }

    /// The space-separated words of a value, as index ranges into it.
    static func words(_ value: ArraySlice<UInt8>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(4)
        var i = value.startIndex
        while i < value.endIndex {
            if value[i] == UInt8(ascii: " ") { i += 1; continue }
            let start = i
            while i < value.endIndex && value[i] != UInt8(ascii: " ") { i += 1 }
            out.append(start..<i)
        }
        return out
    }

    public static func isCryptHash<C: Collection<UInt8>>(_ s: C) -> Bool {
        !s.isEmpty && s.count < 512 && s.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    struct FieldError: Error { let description: String }

    /// The keys of a token line this module knows; others are ignored.
    enum TokenKey: Int, CaseIterable {
        case id, kind, type, period, counter, algorithm, digits, secret, last, created, used, label, window, name, device, accessKey, touch, codes, pending

        var text: StaticString {
            switch self {
            case .id: return "id"
            case .kind: return "kind"
            case .type: return "type"
            case .period: return "period"
            case .counter: return "counter"
            case .algorithm: return "algorithm"
            case .digits: return "digits"
            case .secret: return "secret"
            case .last: return "last"
            case .created: return "created"
            case .used: return "used"
            case .label: return "label"
            case .window: return "window"
            case .name: return "name"
            case .device: return "device"
            case .accessKey: return "access-key"
            case .pending: return "pending"
            case .touch: return "touch"
            case .codes: return "codes"
            }
        }

        /// The key these bytes spell. Only keys of the same length and first byte are
        /// compared byte by byte (one, or two: counter and created): the names are written
        /// once, in `text`, and the cheap tests come first (a record is parsed every login).
        init?(_ b: ArraySlice<UInt8>) {
            guard let first = b.first else { return nil }
            var raw = 0
            while let key = TokenKey(rawValue: raw) {
                let text = key.text
                if text.utf8CodeUnitCount == b.count && text.utf8Start.pointee == first && b.spells(text) {
                    self = key
                    return
                }
                raw += 1
            }
            return nil
        }
    }

    /// The fields are found as byte ranges in the line, and a String is made only for a
    /// value that is asked for: a record is parsed on every login, and small allocations
    /// were most of its cost.
    static func parseToken(_ bytes: ArraySlice<UInt8>) throws(FieldError) -> Token {
        // Each known key's value, by key: one pass over the line (the last one wins).
        var values = [Range<Int>?](repeating: nil, count: TokenKey.allCases.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == UInt8(ascii: " ") { i += 1; continue }
            let start = i
            while i < bytes.endIndex && bytes[i] != UInt8(ascii: " ") { i += 1 }
            guard let eq = bytes[start..<i].firstIndex(of: UInt8(ascii: "=")) else {
                throw FieldError(description: msg("token field '\(String(decoding: bytes[start..<min(i, start + 32)], as: UTF8.self))' is not key=value"))
            }
            if let key = TokenKey(bytes[start..<eq]) { values[key.rawValue] = (eq + 1)..<i }
        }
        func raw(_ k: TokenKey) -> ArraySlice<UInt8>? { values[k.rawValue].map { bytes[$0] } }
        /// A field's bytes unless absent or `-`.
        func present(_ k: TokenKey) -> ArraySlice<UInt8>? {
            guard let v = raw(k), !v.spells("-") else { return nil }
            return v
        }
        func need(_ k: TokenKey) throws(FieldError) -> String {
            guard let v = raw(k) else { throw FieldError(description: msg("token lacks \(k.text.description)=")) }
            return String(decoding: v, as: UTF8.self)
        }
        func optional(_ k: TokenKey) -> String? { present(k).map { String(decoding: $0, as: UTF8.self) } }
        func number<T: FixedWidthInteger>(_ k: TokenKey, _: T.Type) throws(FieldError) -> T? {
            guard let v = present(k) else { return nil }
            guard let n = ByteNumber.parse(v, as: T.self) else { throw FieldError(description: msg("token \(k.text.description)= is not a number")) }
            return n
        }
        let id = try need(.id)
        guard Token.isValidID(id) else { throw FieldError(description: "token id must be 1-32 of a-z 0-9 - _") }
        guard let kindBytes = raw(.kind) else { throw FieldError(description: "token lacks kind=") }
        let kind: TokenKind
        if kindBytes.spells("code") { kind = .code } else if kindBytes.spells("card") { kind = .card } else {
            throw FieldError(description: "token kind must be card or code")
        }
        guard let algorithmBytes = raw(.algorithm) else { throw FieldError(description: "token lacks algorithm=") }
        // What this module writes, matched on the bytes; any other spelling (SHA-1, …) by name.
        let written: HashAlgorithm? = algorithmBytes.spells("sha1") ? .sha1 : algorithmBytes.spells("sha256") ? .sha256
            : algorithmBytes.spells("sha512") ? .sha512 : nil
        guard let algorithm = written ?? HashAlgorithm(name: String(decoding: algorithmBytes, as: UTF8.self)) else {
            throw FieldError(description: "unknown algorithm")
        }
        guard let digitBytes = raw(.digits) else { throw FieldError(description: "token lacks digits=") }
        guard let digits = ByteNumber.parse(digitBytes, as: Int.self) else { throw FieldError(description: "digits is not a number") }
        let otpKind: OTPKind
        var initial: UInt64 = 0
        let type = raw(.type) ?? []
        if type.spells("totp") {
            guard let p = try number(.period, Int.self) else { throw FieldError(description: "totp token lacks period=") }
            otpKind = .totp(period: p)
        } else if type.spells("hotp") {
            otpKind = .hotp
            initial = try number(.counter, UInt64.self) ?? 0
        } else {
            throw FieldError(description: raw(.type) == nil ? "token lacks type=" : "type must be totp or hotp")
        }
        let parameters: OTPParameters
        do { parameters = try OTPParameters(kind: otpKind, algorithm: algorithm, digits: digits) } catch {
            throw FieldError(description: error.description)
        }
        guard let secretField = raw(.secret) else { throw FieldError(description: "token lacks secret=") }
        var secretBytes: [UInt8]
        do { secretBytes = try Base32.decode(bytes: secretField) } catch { throw FieldError(description: msg("secret: \(error)")) }
        guard (1...OTPParameters.maxSecretLength).contains(secretBytes.count) else {
            ConstantTime.wipe(&secretBytes)
            throw FieldError(description: msg("secret must be 1-\(OTPParameters.maxSecretLength) bytes"))
        }
        var accessKey: SecretBytes?
        if let hex = optional(.accessKey) {
            guard var k = try? Hex.decode(hex), k.count == 16 else { throw FieldError(description: "access-key must be 16 bytes of hex") }
            accessKey = SecretBytes(consuming: &k)
        }
        var deviceID: String?
        if let d = optional(.device) {
            guard d.utf8.count <= 64, (try? Hex.decode(d)) != nil else { throw FieldError(description: "device must be hex") }
            deviceID = d.asciiLowercased
        }
        let label = optional(.label).flatMap { OTPAuthURI.percentDecode($0) } ?? ""
        let name = optional(.name).flatMap { OTPAuthURI.percentDecode($0) }
        if kind == .card && name == nil { throw FieldError(description: "card token lacks name=") }
        var token = Token(id: id, kind: kind, parameters: parameters, secret: SecretBytes(consuming: &secretBytes),
                     initialCounter: initial, lastUsed: try number(.last, UInt64.self),
                     credentialName: name, deviceID: deviceID, accessKey: accessKey, label: label,
                     created: try number(.created, Int64.self) ?? 0,
                     lastUsedTime: try number(.used, Int64.self))
        token.touch = raw(.touch)?.spells("1") ?? false
        token.tapOnly = kind == .card && raw(.codes)?.spells("0") == true
        token.pending = raw(.pending)?.spells("1") == true
        if let limit = try number(.window, Int.self) {
            guard (1...1000).contains(limit) else { throw FieldError(description: "token window= must be 1-1000") }
            token.windowLimit = limit
        }
        return token
    }
}
