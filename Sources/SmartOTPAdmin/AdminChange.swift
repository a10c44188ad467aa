import OTPCore
import TokenStore
import Verifier

/// An administrator's change to one user's record: the one implementation of every
/// command that changes a record, applied by `smartotp` to a local store under the file's
/// lock, and by smartotpd inside the transaction on the user's row (the CLI sends the
/// change, never a record, and never gets a secret back).
public enum AdminChange: Sendable {
    /// Adds a token (the record is made when missing). Carries the new secret one way: to
    /// the store.
    case enroll(Token)
    case removeToken(String)
    case removeUser
    case passwd(hash: String)
    /// Replaces the recovery codes (hashes); the user must have a record.
    case recovery(hashes: [String])
    case resync(token: String?, first: String, second: String)
    case unlock
    /// Merges what an importer read (`RecordImport.merge`).
    case merge(Importers.Imported, pinAsPassword: Bool)
    /// A whole record for a user who has none (`migrate-store`).
    case place(UserRecord)
    /// Confirms a pending token (`enroll --generate`) with a code from the phone: the
    /// first pending token that accepts it passes logins from now on.
    case confirm(code: String)
    /// Adds a temporary code (its hash), good until `until` for `uses` logins; the user
    /// must have a record.
    case tempCode(hash: String, until: Int64, uses: Int)
    /// Removes every temporary code of the user (the card was found).
    case removeTempCodes
    /// An invitation to enrol oneself (its code's hash, its end); the record is made when
    /// missing (it proves nothing until the user enrols: logins see no record).
    case invite(hash: String, until: Int64)

    /// What a change did.
    public enum Outcome: Sendable, Equatable {
        /// The new token's id.
        case token(String)
        /// Whether it found what it changes (false: no such user or token; nothing written).
        case done(Bool)
        /// The counter resync found (nil: the two codes were not found in a row).
        case counter(UInt64?)
        case imported(RecordImport.Report)
    }

    /// The verb in smartotpd's path and its audit rows.
    public var verb: String {
        switch self {
        case .enroll: return "enroll"
        case .removeToken, .removeUser: return "remove"
        case .passwd: return "passwd"
        case .recovery: return "recovery"
        case .resync: return "resync"
        case .unlock: return "unlock"
        case .merge: return "import"
        case .place: return "place"
        case .confirm: return "confirm"
        case .tempCode, .removeTempCodes: return "temp-code"
        case .invite: return "invite"
        }
    }

    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Applies the change to `current`: its outcome and what to write.
    public func apply(to current: UserRecord?, user: UserName, now: Int64) throws(Failure) -> (Outcome, RecordChange) {
        switch self {
        case .enroll(var token):
            guard token.secret.count >= OTPParameters.minSecretLength else {
                throw Failure(msg("the token's secret is \(token.secret.count * 8) bits: RFC 4226 requires at least 128"))
            }
            var r = current ?? UserRecord(user: user, created: now)
            token.id = r.nextTokenID(prefix: token.kind == .card ? "card" : "code")
            r.tokens.append(token)
            // A new record's first token, pending: no enrolment until confirmed. Any live
            // token makes the record one for good.
            if token.pending { r.enrolling = r.enrolling || current == nil } else { r.enrolling = false }
            return (.token(token.id), .write(r))
        case .removeUser:
            return current == nil ? (.done(false), .keep) : (.done(true), .remove)
        case .removeToken(let id):
            guard var r = current, let i = r.tokens.firstIndex(where: { $0.id == id }) else { return (.done(false), .keep) }
            r.tokens.remove(at: i)
            return (.done(true), .write(r))
        case .passwd(let hash):
            var r = current ?? UserRecord(user: user, created: now)
            r.passwordHash = hash
            r.enrolling = false
            return (.done(true), .write(r))
        case .recovery(let hashes):
            guard var r = current else { return (.done(false), .keep) }
            r.recoveryCodes = hashes
            r.enrolling = false
            return (.done(true), .write(r))
        case .unlock:
            guard var r = current else { return (.done(false), .keep) }
            r.clearFailures()
            return (.done(true), .write(r))
        case .resync(let token, let first, let second):
            guard var r = current,
                  let i = r.tokens.firstIndex(where: { $0.parameters.kind == .hotp && (token == nil || $0.id == token) }) else {
                return (.counter(nil), .keep)
            }
            let t = r.tokens[i]
            let start = t.lastUsed.map { $0 &+ 1 } ?? t.initialCounter
            guard let found = HOTPValidator(parameters: t.parameters, window: 1)
                .resync(first: first, second: second, secret: t.secret, start: start, searchLimit: 10_000) else { return (.counter(nil), .keep) }
            r.tokens[i].lastUsed = found
            return (.counter(found), .write(r))
        case .merge(let item, let pinAsPassword):
            guard let (merged, report) = RecordImport.merge(item, into: current, now: now, pinAsPassword: pinAsPassword) else {
                throw Failure("libxcrypt could not hash a code")
            }
            var m = merged
            m.enrolling = false
            return (.imported(report), .write(m))
        case .place(let record):
            return current == nil ? (.done(true), .write(record)) : (.done(false), .keep)
        case .confirm(let code):
            guard var r = current, let id = PendingTokens.confirm(code, in: &r, now: now) else { return (.done(false), .keep) }
            return (.token(id), .write(r))
        case .tempCode(let hash, let until, let uses):
            guard var r = current else { return (.done(false), .keep) }
            r.tempCodes.removeAll { $0.until <= now || $0.uses <= 0 }
            guard r.tempCodes.count < UserRecord.maxTempCodes else {
                throw Failure(msg("\(user) has \(UserRecord.maxTempCodes) temporary codes already; remove them first: smartotp temp-code USER --remove"))
            }
            r.tempCodes.append(TempCode(hash: hash, until: until, uses: uses))
            r.enrolling = false
            return (.done(true), .write(r))
        case .invite(let hash, let until):
            // For a first enrolment only: an invitation to a user who can prove something
            // already would let whoever holds it add a token of theirs.
            if let current, current.canProve(at: now) {
                throw Failure(msg("\(user) is enrolled already: an invitation is for a first enrolment (an administrator adds tokens: smartotp enroll)"))
            }
            var r = current ?? UserRecord(user: user, created: now)
            r.invitation = Invitation(hash: hash, until: until)
            r.enrolling = r.enrolling || current == nil
            return (.done(true), .write(r))
        case .removeTempCodes:
            guard var r = current, !r.tempCodes.isEmpty else { return (.done(false), .keep) }
            r.tempCodes.removeAll()
            return (.done(true), .write(r))
        }
    }
}

