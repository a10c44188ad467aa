/// The hash functions an OATH credential may use (RFC 4226, RFC 6238 §1.2), with the
/// numbers YKOATH gives them in the low nibble of a credential's type byte.
public enum HashAlgorithm: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case sha1 = 0x01
    case sha256 = 0x02
    case sha512 = 0x03

    /// Output length of the HMAC in bytes.
    public var digestLength: Int {
        switch self {
        case .sha1: return SHA1.digestSize
        case .sha256: return SHA256.digestSize
        case .sha512: return SHA512.digestSize
        }
    }

    /// The block size of the hash; HMAC keys longer than this are hashed first (RFC 2104 §2).
    public var blockSize: Int { self == .sha512 ? SHA512.blockSize : SHA1.blockSize }

    /// Lower-case name as used in records and on the command line: `sha1`, `sha256`, `sha512`.
    public var description: String {
        switch self {
        case .sha1: return "sha1"
        case .sha256: return "sha256"
        case .sha512: return "sha512"
        }
    }

    /// Parses `sha1`, `SHA1`, `sha-256`, … as written in records, otpauth URIs and options.
    public init?(name: String) {
        // Over the bytes: iterating Characters brings grapheme breaking into the module.
        let folded = String(decoding: name.asciiLowercased.utf8.filter { $0 != UInt8(ascii: "-") }, as: UTF8.self)
        if folded.equals("sha1") { self = .sha1 }
        else if folded.equals("sha256") { self = .sha256 }
        else if folded.equals("sha512") { self = .sha512 }
        else { return nil }
    }
}
