import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials  // Data and Base64: no ICU data in smartotpd
#else
import Foundation
#endif
import OTPCore
import TokenStore

/// A token's secret (and a card's access key) as the database keeps it: AES-256-GCM under
/// a key outside the database, with the user, the token id and the token's enrolment time
/// bound in as associated data. A database writer can neither read it, nor plant a secret
/// of their choosing (it would not open), nor move it to another user or token, nor put a
/// secret of an earlier enrolment back under the same token id (the associated data would
/// differ: `SealedRecords.binding`).
public struct SealedSecret: Sendable, Equatable {
    /// The id of the key it was sealed under (`KeyFile.id`).
    public var keyID: String
    /// Base64 of nonce (12 bytes), ciphertext, tag (16 bytes).
    public var box: String

    public init(keyID: String, box: String) {
        self.keyID = keyID
        self.box = box
    }
}

/// Why a record's secrets cannot be used: each is logged and refuses the verdict.
public enum SealError: Error, Equatable, CustomStringConvertible {
    /// A token whose secret is not held sealed (no row, or it names an unknown key).
    case missing(user: String, token: String)
    case unknownKey(user: String, token: String, keyID: String)
    /// The sealed value does not open for this user and token: edited, forged, or moved.
    case forged(user: String, token: String)
    /// The record's own text carries a secret: written in the clear by someone else.
    case inTheClear(user: String, token: String)
    /// The cipher refused to seal (it does not, with its own random nonce).
    case cannotSeal(user: String, token: String)
    /// The row's mac does not match what it holds: changed outside smartotpd (a recovery
    /// hash planted, a counter or failure count reset, a secret swapped, a column edited).
    case tampered(user: String)
    /// The row is an older version than this replica has already seen for the user: put
    /// back from a copy (a row's mac cannot tell an old version from the current one).
    case rolledBack(user: String, version: Int64, seen: Int64)

    public var description: String {
        switch self {
        case .missing(let u, let t): return "\(u): token \(t) has no sealed secret"
        case .unknownKey(let u, let t, let k): return "\(u): token \(t) is sealed under key \(k), which this smartotpd does not hold (seal_key, unseal_keys)"
        case .forged(let u, let t): return "\(u): token \(t)'s sealed secret does not open for this user and token (edited or moved in the database)"
        case .inTheClear(let u, let t): return "\(u): token \(t) carries a secret in the clear in the record (not written by smartotpd)"
        case .cannotSeal(let u, let t): return "\(u): token \(t)'s secret could not be sealed"
        case .tampered(let u): return "\(u): the row was changed outside smartotpd (its mac does not match: edited, planted or swapped in the database)"
        case .rolledBack(let u, let v, let seen): return "\(u): the row is version \(v), older than version \(seen) this smartotpd has seen (put back from a copy)"
        }
    }
}

/// Seals under one key and opens under any key it holds (the old ones during a rekey).
public struct Sealer: Sendable {
    public let current: KeyFile
    let keys: [String: KeyFile]

    public init(current: KeyFile, others: [KeyFile] = []) {
        self.current = current
        var all: [String: KeyFile] = [:]
        for k in others + [current] { all[k.id] = k }
        keys = all
    }

    public var keyIDs: [String] { keys.keys.sorted() }
    public func key(_ id: String) -> KeyFile? { keys[id] }

    static func associatedData(user: UserName, token: String, keyID: String, version: Int = 2) -> [UInt8] {
        var out = Array("smartotp sealed secret \(version)".utf8)
        for part in [user.value, token, keyID] {
            out.append(0)
            out += Array(part.utf8)
        }
        return out
    }

    /// The plaintext: the secret's length (one byte), the secret, the access key if any.
    public func seal(_ token: Token, user: UserName) throws(SealError) -> SealedSecret {
        try seal(secret: token.secret, accessKey: token.accessKey, user: user, token: SealedRecords.binding(token))
    }

    public func seal(secret: SecretBytes, accessKey: SecretBytes?, user: UserName, token: String) throws(SealError) -> SealedSecret {
        try seal(secret: secret, accessKey: accessKey, user: user, token: token, version: 2)
    }

    /// `version` 1: as smartotpd sealed before schema 6 (the tests' old rows).
    func seal(secret: SecretBytes, accessKey: SecretBytes?, user: UserName, token: String, version: Int) throws(SealError) -> SealedSecret {
        var plain: [UInt8] = [UInt8(secret.count)]
        secret.withUnsafeBytes { plain += $0 }
        if let key = accessKey { key.withUnsafeBytes { plain += $0 } }
        defer { ConstantTime.wipe(&plain) }
        guard let box = try? AES.GCM.seal(plain, using: current.key, authenticating: Self.associatedData(user: user, token: token, keyID: current.id, version: version)),
              let combined = box.combined else { throw .cannotSeal(user: user.value, token: token) }
        return SealedSecret(keyID: current.id, box: combined.base64EncodedString())
    }

    /// The secret and the access key a sealed value holds for this user's token.
    public func open(_ sealed: SealedSecret, user: UserName, token: String) throws(SealError) -> (secret: SecretBytes, accessKey: SecretBytes?) {
        try open(sealed, user: user, token: token, version: 2)
    }