/// The wire form of changes and outcomes: `key value` lines (a token, a record: the
/// record file's own text after a `record` line). Holds secrets on the way in: the
/// callers wipe it.
extension AdminChange {
    public func encode(for user: UserName) -> [UInt8] {
        var lines: [String] = []
        var record: UserRecord?
        switch self {
        case .enroll(var token):
            // The store names the token (`apply`); the wire needs a valid id meanwhile.
            if !Token.isValidID(token.id) { token.id = "new" }
            record = UserRecord(user: user, tokens: [token], created: 0)
        case .removeToken(let id): lines.append("token \(id)")
        case .removeUser: lines.append("all")
        case .passwd(let hash): lines.append("hash \(hash)")
        case .recovery(let hashes): lines += hashes.map { "hash \($0)" }
        case .resync(let token, let first, let second):
            if let token { lines.append("token \(token)") }
            lines += ["first \(first)", "second \(second)"]
        case .unlock: break
        case .merge(let item, let pinAsPassword):
            if let pin = item.pin { lines.append("pin \(OTPAuthURI.percentEncode(pin))") }
            lines += item.scratchCodes.map { "scratch \($0)" }
            if pinAsPassword { lines.append("pin-as-password") }
            record = UserRecord(user: user, tokens: [item.token], created: 0)
        case .place(let r): record = r
        case .confirm(let code): lines.append("code \(code)")
        case .tempCode(let hash, let until, let uses): lines += ["hash \(hash)", "until \(until)", "uses \(uses)"]
        case .removeTempCodes: lines.append("remove")
        case .invite(let hash, let until): lines += ["hash \(hash)", "until \(until)"]
        }
        var out = Array((lines.map { $0 + "\n" }.joined()).utf8)
        if let record {
            out += Array("record\n".utf8)
            out += RecordFormat.encode(record)
        }
        return out
    }

    /// A crypt(3) hash as a record line holds it (RecordFormat's own rule): anything else
    /// would be written and then refuse to parse, making the user's record unreadable.
    static func isHash(_ h: String) -> Bool { RecordFormat.isCryptHash(h.utf8) }