    /// A secret sealed before schema 6, bound to the user and the token id alone: only
    /// `smartotpd migrate` opens these, to seal them again bound to the enrolment.
    public func openUnbound(_ sealed: SealedSecret, user: UserName, token: String) throws(SealError) -> (secret: SecretBytes, accessKey: SecretBytes?) {
        try open(sealed, user: user, token: token, version: 1)
    }

    func open(_ sealed: SealedSecret, user: UserName, token binding: String, version: Int) throws(SealError) -> (secret: SecretBytes, accessKey: SecretBytes?) {
        // Errors name the token by its id (a binding is `id@created`; ids hold no `@`).
        let token = binding.split(separator: "@", maxSplits: 1).first.map(String.init) ?? binding
        guard let key = keys[sealed.keyID] else { throw .unknownKey(user: user.value, token: token, keyID: sealed.keyID) }
        guard let data = Data(base64Encoded: sealed.box), let box = try? AES.GCM.SealedBox(combined: data),
              let opened = try? AES.GCM.open(box, using: key.key, authenticating: Self.associatedData(user: user, token: binding, keyID: sealed.keyID, version: version))
        else { throw .forged(user: user.value, token: token) }
        var plain = [UInt8](opened)
        defer { ConstantTime.wipe(&plain) }
        guard let length = plain.first.map(Int.init), length >= 1, plain.count == 1 + length || plain.count == 1 + length + 16 else {
            throw .forged(user: user.value, token: token)
        }
        let secret = SecretBytes(Array(plain[1...length]))
        let access = plain.count > 1 + length ? SecretBytes(Array(plain[(1 + length)...])) : nil
        return (secret, access)
    }
}

/// A record split in two for the database: its text with every secret taken out (the
/// counters, the failures, the challenges: what a verdict rewrites), and the sealed
/// secrets, one a token (written only by an administrator's change).
public enum SealedRecords {
    /// What stands for a secret in the record's text: one zero byte (`secret=AA`).
    /// The file format needs a secret there; this one is never used (`open` replaces it
    /// and refuses a record whose text holds anything else).
    static let marker: [UInt8] = [0]

    /// Whether `secret` is the marker that stands for a sealed one (never to be sealed
    /// itself: a record refused for a missing secret still holds markers).
    public static func isMarker(_ secret: SecretBytes) -> Bool { secret.constantTimeEquals(SecretBytes(marker)) }

    /// The record with its secrets taken out.
    public static func stripped(_ record: UserRecord) -> UserRecord {
        var r = record
        for i in r.tokens.indices {
            r.tokens[i].secret = SecretBytes(marker)
            r.tokens[i].accessKey = nil
        }
        return r
    }

    /// The record's text for the database and each token's sealed secret. A token whose
    /// secret and access key are those `stored` already holds sealed for it (as `opened`, the
    /// record they opened into, shows) keeps that sealed value: a secret already stored is
    /// never sealed again, so a verdict never rewrites one. Every other token is sealed
    /// anew; a marker (the stand-in of a secret that did not open) is never sealed.
    public static func seal(_ record: UserRecord, with sealer: Sealer, keeping stored: [String: SealedSecret] = [:],
                            opened: UserRecord? = nil) throws(SealError) -> (text: String, secrets: [String: SealedSecret]) {
        var secrets: [String: SealedSecret] = [:]
        for t in record.tokens {
            if let kept = stored[t.id], let was = opened?.tokens.first(where: { $0.id == t.id }),
               was.secret.constantTimeEquals(t.secret), sameKey(was.accessKey, t.accessKey) {
                secrets[t.id] = kept
            } else {
                guard !isMarker(t.secret) else { throw .missing(user: record.user.value, token: t.id) }
                secrets[t.id] = try sealer.seal(t, user: record.user)
            }
        }
        return (RecordFormat.text(stripped(record)), secrets)
    }

    /// What a sealed secret is bound to besides its user: the token id and the time the
    /// token was enrolled (`id@created`). Token ids are reused (`card` again after a card is
    /// replaced), enrolments are not: an earlier enrolment's sealed secret does not open
    /// under a later one, even with the same id.
    public static func binding(_ token: Token) -> String { "\(token.id)@\(token.created)" }

    /// Whether two access keys (or none) are the same, in constant time.
    public static func sameKey(_ a: SecretBytes?, _ b: SecretBytes?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (let x?, let y?): return x.constantTimeEquals(y)
        default: return false
        }
    }

    /// The record with its secrets back in. Refuses a token whose text carries a secret
    /// (written in the clear), one without a sealed secret, and one whose sealed secret
    /// does not open for this user and token.
    public static func open(_ stripped: UserRecord, secrets: [String: SealedSecret], with sealer: Sealer) throws(SealError) -> UserRecord {
        var r = stripped
        let markerSecret = SecretBytes(marker)
        for i in r.tokens.indices {
            let id = r.tokens[i].id
            guard r.tokens[i].secret.constantTimeEquals(markerSecret), r.tokens[i].accessKey == nil else {
                throw .inTheClear(user: r.user.value, token: id)
            }
            guard let sealed = secrets[id] else { throw .missing(user: r.user.value, token: id) }
            let (secret, access) = try sealer.open(sealed, user: r.user, token: binding(r.tokens[i]))
            r.tokens[i].secret = secret
            r.tokens[i].accessKey = access
        }
        return r
    }
}