    /// The change a `verb` request's body describes, for `user`.
    public static func decode(verb: String, body: [UInt8], user: UserName) throws(Failure) -> AdminChange {
        var lines: [(String, String)] = []
        var record: UserRecord?
        var rest = body[...]
        while let nl = rest.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: rest[..<nl], as: UTF8.self)
            rest = rest[(nl + 1)...]
            if line == "record" {
                do { record = try RecordFormat.parse(bytes: Array(rest), path: "request") } catch { throw Failure("\(error)") }
                break
            }
            let parts = line.splitBytes(UInt8(ascii: " "), maxSplits: 1, omittingEmpty: false)
            lines.append((parts.first ?? "", parts.count > 1 ? parts[1] : ""))
        }
        if let record, record.user != user { throw Failure("the record is for \(record.user), not \(user)") }
        func one(_ key: String) -> String? { lines.first { $0.0 == key }?.1 }
        func all(_ key: String) -> [String] { lines.filter { $0.0 == key }.map(\.1) }
        switch verb {
        case "enroll":
            guard let token = record?.tokens.first, record?.tokens.count == 1 else { throw Failure("enroll needs one token") }
            return .enroll(token)
        case "remove":
            if let t = one("token") { return .removeToken(t) }
            guard one("all") != nil else { throw Failure("remove needs a token or all") }
            return .removeUser
        case "passwd":
            guard let h = one("hash"), isHash(h) else { throw Failure("passwd needs a hash") }
            return .passwd(hash: h)
        case "recovery":
            let hashes = all("hash")
            guard (1...50).contains(hashes.count), hashes.allSatisfy(isHash) else { throw Failure("recovery needs 1-50 hashes") }
            return .recovery(hashes: hashes)
        case "resync":
            guard let first = one("first"), let second = one("second") else { throw Failure("resync needs two codes") }
            return .resync(token: one("token"), first: first, second: second)
        case "unlock": return .unlock
        case "import":
            guard let token = record?.tokens.first, record?.tokens.count == 1 else { throw Failure("import needs one token") }
            var pin: String?
            if let p = one("pin") {
                guard let decoded = OTPAuthURI.percentDecode(p) else { throw Failure("a bad pin line") }
                pin = decoded
            }
            let item = Importers.Imported(user: user, token: token, pin: pin, scratchCodes: all("scratch"), notes: [])
            return .merge(item, pinAsPassword: one("pin-as-password") != nil)
        case "place":
            guard let record else { throw Failure("place needs a record") }
            return .place(record)
        case "confirm":
            guard let code = one("code"), !code.isEmpty, code.utf8.count <= 16 else { throw Failure("confirm needs a code") }
            return .confirm(code: code)
        case "invite":
            guard let h = one("hash"), isHash(h), let until = one("until").flatMap({ Int64($0) }) else {
                throw Failure("invite needs a hash and an end time")
            }
            return .invite(hash: h, until: until)
        case "temp-code":
            if one("remove") != nil { return .removeTempCodes }
            guard let h = one("hash"), isHash(h),
                  let until = one("until").flatMap({ Int64($0) }), let uses = one("uses").flatMap({ Int($0) }),
                  (1...TempCode.maxUses).contains(uses) else { throw Failure("temp-code needs a hash, an end time and 1-\(TempCode.maxUses) uses") }
            return .tempCode(hash: h, until: until, uses: uses)
        default:
            throw Failure("no such change: \(verb)")
        }
    }
}

extension AdminChange.Outcome {
    public var text: String {
        switch self {
        case .token(let id): return "token \(id)\n"
        case .done(let found): return "done \(found ? 1 : 0)\n"
        case .counter(let c): return "counter \(c.map(String.init) ?? "-")\n"
        case .imported(let r):
            return "imported \(r.tokenID) \(r.newToken ? 1 : 0) \(r.recoveryAdded) \(r.recoverySkipped) \(r.pinSet ? 1 : 0)\n"
        }
    }

    public init?(text: String) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        switch (words.first, words.count) {
        case ("token", 2): self = .token(words[1])
        case ("done", 2): self = .done(words[1] == "1")
        case ("counter", 2): self = .counter(words[1] == "-" ? nil : UInt64(words[1]))
        case ("imported", 6):
            guard let a = Int(words[3]), let s = Int(words[4]) else { return nil }
            self = .imported(.init(tokenID: words[1], newToken: words[2] == "1", recoveryAdded: a, recoverySkipped: s, pinSet: words[5] == "1"))
        default: return nil
        }
    }
}
